/** Byte helpers: hex, concatenation, fixed-width integers, `lp()` (p4-02 §2). */
export type Bytes = Uint8Array;

const NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) NIBBLE[0x30 + i] = i;
for (let i = 0; i < 6; i++) NIBBLE[0x61 + i] = 10 + i;

/** Lowercase hex to bytes, or undefined if `s` is not lowercase hex of even length. */
export function hexOrUndefined(s: unknown): Bytes | undefined {
  if (typeof s !== "string" || s.length % 2 !== 0) return undefined;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) {
    const a = s.charCodeAt(2 * i);
    const b = s.charCodeAt(2 * i + 1);
    const hi = a < 128 ? (NIBBLE[a] ?? -1) : -1;
    const lo = b < 128 ? (NIBBLE[b] ?? -1) : -1;
    if (hi < 0 || lo < 0) return undefined;
    out[i] = (hi << 4) | lo;
  }
  return out;
}

export function fromHex(s: string): Bytes {
  const b = hexOrUndefined(s);
  if (b === undefined) throw new TypeError("not lowercase hex: " + s.slice(0, 40));
  return b;
}

const HEXES = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function toHex(b: Bytes): string {
  const parts: string[] = new Array<string>(b.length);
  for (let i = 0; i < b.length; i++) parts[i] = HEXES[b[i] ?? 0] ?? "";
  return parts.join("");
}

export function concat(...parts: Bytes[]): Bytes {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function ascii(s: string): Bytes {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) throw new TypeError("not ASCII");
    out[i] = c;
  }
  return out;
}

export const utf8 = (s: string): Bytes => new TextEncoder().encode(s);

export function u64be(n: bigint): Bytes {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, n), false);
  return out;
}

export function u64le(n: bigint): Bytes {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
  return out;
}

/** `lp(x) = u64le(len(x)) || x` (RFC 9382 §3.3). */
export function lp(x: Bytes): Bytes {
  return concat(u64le(BigInt(x.length)), x);
}

export function equal(a: Bytes, b: Bytes): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Constant-time comparison of equal-length MACs. */
export function ctEqual(a: Bytes, b: Bytes): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return d === 0;
}

/** Bytewise lexicographic, unsigned comparison. */
export function compare(a: Bytes, b: Bytes): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function leToBigint(b: Bytes): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i] ?? 0);
  return n;
}

export function bigintToLe(n: bigint, len: number): Bytes {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

export function beToBigint(b: Bytes): bigint {
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n;
}
