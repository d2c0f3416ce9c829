"""Replay of a recorded HELLO+OFFER after the acceptor restarts (issue 8 §1.4; p4-03 §6.3, §8.2,
§8.3, §12).

Revision 1 answered it: the acceptor's replay cache lived in memory, the dialer's HELLO carried no
challenge from the acceptor and the OFFER named nothing of the stream, so a restarted acceptor
(a new machine with an empty cache) took the recorded dialer bytes for a live peer and answered
the OFFER with its own SDP, i.e. its IP addresses.  ``test_recorded_dialer_bytes_...`` is that
attack; it fails against revision 1 (the acceptor reports OFFER_RECEIVED) and passes now, on three
independent defences, each pinned by its own test below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, LocalProtocolError
from p4ref.framing import FrameType, decode_frame
from p4ref.framing import Path as FramePath
from p4ref.io.replay_store import ReplayStore
from p4ref.rendezvous import OfferReceived, RendezvousFailed, RendezvousMachine, State

NOW = 1_764_000_000_000  # epoch 20416
SEED_D, SEED_A = b"\x11" * 32, b"\x22" * 32
PUB_D, PUB_A = (bytes(SigningKey(s).verify_key) for s in (SEED_D, SEED_A))


def _rng(label: bytes) -> Callable[[int], bytes]:
    n = [0]

    def draw(k: int) -> bytes:
        n[0] += 1
        return hashlib.sha256(label + n[0].to_bytes(4, "big")).digest()[:k]

    return draw


def _events(m: RendezvousMachine) -> list[object]:
    out = []
    while (ev := m.next_event()) is not None:
        out.append(ev)
    return out


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        end = pos + 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
        out.append(data[pos:end])
        pos = end
    return out


def _acceptor(label: bytes, **kw: object) -> RendezvousMachine:
    a = RendezvousMachine(SEED_A, PUB_D, dialer=False, rng=_rng(label), **kw)  # type: ignore[arg-type]
    a.start(NOW)
    return a


def _record_session() -> tuple[list[bytes], RendezvousMachine]:
    """A genuine stream: the dialer HELLOs and OFFERs generation 1, the acceptor answers.
    Returns every frame the dialer sent (what an eavesdropper with the stream's plaintext, or a
    leaked client key and a log, would hold) and the acceptor."""
    d = RendezvousMachine(SEED_D, PUB_A, dialer=True, rng=_rng(b"dialer"))
    a = _acceptor(b"acceptor 1")
    sent: list[bytes] = []

    def d_to_a(data: bytes) -> None:
        if data:  # (b"" would be end of stream)
            sent.extend(_frames(data))
            a.receive_data(data, NOW + 10)

    d.start(NOW)
    d_to_a(d.data_to_send())
    d.receive_data(a.data_to_send(), NOW + 20)
    d_to_a(d.data_to_send())  # the third HELLO (revision 2); nothing in revision 1
    d.send_offer("v=0 dialer", b"\xd0" * 32, 1, 0, NOW + 30)
    d_to_a(d.data_to_send())
    assert any(isinstance(e, OfferReceived) for e in _events(a))
    a.send_answer("v=0 acceptor c=IN IP4 192.0.2.7", b"\xa0" * 32, 0, NOW + 40)
    d.receive_data(a.data_to_send(), NOW + 50)
    assert d.state is State.ANSWERED
    return sent, a


def test_recorded_dialer_bytes_replayed_to_a_restarted_acceptor_get_no_answer() -> None:
    """The attack of issue 8 §1.4, step by step: record, restart, replay."""
    recorded, _ = _record_session()
    restarted = _acceptor(b"acceptor 2")  # new process: new machine, empty replay cache
    replies = b""
    for frame in recorded:
        restarted.receive_data(frame, NOW + 60_000)
        replies += restarted.data_to_send()
    events = _events(restarted)
    assert not any(isinstance(e, OfferReceived) for e in events)  # revision 1 failed here
    assert restarted.state is State.ERROR
    assert events[-1] == RendezvousFailed(ErrorCode.RDV_REPLAY)  # the old echo in HELLO 3
    types = [decode_frame(f, FramePath.TOR).type for f in _frames(replies)]
    assert types == [FrameType.RV_HELLO, FrameType.ERROR]  # never an ANSWER, never an SDP


def test_a_replayed_dialer_hello_alone_never_reaches_ready() -> None:
    """Liveness: without a HELLO echoing its fresh nonce the acceptor stays in HELLO_ECHOED,
    reports nothing and refuses to send an OFFER of its own (which would reveal its SDP)."""
    recorded, _ = _record_session()
    restarted = _acceptor(b"acceptor 3")
    restarted.receive_data(recorded[0], NOW + 60_000)
    assert restarted.state is State.HELLO_ECHOED and _events(restarted) == []
    (echo,) = _frames(restarted.data_to_send())
    assert echo[1] == FrameType.RV_HELLO
    with pytest.raises(LocalProtocolError) as exc:
        restarted.send_offer("v=0 acceptor", b"\xa0" * 32, 1, 0, NOW + 60_001)
    assert exc.value.code is ErrorCode.UNEXPECTED_MESSAGE
    assert restarted.data_to_send() == b"" and restarted.state is State.HELLO_ECHOED
    restarted.handle_timer(NOW + 60_000 + 30_000)
    assert _events(restarted) == [RendezvousFailed(ErrorCode.TIMEOUT)]


def test_an_offer_from_another_stream_is_refused_by_its_stream_binding() -> None:
    """RDV-51: even on a live, genuinely authenticated new stream, the OFFER recorded on the old
    one names the old acceptor HELLO nonce and is refused with RDV_REPLAY.  The same holds for an
    OFFER carried in-band by the session layer (RDV-57): it is checked by the machine of the
    onion stream it names, and by any other it is RDV_REPLAY."""
    recorded, _ = _record_session()
    old_offer = recorded[-1]
    assert old_offer[1] == FrameType.RV_OFFER
    d = RendezvousMachine(SEED_D, PUB_A, dialer=True, rng=_rng(b"dialer 2"))
    a = _acceptor(b"acceptor 4")  # restarted: empty cache, last_generation 0
    d.start(NOW)
    a.receive_data(d.data_to_send(), NOW + 1)
    d.receive_data(a.data_to_send(), NOW + 2)
    a.receive_data(d.data_to_send(), NOW + 3)
    assert a.state is State.READY
    _events(a)
    a.receive_data(old_offer, NOW + 4)  # injected into the new stream
    assert _events(a) == [RendezvousFailed(ErrorCode.RDV_REPLAY)]
    assert decode_frame(a.data_to_send(), FramePath.TOR).type == FrameType.ERROR


def test_the_persisted_mark_refuses_an_old_generation_after_a_restart(tmp_path: Path) -> None:
    """RDV-52: the acceptor stored generation 1 before answering; restarted with that mark as
    ``last_generation`` it refuses a fresh, correctly bound OFFER of generation 1."""
    store = ReplayStore(tmp_path / "replay.json")
    _, a = _record_session()
    store.advance(PUB_D, a.generation)
    restarted_mark = ReplayStore(tmp_path / "replay.json").last_generation(PUB_D)
    assert restarted_mark == 1
    d = RendezvousMachine(SEED_D, PUB_A, dialer=True, rng=_rng(b"dialer 3"))
    a2 = _acceptor(b"acceptor 5", last_generation=restarted_mark)
    d.start(NOW)
    a2.receive_data(d.data_to_send(), NOW + 1)
    d.receive_data(a2.data_to_send(), NOW + 2)
    a2.receive_data(d.data_to_send(), NOW + 3)
    _events(a2)
    assert d.generation == 1  # RDV-60: the dialer adopted the acceptor's announced mark ...
    d.generation = 0  # ... which a dialer replaying with a stolen key need not do
    d.send_offer("v=0 again", b"\xd0" * 32, 1, 0, NOW + 4)
    a2.receive_data(d.data_to_send(), NOW + 5)
    assert _events(a2) == [RendezvousFailed(ErrorCode.RDV_STALE_GENERATION)]
