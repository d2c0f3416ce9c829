/** Invitations (p4-02 §5): short codes, `p4:pair` URIs, their passwords, slots and pairing onions. */
import { hkdf } from "@noble/hashes/hkdf";
import { sha256 } from "@noble/hashes/sha2";
import { ascii, Bytes, concat, equal, lp } from "../bytes.js";
import { P4Error } from "../errors.js";
import { base32Decode, base32Encode } from "../identity.js";
import { asciiLower, asciiStrip, isAscii, onionAddressOfSeed } from "../onion.js";
import { EVEN, ODD } from "./words.js";

export class InvitationError extends P4Error {}

export interface Invitation {
  readonly kind: "code" | "uri";
  readonly password: Bytes;
  readonly slot: string;
  readonly onionSeed: Bytes;
  /** URI only. */
  readonly keyCommitment?: Bytes;
  /** URI only: `x`, Unix seconds. */
  readonly expires?: bigint;
}

export interface ParsedCode extends Invitation {
  readonly canonical: string;
  readonly nameplate: number;
  readonly words: [string, string];
}

export interface ParsedUri extends Invitation {
  readonly version: number;
  readonly secret: Bytes;
  readonly onion: string;
  readonly keyCommitment: Bytes;
  readonly expires: bigint;
}

const empty = new Uint8Array(0);
const hk = (salt: Bytes, ikm: Bytes, info: string | Bytes, len: number): Bytes =>
  hkdf(sha256, ikm, salt, typeof info === "string" ? ascii(info) : info, len);

export const nameplateOnionSeed = (nameplate: string): Bytes =>
  hk(empty, ascii(nameplate), "P4-PAIR-v1 onion nameplate", 32);
export const uriOnionSeed = (secret: Bytes): Bytes => hk(empty, secret, "P4-PAIR-v1 onion uri", 32);

/** PAIR-54. */
export const keyCommitment = (pubInviter: Bytes): Bytes =>
  sha256(concat(lp(ascii("P4-PAIR-v1 inviter key")), lp(pubInviter))).subarray(0, 16);

/** PAIR-6 with the text rules of §5.4. */
export function parseCode(text: string): ParsedCode {
  const bad = (m: string): never => {
    throw new InvitationError("PAIR_CODE_MALFORMED", m);
  };
  if (!isAscii(text)) bad("non-ASCII character");
  const s = asciiLower(asciiStrip(text));
  const parts = s.split("-");
  if (parts.length !== 3) bad("not nameplate-word-word");
  const [np, w1, w2] = parts as [string, string, string];
  if (!/^[1-9][0-9]{0,6}$/.test(np)) bad("bad nameplate");
  if (!ODD.includes(w1)) bad("first word not in the odd list");
  if (!EVEN.includes(w2)) bad("second word not in the even list");
  const canonical = `${np}-${w1}-${w2}`;
  return {
    kind: "code", canonical, password: ascii(canonical), slot: np, nameplate: Number(np),
    words: [w1, w2], onionSeed: nameplateOnionSeed(np),
  };
}

/** PAIR-4: a code from 6 random bytes. */
export function makeCode(r: Bytes): string {
  const n = 1 + ((((r[0] ?? 0) << 24) >>> 0) + ((r[1] ?? 0) << 16) + ((r[2] ?? 0) << 8) + (r[3] ?? 0)) % 9999999;
  return `${n}-${ODD[r[4] ?? 0]}-${EVEN[r[5] ?? 0]}`;
}

function b32lower(v: string, bytes: number): Bytes | undefined {
  const d = base32Decode(v.toUpperCase());
  if (d === undefined || !d.canonical || d.bytes.length !== bytes) return undefined;
  return d.bytes;
}

/** PAIR-53: check a URI in the stated order. */
export function parseUri(text: string): ParsedUri {
  const bad = (m: string): never => {
    throw new InvitationError("PAIR_URI_MALFORMED", m);
  };
  if (!isAscii(text)) bad("non-ASCII character");
  const s = asciiLower(asciiStrip(text));
  const prefix = "p4:pair?";
  if (!s.startsWith(prefix)) bad("no p4:pair? prefix");
  const params = new Map<string, string>();
  for (const part of s.slice(prefix.length).split("&")) {
    const eq = part.indexOf("=");
    if (eq <= 0) bad("parameter is not key=value");
    const k = part.slice(0, eq);
    if (params.has(k)) bad("parameter repeated");
    params.set(k, part.slice(eq + 1));
  }
  const v = params.get("v");
  if (v !== undefined && /^[1-9][0-9]{0,2}$/.test(v) && v !== "1")
    throw new InvitationError("VERSION_UNSUPPORTED", "URI version " + v);
  const want = ["v", "o", "s", "i", "x"];
  if (params.size !== 5 || !want.every((k) => params.has(k))) bad("parameter set is not v, o, s, i, x");
  const get = (k: string): string => params.get(k) ?? "";
  if (!/^[1-9][0-9]{0,2}$/.test(get("v"))) bad("bad v");
  if (!/^[a-z2-7]{56}$/.test(get("o"))) bad("bad o");
  if (!/^[a-z2-7]{52}$/.test(get("s"))) bad("bad s");
  if (!/^[a-z2-7]{26}$/.test(get("i"))) bad("bad i");
  if (!/^(0|[1-9][0-9]{0,15})$/.test(get("x"))) bad("bad x");
  const secret = b32lower(get("s"), 32) ?? bad("non-canonical s");
  const commit = b32lower(get("i"), 16) ?? bad("non-canonical i");
  const onionSeed = uriOnionSeed(secret);
  const onion = onionAddressOfSeed(onionSeed);
  if (onion !== get("o")) bad("onion does not match the secret");
  return {
    kind: "uri", version: 1, secret, onion, keyCommitment: commit, expires: BigInt(get("x")),
    onionSeed, password: secret, slot: "uri",
  };
}

/** PAIR-10: write a URI. */
export function makeUri(secret: Bytes, pubInviter: Bytes, expires: bigint): string {
  const o = onionAddressOfSeed(uriOnionSeed(secret));
  const b = (x: Bytes): string => base32Encode(x).toLowerCase();
  return `p4:pair?v=1&o=${o}&s=${b(secret)}&i=${b(keyCommitment(pubInviter))}&x=${expires}`;
}

export const sameBytes = equal;
