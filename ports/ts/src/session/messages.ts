/** Session frames (p4-04 §6) and the handshake transcript (§7.2, §7.3): codec only, no machine yet. */
import { ascii, beToBigint, Bytes, compare, concat, equal } from "../bytes.js";
import { CborMap, cmap, encode } from "../cbor.js";
import { P4Error } from "../errors.js";
import { decodeFrame, rawFrame, type Frame, type Path } from "../framing.js";
import { publicKey, sign, verify } from "../identity.js";

export class SessionError extends P4Error {}

export const SES = { SES_HELLO: 0x31, SES_AUTH: 0x32, SES_MSG: 0x33, SES_ACK: 0x34, SES_END: 0x35, SES_SIGNAL: 0x36 } as const;
export type SesType = keyof typeof SES;
export const sesTypeName = (t: number): SesType | undefined => (Object.keys(SES) as SesType[]).find((k) => SES[k] === t);

export const MAX_PAYLOAD = 16371;
const U64_MAX = (1n << 64n) - 1n;

export type SesValue = bigint | Bytes;
export interface SesMsg {
  readonly type: SesType;
  readonly f: Readonly<Record<string, SesValue>>;
}

const invalid = (m: string): never => {
  throw new SessionError("MESSAGE_INVALID", m);
};

const HELLO: [number, string, number][] = [
  // key, name, byte length (0 = uint)
  [1, "nonce", 16], [2, "generation", 0], [3, "binding_sender", 32], [4, "binding_receiver", 32],
  [5, "sender_pub", 32], [6, "recipient_pub", 32], [7, "inc", 16], [8, "peer_inc", 16], [9, "rx", 0], [10, "acked", 0], [11, "tx", 0],
];

function mapFields(m: CborMap, defs: [number, string, number][]): Record<string, SesValue> {
  const keys = m.keys();
  if (keys.length !== defs.length || !defs.every(([k], i) => keys[i] === BigInt(k))) invalid("key set");
  const f: Record<string, SesValue> = {};
  for (const [k, name, len] of defs) {
    const v = m.get(k);
    if (len === 0) {
      if (typeof v !== "bigint" || v < 0n || v > U64_MAX) invalid(name + " is not a uint");
    } else if (!(v instanceof Uint8Array) || v.length !== len) invalid(`${name} is not ${len} bytes`);
    f[name] = v as SesValue;
  }
  return f;
}

/** §6 schema of a decoded session frame (SES-16, SES-19). */
/** `receiver`: apply SES-14 (a SES_SIGNAL on the onion stream is UNEXPECTED_MESSAGE); the
 *  decode op does not (p4-04 SES-69). */
export function parseSesFrame(fr: Frame, path: Path, receiver = true): SesMsg {
  const type = sesTypeName(fr.type);
  if (fr.ignorable || type === undefined) throw new SessionError("UNEXPECTED_MESSAGE", "not a session frame");
  const b = fr.body;
  switch (type) {
    case "SES_HELLO":
      return { type, f: mapFields(fr.map as CborMap, HELLO) };
    case "SES_AUTH":
      return { type, f: mapFields(fr.map as CborMap, [[1, "signature", 64]]) };
    case "SES_END":
      return { type, f: mapFields(fr.map as CborMap, [[1, "last", 0]]) };
    case "SES_MSG": {
      if (b.length < 8) invalid("SES_MSG shorter than 8 bytes");
      const seq = beToBigint(b.subarray(0, 8));
      if (seq === 0n) invalid("seq 0");
      return { type, f: { seq, payload: b.slice(8) } };
    }
    case "SES_ACK":
      if (b.length !== 8) invalid("SES_ACK is not 8 bytes");
      return { type, f: { ack: beToBigint(b) } };
    case "SES_SIGNAL": {
      if (receiver && path === "tor") throw new SessionError("UNEXPECTED_MESSAGE", "SES_SIGNAL on the onion stream (SES-14)");
      const ok = b.length >= 5 && b[0] === 1 && (b[1] === 0x21 || b[1] === 0x22) && (((b[3] ?? 0) << 8) | (b[4] ?? 0)) === b.length - 5;
      if (!ok) invalid("SES_SIGNAL does not carry one RV_OFFER or RV_ANSWER frame");
      return { type, f: { frame: b.slice() } };
    }
  }
}

export function decodeSesFrame(unit: Bytes, path: Path): SesMsg {
  return parseSesFrame(decodeFrame(unit, path), path, false);
}

/** A SES_HELLO frame: framing, type, and (optionally) schema; returns body bytes and fields. */
export function helloOf(unit: Bytes, path: Path, schema: boolean): { body: Bytes; msg?: SesMsg } {
  const fr = decodeFrame(unit, path);
  if (fr.ignorable || fr.type !== SES.SES_HELLO) throw new SessionError("UNEXPECTED_MESSAGE", "not a SES_HELLO");
  return { body: fr.body, msg: schema ? parseSesFrame(fr, path) : undefined };
}

/** §7.3 checks (4)–(6) on a decoded HELLO. */
export function checkHello(h: SesMsg, myPub: Bytes, peerPub: Bytes, generation: bigint, bindingLocal: Bytes, bindingRemote: Bytes): void {
  const f = h.f;
  if (!equal(f.sender_pub as Bytes, peerPub) || !equal(f.recipient_pub as Bytes, myPub))
    throw new SessionError("SES_WRONG_PEER", "HELLO names other keys");
  if (f.generation !== generation) throw new SessionError("SES_WRONG_GENERATION", "generation differs");
  if (!equal(f.binding_sender as Bytes, bindingRemote) || !equal(f.binding_receiver as Bytes, bindingLocal))
    throw new SessionError("SES_BINDING_MISMATCH", "channel bindings differ");
}

const u16 = (n: number): Bytes => Uint8Array.of(n >> 8, n & 0xff);

/** §7.2 Auth Signature Input. */
export function authInput(signerPub: Bytes, otherPub: Bytes, signerHello: Bytes, otherHello: Bytes): Bytes {
  const signerLow = compare(signerPub, otherPub) < 0;
  const [lowPub, highPub] = signerLow ? [signerPub, otherPub] : [otherPub, signerPub];
  const [lowHello, highHello] = signerLow ? [signerHello, otherHello] : [otherHello, signerHello];
  return concat(ascii("P4-SES-v1"), Uint8Array.of(0), ascii("auth"), Uint8Array.of(0), signerPub, lowPub, highPub,
    u16(lowHello.length), lowHello, u16(highHello.length), highHello);
}

export function signAuth(seed: Bytes, peerPub: Bytes, helloMine: Bytes, helloPeer: Bytes): { input: Bytes; frame: Bytes } {
  const input = authInput(publicKey(seed), peerPub, helloMine, helloPeer);
  return { input, frame: rawFrame(SES.SES_AUTH, 0, encode(cmap({ 1: sign(seed, input) }))) };
}

/** §7.3 check (7): IDENTITY_KEY_INVALID for a bad key, SES_BAD_SIGNATURE otherwise. */
export function verifyAuth(sig: Bytes, myPub: Bytes, peerPub: Bytes, helloMine: Bytes, helloPeer: Bytes): void {
  try {
    verify(peerPub, authInput(peerPub, myPub, helloPeer, helloMine), sig);
  } catch (e) {
    // a 32-byte peer key that is not a valid identity key fails the signature check (SES-68)
    if (e instanceof P4Error && (e.code === "SIGNATURE_INVALID" || (e.code === "IDENTITY_KEY_INVALID" && peerPub.length === 32)))
      throw new SessionError("SES_BAD_SIGNATURE", e.message);
    throw e;
  }
}
