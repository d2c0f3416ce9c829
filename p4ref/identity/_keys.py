"""The long-term device identity: one Ed25519 key pair (p4-02 §3.1).

The secret is the 32-byte RFC 8032 seed; the public key and every signature are derived from it
(RFC 8032 §5.1.5, §5.1.6) [IDN-1]. Randomness is injected: :func:`generate_identity` takes a
``rng(n) -> bytes`` callable (the CLI passes :func:`os.urandom`), so tests and vectors are
deterministic and this module stays free of OS randomness (STYLE.md, sans-I/O).

Verification (p4-02 §3.1.1) is RFC 8032 §5.1.7 with the choices the RFC leaves open made the way
libsodium's released ``crypto_sign_ed25519_verify_detached`` makes them: the key is checked here,
in integer arithmetic, so that a bad key is IDENTITY_KEY_INVALID before any signature check
[IDN-27] [IDN-28]; the signature checks (S < ℓ, R not of small order, cofactorless equation with
R compared byte for byte) are libsodium's, through PyNaCl [IDN-2].
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
    "check_public_key",
    "generate_identity",
    "verify",
]

SEED_LEN = 32
SIGNATURE_LEN = 64

# edwards25519 (RFC 8032 §5.1): field prime, curve constant d, and the y coordinates of the eight
# points of small order (orders 1, 2, 4, 8), each shared by a point and its negation [IDN-27].
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})


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


def check_public_key(public_key: bytes) -> None:
    """Refuse (IDENTITY_KEY_INVALID) what p4-02 §3.1.1 does not accept as an identity key.

    In order [IDN-3] [IDN-27]: 32 bytes; y (the low 255 bits) < p, i.e. a canonical encoding;
    y not that of a point of small order, whatever the sign bit; and a point on the curve, i.e.
    (y² − 1)/(d·y² + 1) is a square mod p (RFC 8032 §5.1.3). A key with a torsion component
    (order 2ℓ, 4ℓ or 8ℓ) is accepted: the cofactorless equation of :func:`verify` decides.
    """
    if len(public_key) != PUBLIC_KEY_LEN:
        raise RemoteProtocolError(
            ErrorCode.IDENTITY_KEY_INVALID, f"an identity public key is {PUBLIC_KEY_LEN} bytes"
        )
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    if y >= _P:
        raise RemoteProtocolError(
            ErrorCode.IDENTITY_KEY_INVALID, "non-canonical public key encoding (y ≥ p)"
        )
    if y in SMALL_ORDER_Y:
        raise RemoteProtocolError(
            ErrorCode.IDENTITY_KEY_INVALID, "public key is a point of small order"
        )
    yy = y * y % _P
    x2 = (yy - 1) * pow(_D * yy + 1, _P - 2, _P) % _P
    if pow(x2, (_P - 1) // 2, _P) != 1:  # x2 == 0 only for y = ±1, refused above
        raise RemoteProtocolError(
            ErrorCode.IDENTITY_KEY_INVALID, "public key is not a point of edwards25519"
        )


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check a pure-Ed25519 signature (p4-02 §3.1.1) [IDN-2] [IDN-28]; return only if valid.

    Keys and signatures come from the peer, so failures are :class:`RemoteProtocolError`. The
    key is checked first, so a bad key is IDENTITY_KEY_INVALID whatever the signature
    (:func:`check_public_key`); then SIGNATURE_INVALID for a signature that is not 64 bytes, has
    S ≥ ℓ, whose R is not the canonical encoding of a point of large order, or for which
    [S]B − [k]A does not encode to R.
    """
    check_public_key(public_key)
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
