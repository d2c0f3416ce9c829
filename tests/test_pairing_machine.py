"""The pairing machine (p4-02 §8): both roles against each other, failures, burn, timers.

Everything runs through the pure machines; ``now`` is an integer and randomness is pre-drawn.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import re
from pathlib import Path as FsPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, LocalProtocolError, P4Error, RemoteProtocolError
from p4ref.framing import Frame, FrameType, Path, decode_frame, encode_frame, parse_error_body
from p4ref.pairing import (
    Invitation,
    InviteUri,
    Paired,
    PairingFailed,
    PairingMachine,
    Role,
    State,
)
from p4ref.pairing._machine import (
    TRANSITIONS,
    Input,
    state_diagram_mermaid,
    transition_rows,
    transition_table_markdown,
)

ROOT = FsPath(__file__).resolve().parent.parent
CODE = "7-guitarist-revenge"
SEED_A, SEED_I = hashlib.sha256(b"accepter").digest(), hashlib.sha256(b"inviter").digest()
T0 = 1_000_000


def rng(label: str, n: int = 2) -> list[bytes]:
    """``n`` attempts' draws: a 64-byte scalar value, then a 32-byte identity nonce, each."""
    out = []
    for i in range(n):
        out += [hashlib.sha512(f"{label}{i}".encode()).digest(),
                hashlib.sha256(f"{label}{i}".encode()).digest()]  # fmt: skip
    return out


PUB_I = bytes(SigningKey(SEED_I).verify_key)


def machines(
    inv_a: Invitation | None = None, inv_i: Invitation | None = None, *, timeout: int = 60_000
) -> tuple[PairingMachine, PairingMachine]:
    inv = Invitation.from_code(CODE, expires_at=T0 + 600_000)
    a = PairingMachine(Role.ACCEPTER, inv_a or inv, SEED_A, rng("a"), timeout_ms=timeout)
    i = PairingMachine(Role.INVITER, inv_i or inv, SEED_I, rng("i"), timeout_ms=timeout)
    return a, i


class Log:
    def __init__(self) -> None:
        self.errors: dict[str, list[ErrorCode]] = {"a": [], "i": []}
        self.events: dict[str, list[object]] = {"a": [], "i": []}


def deliver(dst: PairingMachine, data: bytes, now: int, log: Log, name: str) -> None:
    try:
        dst.receive_data(data, now)
    except P4Error as exc:
        log.errors[name].append(exc.code)


def pump(a: PairingMachine, i: PairingMachine, now: int = T0, log: Log | None = None) -> Log:
    """Move bytes both ways until both machines are quiet; collect events and raised codes."""
    log = log or Log()
    for _ in range(20):
        da, di = a.data_to_send(), i.data_to_send()
        if not da and not di:
            break
        if da:
            deliver(i, da, now, log, "i")
        if di:
            deliver(a, di, now, log, "a")
    for name, m in (("a", a), ("i", i)):
        while (ev := m.next_event()) is not None:
            log.events[name].append(ev)
    return log


def run(a: PairingMachine, i: PairingMachine) -> Log:
    i.start(T0)
    log = Log()
    deliver(i, a.start(T0), T0, log, "i")
    return pump(a, i, T0, log)


# --- happy paths ------------------------------------------------------------------------------


def _assert_paired(log: Log, a: PairingMachine, i: PairingMachine) -> None:
    assert a.state is State.PAIRED and i.state is State.PAIRED
    (pa,), (pi,) = log.events["a"], log.events["i"]
    assert isinstance(pa, Paired) and isinstance(pi, Paired)
    assert pa.pair_root_key == pi.pair_root_key and pa.sas == pi.sas
    assert pa.peer_identity == bytes(SigningKey(SEED_I).verify_key)
    assert pi.peer_identity == bytes(SigningKey(SEED_A).verify_key)
    assert not log.errors["a"] and not log.errors["i"]


def test_short_code_pairing() -> None:
    a, i = machines()
    log = run(a, i)
    _assert_paired(log, a, i)
    assert a.get_timer() is None and i.get_timer() is None


def test_uri_pairing() -> None:
    uri = InviteUri.create(hashlib.sha256(b"secret").digest(), 2_000_000, PUB_I)
    inv = Invitation.from_uri(str(uri))
    assert inv.expires_at == 2_000_000_000
    a, i = machines(inv, inv)
    _assert_paired(run(a, i), a, i)


def test_code_and_uri_give_different_keys() -> None:
    a, i = machines()
    k1 = run(a, i).events["a"][0]
    inv = Invitation.from_uri(InviteUri.create(hashlib.sha256(b"s").digest(), 2_000_000, PUB_I))
    a, i = machines(inv, inv)
    k2 = run(a, i).events["a"][0]
    assert isinstance(k1, Paired) and isinstance(k2, Paired)
    assert k1.pair_root_key != k2.pair_root_key


def test_frames_are_the_registered_types() -> None:
    a, i = machines()
    i.start(T0)
    frames = [decode_frame(a.start(T0), Path.TOR)]
    assert [f.type for f in frames] == [FrameType.PAIR_PAKE]
    i.receive_data(encode_frame(frames[0], Path.TOR), T0)
    assert [f.type for f in i.frames_to_send()] == [FrameType.PAIR_PAKE, FrameType.PAIR_CONFIRM]


def test_stream_split_byte_by_byte() -> None:
    a, i = machines()
    i.start(T0)
    for byte in a.start(T0):
        i.receive_data(bytes([byte]), T0)
    assert i.state is State.WAIT_CONFIRM


# --- wrong code and burn ----------------------------------------------------------------------


def _failed(log: Log, who: str) -> PairingFailed:
    evs = [e for e in log.events[who] if isinstance(e, PairingFailed)]
    assert len(evs) == 1, log.events[who]
    return evs[0]


@pytest.mark.parametrize("wrong", ["7-guitarist-reward", "8-guitarist-revenge"])
def test_wrong_code_fails_closed_on_both_sides_and_burns(wrong: str) -> None:
    a, i = machines(inv_a=Invitation.from_code(wrong))
    log = run(a, i)
    assert a.state is State.FAILED and i.state is State.FAILED
    assert log.errors["a"] == [ErrorCode.PAIR_CONFIRM_FAILED]
    assert _failed(log, "a").code is ErrorCode.PAIR_CONFIRM_FAILED
    assert _failed(log, "i").code is ErrorCode.PAIR_CONFIRM_FAILED  # from the accepter's ERROR
    assert not any(isinstance(e, Paired) for e in log.events["a"] + log.events["i"])
    # the right code afterwards is refused: the invitation is burnt
    a2 = PairingMachine(Role.ACCEPTER, Invitation.from_code(CODE), SEED_A, rng("a2"))
    i.connection_lost(T0)
    log2 = Log()
    deliver(i, a2.start(T0), T0, log2, "i")
    log2 = pump(a2, i, T0, log2)
    assert i.state is State.FAILED and a2.state is State.FAILED
    assert _failed(log2, "a").code is ErrorCode.PAIR_INVITATION_BURNT


def test_inviter_detects_bad_accepter_mac() -> None:
    a, i = machines()
    i.start(T0)
    i.receive_data(a.start(T0), T0)
    a.receive_data(i.data_to_send(), T0)
    confirm, _ident = a.frames_to_send()
    body = bytearray(confirm.body)
    body[-1] ^= 0x80
    with pytest.raises(RemoteProtocolError) as exc:
        i.receive_frame(Frame(confirm.type, 0, bytes(body)), T0)
    assert exc.value.code is ErrorCode.PAIR_CONFIRM_FAILED
    (err,) = i.frames_to_send()
    assert err.type == FrameType.ERROR
    assert parse_error_body(err.body)[0] == ErrorCode.PAIR_CONFIRM_FAILED
    assert i.state is State.FAILED


def test_after_pairing_the_invitation_is_used_up() -> None:
    a, i = machines()
    run(a, i)
    a2 = PairingMachine(Role.ACCEPTER, Invitation.from_code(CODE), SEED_A, rng("a3"))
    i.connection_lost(T0)
    log = Log()
    deliver(i, a2.start(T0), T0, log, "i")
    log = pump(a2, i, T0, log)
    assert i.state is State.PAIRED
    assert _failed(log, "a").code is ErrorCode.PAIR_INVITATION_BURNT


def test_connection_lost_before_pake_does_not_burn_after_does() -> None:
    a, i = machines()
    i.start(T0)
    i.connection_lost(T0)
    assert i.state is State.WAIT_PAKE
    i.receive_data(a.start(T0), T0)
    i.connection_lost(T0)
    assert i.state is State.FAILED
    ev = i.next_event()
    assert isinstance(ev, PairingFailed) and ev.code is ErrorCode.PROTOCOL_VIOLATION


# --- timers -------------------------------------------------------------------------------------


def test_invitation_expiry_timer() -> None:
    _a, i = machines(inv_i=Invitation.from_code(CODE, expires_at=T0 + 10))
    i.start(T0)
    assert i.get_timer() == T0 + 10
    i.handle_timer(T0 + 9)
    assert i.state is State.WAIT_PAKE
    i.handle_timer(T0 + 10)
    assert i.state is State.FAILED and i.data_to_send() == b""
    ev = i.next_event()
    assert isinstance(ev, PairingFailed) and ev.code is ErrorCode.PAIR_INVITATION_EXPIRED


def test_pake_after_expiry_is_refused() -> None:
    a, i = machines(inv_i=Invitation.from_code(CODE, expires_at=T0 + 10))
    i.start(T0)
    i.receive_data(a.start(T0), T0 + 10)  # the timer was not handled yet
    assert i.state is State.FAILED
    (err,) = i.frames_to_send()
    assert parse_error_body(err.body)[0] == ErrorCode.PAIR_INVITATION_EXPIRED


def test_default_expiry_is_ten_minutes() -> None:
    i = PairingMachine(Role.INVITER, Invitation.from_code(CODE), SEED_I, rng("i"))
    i.start(T0)
    assert i.get_timer() == T0 + 600_000


def test_start_after_expiry_fails_the_machine() -> None:
    """PAIR-17: an accepter never starts with an expired invitation; nothing is sent."""
    a, _ = machines(inv_a=Invitation.from_code(CODE, expires_at=T0))
    assert a.start(T0) == b""
    ev = a.next_event()
    assert isinstance(ev, PairingFailed) and ev.code is ErrorCode.PAIR_INVITATION_EXPIRED
    assert a.state is State.FAILED


def test_pairing_timeout() -> None:
    a, i = machines(timeout=5_000)
    a.start(T0)
    assert a.get_timer() == T0 + 5_000
    a.handle_timer(T0 + 5_000)
    assert a.state is State.FAILED
    (err,) = a.frames_to_send()
    assert parse_error_body(err.body)[0] == ErrorCode.TIMEOUT
    # the inviter's attempt timer starts at the PAKE and burns the invitation on expiry
    i.start(T0)
    a2 = PairingMachine(Role.ACCEPTER, Invitation.from_code(CODE), SEED_A, rng("x"))
    i.receive_data(a2.start(T0), T0 + 1)
    assert i.get_timer() == T0 + 5_001
    i.handle_timer(T0 + 5_001)
    assert i.state is State.FAILED


# --- message order and foreign frames ---------------------------------------------------------


def test_out_of_order_message_is_unexpected() -> None:
    a, i = machines()
    i.start(T0)
    a.start(T0)
    with pytest.raises(RemoteProtocolError) as exc:
        i.receive_frame(Frame(FrameType.PAIR_CONFIRM, 0, b"\xa1\x01\x58\x20" + bytes(32)), T0)
    assert exc.value.code is ErrorCode.UNEXPECTED_MESSAGE
    # before the PAKE only the stream ends; the invitation is not consumed [PAIR-48]
    assert i.state is State.WAIT_PAKE and i.stream_closed


def test_rendezvous_frame_is_unexpected() -> None:
    a, _ = machines()
    a.start(T0)
    a.data_to_send()
    with pytest.raises(RemoteProtocolError) as exc:
        a.receive_frame(Frame(FrameType.RV_HELLO, 0, b"\xa0"), T0)
    assert exc.value.code is ErrorCode.UNEXPECTED_MESSAGE


def test_ping_padding_grease() -> None:
    _a, i = machines()
    i.start(T0)
    ping = Frame(FrameType.PING, 0, b"\xa1\x01\x48" + bytes(8))
    data = b"".join(
        encode_frame(f, Path.TOR)
        for f in (ping, Frame(FrameType.PADDING, 0, b"xx"), Frame(0xEA, 0, b"grease"))
    )
    i.receive_data(data, T0)
    (pong,) = i.frames_to_send()
    assert pong.type == FrameType.PONG and pong.body == ping.body
    assert i.state is State.WAIT_PAKE


def test_decode_error_queues_error_frame() -> None:
    _, i = machines()
    i.start(T0)
    with pytest.raises(RemoteProtocolError) as exc:
        i.receive_data(b"\x02\x10\x00\x00\x00", T0)  # bad framing version
    assert exc.value.code is ErrorCode.FRAME_BAD_VERSION
    (err,) = i.frames_to_send()
    assert parse_error_body(err.body)[0] == ErrorCode.FRAME_BAD_VERSION


def test_api_misuse() -> None:
    a, _ = machines()
    with pytest.raises(LocalProtocolError):
        a.receive_frame(Frame(FrameType.PAIR_PAKE, 0, b"\xa0"), T0)  # before start()
    a.start(T0)
    with pytest.raises(LocalProtocolError):
        a.start(T0)


# --- every (state, input) pair ------------------------------------------------------------------


def _drive(role: Role, target: State) -> tuple[PairingMachine, PairingMachine]:
    """A machine of ``role`` in ``target`` (and its honest peer), reached frame by frame."""
    a, i = machines()
    me, peer = (a, i) if role is Role.ACCEPTER else (i, a)
    if target is State.IDLE:
        return me, peer
    i.start(T0)
    first = a.start(T0)
    if target is State.FAILED:
        me.handle_timer(T0 + 10**9)
        return me, peer
    pending = {"a": [decode_frame(f, Path.TOR) for f in decode_frames(first)], "i": []}
    for _ in range(20):
        if me.state is target:
            return me, peer
        src = "a" if pending["a"] else "i"
        if not pending[src]:
            break
        frame = pending[src].pop(0)
        dst = i if src == "a" else a
        dst.receive_frame(frame, T0)
        pending["i" if src == "a" else "a"].extend(decode_frame_list(dst))
    assert me.state is target, (role, target, me.state)
    return me, peer


def decode_frame_list(m: PairingMachine) -> list[Frame]:
    return m.frames_to_send()


def _sample_frames() -> dict[str, Frame]:
    b32 = b"\x58\x20" + bytes(range(32))
    return {
        "PAIR_PAKE": Frame(FrameType.PAIR_PAKE, 0, b"\xa2\x01\x01\x02" + b32),
        "PAIR_CONFIRM": Frame(FrameType.PAIR_CONFIRM, 0, b"\xa1\x01" + b32),
        "PAIR_IDENTITY": Frame(FrameType.PAIR_IDENTITY, 0, b"\xa1\x01\x58\x9a" + bytes(154)),
        "PAIR_DONE": Frame(FrameType.PAIR_DONE, 0, b"\xa1\x01" + b32),
        "ERROR": Frame(FrameType.ERROR, 0, b"\xa2\x01\x01\x02\x60"),
        "RV_HELLO": Frame(FrameType.RV_HELLO, 0, b"\xa0"),
    }


REACHABLE = {
    Role.ACCEPTER: [
        State.IDLE, State.WAIT_PAKE, State.WAIT_CONFIRM, State.WAIT_IDENTITY, State.WAIT_DONE,
        State.PAIRED, State.FAILED,
    ],
    Role.INVITER: [
        State.IDLE, State.WAIT_PAKE, State.WAIT_CONFIRM, State.WAIT_IDENTITY, State.WAIT_DONE,
        State.PAIRED, State.FAILED,
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("role", "state", "frame"),
    [(r, s, f) for r, ss in REACHABLE.items() for s in ss for f in _sample_frames()],
)
def test_every_state_input_pair(role: Role, state: State, frame: str) -> None:
    """Each (state, frame) either follows the table or fails with a typed error (p4-02 §8.1)."""
    me, _ = _drive(role, state)
    try:
        me.receive_frame(_sample_frames()[frame], T0)
    except LocalProtocolError:
        assert state is State.IDLE
        return
    except RemoteProtocolError as exc:
        assert state not in (State.PAIRED, State.FAILED, State.IDLE)
        row = TRANSITIONS[role].get((state, Input(frame) if frame != "RV_HELLO" else Input.ERROR))
        if frame == "RV_HELLO" or row is None:  # schema first, then the state [PAIR-43]
            assert exc.code in (ErrorCode.UNEXPECTED_MESSAGE, ErrorCode.MESSAGE_INVALID)
        if role is Role.INVITER and state is State.WAIT_PAKE:
            assert me.state is State.WAIT_PAKE and me.stream_closed  # [PAIR-48]
        else:
            assert me.state is State.FAILED
        assert me.frames_to_send()[-1].type == FrameType.ERROR
        return
    # no exception: a listed transition, a discard in a terminal state, or a peer ERROR
    if state in (State.PAIRED, State.FAILED):
        assert me.state is state
    elif role is Role.INVITER and state is State.WAIT_PAKE:
        assert frame == "ERROR" and me.state is State.WAIT_PAKE and me.stream_closed
    else:
        assert frame == "ERROR" and me.state is State.FAILED


# --- hypothesis: no single-message mutation ends in mismatched keys ----------------------------


def _honest_messages() -> list[tuple[str, bytes]]:
    """The wire messages of one honest run, as (sender, frame bytes)."""
    a, i = machines()
    i.start(T0)
    msgs: list[tuple[str, bytes]] = []
    out = a.start(T0)
    while out:
        for f in decode_frames(out):
            msgs.append(("a", f))
        i.receive_data(out, T0)
        back = i.data_to_send()
        for f in decode_frames(back):
            msgs.append(("i", f))
        a.receive_data(back, T0)
        out = a.data_to_send()
    return msgs


def decode_frames(data: bytes) -> list[bytes]:
    frames, pos = [], 0
    while pos < len(data):
        n = 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
        frames.append(data[pos : pos + n])
        pos += n
    return frames


HONEST = _honest_messages()


@st.composite
def mutation(draw: st.DrawFn) -> tuple[int, bytes]:
    idx = draw(st.integers(0, len(HONEST) - 1))
    frame = bytearray(HONEST[idx][1])
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "replace"]))
    if kind == "flip":
        bit = draw(st.integers(0, len(frame) * 8 - 1))
        frame[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    elif kind == "extend":  # a longer body, with the length field to match
        frame += draw(st.binary(min_size=1, max_size=8))
        frame[3:5] = (len(frame) - 5).to_bytes(2, "big")
    else:
        pos = draw(st.integers(0, len(frame) - 1))
        frame[pos] = draw(st.integers(0, 255).filter(lambda b: b != frame[pos]))
    return idx, bytes(frame)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation())
def test_single_message_mutation_never_pairs_with_mismatched_keys(mut: tuple[int, bytes]) -> None:
    idx, bad = mut
    a, i = machines()
    i.start(T0)
    log = Log()
    sent = 0
    queues = {"a": a.start(T0), "i": b""}
    peers = {"a": ("i", i), "i": ("a", a)}
    for _ in range(20):
        progressed = False
        for who in ("a", "i"):
            data, queues[who] = queues[who], b""
            if not data:
                continue
            progressed = True
            chunks = []
            for f in decode_frames(data):
                chunks.append(bad if sent == idx else f)
                sent += 1
            name, dst = peers[who]
            deliver(dst, b"".join(chunks), T0, log, name)
            queues["a"] += a.data_to_send()
            queues["i"] += i.data_to_send()
        if not progressed:
            break
    # a stalled run (e.g. a length field now asks for more bytes) ends by the timers
    for m in (a, i):
        m.handle_timer(T0 + 10**9)
        m.handle_timer(T0 + 2 * 10**9)
    pump(a, i, T0 + 2 * 10**9, log)
    paired = {w: [e for e in log.events[w] if isinstance(e, Paired)] for w in ("a", "i")}
    receiver = "i" if HONEST[idx][0] == "a" else "a"
    assert not paired[receiver], "the side that got the mutated message paired"
    if paired["a"] and paired["i"]:  # pragma: no cover - would be a protocol break
        assert paired["a"][0].pair_root_key == paired["i"][0].pair_root_key
    recv_machine = i if receiver == "i" else a
    assert recv_machine.state is State.FAILED
    failed = [e for e in log.events[receiver] if isinstance(e, PairingFailed)]
    assert failed and all(isinstance(e.code, ErrorCode) for e in failed)


# --- structure ---------------------------------------------------------------------------------


def test_no_io_imports_in_pairing() -> None:
    """Sans-I/O (STYLE.md): no clock, entropy, socket or event loop inside the layer."""
    banned = {"time", "asyncio", "os", "socket", "random", "secrets", "datetime", "threading"}
    for path in (ROOT / "p4ref" / "pairing").glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module.split(".")[0]]
            assert not set(names) & banned, f"{path.name} imports {set(names) & banned}"


def _spec_rows(role: Role) -> list[tuple[str, str, str, str]]:
    text = (ROOT / "spec" / "p4-02-identity-pairing-v1.md").read_text("utf-8")
    marker = f"<!-- transitions: {role.value} -->"
    if marker not in text:
        pytest.skip("spec has no generated transition table yet")
    block = text.split(marker, 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[1], cells[2], cells[3]))
    return rows


@pytest.mark.parametrize("role", list(Role))
def test_spec_transition_table_matches_code(role: Role) -> None:
    assert _spec_rows(role) == transition_rows(role)


@pytest.mark.parametrize("role", list(Role))
def test_spec_tables_and_diagrams_are_generated(role: Role) -> None:
    """STYLE.md: the spec's table and diagram are the code's, verbatim (p4-02 §8.1, §8.2)."""
    text = (ROOT / "spec" / "p4-02-identity-pairing-v1.md").read_text("utf-8")
    assert transition_table_markdown(role) in text
    assert state_diagram_mermaid(role) in text


def test_transition_rows_cover_table() -> None:
    for role in Role:
        assert len(transition_rows(role)) == len(TRANSITIONS[role])
        assert all(re.fullmatch(r"[A-Z_]+", r[2]) for r in transition_rows(role))


def test_broken_error_frame_is_not_answered() -> None:
    """p4-00 §7.2: never answer an ERROR frame with one, even a malformed one (PAIR-46)."""
    _, i = machines()
    i.start(T0)
    with pytest.raises(RemoteProtocolError) as exc:
        i.receive_data(b"\x01\x01\x00\x00\x01\xa0", T0)  # ERROR with an empty map
    assert exc.value.code is ErrorCode.MESSAGE_INVALID
    assert i.frames_to_send() == [] and i.state is State.WAIT_PAKE and i.stream_closed


def test_stream_is_dead_after_an_error_until_replaced() -> None:
    a, i = machines()
    i.start(T0)
    pake = a.start(T0)
    i.receive_frame(Frame(FrameType.ERROR, 0, b"\xa2\x01\x05\x02\x60"), T0)
    i.receive_data(pake, T0)
    assert i.frames_to_send() == []  # the peer closed this stream: nothing more is processed
    i.connection_lost(T0)
    i.receive_data(pake, T0)  # a peer's ERROR before the PAKE did not consume the invitation
    assert [f.type for f in i.frames_to_send()] == [FrameType.PAIR_PAKE, FrameType.PAIR_CONFIRM]


def test_each_attempt_draws_a_fresh_scalar() -> None:
    """PAIR-28: the PAKE element depends on the attempt's own random draw."""
    inv = Invitation.from_code(CODE)
    e1 = PairingMachine(Role.ACCEPTER, inv, SEED_A, rng("r1")).start(T0)
    e2 = PairingMachine(Role.ACCEPTER, inv, SEED_A, rng("r2")).start(T0)
    assert e1 != e2
    with pytest.raises(LocalProtocolError):  # an exhausted source is an error, never a reuse
        PairingMachine(Role.ACCEPTER, inv, SEED_A, []).start(T0)


# --- fuzz findings (issue 8 §2) and any split of the stream [PAIR-61] ---------------------------


def test_decode_message_of_a_non_pairing_type_is_a_typed_error() -> None:
    """Was ``ValueError: 234 is not a valid FrameType`` for an ignorable type (p4-02 §6.3)."""
    from p4ref.errors import DecodeError
    from p4ref.pairing import decode_message

    for ftype in (0xEA, 0xE0, 0xFE, FrameType.RV_HELLO, FrameType.PING, 0x14):
        with pytest.raises(DecodeError) as exc:
            decode_message(Frame(ftype, 0, b"\xa0"))
        assert exc.value.code is ErrorCode.UNEXPECTED_MESSAGE


def test_more_than_64_kib_in_one_call_is_accepted() -> None:
    """Was INTERNAL_ERROR "reader buffer full" with the bytes dropped and no ERROR queued."""
    a, i = machines()
    i.start(T0)
    padding = encode_frame(Frame(FrameType.PADDING, 0, bytes(16_000)), Path.TOR)
    big = padding * 5 + a.start(T0)  # ~80 KiB, then the PAIR_PAKE
    assert len(big) > 64 * 1024
    i.receive_data(big, T0)
    assert i.state is State.WAIT_CONFIRM
    assert [f.type for f in i.frames_to_send()] == [FrameType.PAIR_PAKE, FrameType.PAIR_CONFIRM]


def test_done_then_malformed_frame_in_one_read_still_pairs() -> None:
    """Was CBOR_MALFORMED raised in PAIRED, the PAIRED event lost [PAIR-44]."""
    a, i = machines()
    i.start(T0)
    i.receive_data(a.start(T0), T0)
    a.receive_data(i.data_to_send(), T0)
    i.receive_data(a.data_to_send(), T0)
    a.receive_data(i.data_to_send(), T0)  # the accepter sends its PAIR_DONE
    junk = b"\x01\x10\x00\x00\x03\xa2\x01\x18"  # a PAIR_PAKE whose body is broken CBOR
    i.receive_data(a.data_to_send() + junk, T0)  # no exception
    assert i.state is State.PAIRED and isinstance(i.next_event(), Paired)
    done = i.data_to_send()
    a.receive_data(done + junk + b"\x07" * 70_000, T0)  # nor here, however much follows
    assert a.state is State.PAIRED and isinstance(a.next_event(), Paired)
    assert a.frames_to_send() == [] and i.frames_to_send() == []


def _feed(role: Role, stream: bytes, cuts: list[int]) -> tuple[bytes, list[object], State]:
    """A fresh machine of ``role`` fed ``stream`` cut at ``cuts``: (all it sent, events, state)."""
    a, i = machines()
    me = a if role is Role.ACCEPTER else i
    sent = me.start(T0)
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            me.receive_data(stream[lo:hi], T0)
            sent += me.data_to_send()
    return sent, list(iter(me.next_event, None)), me.state


def _honest_streams() -> tuple[bytes, bytes]:
    """(the inviter's stream to the accepter, the accepter's stream to the inviter), recorded
    one frame at a time; with fixed randomness each role's replies do not depend on timing."""
    a, i = machines()
    i.start(T0)
    pending = [("i", f) for f in decode_frames(a.start(T0))]
    to_a, to_i = b"", b""
    while pending:
        dst, frame = pending.pop(0)
        if dst == "i":
            to_i += frame
            i.receive_data(frame, T0)
            pending += [("a", f) for f in decode_frames(i.data_to_send())]
        else:
            to_a += frame
            a.receive_data(frame, T0)
            pending += [("i", f) for f in decode_frames(a.data_to_send())]
    assert a.state is State.PAIRED and i.state is State.PAIRED
    return to_a, to_i


STREAMS = _honest_streams()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(role=st.sampled_from(list(Role)), cuts=st.lists(st.integers(0, 600), max_size=12))
def test_every_split_gives_the_same_outputs_and_state(role: Role, cuts: list[int]) -> None:
    """RULES 3 / [PAIR-61]: for a valid transcript, any split of the received bytes gives the
    same frames sent, the same events and the same final state."""
    stream = STREAMS[0] if role is Role.ACCEPTER else STREAMS[1]
    whole = _feed(role, stream, [])
    cut = _feed(role, stream, [c % (len(stream) + 1) for c in cuts])
    assert cut[0] == whole[0] and cut[2] is whole[2] is State.PAIRED
    assert [repr(e) for e in cut[1]] == [repr(e) for e in whole[1]]
    byte_by_byte = _feed(role, stream, list(range(len(stream))))
    assert byte_by_byte[0] == whole[0] and byte_by_byte[2] is State.PAIRED


@pytest.mark.parametrize("how", ["timeout", "stream-lost"])
def test_lost_inviter_done_leaves_the_accepter_without_a_pair(how: str) -> None:
    """[PAIR-59] [PAIR-64]: the inviter stored and sent PAIR_DONE; it never arrives.  The accepter
    reports PAIR_OUTCOME_UNKNOWN and never PAIRED, so its application has nothing to store."""
    a, i = machines()
    i.start(T0)
    i.receive_data(a.start(T0), T0)
    a.receive_data(i.data_to_send(), T0)
    i.receive_data(a.data_to_send(), T0)
    a.receive_data(i.data_to_send(), T0)
    i.receive_data(a.data_to_send(), T0)  # the inviter: PAIRED, PAIR_DONE queued ...
    assert i.state is State.PAIRED and isinstance(i.next_event(), Paired)
    i.data_to_send()  # ... and lost
    assert a.state is State.WAIT_DONE
    if how == "timeout":
        timer = a.get_timer()
        assert timer is not None
        a.handle_timer(timer)
        (err,) = a.frames_to_send()
        assert parse_error_body(err.body)[0] == ErrorCode.TIMEOUT
    else:
        a.receive_data(b"", T0)
    events = list(iter(a.next_event, None))
    assert [type(e) for e in events] == [PairingFailed]
    assert isinstance(events[0], PairingFailed)
    assert events[0].code is ErrorCode.PAIR_OUTCOME_UNKNOWN and a.state is State.FAILED
