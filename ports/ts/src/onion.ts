/** v3 onion addresses (p4-03 §5.4, rend-spec-v3 §6) and the expanded secret key tor wants. */
import { sha3_256 } from "@noble/hashes/sha3";
import { sha512 } from "@noble/hashes/sha2";
import { ascii, Bytes, concat, equal } from "./bytes.js";
import { P4Error } from "./errors.js";
import { base32Decode, base32Encode, publicKey } from "./identity.js";

export class OnionError extends P4Error {}

function checksum(pub: Bytes): Bytes {
  return sha3_256(concat(ascii(".onion checksum"), pub, Uint8Array.of(3))).subarray(0, 2);
}

/** 56-character lower-case label of an Ed25519 public key. */
export function onionAddress(pub: Bytes): string {
  return base32Encode(concat(pub, checksum(pub), Uint8Array.of(3))).toLowerCase();
}

export const onionAddressOfSeed = (seed: Bytes): string => onionAddress(publicKey(seed));

/** tor's 64-byte expanded secret key: SHA-512(seed), clamped. */
export function expandedSecretKey(seed: Bytes): Bytes {
  const h = sha512(seed);
  h[0] = (h[0] ?? 0) & 248;
  h[31] = ((h[31] ?? 0) & 127) | 64;
  return h;
}

const WS = new Set([" ", "\t", "\n", "\r"]);

/** Strip SP, HT, LF, CR at both ends (ASCII text rule). */
export function asciiStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && WS.has(s[a] ?? "")) a++;
  while (b > a && WS.has(s[b - 1] ?? "")) b--;
  return s.slice(a, b);
}

export function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

export const isAscii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

/** RDV-56: parse an onion address (with or without `.onion`), return its public key. */
export function parseOnion(address: string): Bytes {
  const bad = (m: string): never => {
    throw new OnionError("ONION_ADDRESS_INVALID", m);
  };
  if (!isAscii(address)) bad("non-ASCII character");
  let s = asciiLower(asciiStrip(address));
  if (s.endsWith(".onion")) s = s.slice(0, -6);
  if (!/^[a-z2-7]{56}$/.test(s)) bad("not 56 base32 characters");
  const dec = base32Decode(s.toUpperCase());
  if (dec === undefined || dec.bytes.length !== 35) return bad("bad base32");
  const raw = dec.bytes;
  const pub = raw.subarray(0, 32);
  if (raw[34] !== 3) bad("version is not 3");
  if (!equal(raw.subarray(32, 34), checksum(pub))) bad("bad checksum");
  return pub.slice();
}
