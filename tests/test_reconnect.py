"""The reconnect policy (p4ref/reconnect, spec p4-03 §8.8): unit cases per rule, and
hypothesis runs over random event sequences checking the invariants."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4ref.errors import LocalProtocolError
from p4ref.reconnect import (
    TRANSITIONS,
    AbandonDial,
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


def rng_const(value: int) -> object:
    return lambda n: value.to_bytes(2, "big")[:n]


def policy(role: str = "low", r: int = 0, **kw: object) -> ReconnectPolicy:
    return ReconnectPolicy(role, rng=rng_const(r), **kw)  # type: ignore[arg-type]


def kinds(actions: list[object]) -> list[type]:
    return [type(a) for a in actions]


def test_table_is_complete_and_in_the_spec() -> None:
    assert set(TRANSITIONS) == set(itertools.product(State, Kind))
    md = transition_table_markdown()
    assert "| WAIT_DIAL | dial timer | DIALING | dial |" in md
    spec = (Path(__file__).parent.parent / "spec" / "p4-03-rendezvous-v1.md").read_text()
    assert md in spec, "p4-03 §8.8: regenerate the table from p4ref/reconnect TRANSITIONS"


def test_low_dials_at_once_high_after_follower_delay() -> None:
    """RDV-37."""
    low = policy("low")
    assert kinds(low.on_event(Want(), 1000)) == [Dial]
    assert low.state is State.DIALING
    high = policy("high")
    assert high.on_event(Want(), 1000) == []
    assert high.state is State.WAIT_DIAL and high.next_deadline() == 11_000
    assert not high.should_dial(10_999)
    assert high.on_timer(10_999) == []
    assert high.should_dial(11_000)
    assert high.on_timer(11_000) == [Dial(0)]


def test_high_does_not_dial_when_the_low_peer_dialed_first() -> None:
    high = policy("high")
    high.on_event(Want(), 0)
    acts = high.on_event(IncomingStream(), 2_000)
    assert high.state is State.CONNECTED and PathChanged("tor") in acts
    assert high.next_deadline() is None and high.on_timer(20_000) == []


def test_backoff_schedule_and_jitter_bounds() -> None:
    """RDV-38."""
    # r = 0: the full d; r = 0xFFFF: just above d/2
    for k, d in enumerate([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]):
        assert backoff_ms(k, 1000, 2, 60_000, 0) == d
        low = backoff_ms(k, 1000, 2, 60_000, 0xFFFF)
        assert d // 2 < low <= d
    assert backoff_ms(10_000, 1000, 2, 60_000, 0) == 60_000
    p = policy("low", r=0)
    p.on_event(Want(), 0)
    t, waits = 0, []
    for _ in range(8):
        p.on_event(DialFailed(), t)
        waits.append(p.next_deadline() - t)  # type: ignore[operator]
        t = p.next_deadline()  # type: ignore[assignment]
        assert p.on_timer(t)[0] == Dial(len(waits))
    assert waits == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]


def test_refetch_at_most_every_two_seconds() -> None:
    """RDV-62."""
    p = policy("low", config=ReconnectConfig(backoff_initial_ms=100))
    p.on_event(Want(), 0)
    assert RefetchDescriptor() in p.on_event(DialFailed(), 0)
    p.on_timer(100)
    assert RefetchDescriptor() not in p.on_event(DialFailed(), 150)
    p.on_timer(p.next_deadline())  # type: ignore[arg-type]
    assert RefetchDescriptor() in p.on_event(DialFailed(), 2_000)


def test_network_change_resets_backoff_and_dials_at_once_even_for_high() -> None:
    """RDV-63, RDV-64 (and RDV-38's reset)."""
    p = policy("high")
    p.on_event(Want(), 0)
    p.on_timer(10_000)
    for t in (11_000, 13_000, 17_000):
        p.on_event(DialFailed(), t)
        p.on_timer(p.next_deadline())  # type: ignore[arg-type]
    assert p.failures == 3 and p.state is State.DIALING
    acts = p.on_event(NetworkChanged(), 20_000)
    assert kinds(acts) == [NudgeTor, AbandonDial, Dial]
    assert acts[-1] == Dial(0) and p.failures == 0


def test_network_change_while_connected_drops_streams_and_redials() -> None:
    p = policy("high")
    p.on_event(Want(), 0)
    p.on_event(IncomingStream(), 1)
    acts = p.on_event(NetworkChanged(), 5_000)
    assert kinds(acts) == [NudgeTor, DropStreams, Dial, PathChanged]
    assert acts[-1] == PathChanged("none")


def test_network_change_with_a_system_tor_probes_instead() -> None:
    p = policy("low", tor_launched=False)
    p.on_event(Want(), 0)
    p.on_event(DialSucceeded(), 1)
    assert p.on_event(NetworkChanged(), 5_000) == [ProbeStreams()]
    assert p.state is State.CONNECTED


def test_app_request_resets_and_dials_now() -> None:
    """RDV-64."""
    p = policy("high")
    p.on_event(Want(), 0)
    acts = p.on_event(AppRequest(), 500)
    assert acts == [Dial(0)]


def test_stream_closed_low_dials_at_once_high_after_lost_stream_delay() -> None:
    """RDV-83: the kept stream died at both ends; HIGH waits LOST_STREAM_DELAY (2 s), not
    FOLLOWER_DELAY (10 s): in the lab, after the HIGH peer's NAT rebound, LOW's dials to its
    onion failed and the session waited the whole FOLLOWER_DELAY for HIGH's own dial."""
    p = policy("high")
    p.on_event(Want(), 0)
    p.on_event(IncomingStream(), 1)
    acts = p.on_event(StreamClosed(), 100)
    assert acts == [PathChanged("none")]
    assert p.next_deadline() == 2_100
    assert p.on_timer(2_099) == [] and p.on_timer(2_100) == [Dial(0)]
    q = policy("low")
    q.on_event(Want(), 0)
    q.on_event(DialSucceeded(), 1)
    assert q.on_event(StreamClosed(), 100) == [Dial(0), PathChanged("none")]
    r = policy("high", config=ReconnectConfig(follower_delay_ms=1_000))
    r.on_event(Want(), 0)
    r.on_event(IncomingStream(), 1)
    r.on_event(StreamClosed(), 100)
    assert r.next_deadline() == 1_100  # never later than FOLLOWER_DELAY


@pytest.mark.parametrize("after_ms", [0, 6_000, 10_000, 10_001])
def test_a_stream_ending_after_a_change_with_a_system_tor_dials_at_once(after_ms: int) -> None:
    """RDV-82: the HIGH peer moved, its system tor was probed, not nudged, and the kept stream
    then ended: that is the move, so it dials at once (the lab: it waited FOLLOWER_DELAY and the
    other peer's liveness redialed first, 7 s).  Past MOVE_WINDOW the role's delay applies."""
    p = policy("high", tor_launched=False)
    p.on_event(Want(), 0)
    p.on_event(IncomingStream(), 1)
    assert p.on_event(NetworkChanged(), 5_000) == [ProbeStreams()]
    acts = p.on_event(StreamClosed(), 5_000 + after_ms)
    if after_ms <= 10_000:
        assert acts == [Dial(0), PathChanged("none")]
    else:
        assert acts == [PathChanged("none")]
        assert p.next_deadline() == 5_000 + after_ms + 2_000  # LOST_STREAM_DELAY (RDV-83)


def test_dial_only_peer_dials_at_once_and_its_peer_waits() -> None:
    """RDV-65 (p4-04 SES-15)."""
    phone = policy("high", dial_only=True)
    assert phone.on_event(Want(), 0) == [Dial(0)]
    server = policy("low", peer_dial_only=True)
    assert server.on_event(Want(), 0) == []
    assert server.state is State.AWAIT_PEER and server.next_deadline() is None
    assert server.on_event(AppRequest(), 1) == []
    # the publishing side moves: nudge, but never a dial
    server.on_event(IncomingStream(), 2)
    acts = server.on_event(NetworkChanged(), 3)
    assert Dial not in kinds(acts) and server.state is State.AWAIT_PEER
    assert DropStreams() in acts
    with pytest.raises(LocalProtocolError):
        policy("low", dial_only=True, peer_dial_only=True)


def test_republish_from_the_fourth_move_in_the_window() -> None:
    """RDV-66."""
    p = policy("low")
    p.on_event(Want(), 0)
    got = [Republish() in p.on_event(NetworkChanged(), t) for t in (1, 2, 3, 4, 5)]
    assert got == [False, False, False, True, True]
    # ten minutes later the count starts again
    assert Republish() not in p.on_event(NetworkChanged(), 5 + 600_000)
    # a dial-only device has no onion to re-publish
    phone = policy("high", dial_only=True)
    phone.on_event(Want(), 0)
    assert not any(Republish() in phone.on_event(NetworkChanged(), t) for t in range(1, 8))


def test_generation_waits_for_a_carrier_then_backs_off_after_failures() -> None:
    """RDV-67."""
    p = policy("high")
    p.on_event(Want(), 0)
    assert p.on_event(GenerationWanted("no_direct"), 10) == []  # no stream yet
    acts = p.on_event(IncomingStream(), 20)
    assert acts == [StartGeneration("no_direct"), PathChanged("tor")]
    assert p.on_event(DirectFailed(), 15_020) == []  # next generation in (1 s, 2 s]
    assert p.next_deadline() == 17_020
    assert p.on_timer(17_020) == [StartGeneration("no_direct")]
    p.on_event(DirectFailed(), 32_020)
    assert p.next_deadline() == 36_020
    # a network change resets the generation backoff
    acts = p.on_event(NetworkChanged(), 33_000)
    p.on_event(GenerationWanted("network"), 33_000)
    assert p.on_event(DialSucceeded(), 33_500)[0] == StartGeneration("network")


def test_path_reports_tor_fallback_and_direct() -> None:
    """RDV-68 (p4-04 SES-9)."""
    p = policy("low")
    p.on_event(Want(), 0)
    assert p.on_event(DialSucceeded(), 1) == [PathChanged("tor")]
    assert p.on_event(DirectUp(1), 2) == [PathChanged("datachannel")]
    assert p.on_event(DirectDown(), 3) == [PathChanged("tor")]
    assert p.on_event(Stop(), 4) == [PathChanged("none")]
    assert p.state is State.IDLE and p.next_deadline() is None


def test_config_validation() -> None:
    with pytest.raises(LocalProtocolError):
        ReconnectConfig(backoff_max_ms=-1)
    with pytest.raises(LocalProtocolError):
        ReconnectConfig(backoff_initial_ms=0)


# ------------------------------------------------------------------------------ properties

EVENTS: list[Event] = [
    Want(), AppRequest(), Stop(), NetworkChanged(), DialSucceeded(), DialFailed(),
    IncomingStream(), StreamClosed(), GenerationWanted("dead"), GenerationWanted("network"),
    DirectUp(1), DirectDown(), DirectFailed(),
]

steps = st.lists(
    st.tuples(st.integers(0, 120_000), st.sampled_from(EVENTS) | st.just(None)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    role=st.sampled_from(["low", "high"]),
    mode=st.sampled_from(["both", "dial_only", "peer_dial_only"]),
    tor_launched=st.booleans(),
    seed=st.integers(0, 0xFFFF),
    script=steps,
)
def test_invariants_over_random_sequences(
    role: str, mode: str, tor_launched: bool, seed: int, script: list[tuple[int, Event | None]]
) -> None:
    p = ReconnectPolicy(role, rng=rng_const(seed),  # type: ignore[arg-type]
                        dial_only=mode == "dial_only", peer_dial_only=mode == "peer_dial_only",
                        tor_launched=tor_launched)
    now = 0
    dialing = False
    for dt, ev in script:
        now += dt
        acts = p.on_timer(now) if ev is None else p.on_event(ev, now)
        for a in acts:
            if isinstance(a, Dial):
                assert p.may_dial(), "a peer whose peer is dial-only never dials"
                dialing = True
            if isinstance(a, NudgeTor):
                assert tor_launched
            if isinstance(a, Republish):
                assert mode != "dial_only"
        if isinstance(ev, NetworkChanged) and tor_launched:
            assert acts[0] == NudgeTor()
        # the state and the deadline agree
        if p.state is State.WAIT_DIAL:
            assert p.next_deadline() is not None
            assert p.next_deadline() > now  # type: ignore[operator]  # a due dial has fired
        if p.state is State.AWAIT_PEER:
            assert mode == "peer_dial_only"
        if p.state is State.IDLE:
            assert p.path == "none"
        assert p.path == ("datachannel" if p.direct else
                          "tor" if p.state is State.CONNECTED else "none")
        # a dial wait never exceeds the cap
        if p.state is State.WAIT_DIAL:
            assert p.next_deadline() - now <= 60_000  # type: ignore[operator]
        if isinstance(ev, NetworkChanged) and p.may_dial() and p.state is not State.IDLE:
            # the peer that saw the change dials at once (or is connected without a nudge)
            assert p.state in (State.DIALING, State.CONNECTED)
    assert isinstance(dialing, bool)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 0xFFFF), k=st.integers(0, 80))
def test_backoff_bounds(seed: int, k: int) -> None:
    d = min(1000 * 2 ** min(k, 64), 60_000)
    w = backoff_ms(k, 1000, 2, 60_000, seed)
    assert d // 2 < w <= d


def test_hedged_dials() -> None:
    """RDV-70: a dial without an outcome for DIAL_HEDGE gets one sibling on a fresh circuit; a
    failure backs off only when no dial is left in flight; the winner abandons the rest."""
    p = policy("low")
    assert p.on_event(Want(), 0) == [Dial(0)]
    assert p.next_deadline() == 2_000 and not p.should_dial(1_999)
    assert p.on_timer(2_000) == [RefetchDescriptor(), Dial(0)]
    assert p.next_deadline() is None  # two in flight: the most
    assert p.on_event(DialFailed(), 2_500) == []  # refetched 0.5 s ago
    assert p.state is State.DIALING and p.next_deadline() == 4_500
    assert p.on_event(DialSucceeded(), 3_000) == [PathChanged("tor")]
    q = policy("low")
    q.on_event(Want(), 0)
    q.on_timer(2_000)
    acts = q.on_event(DialSucceeded(), 2_100)
    assert acts == [AbandonDial(), PathChanged("tor")]
    r = policy("low", config=ReconnectConfig(max_parallel_dials=1))
    r.on_event(Want(), 0)
    assert r.next_deadline() is None and r.on_timer(10_000) == []
    r.on_event(DialFailed(), 10_000)
    assert r.state is State.WAIT_DIAL and r.next_deadline() == 11_000
