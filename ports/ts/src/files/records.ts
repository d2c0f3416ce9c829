/** File-transfer records (p4-06 §5–§7): names, hashes, record codec with the check order of §7.4. */
import { sha256 } from "@noble/hashes/sha2";
import { ascii, Bytes, concat, u64be } from "../bytes.js";
import { CborMap, cmap, decodeBody, encode, type CborValue } from "../cbor.js";
import { P4Error } from "../errors.js";

export class FileError extends P4Error {}

export const MAX_DATA_LEN = 32768;
export const MAX_CBOR_BODY = 4096;
export const MIN_BLOCK_SIZE = 1024;
export const MAX_BLOCK_SIZE = 4194304;
export const MAX_SIZE = (1n << 63n) - 1n;
export const MAX_NAME_BYTES = 255;
export const MAX_HASHES_PER_RECORD = 64;
export const MAX_PENDING_HASHES = 64;

export const REC = {
  FILE_OFFER: 0x10, FILE_ACCEPT: 0x11, FILE_REFUSE: 0x12, FILE_HASHES: 0x13, FILE_DATA: 0x14, FILE_COMPLETE: 0x15, FILE_CANCEL: 0x16,
} as const;
export type RecType = keyof typeof REC;
export const recTypeName = (t: number): RecType | undefined => (Object.keys(REC) as RecType[]).find((k) => REC[k] === t);

export type FileRecord =
  | { type: "FILE_OFFER"; name: string; size: bigint; blockSize: bigint; root: Bytes }
  | { type: "FILE_ACCEPT"; offset: bigint }
  | { type: "FILE_REFUSE"; code: bigint }
  | { type: "FILE_HASHES"; first: bigint; hashes: Bytes[] }
  | { type: "FILE_DATA"; data: Bytes }
  | { type: "FILE_COMPLETE" }
  | { type: "FILE_CANCEL"; code: bigint };

const invalid = (m: string): never => {
  throw new FileError("MESSAGE_INVALID", m);
};

// ------------------------------------------------------------------ names (§5)

const FORBIDDEN = (cp: number): boolean =>
  cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f) || cp === 0x2f || cp === 0x5c || cp === 0x3a || cp === 0x61c ||
  cp === 0x200e || cp === 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);

/** FIL-5 … FIL-8; throws FILE_NAME_INVALID. */
export function checkName(name: string): void {
  const bad = (m: string): never => {
    throw new FileError("FILE_NAME_INVALID", m);
  };
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = name.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) bad("lone surrogate");
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) bad("lone surrogate");
  }
  const n = new TextEncoder().encode(name).length;
  if (n < 1 || n > MAX_NAME_BYTES) bad("name is not 1 … 255 bytes");
  for (const ch of name) if (FORBIDDEN(ch.codePointAt(0) ?? 0)) bad("forbidden character");
  if (name.endsWith(".") || name.endsWith(" ")) bad("name ends in a dot or a space");
}

// ------------------------------------------------------------------ hashes (§6)

export const validBlockSize = (b: bigint): boolean => b >= 1024n && b <= 4194304n && (b & (b - 1n)) === 0n;

export const chain0 = (size: bigint, blockSize: bigint): Bytes =>
  sha256(concat(ascii("P4-FILES-v1"), Uint8Array.of(0), u64be(size), u64be(blockSize).subarray(4)));
export const chainNext = (chain: Bytes, leaf: Bytes): Bytes => sha256(concat(chain, leaf));

export function leaves(data: Bytes, blockSize: number): Bytes[] {
  const out: Bytes[] = [];
  for (let i = 0; i < data.length; i += blockSize) out.push(sha256(data.subarray(i, i + blockSize)));
  return out;
}

export function chains(data: Bytes, blockSize: number): Bytes[] {
  const out = [chain0(BigInt(data.length), BigInt(blockSize))];
  for (const l of leaves(data, blockSize)) out.push(chainNext(out[out.length - 1] as Bytes, l));
  return out;
}

// ------------------------------------------------------------------ records (§7)

function keysAre(m: CborMap, ...want: number[]): boolean {
  const k = m.keys();
  return k.length === want.length && want.every((w, i) => k[i] === BigInt(w));
}
function uintIn(v: CborValue | undefined, max: bigint, what: string): bigint {
  if (typeof v !== "bigint" || v < 0n || v > max) return invalid(what + " out of range");
  return v;
}

/** Steps 5–6 of §7.4 on a decoded body. */
function parseBody(t: RecType, m: CborMap): FileRecord {
  switch (t) {
    case "FILE_OFFER": {
      if (!keysAre(m, 1, 2, 3, 4)) invalid("FILE_OFFER keys");
      const name = m.get(1);
      if (typeof name !== "string") return invalid("name is not text");
      const size = uintIn(m.get(2), MAX_SIZE, "size");
      const bs = m.get(3);
      if (typeof bs !== "bigint" || !validBlockSize(bs)) return invalid("block size");
      const root = m.get(4);
      if (!(root instanceof Uint8Array) || root.length !== 32) return invalid("root");
      checkName(name);
      return { type: t, name, size, blockSize: bs, root };
    }
    case "FILE_ACCEPT":
      if (!keysAre(m, 1)) invalid("FILE_ACCEPT keys");
      return { type: t, offset: uintIn(m.get(1), MAX_SIZE, "offset") };
    case "FILE_REFUSE":
    case "FILE_CANCEL":
      if (!keysAre(m, 1)) invalid(t + " keys");
      return { type: t, code: uintIn(m.get(1), 0xffffn, "code") };
    case "FILE_HASHES": {
      if (!keysAre(m, 1, 2)) invalid("FILE_HASHES keys");
      const first = uintIn(m.get(1), MAX_SIZE, "first");
      const hs = m.get(2);
      if (!Array.isArray(hs) || hs.length < 1 || hs.length > MAX_HASHES_PER_RECORD) return invalid("hashes");
      for (const h of hs) if (!(h instanceof Uint8Array) || h.length !== 32) invalid("a hash is not 32 bytes");
      return { type: t, first, hashes: hs as Bytes[] };
    }
    case "FILE_COMPLETE":
      if (m.size !== 0) invalid("FILE_COMPLETE is the empty map");
      return { type: t };
    default:
      return invalid("binary record");
  }
}

export const HEADER_LEN = 5;

/** Steps 2–5 of §7.4: version, type, flags and Length, as soon as the 5-byte header is read. */
export function checkHeader(h: Bytes): { t: RecType; len: number } {
  const len = ((h[3] ?? 0) << 8) | (h[4] ?? 0);
  if (h[0] !== 1) throw new FileError("VERSION_UNSUPPORTED", "record version is not 1");
  const t = recTypeName(h[1] ?? 0);
  if (t === undefined) throw new FileError("FILE_RECORD_INVALID", "unknown record type");
  if (h[2] !== 0) throw new FileError("FILE_RECORD_INVALID", "flags are not 0");
  const ok = t === "FILE_DATA" ? len >= 1 && len <= MAX_DATA_LEN : len <= MAX_CBOR_BODY;
  if (!ok) throw new FileError("FILE_RECORD_INVALID", "Length over the type's limit");
  return { t, len };
}

/** Steps 4–6 on a complete body. */
export function parseRecordBody(t: RecType, body: Bytes): FileRecord {
  if (t === "FILE_DATA") return { type: t, data: body.slice() };
  return parseBody(t, decodeBody(body));
}

/** files.decode: one complete record. */
export function decodeRecord(rec: Bytes): FileRecord {
  if (rec.length < HEADER_LEN) throw new FileError("FILE_RECORD_INVALID", "shorter than the header");
  const { t, len } = checkHeader(rec);
  if (rec.length !== HEADER_LEN + len) throw new FileError("FILE_RECORD_INVALID", "length differs from 5 + Length");
  return parseRecordBody(t, rec.subarray(HEADER_LEN));
}

/** Refuse what a decoder would reject (FIL-15). */
export function encodeRecord(r: FileRecord): Bytes {
  let body: Bytes;
  switch (r.type) {
    case "FILE_OFFER":
      if (r.size < 0n || r.size > MAX_SIZE) invalid("size");
      if (!validBlockSize(r.blockSize)) invalid("block size");
      if (r.root.length !== 32) invalid("root");
      checkName(r.name);
      body = encode(cmap({ 1: r.name, 2: r.size, 3: r.blockSize, 4: r.root }));
      break;
    case "FILE_ACCEPT":
      if (r.offset < 0n || r.offset > MAX_SIZE) invalid("offset");
      body = encode(cmap({ 1: r.offset }));
      break;
    case "FILE_REFUSE":
    case "FILE_CANCEL":
      if (r.code < 0n || r.code > 0xffffn) invalid("code");
      body = encode(cmap({ 1: r.code }));
      break;
    case "FILE_HASHES":
      if (r.first < 0n || r.first > MAX_SIZE) invalid("first");
      if (r.hashes.length < 1 || r.hashes.length > MAX_HASHES_PER_RECORD || r.hashes.some((h) => h.length !== 32)) invalid("hashes");
      body = encode(cmap({ 1: r.first, 2: r.hashes }));
      break;
    case "FILE_DATA":
      if (r.data.length < 1 || r.data.length > MAX_DATA_LEN) invalid("data length");
      body = r.data;
      break;
    case "FILE_COMPLETE":
      body = encode(new CborMap());
      break;
  }
  if (r.type !== "FILE_DATA" && body.length > MAX_CBOR_BODY) invalid("body over 4096 bytes");
  return concat(Uint8Array.of(1, REC[r.type], 0, body.length >> 8, body.length & 0xff), body);
}
