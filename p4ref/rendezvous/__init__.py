"""L3 rendezvous: per-pair, per-epoch onion services and signed signalling
(spec/p4-03-rendezvous-v1.md).

- :mod:`._derive`: epoch numbers, roles, HKDF derivation of onion seeds and client-auth keys;
- :mod:`._codec`: RV_HELLO / RV_OFFER / RV_ANSWER / RV_BYE bodies, signing and verification;
- :mod:`._machine`: the sans-I/O stream machine, the replay cache and the dial scheduler;
- :mod:`._onion`: tor's key blob, onion-address and client-auth encodings (pure).

The conformance-adapter ops for this layer live in :mod:`p4ref.adapter.rendezvous`.
"""

from ._codec import (
    MAX_SDP_BYTES,
    Answer,
    Bye,
    Hello,
    Message,
    Offer,
    decode_message,
    encode_message,
    sign_message,
    signature_input,
    verify_message,
)
from ._derive import (
    EPOCH_SECONDS,
    EpochKeys,
    Role,
    derive_epoch_keys,
    epoch_of,
    epochs_to_accept,
    epochs_to_dial,
    epochs_to_publish,
    role_of,
)
from ._events import (
    AnswerReceived,
    Event,
    OfferReceived,
    PeerAuthenticated,
    PeerReset,
    RendezvousFailed,
)
from ._events import Bye as ByeReceived
from ._machine import (
    BACKOFF_INITIAL_MS,
    BACKOFF_MAX_MS,
    FOLLOWER_DELAY_MS,
    TERMINAL,
    TRANSITIONS,
    DialScheduler,
    Input,
    NonceCache,
    RendezvousMachine,
    State,
    stream_to_keep,
)

__all__ = [
    "BACKOFF_INITIAL_MS",
    "BACKOFF_MAX_MS",
    "EPOCH_SECONDS",
    "FOLLOWER_DELAY_MS",
    "MAX_SDP_BYTES",
    "TERMINAL",
    "TRANSITIONS",
    "Answer",
    "AnswerReceived",
    "Bye",
    "ByeReceived",
    "DialScheduler",
    "EpochKeys",
    "Event",
    "Hello",
    "Input",
    "Message",
    "NonceCache",
    "Offer",
    "OfferReceived",
    "PeerAuthenticated",
    "PeerReset",
    "RendezvousFailed",
    "RendezvousMachine",
    "Role",
    "State",
    "decode_message",
    "derive_epoch_keys",
    "encode_message",
    "epoch_of",
    "epochs_to_accept",
    "epochs_to_dial",
    "epochs_to_publish",
    "role_of",
    "sign_message",
    "signature_input",
    "stream_to_keep",
    "verify_message",
]
