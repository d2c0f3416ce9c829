/** Channel items (p4-05 §5): OPEN, DATA, CREDIT, CLOSE, RESET; the decode order of §5.5. */
import { beToBigint, Bytes, concat, u64be } from "../bytes.js";
import { CborMap, cmap, decodeBody, encode } from "../cbor.js";
import { P4Error } from "../errors.js";

export class ChannelError extends P4Error {}

export const MAX_ITEM = 16371;
export const DATA_HEADER = 18;
export const MAX_DATA = MAX_ITEM - DATA_HEADER;
export const INITIAL_WINDOW = 16384n;
export const MAX_NAME = 64;
export const MAX_CHAN_ID = (1n << 62n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

export const ITEM = { OPEN: 1, DATA: 2, CREDIT: 3, CLOSE: 4, RESET: 5 } as const;
export type ItemType = keyof typeof ITEM;
const NAMES: ItemType[] = ["OPEN", "DATA", "CREDIT", "CLOSE", "RESET"];

export type Item =
  | { type: "OPEN"; chan: bigint; name: string }
  | { type: "DATA"; chan: bigint; offset: bigint; eom: boolean; data: Bytes }
  | { type: "CREDIT"; chan: bigint; limit: bigint }
  | { type: "CLOSE"; chan: bigint; final: bigint }
  | { type: "RESET"; chan: bigint; code: bigint };

const invalid = (m: string): never => {
  throw new ChannelError("MESSAGE_INVALID", m);
};

/** CHN-8. */
export const validName = (name: string): boolean => {
  if (name.length < 1 || name.length > MAX_NAME) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
};

/** §5.5 in order. */
export function decodeItem(item: Bytes): Item {
  if (item.length === 0 || item.length > MAX_ITEM) invalid("item empty or too long");
  const t = NAMES[(item[0] ?? 0) - 1];
  if (t === undefined) return invalid("unassigned item type");
  if (t === "DATA") {
    if (item.length < DATA_HEADER + 1) invalid("DATA shorter than 19 bytes");
    const flags = item[1] ?? 0;
    if ((flags & 0xfe) !== 0) invalid("DATA flag bit other than 0");
    const chan = beToBigint(item.subarray(2, 10));
    const offset = beToBigint(item.subarray(10, 18));
    const data = item.slice(18);
    if (offset + BigInt(data.length) > U64_MAX) invalid("DATA ends beyond 2^64 - 1");
    return { type: "DATA", chan, offset, eom: (flags & 1) === 1, data };
  }
  const m: CborMap = decodeBody(item.subarray(1));
  const k = m.keys();
  if (k.length !== 2 || k[0] !== 1n || k[1] !== 2n) invalid("control item needs exactly keys 1, 2");
  const chan = m.get(1);
  const v = m.get(2);
  if (typeof chan !== "bigint" || chan < 0n) return invalid("chan is not a uint");
  if (t === "OPEN") {
    if (typeof v !== "string") return invalid("name is not text");
    return { type: t, chan, name: v };
  }
  if (typeof v !== "bigint" || v < 0n) return invalid("value is not a uint");
  if (t === "CREDIT") return { type: t, chan, limit: v };
  if (t === "CLOSE") return { type: t, chan, final: v };
  if (v > 0xffffn) invalid("code above 65535");
  return { type: "RESET", chan, code: v };
}

/** CHN-14: refuse what a receiver would reject. */
export function encodeItem(it: Item): Bytes {
  const u64 = (n: bigint, what: string): bigint => (n >= 0n && n <= U64_MAX ? n : invalid(what + " out of range"));
  const chan = u64(it.chan, "chan");
  switch (it.type) {
    case "DATA": {
      if (it.data.length < 1 || it.data.length > MAX_DATA) invalid("DATA needs 1 … 16353 bytes");
      if (u64(it.offset, "offset") + BigInt(it.data.length) > U64_MAX) invalid("DATA ends beyond 2^64 - 1");
      return concat(Uint8Array.of(ITEM.DATA, it.eom ? 1 : 0), u64be(chan), u64be(it.offset), it.data);
    }
    case "OPEN":
      if (!validName(it.name)) throw new ChannelError("CHAN_NAME_INVALID", "name breaks CHN-8");
      return concat(Uint8Array.of(ITEM.OPEN), encode(cmap({ 1: chan, 2: it.name })));
    case "CREDIT":
      return concat(Uint8Array.of(ITEM.CREDIT), encode(cmap({ 1: chan, 2: u64(it.limit, "limit") })));
    case "CLOSE":
      return concat(Uint8Array.of(ITEM.CLOSE), encode(cmap({ 1: chan, 2: u64(it.final, "final") })));
    case "RESET":
      if (it.code < 0n || it.code > 0xffffn) invalid("code outside 0 … 65535");
      return concat(Uint8Array.of(ITEM.RESET), encode(cmap({ 1: chan, 2: it.code })));
  }
}
