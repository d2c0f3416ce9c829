"""Tor v3 onion-service key and address encodings — pure functions, no I/O.

P⁴ derives every rendezvous onion service from a 32-byte seed (ARCHITECTURE decision 4), so both
peers can compute each other's address and client-authorization keys without talking. This module
turns such seeds into the exact strings tor's control port expects:

- the ``ED25519-V3`` key blob for control-spec ``ADD_ONION``: tor's 64-byte *expanded* Ed25519
  secret key, i.e. SHA-512(seed) with the RFC 8032 §5.1.5 clamping applied to the first half
  (research/tor-lab.md, "Step 5");
- the v3 onion address (rend-spec-v3 §6 "Encoding onion addresses [ONIONADDRESS]")::

      onion_address = base32(PUBKEY | CHECKSUM | VERSION) + ".onion"
      CHECKSUM      = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]
      VERSION       = 0x03

  Functions here return and accept the 56-character label **without** the ``.onion`` suffix
  (that is what tor's ``ServiceID`` and ``ONION_CLIENT_AUTH_ADD`` use); :func:`parse_onion_address`
  also accepts the suffix;
- v3 client authorization (rend-spec-v3 "client authorization" and its key-file formats in
  appendix G.1.2, which control-spec ``ADD_ONION ClientAuthV3=`` and ``ONION_CLIENT_AUTH_ADD``
  refer to): an x25519 key pair whose public
  key tor takes in base32 (52 chars, no padding) and whose private key tor takes as
  ``x25519:<base64>``.

Test vectors: tor's ``src/test/test_hs_common.c`` (``test_build_address``,
``test_validate_address``) and RFC 8032 §7.1 TEST 1 (seed → public key).
"""

from __future__ import annotations

import base64
import hashlib

from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey

from p4ref.errors import DecodeError, ErrorCode, LocalProtocolError

__all__ = [
    "ONION_ADDRESS_LEN",
    "ONION_VERSION",
    "client_auth_keypair",
    "client_auth_private_b64",
    "client_auth_public_b32",
    "expanded_secret_key",
    "onion_address",
    "onion_address_from_seed",
    "onion_public_key",
    "parse_onion_address",
    "tor_key_blob",
]

ONION_VERSION = 3
"""The version byte of a v3 address (rend-spec-v3 §6)."""
ONION_ADDRESS_LEN = 56
"""Length of the base32 label without ``.onion``: 35 bytes → 56 base32 characters."""
_CHECKSUM_PREFIX = b".onion checksum"
_ASCII_SPACE = " \t\n\r"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_BASE32_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_KEY_LEN = 32


def _check_len(name: str, value: bytes, length: int = _KEY_LEN) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        raise LocalProtocolError(
            ErrorCode.INTERNAL_ERROR, f"{name} must be {length} bytes, got {len(value)}"
        )


def expanded_secret_key(seed: bytes) -> bytes:
    """Tor's 64-byte expanded Ed25519 secret key for a 32-byte ``seed``.

    ``h = SHA-512(seed)``; ``h[0] &= 248``, ``h[31] &= 127``, ``h[31] |= 64`` (RFC 8032 §5.1.5
    clamping; tor's ``ed25519_secret_key_t`` layout, rend-spec-v3 appendix A.2). The first half is
    the secret scalar, the second the signing prefix. Its public key is that of
    ``nacl.signing.SigningKey(seed)``, so :func:`onion_address_from_seed` matches tor's
    ``ServiceID`` (checked in every run of research/tor-lab.md "Step 5").
    """
    _check_len("seed", seed)
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def tor_key_blob(seed: bytes) -> str:
    """The ``KeyBlob`` for ``ADD_ONION ED25519-V3:<KeyBlob>`` (control-spec "ADD_ONION"): base64 of
    :func:`expanded_secret_key`, without the ``ED25519-V3:`` prefix."""
    return base64.b64encode(expanded_secret_key(seed)).decode("ascii")


def _checksum(public_key: bytes) -> bytes:
    data = _CHECKSUM_PREFIX + bytes(public_key) + bytes([ONION_VERSION])
    return hashlib.sha3_256(data).digest()[:2]


def onion_address(public_key: bytes) -> str:
    """The v3 onion address (56 lowercase base32 chars, **no** ``.onion``) of an Ed25519 public key.

    rend-spec-v3 §6: ``base32(PUBKEY | SHA3-256(".onion checksum" | PUBKEY | 0x03)[:2] | 0x03)``.
    """
    _check_len("public_key", public_key)
    raw = bytes(public_key) + _checksum(public_key) + bytes([ONION_VERSION])
    return base64.b32encode(raw).decode("ascii").lower()


def onion_public_key(seed: bytes) -> bytes:
    """The Ed25519 public key of the onion service derived from ``seed``."""
    _check_len("seed", seed)
    return bytes(SigningKey(bytes(seed)).verify_key)


def onion_address_from_seed(seed: bytes) -> str:
    """The onion address (no ``.onion``) of the service published from ``seed``."""
    return onion_address(onion_public_key(seed))


def parse_onion_address(s: str) -> bytes:
    """Validate a v3 onion address and return its 32-byte Ed25519 public key [RDV-56].

    ASCII only (p4-00 text rules): leading and trailing SP, HT, LF and CR are stripped, ``A``–``Z``
    fold to ``a``–``z`` and nothing else is folded, an optional ``.onion`` suffix is removed, and
    what is left must be exactly 56 characters of ``a``–``z`` / ``2``–``7`` (no padding).  Then the
    version byte (must be 3) and the 2-byte checksum are checked (rend-spec-v3 §6; tor's
    ``hs_address_is_valid``).  Any failure, including any non-ASCII character, raises
    :class:`DecodeError` with ``ErrorCode.ONION_ADDRESS_INVALID``.
    """
    if not isinstance(s, str):
        raise DecodeError(ErrorCode.ONION_ADDRESS_INVALID, "onion address must be a str")
    if not s.isascii():
        raise DecodeError(ErrorCode.ONION_ADDRESS_INVALID, "onion address is not ASCII")
    label = s.strip(_ASCII_SPACE).translate(_ASCII_LOWER)
    if label.endswith(".onion"):
        label = label[: -len(".onion")]
    if len(label) != ONION_ADDRESS_LEN:
        raise DecodeError(
            ErrorCode.ONION_ADDRESS_INVALID,
            f"v3 onion address has {ONION_ADDRESS_LEN} characters, got {len(label)}",
        )
    if not set(label) <= _BASE32_LOWER:
        raise DecodeError(ErrorCode.ONION_ADDRESS_INVALID, "onion address is not base32")
    raw = base64.b32decode(label.upper())  # 56 alphabet characters: always 35 bytes
    pub, checksum, version = raw[:32], raw[32:34], raw[34]
    if version != ONION_VERSION:
        raise DecodeError(
            ErrorCode.ONION_ADDRESS_INVALID, f"onion address version {version}, expected 3"
        )
    if checksum != _checksum(pub):
        raise DecodeError(ErrorCode.ONION_ADDRESS_INVALID, "onion address checksum mismatch")
    return pub


def client_auth_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """The x25519 ``(private, public)`` pair for v3 client authorization from a 32-byte seed.

    The private key is the seed itself (RFC 7748 §5: any 32 bytes; clamping happens inside the
    scalar multiplication, which tor also applies), the public key is ``X25519(seed, 9)``
    (pynacl ``crypto_scalarmult_base``). rend-spec-v3 client authorization: the service lists
    the public key (``ClientAuthV3=``), the client holds the private key
    (``ONION_CLIENT_AUTH_ADD``).
    """
    _check_len("seed", seed)
    priv = bytes(seed)
    return priv, crypto_scalarmult_base(priv)


def client_auth_public_b32(pub: bytes) -> str:
    """The public key as tor's ``ClientAuthV3=`` / ``authorized_clients`` want it: RFC 4648
    base32, upper case, no padding (52 characters; tor manual "CLIENT AUTHORIZATION")."""
    _check_len("pub", pub)
    return base64.b32encode(pub).decode("ascii").rstrip("=")


def client_auth_private_b64(priv: bytes) -> str:
    """The private key as ``ONION_CLIENT_AUTH_ADD <addr> x25519:<this>`` wants it: RFC 4648
    base64 with padding (44 characters; control-spec ``PrivateKeyBlob``, the form tor's own
    ``src/test/test_hs_control.c`` sends)."""
    _check_len("priv", priv)
    return base64.b64encode(priv).decode("ascii")
