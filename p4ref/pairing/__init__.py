"""L2 pairing (spec/p4-02-identity-pairing-v1.md): two devices that share an invitation end with
each other's identity key, a 32-byte pair root key and a short authentication string.

- :mod:`._invite` — the short code and the ``p4:pair`` URI (p4-02 §5);
- :mod:`._crypto` — SPAKE2 over edwards25519 and the key schedule (p4-02 §7);
- :mod:`._codec` — the four PAIR_* messages (p4-02 §6);
- :mod:`._machine` — the sans-I/O state machine for both roles (p4-02 §8).

The conformance-adapter ops for this layer live in :mod:`p4ref.adapter.pairing`.
"""

from ._codec import PairConfirm, PairDone, PairIdentity, PairPake, decode_message, encode_message
from ._crypto import (
    PROTOCOL,
    PROTOCOL_VERSION,
    Role,
    nameplate_onion_seed,
    pairing_onion_seed,
)
from ._events import Event, Paired, PairingFailed
from ._invite import CODE_RANDOM_LEN, InviteUri, ShortCode, parse_code, parse_uri
from ._machine import (
    DEFAULT_EXPIRY_MS,
    DEFAULT_TIMEOUT_MS,
    TRANSITIONS,
    Input,
    Invitation,
    PairingMachine,
    State,
)

__all__ = [
    "CODE_RANDOM_LEN",
    "DEFAULT_EXPIRY_MS",
    "DEFAULT_TIMEOUT_MS",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "TRANSITIONS",
    "Event",
    "Input",
    "Invitation",
    "InviteUri",
    "PairConfirm",
    "PairDone",
    "PairIdentity",
    "PairPake",
    "Paired",
    "PairingFailed",
    "PairingMachine",
    "Role",
    "ShortCode",
    "State",
    "decode_message",
    "encode_message",
    "nameplate_onion_seed",
    "pairing_onion_seed",
    "parse_code",
    "parse_uri",
]
