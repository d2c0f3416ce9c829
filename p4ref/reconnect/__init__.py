"""Reconnect policy: when to dial the peer's onion, when to re-signal, and what to tell tor
(spec/p4-03-rendezvous-v1.md §8.8).  Pure and sans-I/O: ``now`` (monotonic milliseconds) and
``rng(n) -> bytes`` are injected; events in, actions out, both frozen dataclasses; the state
transitions are data (:data:`TRANSITIONS`).

One :class:`ReconnectPolicy` per paired peer, owned by the per-peer link (``p4ref/link``)::

    policy = ReconnectPolicy("low" | "high", rng=os.urandom,
                             dial_only=False,        # this device never publishes an onion
                             peer_dial_only=False,   # the peer never publishes (we must wait)
                             tor_launched=True)      # a tor P⁴ started (it may be nudged)
    actions = policy.on_event(Want(), now)           # also: AppRequest, Stop, NetworkChanged,
                                                     # DialSucceeded, DialFailed(code),
                                                     # IncomingStream, StreamClosed,
                                                     # GenerationWanted(cause), DirectUp(gen),
                                                     # DirectDown, DirectFailed
    deadline = policy.next_deadline()                # None, or when to call on_timer
    actions = policy.on_timer(now)                   # fires what is due
    policy.should_dial(now) -> bool                  # a dial is due (WAIT_DIAL, deadline <= now)
    policy.state, policy.path                        # State; "datachannel" | "tor" | "none"

Actions, to carry out in the order given: :class:`Dial` (open a stream to the peer's onion,
then report :class:`DialSucceeded` or :class:`DialFailed`), :class:`AbandonDial`,
:class:`NudgeTor` (``DisableNetwork`` 1→0, :func:`p4ref.io.netwatch.nudge_tor`),
:class:`Republish` (remove and re-add the own onion, same key), :class:`RefetchDescriptor`
(``HSFETCH`` of the peer's onion), :class:`DropStreams` (close onion streams authenticated
before the change), :class:`ProbeStreams` (PING them), :class:`StartGeneration` (run p4-03
signalling for a new generation over the fastest live route) and :class:`PathChanged` (tell the
application which path carries the session).

The rules (normative text: p4-03 §8.8):

- **Who dials.** LOW dials at once, HIGH after FOLLOWER_DELAY (10 s) unless a stream exists
  meanwhile; a dial-only peer dials at once whatever its role; a peer whose peer is dial-only
  never dials and waits (state AWAIT_PEER).
- **Backoff.** After the k-th consecutive failed dial the next waits ``d − ⌊d·r/131072⌋`` ms,
  ``d = min(1 s · 2^k, 60 s)``, ``r`` 16 random bits: in ``(d/2, d]``.  Each failed dial also
  refetches the peer's descriptor, at most every 2 s.
- **Resets.** A network change, an application request and an authenticated stream (ours or
  the peer's incoming dial) reset ``k`` to 0.  On a network change the peer that saw it dials at
  once whatever its role (no follower delay on a reconnect), after nudging its tor and dropping
  the streams the nudge broke.
- **Repeated moves.** From the 4th network change within 10 minutes, a publishing peer also
  re-publishes its onion (the lab measured the onion stalling from the 4th move otherwise).
- **Generations.** A requested generation starts as soon as a connection can carry its OFFER
  (the data channel, else an authenticated onion stream); after a generation whose data channel
  never opened, the next waits ``min(2 s · 2^j, 300 s)`` with the same jitter, reset by a
  network change and by an open data channel.
- **Tor fallback.** While no data channel is open and an onion stream is, the session runs on
  the onion stream (p4-04 SES-9, TOR_WINDOW): ``path == "tor"``.
"""

from ._policy import (
    TRANSITIONS,
    AbandonDial,
    Action,
    AppRequest,
    Dial,
    DialFailed,
    DialSucceeded,
    DirectDown,
    DirectFailed,
    DirectUp,
    DropStreams,
    Event,
    GenerationWanted,
    IncomingStream,
    Kind,
    NetworkChanged,
    NudgeTor,
    Path,
    PathChanged,
    ProbeStreams,
    ReconnectConfig,
    ReconnectPolicy,
    RefetchDescriptor,
    Republish,
    StartGeneration,
    State,
    Stop,
    StreamClosed,
    Want,
    backoff_ms,
    transition_table_markdown,
)

__all__ = [
    "TRANSITIONS",
    "AbandonDial",
    "Action",
    "AppRequest",
    "Dial",
    "DialFailed",
    "DialSucceeded",
    "DirectDown",
    "DirectFailed",
    "DirectUp",
    "DropStreams",
    "Event",
    "GenerationWanted",
    "IncomingStream",
    "Kind",
    "NetworkChanged",
    "NudgeTor",
    "Path",
    "PathChanged",
    "ProbeStreams",
    "ReconnectConfig",
    "ReconnectPolicy",
    "RefetchDescriptor",
    "Republish",
    "StartGeneration",
    "State",
    "Stop",
    "StreamClosed",
    "Want",
    "backoff_ms",
    "transition_table_markdown",
]
