/**
 * Deterministic CBOR subset of p4-00 §5: a single-pass strict decoder (check order of §5.3) and
 * an encoder that writes only what the decoder accepts (§5.4).
 */
import { Bytes, compare, concat } from "./bytes.js";
import { DecodeError, LocalProtocolError, type ErrorName } from "./errors.js";

export type CborValue = bigint | Bytes | string | boolean | null | CborValue[] | CborMap;

/** A map with unsigned-integer keys, kept in ascending key order. */
export class CborMap {
  readonly entries: [bigint, CborValue][];
  constructor(entries: Iterable<[bigint | number, CborValue]> = []) {
    const list: [bigint, CborValue][] = [];
    for (const [k, v] of entries) list.push([BigInt(k), v]);
    list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.entries = list;
  }
  get(key: number | bigint): CborValue | undefined {
    const k = BigInt(key);
    for (const [kk, v] of this.entries) if (kk === k) return v;
    return undefined;
  }
  has(key: number | bigint): boolean {
    return this.get(key) !== undefined;
  }
  keys(): bigint[] {
    return this.entries.map(([k]) => k);
  }
  get size(): number {
    return this.entries.length;
  }
}

export const MAX_DEPTH = 16;
const U64_MAX = (1n << 64n) - 1n;
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Reader {
  pos = 0;
  constructor(readonly buf: Bytes) {}
  get left(): number {
    return this.buf.length - this.pos;
  }
}

function fail(code: ErrorName, msg: string): never {
  throw new DecodeError(code, msg);
}

function readHead(r: Reader): { major: number; arg: bigint; ai: number } {
  if (r.left < 1) fail("CBOR_MALFORMED", "no byte left for an item");
  const ib = r.buf[r.pos++] ?? 0;
  const major = ib >> 5;
  const ai = ib & 0x1f;
  let arg: bigint;
  if (ai < 24) {
    arg = BigInt(ai);
  } else if (ai <= 27) {
    const n = 1 << (ai - 24);
    if (r.left < n) fail("CBOR_MALFORMED", "truncated argument");
    arg = 0n;
    for (let i = 0; i < n; i++) arg = (arg << 8n) | BigInt(r.buf[r.pos++] ?? 0);
    const min = ai === 24 ? 24n : ai === 25 ? 0x100n : ai === 26 ? 0x10000n : 0x100000000n;
    if (major <= 5 && arg < min) fail("CBOR_NON_MINIMAL", "argument not in shortest form");
  } else if (ai <= 30) {
    fail("CBOR_MALFORMED", "reserved additional information");
  } else {
    if (major >= 2 && major <= 5) fail("CBOR_FORBIDDEN", "indefinite length");
    fail("CBOR_MALFORMED", "additional information 31");
  }
  return { major, arg, ai };
}

function readItem(r: Reader, depth: number, isKey: boolean): CborValue {
  const { major, arg, ai } = readHead(r);
  if (isKey && major !== 0) fail("CBOR_FORBIDDEN", "map key is not an unsigned integer");
  switch (major) {
    case 0:
      return arg;
    case 1:
      return -1n - arg;
    case 2:
    case 3: {
      if (arg > BigInt(r.left)) fail("CBOR_MALFORMED", "string longer than the input");
      const n = Number(arg);
      const s = r.buf.subarray(r.pos, r.pos + n);
      r.pos += n;
      if (major === 2) return s.slice();
      try {
        return fatalUtf8.decode(s);
      } catch {
        fail("CBOR_INVALID_UTF8", "text string is not valid UTF-8");
      }
    }
    // falls through (unreachable: fail() never returns)
    case 4:
    case 5: {
      if (depth > MAX_DEPTH) fail("CBOR_TOO_DEEP", "more than 16 nested containers");
      const need = major === 4 ? arg : 2n * arg;
      if (need > BigInt(r.left)) fail("CBOR_MALFORMED", "count larger than the bytes left");
      const n = Number(arg);
      if (major === 4) {
        const out: CborValue[] = [];
        for (let i = 0; i < n; i++) out.push(readItem(r, depth + 1, false));
        return out;
      }
      const entries: [bigint, CborValue][] = [];
      let prev: Bytes | undefined;
      for (let i = 0; i < n; i++) {
        const start = r.pos;
        const key = readItem(r, depth + 1, true) as bigint;
        const enc = r.buf.subarray(start, r.pos);
        if (prev !== undefined) {
          const c = compare(enc, prev);
          if (c === 0) fail("CBOR_DUPLICATE_KEY", "duplicate map key");
          if (c < 0) fail("CBOR_UNSORTED_KEYS", "map keys not ascending");
        }
        prev = enc;
        entries.push([key, readItem(r, depth + 1, false)]);
      }
      return new CborMap(entries);
    }
    case 6:
      fail("CBOR_FORBIDDEN", "tag");
    // falls through (unreachable)
    default:
      if (ai === 20) return false;
      if (ai === 21) return true;
      if (ai === 22) return null;
      fail("CBOR_FORBIDDEN", "float, undefined or simple value");
  }
}

/** Decode one generic deterministic CBOR item (no top-level map rule). */
export function decodeItem(buf: Bytes): CborValue {
  const r = new Reader(buf);
  const v = readItem(r, 1, false);
  if (r.left > 0) fail("CBOR_TRAILING", "bytes after the item");
  return v;
}

/** Decode a CBOR body: a single deterministic map (R12 first, p4-00 §5.3). */
export function decodeBody(buf: Bytes): CborMap {
  if (buf.length === 0) fail("CBOR_MALFORMED", "empty body");
  if (((buf[0] ?? 0) >> 5) !== 5) fail("CBOR_NOT_MAP", "top-level item is not a map");
  return decodeItem(buf) as CborMap;
}

// ---------------------------------------------------------------- encoding

function head(major: number, arg: bigint): Bytes {
  const m = major << 5;
  if (arg < 24n) return Uint8Array.of(m | Number(arg));
  if (arg < 0x100n) return Uint8Array.of(m | 24, Number(arg));
  if (arg < 0x10000n) return Uint8Array.of(m | 25, Number(arg >> 8n), Number(arg & 0xffn));
  const n = arg < 0x100000000n ? 4 : 8;
  const out = new Uint8Array(1 + n);
  out[0] = m | (n === 4 ? 26 : 27);
  let a = arg;
  for (let i = n; i >= 1; i--) {
    out[i] = Number(a & 0xffn);
    a >>= 8n;
  }
  return out;
}

function encodeInto(v: CborValue, depth: number, out: Bytes[]): void {
  if (typeof v === "bigint") {
    if (v > U64_MAX || v < -1n - U64_MAX)
      throw new LocalProtocolError("MESSAGE_INVALID", "integer out of range");
    out.push(v >= 0n ? head(0, v) : head(1, -1n - v));
  } else if (v instanceof Uint8Array) {
    out.push(head(2, BigInt(v.length)), v);
  } else if (typeof v === "string") {
    const b = new TextEncoder().encode(v);
    out.push(head(3, BigInt(b.length)), b);
  } else if (v === true) out.push(Uint8Array.of(0xf5));
  else if (v === false) out.push(Uint8Array.of(0xf4));
  else if (v === null) out.push(Uint8Array.of(0xf6));
  else if (Array.isArray(v)) {
    if (depth > MAX_DEPTH) throw new LocalProtocolError("CBOR_TOO_DEEP", "too deep");
    out.push(head(4, BigInt(v.length)));
    for (const x of v) encodeInto(x, depth + 1, out);
  } else {
    if (depth > MAX_DEPTH) throw new LocalProtocolError("CBOR_TOO_DEEP", "too deep");
    out.push(head(5, BigInt(v.size)));
    let prev: bigint | undefined;
    for (const [k, x] of v.entries) {
      if (k < 0n) throw new LocalProtocolError("CBOR_FORBIDDEN", "negative map key");
      if (k > U64_MAX) throw new LocalProtocolError("MESSAGE_INVALID", "integer out of range");
      if (prev !== undefined && k === prev)
        throw new LocalProtocolError("CBOR_DUPLICATE_KEY", "duplicate map key");
      prev = k;
      out.push(head(0, k));
      encodeInto(x, depth + 1, out);
    }
  }
}

/** Deterministic encoding (p4-00 §5.4). */
export function encode(v: CborValue): Bytes {
  const out: Bytes[] = [];
  encodeInto(v, 1, out);
  return concat(...out);
}

/** Convenience: build a map from a plain object with numeric keys, skipping undefined values. */
export function cmap(obj: Record<number, CborValue | undefined>): CborMap {
  const e: [bigint, CborValue][] = [];
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) e.push([BigInt(k), v]);
  return new CborMap(e);
}
