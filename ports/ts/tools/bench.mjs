// Rough codec and machine costs of the TS port (node tools/bench.mjs after tsc). Not run by CI.
import { decodeFrame, encodeFrame, StreamReader } from "../dist/framing.js";
import { decodeBody, encode, CborMap } from "../dist/cbor.js";
import { SessionMachine } from "../dist/session/machine.js";
import { ListRng } from "../dist/machine.js";
import { publicKey } from "../dist/identity.js";
import { createHash } from "node:crypto";

const MiB = 1 << 20;
const time = (label, bytes, fn) => {
  fn(); // warm up
  const t0 = process.hrtime.bigint();
  const n = fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${label.padEnd(44)} ${(bytes * n / MiB / s).toFixed(1).padStart(8)} MiB/s  ${(s * 1e3 / (bytes * n / MiB)).toFixed(2).padStart(7)} ms/MiB`);
};
const payload = new Uint8Array(16371).fill(7);
const msgFrame = encodeFrame(0x33, 0, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1, ...payload]), "datachannel");
time("framing.decode SES_MSG 16 KiB (binary body)", msgFrame.length, () => { for (let i = 0; i < 2000; i++) decodeFrame(msgFrame, "datachannel"); return 2000; });
const rd = new StreamReader("tor");
const stream = new Uint8Array(msgFrame.length * 64);
for (let i = 0; i < 64; i++) stream.set(msgFrame, i * msgFrame.length);
time("StreamReader, 64 frames per read", stream.length, () => { for (let i = 0; i < 30; i++) rd.feed(stream); return 30; });
const big = new CborMap([[1n, new Uint8Array(8000)], [2n, "x".repeat(4000)], [3n, Array.from({ length: 100 }, (_, i) => BigInt(i))]]);
const enc = encode(big);
time("CBOR encode (12 KiB map)", enc.length, () => { for (let i = 0; i < 2000; i++) encode(big); return 2000; });
time("CBOR strict decode (12 KiB map)", enc.length, () => { for (let i = 0; i < 2000; i++) decodeBody(enc); return 2000; });

// two session machines over one data channel: messages of 16 KiB, acked every 16
const seed = (t) => createHash("sha256").update(t).digest();
const rng = (t) => new ListRng(Array.from({ length: 16 }, (_, i) => seed(t + i).subarray(0, 16)));
const a = new SessionMachine({ identitySeed: seed("a"), peerPub: publicKey(seed("b")) }, rng("a"));
const b = new SessionMachine({ identitySeed: seed("b"), peerPub: publicKey(seed("a")) }, rng("b"));
const fa = "aa".repeat(32), fb = "bb".repeat(32);
let q = [...a.command(0, "open", { conn: 1, generation: 1, path: "datachannel", binding_local: fa, binding_remote: fb }).sends.map((f) => [b, f]),
  ...b.command(0, "open", { conn: 1, generation: 1, path: "datachannel", binding_local: fb, binding_remote: fa }).sends.map((f) => [a, f])];
let rx = 0n;
const drain = () => { while (q.length) { const [to, f] = q.shift(); const o = to.recvOn(1, 1, f); for (const e of o.events) if (e.event === "MESSAGE") rx = e.seq; q.push(...o.sends.map((x) => [to === a ? b : a, x])); } };
drain();
const hex = Buffer.from(payload).toString("hex");
time("session: send → MESSAGE → commit → ACK", payload.length, () => {
  for (let i = 0; i < 1000; i++) {
    q.push(...a.command(2, "send", { payload: hex }).sends.map((f) => [b, f]));
    drain();
    q.push(...b.command(3, "inbox_committed", { through: Number(rx) }).sends.map((f) => [a, f]));
    drain();
  }
  return 1000;
});
