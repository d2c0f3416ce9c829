"""L4 session: one durable, authenticated session per paired peer (spec/p4-04-session-v1.md).

- :mod:`._codec`: SES_HELLO / SES_AUTH / SES_MSG / SES_ACK / SES_END / SES_SIGNAL bodies and the
  handshake transcript signature;
- :mod:`._events`: what the machine reports to its driver;
- :mod:`._machine`: the sans-I/O session machine (connections, handshake, sequencing, liveness).
"""

from ._codec import MAX_PAYLOAD, NO_INC, Hello
from ._events import (
    Acked,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpen,
    Event,
    MessageReceived,
    ReconnectNeeded,
    SessionReset,
    SignalReceived,
    Status,
)
from ._machine import (
    HANDSHAKE_TIMEOUT_MS,
    PONG_TIMEOUT_MS,
    TRANSITIONS,
    ConnState,
    Input,
    SessionConfig,
    SessionMachine,
    SessionState,
)

__all__ = [
    "HANDSHAKE_TIMEOUT_MS",
    "MAX_PAYLOAD",
    "NO_INC",
    "PONG_TIMEOUT_MS",
    "TRANSITIONS",
    "Acked",
    "ConnState",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionOpen",
    "Event",
    "Hello",
    "Input",
    "MessageReceived",
    "ReconnectNeeded",
    "SessionConfig",
    "SessionMachine",
    "SessionReset",
    "SessionState",
    "SignalReceived",
    "Status",
]
