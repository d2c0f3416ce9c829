"""The long-term device identity: one Ed25519 key pair (p4-02 §3.1).

The secret is the 32-byte RFC 8032 seed; the public key and every signature are derived from it
(RFC 8032 §5.1.5, §5.1.6) [IDN-1]. Randomness is injected: :func:`generate_identity` takes a
``rng(n) -> bytes`` callable (the CLI passes :func:`os.urandom`), so tests and vectors are
deterministic and this module stays free of OS randomness (STYLE.md, sans-I/O).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from p4ref.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from p4ref.identity._device_id import PUBLIC_KEY_LEN, device_id

__all__ = [
    "SEED_LEN",
    "SIGNATURE_LEN",
    "Identity",
    "generate_identity",
    "verify",
]

SEED_LEN = 32
SIGNATURE_LEN = 64


@dataclass(frozen=True, slots=True)
class Identity:
    """A device's Ed25519 identity (p4-02 §3.1); holds the secret seed, never prints it."""

    seed: bytes = field(repr=False)
    _signing_key: SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_LEN:
            raise LocalProtocolError(
                ErrorCode.IDENTITY_KEY_INVALID, f"an identity seed is {SEED_LEN} bytes"
            )
        object.__setattr__(self, "_signing_key", SigningKey(self.seed))

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key (RFC 8032 §5.1.5) [IDN-1]."""
        return bytes(self._signing_key.verify_key.encode())

    @property
    def device_id(self) -> str:
        """The human-facing device ID of :attr:`public_key` (p4-02 §3.2)."""
        return device_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte pure-Ed25519 signature of ``message`` (RFC 8032 §5.1.6) [IDN-2]."""
        return bytes(self._signing_key.sign(bytes(message)).signature)


def generate_identity(rng: Callable[[int], bytes]) -> Identity:
    """A fresh identity from ``rng(32)`` (a CSPRNG such as :func:`os.urandom`) [IDN-1]."""
    seed = rng(SEED_LEN)
    if len(seed) != SEED_LEN:
        raise LocalProtocolError(
            ErrorCode.IDENTITY_KEY_INVALID, f"rng returned {len(seed)} bytes, need {SEED_LEN}"
        )
    return Identity(bytes(seed))


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check a pure-Ed25519 signature (RFC 8032 §5.1.7) [IDN-2] [IDN-3]; return only if valid.

    Keys and signatures come from the peer, so failures are :class:`RemoteProtocolError`:
    IDENTITY_KEY_INVALID for a key that is not 32 bytes, SIGNATURE_INVALID for a signature that
    is not 64 bytes, has S ≥ L, or does not verify.
    """
    if len(public_key) != PUBLIC_KEY_LEN:
        raise RemoteProtocolError(
            ErrorCode.IDENTITY_KEY_INVALID, f"an identity public key is {PUBLIC_KEY_LEN} bytes"
        )
    if len(signature) != SIGNATURE_LEN:
        raise RemoteProtocolError(
            ErrorCode.SIGNATURE_INVALID, f"an Ed25519 signature is {SIGNATURE_LEN} bytes"
        )
    try:
        VerifyKey(bytes(public_key)).verify(bytes(message), bytes(signature))
    except BadSignatureError:
        raise RemoteProtocolError(
            ErrorCode.SIGNATURE_INVALID, "Ed25519 signature does not verify"
        ) from None
