/** Pairing messages (p4-02 §6): bodies, schema checks (PAIR-22, PAIR-23, PAIR-55), the decode op. */
import { Bytes } from "../bytes.js";
import { CborMap, cmap, encode } from "../cbor.js";
import { P4Error } from "../errors.js";
import { decodeFrame, rawFrame, T, type Frame } from "../framing.js";

export class PairingMessageError extends P4Error {}

export type PairMsg =
  | { type: "PAIR_PAKE"; version: bigint; element: Bytes }
  | { type: "PAIR_CONFIRM"; mac: Bytes; commitment?: Bytes }
  | { type: "PAIR_IDENTITY"; ciphertext: Bytes }
  | { type: "PAIR_DONE"; mac: Bytes };

const invalid = (m: string): never => {
  throw new PairingMessageError("MESSAGE_INVALID", m);
};

function keysAre(m: CborMap, ...want: number[]): boolean {
  const k = m.keys();
  return k.length === want.length && want.every((w, i) => k[i] === BigInt(w));
}

function bstr(m: CborMap, key: number, len: number): Bytes {
  const v = m.get(key);
  if (!(v instanceof Uint8Array) || v.length !== len) return invalid(`key ${key}: not a ${len}-byte string`);
  return v;
}

/** Schema of a pairing body (types 0x10–0x13), given the decoded map. */
export function parsePairBody(type: number, m: CborMap): PairMsg {
  switch (type) {
    case T.PAIR_PAKE: {
      if (!keysAre(m, 1, 2)) invalid("PAIR_PAKE needs keys 1, 2");
      const v = m.get(1);
      if (typeof v !== "bigint" || v < 0n) invalid("version is not a uint");
      const element = bstr(m, 2, 32);
      if (v !== 1n) throw new PairingMessageError("VERSION_UNSUPPORTED", "pairing version " + String(v));
      return { type: "PAIR_PAKE", version: v as bigint, element };
    }
    case T.PAIR_CONFIRM: {
      if (keysAre(m, 1)) return { type: "PAIR_CONFIRM", mac: bstr(m, 1, 32) };
      if (keysAre(m, 1, 2)) return { type: "PAIR_CONFIRM", mac: bstr(m, 1, 32), commitment: bstr(m, 2, 32) };
      return invalid("PAIR_CONFIRM needs key 1 and optionally 2");
    }
    case T.PAIR_IDENTITY:
      if (!keysAre(m, 1)) invalid("PAIR_IDENTITY needs key 1");
      return { type: "PAIR_IDENTITY", ciphertext: bstr(m, 1, 154) };
    case T.PAIR_DONE:
      if (!keysAre(m, 1)) invalid("PAIR_DONE needs key 1");
      return { type: "PAIR_DONE", mac: bstr(m, 1, 32) };
    default:
      throw new PairingMessageError("UNEXPECTED_MESSAGE", "not a pairing message");
  }
}

export const isPairType = (t: number): boolean => t >= T.PAIR_PAKE && t <= T.PAIR_DONE;

/** pairing.decode: one frame on the tor path, then §6. */
export function decodePairFrame(unit: Bytes): PairMsg {
  const f: Frame = decodeFrame(unit, "tor");
  if (f.ignorable || !isPairType(f.type) || f.map === undefined)
    throw new PairingMessageError("UNEXPECTED_MESSAGE", "not a pairing message");
  return parsePairBody(f.type, f.map);
}

export const pakeFrame = (element: Bytes): Bytes => rawFrame(T.PAIR_PAKE, 0, encode(cmap({ 1: 1n, 2: element })));
export const confirmFrame = (mac: Bytes, commitment?: Bytes): Bytes =>
  rawFrame(T.PAIR_CONFIRM, 0, encode(cmap({ 1: mac, 2: commitment })));
export const identityFrame = (sealed: Bytes): Bytes => rawFrame(T.PAIR_IDENTITY, 0, encode(cmap({ 1: sealed })));
export const doneFrame = (mac: Bytes): Bytes => rawFrame(T.PAIR_DONE, 0, encode(cmap({ 1: mac })));
