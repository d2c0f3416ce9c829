/** Roles, epochs and per-epoch key derivation (p4-03 §5). */
import { x25519 } from "@noble/curves/ed25519";
import { hkdf } from "@noble/hashes/hkdf";
import { sha256 } from "@noble/hashes/sha2";
import { ascii, Bytes, compare, concat, equal, u64be } from "../bytes.js";
import { P4Error } from "../errors.js";
import { expandedSecretKey, onionAddressOfSeed } from "../onion.js";

export class RendezvousKeyError extends P4Error {}

export const EPOCH_MS = 86400000;
export type RdvRole = "low" | "high";

export const epochOf = (nowMs: number | bigint): bigint => BigInt(nowMs) / BigInt(EPOCH_MS);

/** RDV-5. */
export const roleOf = (myPub: Bytes, peerPub: Bytes): RdvRole => (compare(myPub, peerPub) < 0 ? "low" : "high");

/** RDV-2, RDV-3. */
export function checkPairKeys(rootOrUndefined: Bytes | undefined, myPub: Bytes, peerPub: Bytes): void {
  if (rootOrUndefined !== undefined && rootOrUndefined.length !== 32)
    throw new RendezvousKeyError("RDV_KEY_INVALID", "pair root key is not 32 bytes");
  if (myPub.length !== 32 || peerPub.length !== 32) throw new RendezvousKeyError("RDV_KEY_INVALID", "identity key is not 32 bytes");
  if (equal(myPub, peerPub)) throw new RendezvousKeyError("RDV_KEY_INVALID", "equal identity keys");
}

/** K(label, role, epoch) of §5.3. */
export function deriveKey(root: Bytes, lowPub: Bytes, highPub: Bytes, label: "onion-seed" | "client-auth", role: RdvRole, epoch: bigint): Bytes {
  const z = Uint8Array.of(0);
  const info = concat(ascii("P4-RDV-v1"), z, ascii(label), z, ascii(role), z, u64be(epoch));
  return hkdf(sha256, root, concat(lowPub, highPub), info, 32);
}

export interface Derived {
  myRole: RdvRole;
  myOnionSeed: Bytes;
  peerOnionSeed: Bytes;
  myExpandedSecretKey: Bytes;
  myOnionAddress: string;
  peerOnionAddress: string;
  myClientAuthPriv: Bytes;
  myClientAuthPub: Bytes;
  peerClientAuthPub: Bytes;
}

export function derive(root: Bytes, myPub: Bytes, peerPub: Bytes, epoch: bigint): Derived {
  checkPairKeys(root, myPub, peerPub);
  const myRole = roleOf(myPub, peerPub);
  const peerRole: RdvRole = myRole === "low" ? "high" : "low";
  const [low, high] = myRole === "low" ? [myPub, peerPub] : [peerPub, myPub];
  const myOnionSeed = deriveKey(root, low, high, "onion-seed", myRole, epoch);
  const peerOnionSeed = deriveKey(root, low, high, "onion-seed", peerRole, epoch);
  const myClientAuthPriv = deriveKey(root, low, high, "client-auth", myRole, epoch);
  const peerAuth = deriveKey(root, low, high, "client-auth", peerRole, epoch);
  return {
    myRole, myOnionSeed, peerOnionSeed,
    myExpandedSecretKey: expandedSecretKey(myOnionSeed),
    myOnionAddress: onionAddressOfSeed(myOnionSeed),
    peerOnionAddress: onionAddressOfSeed(peerOnionSeed),
    myClientAuthPriv,
    myClientAuthPub: x25519.getPublicKey(myClientAuthPriv),
    peerClientAuthPub: x25519.getPublicKey(peerAuth),
  };
}

export { sha256 };
