/** Rendezvous messages (p4-03 §6, §7): schemas, signatures, the receive checks of §8.1 as a stateless op. */
import { ascii, Bytes, concat, equal, toHex } from "../bytes.js";
import { CborMap, encode } from "../cbor.js";
import { P4Error, type ErrorName } from "../errors.js";
import { decodeFrame, rawFrame, T, type Frame } from "../framing.js";
import { publicKey, sign, verifies } from "../identity.js";
import { EPOCH_MS, epochOf } from "./derive.js";

export class RendezvousError extends P4Error {}

export const RV_TYPES = { RV_HELLO: T.RV_HELLO, RV_OFFER: T.RV_OFFER, RV_ANSWER: T.RV_ANSWER, RV_BYE: T.RV_BYE } as const;
export type RvType = keyof typeof RV_TYPES;
export const rvTypeName = (t: number): RvType | undefined =>
  (Object.keys(RV_TYPES) as RvType[]).find((k) => RV_TYPES[k] === t);

export const MAX_SDP_BYTES = 8192;
const U64_MAX = (1n << 64n) - 1n;

type Kind = "uint" | "b16" | "b32" | "b64" | "sdp" | "reason";
interface FieldDef { key: number; name: string; kind: Kind; optional?: boolean }

const COMMON: FieldDef[] = [{ key: 1, name: "epoch", kind: "uint" }, { key: 2, name: "nonce", kind: "b16" }];
const SIG: FieldDef = { key: 15, name: "signature", kind: "b64" };
const OA: FieldDef[] = [
  ...COMMON,
  { key: 3, name: "generation", kind: "uint" },
  { key: 4, name: "sdp", kind: "sdp" },
  { key: 5, name: "fingerprint", kind: "b32" },
  { key: 6, name: "last_rx", kind: "uint" },
];
export const SCHEMAS: Record<RvType, FieldDef[]> = {
  RV_HELLO: [
    ...COMMON,
    { key: 3, name: "timestamp_ms", kind: "uint" },
    { key: 4, name: "sender_pub", kind: "b32" },
    { key: 5, name: "recipient_pub", kind: "b32" },
    { key: 6, name: "echo", kind: "b16", optional: true },
    { key: 7, name: "generation", kind: "uint" },
    { key: 8, name: "incarnation", kind: "b16" },
    SIG,
  ],
  RV_OFFER: [...OA, { key: 8, name: "stream_nonce", kind: "b16" }, SIG],
  RV_ANSWER: [...OA, { key: 7, name: "offer_nonce", kind: "b16" }, { key: 8, name: "stream_nonce", kind: "b16" }, SIG],
  RV_BYE: [...COMMON, { key: 3, name: "reason", kind: "reason" }, { key: 8, name: "stream_nonce", kind: "b16" }, SIG],
};

export type RvValue = bigint | Bytes | string;
/** A rendezvous message: its type and its fields by the names of §6.2. */
export interface RvMsg {
  readonly type: RvType;
  readonly f: Readonly<Record<string, RvValue>>;
}

const invalid = (m: string): never => {
  throw new RendezvousError("MESSAGE_INVALID", m);
};

function checkValue(kind: Kind, v: unknown, name: string): RvValue {
  const blen = kind === "b16" ? 16 : kind === "b32" ? 32 : kind === "b64" ? 64 : 0;
  if (blen > 0) {
    if (!(v instanceof Uint8Array) || v.length !== blen) return invalid(`${name}: not ${blen} bytes`);
    return v;
  }
  if (kind === "sdp") {
    if (typeof v !== "string") return invalid(`${name}: not text`);
    const n = new TextEncoder().encode(v).length;
    if (n < 1 || n > MAX_SDP_BYTES) invalid("sdp must be 1 … 8192 bytes");
    return v;
  }
  if (typeof v !== "bigint" || v < 0n || v > U64_MAX) return invalid(`${name}: not a uint`);
  if (kind === "reason" && v > 0xffffn) invalid("reason above 0xFFFF");
  return v;
}

/** §6.2 + RDV-20 on a decoded body. */
export function parseBody(type: RvType, m: CborMap): RvMsg {
  const defs = SCHEMAS[type];
  const f: Record<string, RvValue> = {};
  for (const k of m.keys()) if (!defs.some((d) => BigInt(d.key) === k)) invalid(`unknown key ${k}`);
  for (const d of defs) {
    const v = m.get(d.key);
    if (v === undefined) {
      if (!d.optional) invalid(`missing key ${d.key}`);
      continue;
    }
    f[d.name] = checkValue(d.kind, v, d.name);
  }
  if (type === "RV_HELLO" && (f.timestamp_ms as bigint) / BigInt(EPOCH_MS) !== f.epoch) invalid("timestamp outside its epoch");
  return { type, f };
}

function toMap(msg: RvMsg, withSig: boolean): CborMap {
  const e: [bigint, RvValue][] = [];
  for (const d of SCHEMAS[msg.type]) {
    if (d.key === 15 && !withSig) continue;
    const v = msg.f[d.name];
    if (v !== undefined) e.push([BigInt(d.key), v]);
  }
  return new CborMap(e);
}

/** RDV-23. */
export function signatureInput(msg: RvMsg, senderPub: Bytes, recipientPub: Bytes): Bytes {
  return concat(ascii("P4-RDV-v1"), Uint8Array.of(RV_TYPES[msg.type]), senderPub, recipientPub, encode(toMap(msg, false)));
}

/** Validate `fields` (without signature) against the schema, sign, and build the frame. */
export function signMessage(type: RvType, fields: Record<string, RvValue>, seed: Bytes, recipientPub: Bytes): { input: Bytes; frame: Bytes; msg: RvMsg } {
  if ("signature" in fields) invalid("signature is computed, not given");
  const unsigned = parseBody(type, toMap({ type, f: { ...fields, signature: new Uint8Array(64) } }, true));
  const input = signatureInput(unsigned, publicKey(seed), recipientPub);
  const signature = sign(seed, input);
  const msg: RvMsg = { type, f: { ...unsigned.f, signature } };
  return { input, frame: rawFrame(RV_TYPES[type], 0, encode(toMap(msg, true))), msg };
}

/** rendezvous.decode: framing (tor path), another type is UNEXPECTED_MESSAGE, then §6.2. */
export function decodeRvFrame(unit: Bytes): RvMsg {
  const fr: Frame = decodeFrame(unit, "tor");
  return parseRvFrame(fr);
}

export function parseRvFrame(fr: Frame): RvMsg {
  const t = rvTypeName(fr.type);
  if (fr.ignorable || t === undefined || fr.map === undefined) throw new RendezvousError("UNEXPECTED_MESSAGE", "not a rendezvous message");
  return parseBody(t, fr.map);
}

export const fail = (code: ErrorName, m: string): never => {
  throw new RendezvousError(code, m);
};

/** Steps (4)–(6) of §8.1. */
export function checkKeysEpochSignature(msg: RvMsg, senderPub: Bytes, recipientPub: Bytes, now: number | bigint): void {
  if (msg.type === "RV_HELLO") {
    if (!equal(msg.f.sender_pub as Bytes, senderPub) || !equal(msg.f.recipient_pub as Bytes, recipientPub))
      fail("RDV_UNKNOWN_PEER", "HELLO names other keys");
  }
  const e = epochOf(now);
  const me = msg.f.epoch as bigint;
  if (me < e - 1n || me > e + 1n) fail("RDV_WRONG_EPOCH", "epoch outside the window");
  if (!verifies(senderPub, signatureInput(msg, senderPub, recipientPub), msg.f.signature as Bytes))
    fail("RDV_BAD_SIGNATURE", "signature does not verify");
}

export const replayKey = (msg: RvMsg): string => `${String(msg.f.epoch)}:${toHex(msg.f.nonce as Bytes)}`;
