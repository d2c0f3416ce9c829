/**
 * The browser live peer (runs in headless Chromium): the same TS driver as in Node, over the
 * browser's own RTCPeerConnection.  Commands and events go through the runner's HTTP relay on
 * 127.0.0.1 (`GET /cmd` long-poll, `POST /emit`): the signed RV frames travel that way.
 */
import { fromHex, toHex } from "../../dist/bytes.js";
import { LivePeer, randomRng, type PeerConnectionLike } from "./driver.js";

const q = new URLSearchParams(location.search);
const cfg = JSON.parse(q.get("cfg") ?? "{}") as { seed: string; peer_pub: string };
const queue: string[] = [];
let flushing = false;
const flush = async (): Promise<void> => {
  if (flushing) return;
  flushing = true;
  while (queue.length > 0) {
    const batch = queue.splice(0);
    await fetch("/emit", { method: "POST", body: batch.join("\n") });
  }
  flushing = false;
};
const emit = (ev: string, fields: Record<string, unknown> = {}): void => {
  queue.push(JSON.stringify({ ev, t: (performance.timeOrigin + performance.now()) / 1000, ...fields }));
  void flush();
};
const makePc = (): PeerConnectionLike => new RTCPeerConnection({ iceServers: [] }) as unknown as PeerConnectionLike;
const peer = new LivePeer(fromHex(cfg.seed), fromHex(cfg.peer_pub), randomRng((b) => crypto.getRandomValues(b)), makePc, emit);
emit("ready", { pub: toHex(peer.myPub) });

const run = (p: Promise<void>): void => {
  p.catch((e: unknown) => emit("error", { detail: String(e instanceof Error ? e.stack : e) }));
};
for (;;) {
  let lines: string[] = [];
  try {
    const r = await fetch("/cmd");
    lines = (await r.text()).split("\n").filter((l) => l !== "");
  } catch {
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const line of lines) {
    const c = JSON.parse(line) as { cmd: string; frame?: string; name?: string; count?: number; size?: number };
    if (c.cmd === "rv") run(peer.onRv(c.frame as string));
    else if (c.cmd === "offer") run(peer.offer((c as { generation?: number }).generation as number));
    else if (c.cmd === "chsend") run(peer.chsend(c.name as string, c.count as number, c.size));
    else if (c.cmd === "stop") peer.stop();
  }
}
