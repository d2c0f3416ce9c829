/**
 * The headless-Chromium live peer's runner: serves ports/ts (the port's `dist/`, this package's
 * `dist/`, @noble's ESM files) on 127.0.0.1 with an import map (no bundler), launches Debian's
 * chromium through playwright-core (no browser download), and relays JSON lines: stdin →
 * `GET /cmd` (long-poll) → page, page → `POST /emit` → stdout.  Same line protocol as the Node
 * peer.  `node dist/browser-peer.js '<json config>'`; env P4_CHROMIUM overrides /usr/bin/chromium.
 */
import { createServer, type ServerResponse } from "node:http";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join, normalize, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", ".."); // ports/ts
const cfgText = process.argv[2] ?? "{}";
const IMPORTS: Record<string, string> = {
  "@noble/hashes/sha2": "/node_modules/@noble/hashes/esm/sha2.js",
  "@noble/hashes/hkdf": "/node_modules/@noble/hashes/esm/hkdf.js",
  "@noble/hashes/hmac": "/node_modules/@noble/hashes/esm/hmac.js",
  "@noble/hashes/sha3": "/node_modules/@noble/hashes/esm/sha3.js",
  "@noble/curves/ed25519": "/node_modules/@noble/curves/esm/ed25519.js",
  "@noble/ciphers/chacha": "/node_modules/@noble/ciphers/esm/chacha.js",
  // @noble's own ESM files import each other as "@noble/hashes/sha2.js" etc.
  "@noble/hashes/": "/node_modules/@noble/hashes/esm/",
  "@noble/curves/": "/node_modules/@noble/curves/esm/",
  "@noble/ciphers/": "/node_modules/@noble/ciphers/esm/",
};
const PAGE = `<!doctype html><meta charset="utf-8"><title>P4 live peer</title>
<script type="importmap">${JSON.stringify({ imports: IMPORTS })}</script>
<script type="module" src="/live/dist/browser-main.js"></script>`;

const out = (line: string): void => {
  process.stdout.write(line + "\n");
};
const note = (ev: string, fields: Record<string, unknown> = {}): void => out(JSON.stringify({ ev, t: Date.now() / 1000, ...fields }));

let pending: string[] = [];
let waiter: ServerResponse | undefined;
const deliver = (): void => {
  if (waiter !== undefined && pending.length > 0) {
    waiter.end(pending.join("\n"));
    pending = [];
    waiter = undefined;
  }
};

const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://127.0.0.1");
  if (url.pathname === "/cmd") {
    if (waiter !== undefined) waiter.end("");
    waiter = res;
    deliver();
    return;
  }
  if (url.pathname === "/emit" && req.method === "POST") {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      for (const l of body.split("\n")) if (l !== "") out(l);
      res.end("ok");
    });
    return;
  }
  if (url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
    return;
  }
  let file = normalize(join(ROOT, url.pathname));
  // "@noble/hashes/crypto" (no extension) through the prefix mapping: the file is crypto.js
  if (file.includes("/node_modules/@noble/") && !file.endsWith(".js")) file += ".js";
  const allowed = ["dist", "live/dist", "node_modules/@noble"].some((d) => file.startsWith(join(ROOT, d) + "/"));
  if (!allowed || !file.endsWith(".js")) {
    process.stderr.write(`404 ${url.pathname}\n`);
    res.writeHead(404).end();
    return;
  }
  readFile(file).then(
    (b) => res.writeHead(200, { "content-type": "text/javascript" }).end(b),
    () => res.writeHead(404).end(),
  );
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const port = (server.address() as { port: number }).port;

const profile = await mkdtemp(join(tmpdir(), "p4-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.P4_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    // loopback only: both flags together, or Chromium never starts ICE (research/webrtc-lab.md §3)
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
page.on("pageerror", (e) => note("error", { detail: `page error: ${e.message}` }));
await page.goto(`http://127.0.0.1:${port}/?cfg=${encodeURIComponent(cfgText)}`);

let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await ctx.close().catch(() => undefined);
  server.close();
  await rm(profile, { recursive: true, force: true }).catch(() => undefined);
  note("stopped");
  process.exit(0);
};
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (line.trim() === "") return;
  const c = JSON.parse(line) as { cmd: string };
  pending.push(line);
  deliver();
  if (c.cmd === "stop") setTimeout(() => void stop(), 200);
});
rl.on("close", () => void stop());
