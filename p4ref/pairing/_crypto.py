"""Pairing cryptography (p4-02 §7): SPAKE2 over edwards25519, key schedule, identity sealing.

Everything here is a pure function of its arguments; randomness comes in as bytes.

Primitives and where they come from — nothing in this module implements a primitive itself:

- edwards25519 group operations: libsodium through ``nacl.bindings``
  (``crypto_core_ed25519_*``, ``crypto_scalarmult_ed25519_*noclamp``).
- SHA-256 and HMAC-SHA-256: the standard library (``hashlib``, ``hmac``).
- HKDF-SHA-256 (RFC 5869): ``cryptography``'s HKDF.  pynacl does not expose HKDF, and
  ``cryptography`` is already a hard dependency of P⁴ (aiortc needs it for DTLS), so using it adds
  nothing to the dependency tree and avoids hand-rolling extract/expand.
- Ed25519 (RFC 8032): ``nacl.signing``.
- XChaCha20-Poly1305 (AEAD): ``nacl.bindings.crypto_aead_xchacha20poly1305_ietf_*``.

SPAKE2 follows RFC 9382 with the ciphersuite SPAKE2-edwards25519-SHA256-HKDF-HMAC-SHA256
(RFC 9382 §6): M and N are the RFC's edwards25519 constants, ``len()`` is an 8-byte little-endian
length (RFC 9382 §3.3), ``Ke || Ka = SHA-256(TT)``, ``KcA || KcB = HKDF(salt=nil, ikm=Ka,
info="ConfirmationKeys" || AAD, L=32)``, ``cA = HMAC(KcA, TT)``, ``cB = HMAC(KcB, TT)``
(RFC 9382 §4).  SPAKE2 party A is the ACCEPTER, party B the INVITER.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_core_ed25519_add,
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_core_ed25519_sub,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = [
    "AAD",
    "COFACTOR",
    "COMMITMENT_LEN",
    "ELEMENT_LEN",
    "IDENTITY_CT_LEN",
    "MAC_LEN",
    "M_POINT",
    "NONCE_LEN",
    "N_POINT",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "SCALAR_DRAW_LEN",
    "URI_KEY_COMMITMENT_LEN",
    "FinalKeys",
    "OpenedIdentity",
    "Role",
    "Spake2Keys",
    "check_element",
    "derive_w",
    "done_mac",
    "draw_scalar",
    "final_keys",
    "hkdf_sha256",
    "identity_commitment",
    "identity_keys",
    "identity_signed_bytes",
    "inviter_key_commitment",
    "key_schedule",
    "lp",
    "nameplate_onion_seed",
    "open_identity",
    "pairing_onion_seed",
    "seal_identity",
    "spake2_element",
    "spake2_ids",
    "spake2_shared",
    "transcript",
    "transcript_hash",
    "verify_mac",
]

#: Protocol name and version; bound into every derivation (ARCHITECTURE decision 10).
PROTOCOL = b"P4-PAIR-v1"
PROTOCOL_VERSION = 1

#: RFC 9382 §6, edwards25519: seeds "edwards25519 point generation seed (M)" / "(N)".
M_POINT = bytes.fromhex("d048032c6ea0b6d697ddc2e86bda85a33adac920f1bf18e1b0c6d166a5cecdaf")
N_POINT = bytes.fromhex("d3bfb518f44f3430f29d0c92af503865a1ed3281dc69b35dd868ba85f886c4ab")
#: Cofactor h of edwards25519 (RFC 9382 §6); as a 32-byte little-endian scalar below.
COFACTOR = 8
_H_SCALAR = COFACTOR.to_bytes(32, "little")
_ZERO_SCALAR = bytes(32)
_IDENTITY_POINT = bytes([1]) + bytes(31)  # the neutral element of edwards25519, encoded

ELEMENT_LEN = 32  # compressed edwards25519 point (RFC 8032 §5.1.2)
SCALAR_DRAW_LEN = 64  # bytes drawn per ephemeral scalar, reduced mod the group order
MAC_LEN = 32  # HMAC-SHA-256
#: AAD of RFC 9382 §4 ("ConfirmationKeys" || AAD): empty; the context is in A, B and w instead.
AAD = b""

NONCE_LEN = 32  # the identity nonce each role reveals with its identity (p4-02 §7.6)
COMMITMENT_LEN = 32  # the inviter's identity commitment in its PAIR_CONFIRM (p4-02 §7.5)
URI_KEY_COMMITMENT_LEN = 16  # the inviter-key commitment a URI carries (p4-02 §5.2)

_AEAD_NONCE = bytes(24)  # each identity key encrypts exactly one message (p4-02 §7.6)
_AEAD_TAG = 16
_IDENTITY_PT_LEN = 138  # canonical CBOR {1: bstr(32), 2: bstr(64), 3: bstr(32)}
IDENTITY_CT_LEN = _IDENTITY_PT_LEN + _AEAD_TAG


class Role(StrEnum):
    """The two pairing roles.  SPAKE2 party A is the ACCEPTER (it speaks first)."""

    INVITER = "inviter"
    ACCEPTER = "accepter"


def lp(data: bytes) -> bytes:
    """``len(data) || data`` with an 8-byte little-endian length (RFC 9382 §3.3)."""
    return len(data).to_bytes(8, "little") + data


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA-256 (RFC 5869); an empty ``salt`` is HashLen zero bytes, as the RFC says."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def verify_mac(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of two MACs."""
    return hmac.compare_digest(expected, received)


# --- invitation-derived values (p4-02 §5) ----------------------------------------------------


def pairing_onion_seed(secret: bytes) -> bytes:
    """Seed of the inviter's pairing onion for a URI invitation (p4-02 §5.2)."""
    if len(secret) != 32:
        raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "URI secret is 32 bytes")
    return hkdf_sha256(secret, b"", PROTOCOL + b" onion uri", 32)


def nameplate_onion_seed(nameplate: int) -> bytes:
    """Seed of the inviter's pairing onion for a short code: from the nameplate only (§5.1).

    Nothing derived from the secret words is ever published: an onion address computed from the
    words would let anyone who sees it test all 65536 word pairs offline.
    """
    return hkdf_sha256(str(nameplate).encode("ascii"), b"", PROTOCOL + b" onion nameplate", 32)


def inviter_key_commitment(inviter_public_key: bytes) -> bytes:
    """The 16-byte commitment to the inviter's identity key that a URI carries (§5.2):
    the first 16 bytes of SHA-256(lp("P4-PAIR-v1 inviter key") || lp(pub))."""
    digest = hashlib.sha256(lp(PROTOCOL + b" inviter key") + lp(inviter_public_key)).digest()
    return digest[:URI_KEY_COMMITMENT_LEN]


# --- SPAKE2 (RFC 9382) -----------------------------------------------------------------------


def spake2_ids(slot: str) -> tuple[bytes, bytes]:
    """SPAKE2 identities A (accepter) and B (inviter) for an invitation slot (§7.2).

    ``slot`` is the nameplate in decimal for a short code, ``"uri"`` for a URI invitation.
    """
    return (
        PROTOCOL + b"/accepter/" + slot.encode("ascii"),
        PROTOCOL + b"/inviter/" + slot.encode("ascii"),
    )


def derive_w(password: bytes, slot: str) -> bytes:
    """The password scalar w as 32 little-endian bytes (§7.2) [PAIR-25].

    ``w = HKDF-SHA-256(salt="", ikm=password, info=lp("P4-PAIR-v1 password") || lp(slot), 64)``
    reduced mod the group order.  RFC 9382 §3.2 suggests a memory-hard function; P⁴ does not use
    one because the password never leaves the two devices, is never stored, and SPAKE2 gives a
    network attacker no offline test (p4-02 §11.2).
    """
    info = lp(PROTOCOL + b" password") + lp(slot.encode("ascii"))
    w: bytes = crypto_core_ed25519_scalar_reduce(hkdf_sha256(password, b"", info, 64))
    if w == _ZERO_SCALAR:  # probability 2^-252; refuse rather than compute with w = 0
        raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "password scalar is zero")
    return w


def draw_scalar(random64: bytes) -> bytes:
    """An ephemeral scalar from 64 random bytes, reduced mod the group order (§7.3) [PAIR-27]."""
    if len(random64) != SCALAR_DRAW_LEN:
        raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "a scalar draw is 64 random bytes")
    s: bytes = crypto_core_ed25519_scalar_reduce(random64)
    if s == _ZERO_SCALAR:
        raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "drawn scalar is zero")
    return s


def _blind(role: Role) -> tuple[bytes, bytes]:
    """(own blinding point, peer's blinding point): A uses M, B uses N (RFC 9382 §3.3)."""
    return (M_POINT, N_POINT) if role is Role.ACCEPTER else (N_POINT, M_POINT)


def spake2_element(role: Role, w: bytes, scalar: bytes) -> bytes:
    """pA = x*G + w*M (accepter) or pB = y*G + w*N (inviter)."""
    own, _ = _blind(role)
    out: bytes = crypto_core_ed25519_add(
        crypto_scalarmult_ed25519_base_noclamp(scalar), crypto_scalarmult_ed25519_noclamp(w, own)
    )
    return out


def check_element(role: Role, w: bytes, peer_element: bytes) -> None:
    """The checks of §7.3 on a received element that need no scalar [PAIR-29] [PAIR-30]:
    a canonical point of the prime-order subgroup, other than the identity, whose unblinded
    value ``pB − w·N`` (accepter) or ``pA − w·M`` (inviter) is not the identity.  A point that
    passes cannot give K = identity (the unblinded value then has order ℓ).

    Raises:
        RemoteProtocolError: PAIR_PAKE_INVALID.
    """
    if len(peer_element) != ELEMENT_LEN or not crypto_core_ed25519_is_valid_point(peer_element):
        raise RemoteProtocolError(ErrorCode.PAIR_PAKE_INVALID, "PAKE element is not valid")
    _, peer = _blind(role)
    try:
        q: bytes = crypto_core_ed25519_sub(peer_element, crypto_scalarmult_ed25519_noclamp(w, peer))
    except (RuntimeError, CryptoError):  # pragma: no cover - sub of two valid points
        raise RemoteProtocolError(ErrorCode.PAIR_PAKE_INVALID, "PAKE element") from None
    if q == _IDENTITY_POINT:
        raise RemoteProtocolError(ErrorCode.PAIR_PAKE_INVALID, "PAKE element unblinds to I")


def spake2_shared(role: Role, w: bytes, scalar: bytes, peer_element: bytes) -> bytes:
    """K = h*x*(pB - w*N) (accepter) or K = h*y*(pA - w*M) (inviter).

    Raises:
        RemoteProtocolError: PAIR_PAKE_INVALID if the peer's element is not a canonical point of
            the prime-order subgroup [PAIR-29], or if K would be the identity [PAIR-30].
    """
    if len(peer_element) != ELEMENT_LEN or not crypto_core_ed25519_is_valid_point(peer_element):
        raise RemoteProtocolError(ErrorCode.PAIR_PAKE_INVALID, "PAKE element is not valid")
    _, peer = _blind(role)
    try:
        q = crypto_core_ed25519_sub(peer_element, crypto_scalarmult_ed25519_noclamp(w, peer))
        k: bytes = crypto_scalarmult_ed25519_noclamp(
            crypto_core_ed25519_scalar_mul(_H_SCALAR, scalar), q
        )
    except (RuntimeError, CryptoError):  # libsodium refuses identity / small-order points
        raise RemoteProtocolError(ErrorCode.PAIR_PAKE_INVALID, "PAKE element gives K = I") from None
    return k


def transcript(id_a: bytes, id_b: bytes, p_a: bytes, p_b: bytes, k: bytes, w: bytes) -> bytes:
    """TT of RFC 9382 §3.3: lp(A) || lp(B) || lp(pA) || lp(pB) || lp(K) || lp(w)."""
    return lp(id_a) + lp(id_b) + lp(p_a) + lp(p_b) + lp(k) + lp(w)


@dataclass(frozen=True, slots=True)
class Spake2Keys:
    """RFC 9382 §4 key schedule outputs."""

    ke: bytes
    ka: bytes
    kca: bytes
    kcb: bytes
    ca: bytes  # MAC the accepter (A) sends
    cb: bytes  # MAC the inviter (B) sends


def key_schedule(tt: bytes, aad: bytes = AAD) -> Spake2Keys:
    """``Ke || Ka = SHA-256(TT)``; ``KcA || KcB = HKDF(nil, Ka, "ConfirmationKeys" || AAD, 32)``."""
    digest = hashlib.sha256(tt).digest()
    ke, ka = digest[:16], digest[16:]
    kc = hkdf_sha256(ka, b"", b"ConfirmationKeys" + aad, 32)
    kca, kcb = kc[:16], kc[16:]
    return Spake2Keys(ke, ka, kca, kcb, _hmac(kca, tt), _hmac(kcb, tt))


# --- after the PAKE (p4-02 §7.5–§7.7) -------------------------------------------------------


def transcript_hash(tt: bytes) -> bytes:
    """TH = SHA-256(lp("P4-PAIR-v1 transcript") || lp(TT)).

    Not SHA-256(TT) itself: that digest is Ke || Ka (RFC 9382 §4).
    """
    return hashlib.sha256(lp(PROTOCOL + b" transcript") + lp(tt)).digest()


def identity_keys(ke: bytes, th: bytes) -> tuple[bytes, bytes]:
    """(key of the accepter's identity message, key of the inviter's identity message)."""
    return (
        hkdf_sha256(ke, th, PROTOCOL + b" identity accepter", 32),
        hkdf_sha256(ke, th, PROTOCOL + b" identity inviter", 32),
    )


def identity_commitment(th: bytes, public_key: bytes, nonce: bytes) -> bytes:
    """The inviter's commitment to its identity (§7.5), sent before it sees the accepter's:
    SHA-256(lp("P4-PAIR-v1 commitment") || lp(TH) || lp(pub) || lp(nonce))."""
    return hashlib.sha256(
        lp(PROTOCOL + b" commitment") + lp(th) + lp(public_key) + lp(nonce)
    ).digest()


def identity_signed_bytes(role: Role, th: bytes, public_key: bytes) -> bytes:
    """What each side signs: lp("P4-PAIR-v1 identity") || lp(role) || lp(TH) || lp(pub)."""
    return lp(PROTOCOL + b" identity") + lp(role.value.encode("ascii")) + lp(th) + lp(public_key)


def _identity_plaintext(public_key: bytes, signature: bytes, nonce: bytes) -> bytes:
    # canonical CBOR {1: bstr(32), 2: bstr(64), 3: bstr(32)}, written out: no codec needed here
    return b"\xa3\x01\x58\x20" + public_key + b"\x02\x58\x40" + signature + b"\x03\x58\x20" + nonce


def seal_identity(
    key: bytes, th: bytes, signing_key: SigningKey, role: Role, nonce: bytes
) -> bytes:
    """The ciphertext of a PAIR_IDENTITY body (§7.6):
    AEAD(key, nonce=0^24, aad=TH, {1: pub, 2: sig, 3: identity nonce})."""
    if len(nonce) != NONCE_LEN:
        raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "the identity nonce is 32 bytes")
    pub = bytes(signing_key.verify_key)
    sig = signing_key.sign(identity_signed_bytes(role, th, pub)).signature
    pt = _identity_plaintext(pub, sig, nonce)
    ct: bytes = crypto_aead_xchacha20poly1305_ietf_encrypt(pt, th, _AEAD_NONCE, key)
    return ct


@dataclass(frozen=True, slots=True)
class OpenedIdentity:
    """A peer's identity message after decryption and signature check."""

    public_key: bytes
    nonce: bytes


def open_identity(key: bytes, th: bytes, ciphertext: bytes, role: Role) -> OpenedIdentity:
    """Decrypt and verify the peer's identity message (§7.6) [PAIR-37].

    ``role`` is the *sender's* role.  Any byte string is accepted as input: whatever is not a
    sealed identity of the right length, key and transcript is PAIR_IDENTITY_INVALID.

    Raises:
        RemoteProtocolError: PAIR_IDENTITY_INVALID on a ciphertext that is not 154 bytes or does
            not decrypt, a plaintext other than the canonical ``{1: bstr(32), 2: bstr(64),
            3: bstr(32)}``, a key that is not a valid point, or a bad signature.
    """
    if len(ciphertext) != IDENTITY_CT_LEN:  # also keeps libsodium from raising on < 16 bytes
        raise RemoteProtocolError(ErrorCode.PAIR_IDENTITY_INVALID, "sealed identity length")
    if len(key) != 32:  # a key of another length opens nothing
        raise RemoteProtocolError(ErrorCode.PAIR_IDENTITY_INVALID, "identity key length")
    try:
        pt: bytes = crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, th, _AEAD_NONCE, key)
    except (CryptoError, ValueError, TypeError):
        raise RemoteProtocolError(ErrorCode.PAIR_IDENTITY_INVALID, "cannot decrypt") from None
    pub, sig, nonce = pt[4:36], pt[39:103], pt[106:138]
    if pt != _identity_plaintext(pub, sig, nonce) or not crypto_core_ed25519_is_valid_point(pub):
        raise RemoteProtocolError(ErrorCode.PAIR_IDENTITY_INVALID, "identity plaintext layout")
    try:
        VerifyKey(pub).verify(identity_signed_bytes(role, th, pub), sig)
    except (BadSignatureError, ValueError):
        raise RemoteProtocolError(ErrorCode.PAIR_IDENTITY_INVALID, "bad signature") from None
    return OpenedIdentity(pub, nonce)


@dataclass(frozen=True, slots=True)
class FinalKeys:
    th2: bytes
    pair_root_key: bytes
    sas: str
    k_done_accepter: bytes  # keys the accepter's PAIR_DONE
    k_done_inviter: bytes  # keys the inviter's PAIR_DONE


def final_keys(
    ke: bytes,
    th: bytes,
    accepter_pub: bytes,
    inviter_pub: bytes,
    accepter_nonce: bytes,
    inviter_nonce: bytes,
    commitment: bytes,
) -> FinalKeys:
    """TH2, the pair root key, the SAS and the two PAIR_DONE keys (p4-02 §7.7) [PAIR-40].

    TH2 covers both identity nonces and the inviter's commitment, so the SAS depends on a value
    each role fixed before it saw the other's (the accepter's nonce is revealed after the
    inviter committed to its own): neither side, nor a man in the middle, can choose it.
    """
    th2 = hashlib.sha256(
        lp(PROTOCOL + b" paired") + lp(th) + lp(accepter_pub) + lp(inviter_pub)
        + lp(accepter_nonce) + lp(inviter_nonce) + lp(commitment)
    ).digest()  # fmt: skip
    root = hkdf_sha256(ke, th2, PROTOCOL + b" pair root key", 32)
    sas_int = int.from_bytes(hkdf_sha256(ke, th2, PROTOCOL + b" sas", 8), "big") % 1_000_000
    k_da = hkdf_sha256(ke, th2, PROTOCOL + b" done accepter", 32)
    k_di = hkdf_sha256(ke, th2, PROTOCOL + b" done inviter", 32)
    return FinalKeys(th2, root, f"{sas_int:06d}", k_da, k_di)


def done_mac(k_done: bytes, th2: bytes) -> bytes:
    """The PAIR_DONE MAC: HMAC-SHA-256(k_done, TH2)."""
    return _hmac(k_done, th2)
