/**
 * The Node live peer: the TS driver over node-datachannel (libdatachannel) through its W3C
 * polyfill.  `node dist/node-peer.js '<json config>'` (config: `seed`, `peer_pub` as hex);
 * commands as JSON lines on stdin (`rv`, `chsend`, `stop`), events as JSON lines on stdout —
 * the same protocol as tests/ts_live_peer.py.
 */
import { createInterface } from "node:readline";
import { randomFillSync } from "node:crypto";
import { performance } from "node:perf_hooks";
import ndc from "node-datachannel";
import { RTCPeerConnection } from "node-datachannel/polyfill";
import { fromHex, toHex } from "../../dist/bytes.js";
import { LivePeer, randomRng, type PeerConnectionLike } from "./driver.js";
import { frameCutter, listenLocal, TorControl } from "./tor.js";

if (process.env.P4_NDC_LOG) ndc.initLogger(process.env.P4_NDC_LOG as never, (level: string, msg: string) => process.stderr.write(`${Date.now() % 100000} ${level} ${msg}\n`));
const cfg = JSON.parse(process.argv[2] ?? "{}") as { seed: string; peer_pub: string };
const emit = (ev: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(JSON.stringify({ ev, t: performance.timeOrigin / 1000 + performance.now() / 1000, ...fields }) + "\n");
};
let n = 0;
const makePc = (): PeerConnectionLike => {
  // libjuice skips loopback interfaces unless bound to 127.0.0.1 (research/webrtc-lab.md §3)
  const inner = new ndc.PeerConnection(`p4-${++n}`, { iceServers: [], bindAddress: "127.0.0.1" });
  return new RTCPeerConnection({ peerConnection: inner } as never) as unknown as PeerConnectionLike;
};
const peer = new LivePeer(fromHex(cfg.seed), fromHex(cfg.peer_pub), randomRng((b) => randomFillSync(b)), makePc, emit);
emit("ready", { pub: toHex(peer.myPub) });

const run = (p: Promise<void>): void => {
  p.catch((e: unknown) => emit("error", { detail: String(e instanceof Error ? e.stack : e) }));
};
let tor: TorControl | undefined;
/** Signalling over the private Tor network: an onion service whose streams carry RV frames. */
async function torListen(controlPort: number, cookie: string): Promise<void> {
  const { port } = await listenLocal((sock) => {
    emit("tor_stream");
    const cut = frameCutter((f) => run(peer.onRv(toHex(f), (answer) => sock.write(answer))));
    sock.on("data", (d: Buffer) => cut(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    sock.on("error", () => undefined);
  });
  tor = await TorControl.open(controlPort);
  await tor.authenticateCookie(cookie);
  const onion = await tor.addOnion(port);
  emit("onion", { address: onion });
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const c = JSON.parse(line) as { cmd: string; frame?: string; name?: string; count?: number; size?: number; control_port?: number; cookie?: string };
  if (c.cmd === "rv") run(peer.onRv(c.frame as string));
  else if (c.cmd === "offer") run(peer.offer((c as { generation?: number }).generation as number));
  else if (c.cmd === "tor_listen") run(torListen(c.control_port as number, c.cookie as string));
  else if (c.cmd === "chsend") run(peer.chsend(c.name as string, c.count as number, c.size));
  else if (c.cmd === "status") emit("snapshot", peer.snapshot());
  else if (c.cmd === "stop") {
    peer.stop();
    emit("stopped");
    setTimeout(() => process.exit(0), 100);
  }
});
rl.on("close", () => {
  peer.stop();
  setTimeout(() => process.exit(0), 100);
});
