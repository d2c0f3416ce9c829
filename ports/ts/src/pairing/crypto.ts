/** Pairing cryptography (p4-02 §7): SPAKE2 over edwards25519, key schedule, identity seal, root key, SAS. */
import { xchacha20poly1305 } from "@noble/ciphers/chacha";
import { hkdf } from "@noble/hashes/hkdf";
import { hmac } from "@noble/hashes/hmac";
import { sha256 } from "@noble/hashes/sha2";
import { ascii, beToBigint, bigintToLe, Bytes, concat, equal, fromHex, leToBigint, lp } from "../bytes.js";
import { P4Error } from "../errors.js";
import { decodePoint, isValidIdentityKey, L, Point, publicKey, sign, verifies, type EdPoint } from "../identity.js";
import { keyCommitment } from "./invite.js";

export class PairingCryptoError extends P4Error {}

const empty = new Uint8Array(0);
const hk = (salt: Bytes, ikm: Bytes, info: Bytes | string, len: number): Bytes =>
  hkdf(sha256, ikm, salt, typeof info === "string" ? ascii(info) : info, len);

export const M_BYTES = fromHex("d048032c6ea0b6d697ddc2e86bda85a33adac920f1bf18e1b0c6d166a5cecdaf");
export const N_BYTES = fromHex("d3bfb518f44f3430f29d0c92af503865a1ed3281dc69b35dd868ba85f886c4ab");
const M = Point.fromBytes(M_BYTES);
const N = Point.fromBytes(N_BYTES);

export const reduce = (b: Bytes): bigint => leToBigint(b) % L;
export const scalarBytes = (s: bigint): Bytes => bigintToLe(s, 32);

export const identityA = (slot: string): Bytes => concat(ascii("P4-PAIR-v1/accepter/"), ascii(slot));
export const identityB = (slot: string): Bytes => concat(ascii("P4-PAIR-v1/inviter/"), ascii(slot));

/** §7.2: w; INTERNAL_ERROR if it is 0 (PAIR-25). */
export function deriveW(password: Bytes, slot: string): bigint {
  const w = reduce(hk(empty, password, concat(lp(ascii("P4-PAIR-v1 password")), lp(ascii(slot))), 64));
  if (w === 0n) throw new PairingCryptoError("INTERNAL_ERROR", "w is 0");
  return w;
}

const mul = (p: EdPoint, s: bigint): EdPoint => (s === 0n ? Point.ZERO : p.multiply(s));

/** pA = x·P + w·M (accepter) or pB = y·P + w·N (inviter). */
export function pakeElement(role: "accepter" | "inviter", scalar: bigint, w: bigint): Bytes {
  return mul(Point.BASE, scalar).add(mul(role === "accepter" ? M : N, w)).toBytes();
}

/** PAIR-29, PAIR-30: check a received element; returns Q = element − w·(M|N) (receiver's view). */
export function checkPeerElement(receiver: "accepter" | "inviter", element: Bytes, w: bigint): EdPoint {
  const bad = (m: string): never => {
    throw new PairingCryptoError("PAIR_PAKE_INVALID", m);
  };
  const p = decodePoint(element) ?? bad("not a canonical point");
  if (p.is0() || p.isSmallOrder() || !p.isTorsionFree()) bad("not in the prime-order subgroup");
  const q = p.subtract(mul(receiver === "accepter" ? N : M, w));
  if (q.is0()) bad("element minus w·M/N is the identity");
  return q;
}

/** K = h·s·Q. */
export function sharedK(scalar: bigint, q: EdPoint): Bytes {
  const k = mul(q, scalar).clearCofactor();
  if (k.is0()) throw new PairingCryptoError("PAIR_PAKE_INVALID", "K is the identity");
  return k.toBytes();
}

export interface Schedule {
  Ke: Bytes; Ka: Bytes; KcA: Bytes; KcB: Bytes; cA: Bytes; cB: Bytes;
}

/** §7.4 (RFC 9382 §4; AAD appended to the HKDF info as in RFC 9382). */
export function keySchedule(TT: Bytes, aad: Bytes = empty): Schedule {
  const h = sha256(TT);
  const Ke = h.slice(0, 16);
  const Ka = h.slice(16, 32);
  const kc = hk(empty, Ka, concat(ascii("ConfirmationKeys"), aad), 32);
  const KcA = kc.slice(0, 16);
  const KcB = kc.slice(16, 32);
  return { Ke, Ka, KcA, KcB, cA: hmac(sha256, KcA, TT), cB: hmac(sha256, KcB, TT) };
}

export function transcript(slot: string, pA: Bytes, pB: Bytes, K: Bytes, w: bigint): Bytes {
  return concat(lp(identityA(slot)), lp(identityB(slot)), lp(pA), lp(pB), lp(K), lp(scalarBytes(w)));
}

export const transcriptHash = (TT: Bytes): Bytes => sha256(concat(lp(ascii("P4-PAIR-v1 transcript")), lp(TT)));
export const kIdentity = (TH: Bytes, Ke: Bytes, role: "accepter" | "inviter"): Bytes =>
  hk(TH, Ke, "P4-PAIR-v1 identity " + role, 32);
export const commitmentOf = (TH: Bytes, pubInviter: Bytes, nI: Bytes): Bytes =>
  sha256(concat(lp(ascii("P4-PAIR-v1 commitment")), lp(TH), lp(pubInviter), lp(nI)));

export interface Final {
  TH2: Bytes; root: Bytes; sas: string; kDA: Bytes; kDI: Bytes; doneA: Bytes; doneI: Bytes;
}

/** §7.7. */
export function finalKeys(TH: Bytes, Ke: Bytes, pubA: Bytes, pubI: Bytes, nA: Bytes, nI: Bytes, commitment: Bytes): Final {
  const TH2 = sha256(concat(lp(ascii("P4-PAIR-v1 paired")), lp(TH), lp(pubA), lp(pubI), lp(nA), lp(nI), lp(commitment)));
  const root = hk(TH2, Ke, "P4-PAIR-v1 pair root key", 32);
  const sas = (beToBigint(hk(TH2, Ke, "P4-PAIR-v1 sas", 8)) % 1000000n).toString().padStart(6, "0");
  const kDA = hk(TH2, Ke, "P4-PAIR-v1 done accepter", 32);
  const kDI = hk(TH2, Ke, "P4-PAIR-v1 done inviter", 32);
  return { TH2, root, sas, kDA, kDI, doneA: hmac(sha256, kDA, TH2), doneI: hmac(sha256, kDI, TH2) };
}

const signedStatement = (role: string, TH: Bytes, pub: Bytes): Bytes =>
  concat(lp(ascii("P4-PAIR-v1 identity")), lp(ascii(role)), lp(TH), lp(pub));

const ZERO_NONCE = new Uint8Array(24);

/** §7.6: sign and seal this device's identity. */
export function sealIdentity(key: Bytes, TH: Bytes, role: "accepter" | "inviter", seed: Bytes, nonce: Bytes): Bytes {
  const pub = publicKey(seed);
  const sig = sign(seed, signedStatement(role, TH, pub));
  const plain = concat(Uint8Array.of(0xa3, 0x01, 0x58, 0x20), pub, Uint8Array.of(0x02, 0x58, 0x40), sig,
    Uint8Array.of(0x03, 0x58, 0x20), nonce);
  return xchacha20poly1305(key, ZERO_NONCE, TH).encrypt(plain);
}

/** §7.6 check 1 (PAIR-37). */
export function openIdentity(key: Bytes, TH: Bytes, sealed: Bytes, sender: "accepter" | "inviter"): { pub: Bytes; nonce: Bytes } {
  const bad = (m: string): never => {
    throw new PairingCryptoError("PAIR_IDENTITY_INVALID", m);
  };
  if (key.length !== 32) bad("key is not 32 bytes");
  let plain: Bytes;
  try {
    plain = xchacha20poly1305(key, ZERO_NONCE, TH).decrypt(sealed);
  } catch {
    return bad("does not decrypt");
  }
  const shape = (at: number, b: number[]): boolean => b.every((x, i) => plain[at + i] === x);
  if (plain.length !== 138 || !shape(0, [0xa3, 0x01, 0x58, 0x20]) || !shape(36, [0x02, 0x58, 0x40]) || !shape(103, [0x03, 0x58, 0x20]))
    bad("plaintext is not the 138-byte layout");
  const pub = plain.slice(4, 36);
  const sig = plain.slice(39, 103);
  const nonce = plain.slice(106, 138);
  if (!isValidIdentityKey(pub)) bad("public key is not valid");
  if (!verifies(pub, signedStatement(sender, TH, pub), sig)) bad("signature does not verify");
  return { pub, nonce };
}

export { keyCommitment, equal };
