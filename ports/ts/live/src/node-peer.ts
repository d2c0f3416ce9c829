/**
 * The Node live peer: the TS driver over node-datachannel (libdatachannel) through its W3C
 * polyfill.  `node dist/node-peer.js '<json config>'` (config: `seed`, `peer_pub` as hex);
 * commands as JSON lines on stdin (`rv`, `offer`, `tor_listen`, `tor_dial`, `chsend`, `stop`), events as
 * JSON lines on stdout —
 * the same protocol as tests/ts_live_peer.py.
 */
import { createInterface } from "node:readline";
import { randomFillSync } from "node:crypto";
import { performance } from "node:perf_hooks";
import ndc from "node-datachannel";
import { RTCPeerConnection } from "node-datachannel/polyfill";
import { fromHex, toHex } from "../../dist/bytes.js";
import { LivePeer, randomRng, type PeerConnectionLike } from "./driver.js";
import { TorControl } from "./tor.js";
import { RendezvousPeer } from "./rdv-stream.js";

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
const rng = randomRng((b) => randomFillSync(b));
const peer = new LivePeer(fromHex(cfg.seed), fromHex(cfg.peer_pub), rng, makePc, emit);
emit("ready", { pub: toHex(peer.myPub) });

const run = (p: Promise<void>): void => {
  p.catch((e: unknown) => emit("error", { detail: String(e instanceof Error ? e.stack : e) }));
};
let tor: TorControl | undefined;
let rdv: RendezvousPeer | undefined;
/**
 * Signalling over the private Tor network, as p4-03 says (rdv-stream.ts): publish the pair's
 * derived epoch onion (`root`: the pair root key, hex) and run the port's rendezvous machine
 * on every stream that reaches it; from then on OFFERs go on the kept stream.
 */
async function torListen(controlPort: number, cookie: string, root: string, incarnation: string): Promise<void> {
  tor = await TorControl.open(controlPort);
  await tor.authenticateCookie(cookie);
  rdv = new RendezvousPeer(peer, fromHex(cfg.seed), fromHex(cfg.peer_pub), fromHex(root), rng, emit, fromHex(incarnation));
  await rdv.publish(tor);
}
/** Dial-only (RDV-65): dial the peer's derived onion through this side's tor. */
async function torDial(controlPort: number, cookie: string, socksPort: number, root: string, incarnation: string): Promise<void> {
  tor = await TorControl.open(controlPort);
  await tor.authenticateCookie(cookie);
  rdv = new RendezvousPeer(peer, fromHex(cfg.seed), fromHex(cfg.peer_pub), fromHex(root), rng, emit, fromHex(incarnation));
  await rdv.dial(tor, socksPort);
}
/** Offer generation `n` on the onion stream when there is one, else bare (test-carried). */
const offer = (n: number): Promise<void> => (rdv?.ready === true ? rdv.offer(n) : peer.offer(n));
peer.onRetry = (n) => run(offer(n));

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const c = JSON.parse(line) as { cmd: string; frame?: string; name?: string; count?: number; size?: number; control_port?: number; cookie?: string; root?: string; incarnation?: string; socks_port?: number };
  if (c.cmd === "rv") run(peer.onRv(c.frame as string));
  else if (c.cmd === "offer") run(offer((c as { generation?: number }).generation ?? peer.highestGeneration + 1));
  else if (c.cmd === "tor_listen") run(torListen(c.control_port as number, c.cookie as string, c.root as string, c.incarnation ?? "00".repeat(16)));
  else if (c.cmd === "tor_dial") run(torDial(c.control_port as number, c.cookie as string, c.socks_port as number, c.root as string, c.incarnation ?? "00".repeat(16)));
  else if (c.cmd === "chsend") run(peer.chsend(c.name as string, c.count as number, c.size));
  else if (c.cmd === "status") emit("snapshot", peer.snapshot());
  else if (c.cmd === "stop") {
    rdv?.close();
    peer.stop();
    emit("stopped");
    setTimeout(() => process.exit(0), 100);
  }
});
rl.on("close", () => {
  peer.stop();
  setTimeout(() => process.exit(0), 100);
});
