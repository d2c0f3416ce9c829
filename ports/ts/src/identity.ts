/** Identity (p4-02 §3): Ed25519 keys, the strict verification of §3.1.1, device IDs (§3.2, §3.3). */
import { ed25519 } from "@noble/curves/ed25519";
import { sha512 } from "@noble/hashes/sha2";
import { Bytes, bigintToLe, concat, equal, leToBigint } from "./bytes.js";
import { P4Error } from "./errors.js";

export const P = (1n << 255n) - 19n;
export const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022n;
const SMALL_ORDER_Y = new Set<bigint>([0n, 1n, P - 1n, Y8, P - Y8]);

export const Point = ed25519.Point;
export type EdPoint = InstanceType<typeof ed25519.Point>;

export class IdentityError extends P4Error {}

export function checkSeed(seed: Bytes): void {
  if (seed.length !== 32) throw new IdentityError("IDENTITY_KEY_INVALID", "seed is not 32 bytes");
}

/** RFC 8032 public key of a 32-byte seed (IDN-1). */
export function publicKey(seed: Bytes): Bytes {
  checkSeed(seed);
  return ed25519.getPublicKey(seed);
}

/** Pure Ed25519 signature (IDN-2). */
export function sign(seed: Bytes, message: Bytes): Bytes {
  checkSeed(seed);
  return ed25519.sign(message, seed);
}

const yOf = (x: Bytes): bigint => leToBigint(x) & ((1n << 255n) - 1n);

/** Decode a canonical point encoding (y < p, on the curve, not x = 0 with sign 1), or undefined. */
export function decodePoint(x: Bytes): EdPoint | undefined {
  if (x.length !== 32) return undefined;
  if (yOf(x) >= P) return undefined;
  try {
    return Point.fromBytes(x, false);
  } catch {
    return undefined;
  }
}

/** IDN-27: a valid identity public key. */
export function isValidIdentityKey(a: Bytes): boolean {
  if (a.length !== 32) return false;
  if (SMALL_ORDER_Y.has(yOf(a))) return false;
  return decodePoint(a) !== undefined;
}

export function checkIdentityKey(a: Bytes): void {
  if (a.length !== 32) throw new IdentityError("IDENTITY_KEY_INVALID", "public key is not 32 bytes");
  if (!isValidIdentityKey(a)) throw new IdentityError("IDENTITY_KEY_INVALID", "not a valid identity public key");
}

/**
 * IDN-28: verify in the stated order; throws IDENTITY_KEY_INVALID or SIGNATURE_INVALID.
 * (noble's `ed25519.verify` always uses the cofactored equation, even with `zip215: false`,
 * so the procedure is written out here from its primitives.)
 */
export function verify(a: Bytes, message: Bytes, sig: Bytes): void {
  checkIdentityKey(a);
  const A = decodePoint(a) as EdPoint;
  const bad = (m: string): never => {
    throw new IdentityError("SIGNATURE_INVALID", m);
  };
  if (sig.length !== 64) bad("signature is not 64 bytes");
  const r = sig.subarray(0, 32);
  const s = leToBigint(sig.subarray(32, 64));
  if (s >= L) bad("S >= l");
  const R = decodePoint(r);
  if (R === undefined) bad("R is not a canonical point encoding");
  if ((R as EdPoint).isSmallOrder()) bad("R has small order");
  const k = leToBigint(sha512(concat(r, a, message))) % L;
  const check = Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k));
  if (!equal(check.toBytes(), r)) bad("equation does not hold");
}

/** Boolean form of `verify` for callers that map failure to their own code. */
export function verifies(a: Bytes, message: Bytes, sig: Bytes): boolean {
  try {
    verify(a, message, sig);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ device ID

export const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

export function base32Encode(b: Bytes): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const x of b) {
    acc = (acc << 8) | x;
    bits += 8;
    while (bits >= 5) {
      out += B32[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

/** Decode upper-case unpadded base32; returns the bytes and whether the unused tail bits are zero. */
export function base32Decode(s: string): { bytes: Bytes; canonical: boolean } | undefined {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const ch of s) {
    const v = B32.indexOf(ch);
    if (v < 0) return undefined;
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((acc >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  const canonical = (acc & ((1 << bits) - 1)) === 0;
  return { bytes: Uint8Array.from(out), canonical };
}

export function luhn32(group: string): string {
  let factor = 2;
  let sum = 0;
  for (let i = group.length - 1; i >= 0; i--) {
    const a = factor * B32.indexOf(group[i] ?? "");
    sum += Math.floor(a / 32) + (a % 32);
    factor = 3 - factor;
  }
  return B32[(32 - (sum % 32)) % 32] ?? "";
}

/** §3.2: display form of any 32 bytes. */
export function deviceIdEncode(key: Bytes): string {
  if (key.length !== 32) throw new IdentityError("IDENTITY_KEY_INVALID", "public key is not 32 bytes");
  const b = base32Encode(key);
  let s = "";
  for (let g = 0; g < 4; g++) {
    const grp = b.slice(13 * g, 13 * g + 13);
    s += grp + luhn32(grp);
  }
  const parts: string[] = [];
  for (let i = 0; i < 56; i += 7) parts.push(s.slice(i, i + 7));
  return parts.join("-");
}

/** §3.3: parse text typed by a person. */
export function deviceIdDecode(text: string): Bytes {
  let s = "";
  for (const ch of text) {
    if (ch === " " || ch === "-") continue;
    const c = ch.charCodeAt(0);
    s += c >= 0x61 && c <= 0x7a ? String.fromCharCode(c - 32) : ch;
  }
  const chars = Array.from(s);
  if (chars.length !== 56) throw new IdentityError("DEVICE_ID_MALFORMED", "not 56 characters");
  for (const ch of chars) if (!B32.includes(ch)) throw new IdentityError("DEVICE_ID_MALFORMED", "character outside the alphabet");
  let data = "";
  for (let g = 0; g < 4; g++) {
    const grp = s.slice(14 * g, 14 * g + 13);
    if (luhn32(grp) !== s[14 * g + 13]) throw new IdentityError("DEVICE_ID_CHECK_FAILED", "check character mismatch");
    data += grp;
  }
  const dec = base32Decode(data);
  if (dec === undefined || !dec.canonical || dec.bytes.length !== 32)
    throw new IdentityError("DEVICE_ID_MALFORMED", "non-zero padding bits");
  return dec.bytes;
}

export { bigintToLe };
