// The TS half of bench/bench_ts_codec.py (issue 14, deliverable 5): codec costs of the port,
// measured the same way as the Python half there. `node tools/bench-codec.mjs '<json>'` after
// tsc; config: {"seconds": per case, "sizes": [DATA bytes …], "sdp": str}. Prints one JSON
// object: per case, operations and bytes per second.
//
// - "data:<n>": a channel DATA item of n bytes (p4-05 §5) in a SES_MSG frame (p4-04 §6) on the
//   data-channel path: encode (encodeItem + encodeFrame) then decode (decodeFrame +
//   parseSesFrame + decodeItem), the payload compared by length.
// - "rv_sign" / "rv_verify": an RV_OFFER with a realistic SDP (p4-03 §6–§7), signed into a
//   frame; decoded and verified (schema, keys, epoch, Ed25519 by §3.1.1 of p4-02).
import { decodeFrame, encodeFrame } from "../dist/framing.js";
import { parseSesFrame } from "../dist/session/messages.js";
import { decodeItem, encodeItem } from "../dist/channels/items.js";
import { checkKeysEpochSignature, decodeRvFrame, signMessage } from "../dist/rendezvous/messages.js";
import { publicKey } from "../dist/identity.js";
import { epochOf } from "../dist/rendezvous/derive.js";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const seconds = cfg.seconds ?? 1;
const out = {};

/** Run `fn` (one operation) in batches for `seconds`, after a warm-up; ops per second. */
function rate(fn, batch) {
  for (let i = 0; i < batch; i++) fn(i);
  let n = 0;
  const t0 = process.hrtime.bigint();
  let s = 0;
  do {
    for (let i = 0; i < batch; i++) fn(n + i);
    n += batch;
    s = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (s < seconds);
  return n / s;
}

const u64be = (v) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v)); return b; };
for (const size of cfg.sizes ?? [1024]) {
  const data = new Uint8Array(size).map((_, i) => i & 0xff);
  const ops = rate((i) => {
    const item = encodeItem({ type: "DATA", chan: 3n, offset: BigInt(i) * BigInt(size), eom: false, data });
    const body = new Uint8Array(8 + item.length);
    body.set(u64be(i + 1));
    body.set(item, 8);
    const unit = encodeFrame(0x33, 0, body, "datachannel");
    const msg = parseSesFrame(decodeFrame(unit, "datachannel"), "datachannel");
    const back = decodeItem(msg.f.payload);
    if (back.data.length !== size) throw new Error("round trip");
  }, size > 4096 ? 200 : 2000);
  out[`data:${size}`] = { ops, bytes: ops * size };
}

const seedA = new Uint8Array(32).fill(1), seedB = new Uint8Array(32).fill(2);
const pubA = publicKey(seedA), pubB = publicKey(seedB);
const sdp = cfg.sdp ?? "v=0\r\n".repeat(100);
const fp = new Uint8Array(32).fill(9);
const nonce = (i) => { const b = new Uint8Array(16); b.set(u64be(i)); return b; };
const fields = (i) => ({ epoch: epochOf(Date.now()), nonce: nonce(i), generation: BigInt(i + 1), sdp, fingerprint: fp, last_rx: 0n, stream_nonce: new Uint8Array(16) });
const signOps = rate((i) => { signMessage("RV_OFFER", fields(i), seedA, pubB); }, 50);
out.rv_sign = { ops: signOps };
const frame = signMessage("RV_OFFER", fields(0), seedA, pubB).frame;
const now = Date.now();
const verifyOps = rate(() => { checkKeysEpochSignature(decodeRvFrame(frame), pubA, pubB, now); }, 50);
out.rv_verify = { ops: verifyOps, frame_bytes: frame.length };
process.stdout.write(JSON.stringify(out) + "\n");
