"""Per-pair, per-epoch rendezvous keys (spec/p4-03-rendezvous-v1.md §5).

Both peers hold the same 32-byte pair root key from pairing (p4-02).  From it, and from nothing a
third party knows, each derives for every epoch:

- one onion-service seed per role (LOW, HIGH): the peer of role R publishes the onion of seed R;
- one v3 client-authorization x25519 key pair per role: the peer of role R holds private key R
  and dials with it; the onion of the *other* role lists public key R as its only authorised client.

Every output is ``HKDF-SHA256(IKM = pair root key, salt = low_pub || high_pub, info, L = 32)``
with ``info = "P4-RDV-v1" 0x00 label 0x00 role 0x00 u64be(epoch)``; labels ``onion-seed`` and
``client-auth``, roles ``low`` and ``high`` (RDV-9 to RDV-12).  The identity keys only order the
roles and salt the HKDF; they never substitute for the pair root key, so knowing one or both
identity keys gives nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ErrorCode, LocalProtocolError
from ._onion import client_auth_keypair, expanded_secret_key, onion_address_from_seed

__all__ = [
    "EPOCH_SECONDS",
    "INFO_PREFIX",
    "EpochKeys",
    "Role",
    "derive_epoch_keys",
    "derive_key",
    "epoch_of",
    "epochs_to_accept",
    "epochs_to_dial",
    "epochs_to_publish",
    "hkdf_info",
    "hkdf_salt",
    "role_of",
]

#: Epoch length [RDV-7]: 24 h; epoch number = floor(unix seconds / 86400).
EPOCH_SECONDS = 86400
#: The protocol name and version every rendezvous HKDF info string starts with [RDV-10].
INFO_PREFIX = b"P4-RDV-v1"
LABEL_ONION_SEED = b"onion-seed"
LABEL_CLIENT_AUTH = b"client-auth"
KEY_LEN = 32
_U64_MAX = (1 << 64) - 1


class Role(StrEnum):
    """The two roles of a pair [RDV-5]: LOW has the bytewise smaller identity key and leads."""

    LOW = "low"
    HIGH = "high"

    @property
    def other(self) -> Role:
        return Role.HIGH if self is Role.LOW else Role.LOW


def _check_key(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != KEY_LEN:
        raise LocalProtocolError(ErrorCode.RDV_KEY_INVALID, f"{name} must be {KEY_LEN} bytes")


def role_of(my_identity_pub: bytes, peer_identity_pub: bytes) -> Role:
    """LOW if ``my_identity_pub`` sorts bytewise before the peer's, else HIGH [RDV-5]."""
    _check_key("my_identity_pub", my_identity_pub)
    _check_key("peer_identity_pub", peer_identity_pub)
    if bytes(my_identity_pub) == bytes(peer_identity_pub):
        raise LocalProtocolError(ErrorCode.RDV_KEY_INVALID, "the two identity keys are equal")
    return Role.LOW if bytes(my_identity_pub) < bytes(peer_identity_pub) else Role.HIGH


def epoch_of(unix_s: int | float) -> int:
    """The epoch number of a Unix time in seconds [RDV-7]."""
    e = int(unix_s // EPOCH_SECONDS)
    if e < 0:
        raise LocalProtocolError(ErrorCode.RDV_WRONG_EPOCH, "time before 1970")
    return e


def epochs_to_accept(now_unix_s: int | float) -> tuple[int, ...]:
    """Epochs a receiver accepts at ``now``: previous, current, next [RDV-8]."""
    e = epoch_of(now_unix_s)
    return tuple(x for x in (e - 1, e, e + 1) if x >= 0)


#: How long the onion of the previous epoch stays published after a boundary [RDV-14].
PREVIOUS_GRACE_SECONDS = 3600


def epochs_to_publish(now_unix_s: int | float) -> tuple[int, ...]:
    """Epochs whose own onion a peer publishes at ``now``: the current one, and the previous one
    during the first ``PREVIOUS_GRACE_SECONDS`` of an epoch [RDV-14]."""
    e = epoch_of(now_unix_s)
    in_grace = now_unix_s - e * EPOCH_SECONDS < PREVIOUS_GRACE_SECONDS
    return (e, e - 1) if in_grace and e > 0 else (e,)


def epochs_to_dial(now_unix_s: int | float) -> tuple[int, ...]:
    """The order in which to try the peer's onions: current, previous, next [RDV-14]."""
    e = epoch_of(now_unix_s)
    return tuple(x for x in (e, e - 1, e + 1) if x >= 0)


def hkdf_salt(low_pub: bytes, high_pub: bytes) -> bytes:
    """``salt = low_pub || high_pub`` (64 bytes) [RDV-9]."""
    return bytes(low_pub) + bytes(high_pub)


def hkdf_info(label: bytes, role: Role, epoch: int) -> bytes:
    """``"P4-RDV-v1" 0x00 label 0x00 role 0x00 u64be(epoch)`` [RDV-10]."""
    if not 0 <= epoch <= _U64_MAX:
        raise LocalProtocolError(ErrorCode.RDV_WRONG_EPOCH, f"epoch {epoch} is not a u64")
    return b"\x00".join((INFO_PREFIX, label, role.value.encode("ascii"), epoch.to_bytes(8, "big")))


def derive_key(pair_root_key: bytes, salt: bytes, label: bytes, role: Role, epoch: int) -> bytes:
    """One 32-byte HKDF-SHA256 output (RFC 5869) [RDV-9]."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=hkdf_info(label, role, epoch)
    ).derive(bytes(pair_root_key))


@dataclass(frozen=True, slots=True)
class EpochKeys:
    """Everything one peer needs for one epoch; secrets are kept out of ``repr``.

    - publish ``my_onion_seed`` (``my_expanded_secret_key`` is tor's ``ED25519-V3`` blob) with
      ``peer_client_auth_pub`` as its only ``ClientAuthV3`` key [RDV-13];
    - dial ``peer_onion_address`` after ``ONION_CLIENT_AUTH_ADD`` with ``my_client_auth_priv``.
    """

    epoch: int
    my_role: Role
    my_onion_address: str
    peer_onion_address: str
    my_client_auth_pub: bytes
    peer_client_auth_pub: bytes
    my_onion_seed: bytes = field(repr=False)
    peer_onion_seed: bytes = field(repr=False)
    my_expanded_secret_key: bytes = field(repr=False)
    my_client_auth_priv: bytes = field(repr=False)

    @property
    def peer_role(self) -> Role:
        return self.my_role.other

    @property
    def is_leader(self) -> bool:
        """The LOW peer leads: it dials first and wins glare [RDV-6]."""
        return self.my_role is Role.LOW


def derive_epoch_keys(
    pair_root_key: bytes, my_identity_pub: bytes, peer_identity_pub: bytes, epoch: int
) -> EpochKeys:
    """Derive this peer's view of ``epoch``'s rendezvous keys (§5).  The peer derives the mirror
    image: its ``my_*`` are our ``peer_*``."""
    _check_key("pair_root_key", pair_root_key)
    role = role_of(my_identity_pub, peer_identity_pub)
    low, high = (
        (my_identity_pub, peer_identity_pub)
        if role is Role.LOW
        else (peer_identity_pub, my_identity_pub)
    )
    salt = hkdf_salt(low, high)
    seeds = {r: derive_key(pair_root_key, salt, LABEL_ONION_SEED, r, epoch) for r in Role}
    auth = {
        r: client_auth_keypair(derive_key(pair_root_key, salt, LABEL_CLIENT_AUTH, r, epoch))
        for r in Role
    }
    peer = role.other
    return EpochKeys(
        epoch=epoch,
        my_role=role,
        my_onion_address=onion_address_from_seed(seeds[role]),
        peer_onion_address=onion_address_from_seed(seeds[peer]),
        my_client_auth_pub=auth[role][1],
        peer_client_auth_pub=auth[peer][1],
        my_onion_seed=seeds[role],
        peer_onion_seed=seeds[peer],
        my_expanded_secret_key=expanded_secret_key(seeds[role]),
        my_client_auth_priv=auth[role][0],
    )
