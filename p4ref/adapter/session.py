"""Reference-adapter ops for the session layer (p4-04 §13); pure.

Ops: ``session.decode`` (one session frame, schema only), ``session.verify_hello`` (the
SES_HELLO checks of §7.3 in order), ``session.sign_auth`` and ``session.verify_auth`` (the
transcript signature of §7.2).

Machine (``MACHINE = "session"``, §13.2): :func:`new` / :func:`step`; its ``recv`` and ``send``
items carry the connection id ``conn`` (conformance/README.md §3.4).
"""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from ..errors import DecodeError, ErrorCode, LocalProtocolError
from ..framing import Frame, FrameType, Path, decode_frame, encode_frame
from ..session import _codec as codec
from ..session._events import (
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
from ..session._machine import SessionConfig, SessionMachine, SessionState
from ._jsonargs import Json, ListRng, Op, run_listed_op
from ._jsonargs import hex_arg as _hex
from ._jsonargs import int_arg as _int
from ._jsonargs import str_arg as _str

__all__ = ["MACHINE", "event_json", "new", "run_op", "step", "vectors_ops"]

MACHINE = "session"
CONFIG_KEYS = frozenset({"identity_seed", "peer_pub", "state", "dc_window", "tor_window",
                         "max_outbox"})
STATE_KEYS = frozenset({"inc", "tx", "acked", "outbox", "peer_inc", "rx", "retired",
                        "generation"})

_TYPES = {
    FrameType.SES_HELLO, FrameType.SES_AUTH, FrameType.SES_MSG, FrameType.SES_ACK,
    FrameType.SES_END, FrameType.SES_SIGNAL,
}


def _path(inp: Json) -> Path:
    value = _str(inp, "path") if "path" in inp else "datachannel"
    try:
        return Path(value)
    except ValueError:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"path {value!r}") from None


def _session_frame(data: bytes, path: Path, want: FrameType | None = None) -> Frame:
    frame = decode_frame(data, path)  # p4-01 §5.1, in its check order
    if frame.ignorable or frame.type not in _TYPES or (want is not None and frame.type != want):
        raise DecodeError(ErrorCode.UNEXPECTED_MESSAGE, f"type 0x{frame.type:02x} here")
    return frame


def hello_json(h: codec.Hello) -> Json:
    return {k: (v.hex() if isinstance(v, bytes) else v)
            for k in h.__slots__ for v in (getattr(h, k),)}


def _decode(params: Json, inp: Json) -> Json:
    """{frame, path?} -> {type, fields}: framing, then the body schema of §6."""
    frame = _session_frame(_hex(inp, "frame"), _path(inp))
    ftype = FrameType(frame.type)
    out: dict[str, Any] = {}
    if ftype is FrameType.SES_HELLO:
        out.update(hello_json(codec.decode_hello(frame)))
    elif ftype is FrameType.SES_AUTH:
        out["signature"] = codec.decode_auth(frame).hex()
    elif ftype is FrameType.SES_MSG:
        seq, payload = codec.decode_msg(frame)
        out.update(seq=seq, payload=payload.hex())
    elif ftype is FrameType.SES_ACK:
        out["ack"] = codec.decode_ack(frame)
    elif ftype is FrameType.SES_END:
        out["last"] = codec.decode_end(frame)
    else:
        out["frame"] = codec.decode_signal(frame).hex()
    return {"type": ftype.name, "fields": out}


def _verify_hello(params: Json, inp: Json) -> Json:
    """{frame, my_pub, peer_pub, generation, path?, binding_local, binding_remote} -> the HELLO's
    fields; §7.3 checks 1, 2, 4, 5, 6 in order."""
    frame = _session_frame(_hex(inp, "frame"), _path(inp), FrameType.SES_HELLO)
    h = codec.decode_hello(frame)
    if h.sender_pub != _hex(inp, "peer_pub") or h.recipient_pub != _hex(inp, "my_pub"):
        raise DecodeError(ErrorCode.SES_WRONG_PEER, "HELLO names other keys")
    if h.generation != _int(inp, "generation"):
        raise DecodeError(ErrorCode.SES_WRONG_GENERATION, f"generation {h.generation}")
    if h.binding_sender != _hex(inp, "binding_remote") or \
            h.binding_receiver != _hex(inp, "binding_local"):
        raise DecodeError(ErrorCode.SES_BINDING_MISMATCH, "channel bindings differ")
    return {"hello": hello_json(h)}


def _transcript(inp: Json, my_pub: bytes, peer_pub: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """``(low_pub, high_pub, hello_low_body, hello_high_body)`` from the two HELLO frames."""
    mine = _session_frame(_hex(inp, "hello_mine"), _path(inp), FrameType.SES_HELLO).body
    theirs = _session_frame(_hex(inp, "hello_peer"), _path(inp), FrameType.SES_HELLO).body
    if len(my_pub) != 32 or len(peer_pub) != 32 or my_pub == peer_pub:
        raise LocalProtocolError(ErrorCode.IDENTITY_KEY_INVALID, "two distinct 32-byte keys")
    if my_pub < peer_pub:
        return my_pub, peer_pub, mine, theirs
    return peer_pub, my_pub, theirs, mine


def _sign_auth(params: Json, inp: Json) -> Json:
    """{identity_seed, peer_pub, hello_mine, hello_peer, path?} -> {signature_input, frame}."""
    seed = _hex(inp, "identity_seed")
    if len(seed) != 32:
        raise LocalProtocolError(ErrorCode.IDENTITY_KEY_INVALID, "identity_seed is 32 bytes")
    key = SigningKey(seed)
    my_pub = bytes(key.verify_key)
    low, high, hl, hh = _transcript(inp, my_pub, _hex(inp, "peer_pub"))
    sig = codec.sign_auth(key, low, high, hl, hh)
    return {
        "signature_input": codec.auth_input(my_pub, low, high, hl, hh).hex(),
        "frame": encode_frame(codec.encode_auth(sig), _path(inp)).hex(),
    }


def _verify_auth(params: Json, inp: Json) -> Json:
    """{frame, my_pub, peer_pub, hello_mine, hello_peer, path?} -> {}: §7.3 check 7."""
    frame = _session_frame(_hex(inp, "frame"), _path(inp), FrameType.SES_AUTH)
    sig = codec.decode_auth(frame)
    peer_pub = _hex(inp, "peer_pub")
    low, high, hl, hh = _transcript(inp, _hex(inp, "my_pub"), peer_pub)
    codec.verify_auth(sig, peer_pub, low, high, hl, hh)
    return {}


def vectors_ops() -> dict[str, Op]:
    return {
        "session.decode": _decode,
        "session.verify_hello": _verify_hello,
        "session.sign_auth": _sign_auth,
        "session.verify_auth": _verify_auth,
    }


def run_op(op: str, params: Json, inp: Json) -> Json:
    """Helper for tests and the vector builder: ``{"value": …}`` or ``{"error": NAME}``."""
    return run_listed_op(vectors_ops(), op, params, inp)


# ------------------------------------------------------------------------------ the machine


def _state(raw: object) -> SessionState:
    if not isinstance(raw, dict) or set(raw) - STATE_KEYS or "inc" not in raw:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "state: an object with inc, …")
    outbox: dict[int, bytes] = {}
    for item in raw.get("outbox", []):
        if not isinstance(item, list) or len(item) != 2:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "outbox: [[seq, hex]]")
        outbox[_int({"seq": item[0]}, "seq")] = _hex({"p": item[1]}, "p")
    retired = raw.get("retired", [])
    if not isinstance(retired, list):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "retired: [hex]")
    return SessionState(
        inc=_hex(raw, "inc"), tx=_int(raw, "tx", 0), acked=_int(raw, "acked", 0), outbox=outbox,
        peer_inc=_hex(raw, "peer_inc") if "peer_inc" in raw else codec.NO_INC,
        rx=_int(raw, "rx", 0), retired=tuple(_hex({"r": r}, "r") for r in retired),
        generation=_int(raw, "generation", 0),
    )


def new(role: str, config: Json, rng: list[bytes]) -> SessionMachine:
    """``machine.new`` for machine ``session`` (role ``peer``, or ``low`` / ``high`` in two-party
    vectors, which the keys must confirm), §13.2."""
    if role not in ("peer", "low", "high"):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"role {role!r}")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown config {sorted(unknown)}")
    defaults = SessionConfig()
    cfg = SessionConfig(
        dc_window=_int(config, "dc_window", defaults.dc_window),
        tor_window=_int(config, "tor_window", defaults.tor_window),
        max_outbox=_int(config, "max_outbox", defaults.max_outbox),
    )
    state = _state(config["state"]) if "state" in config else None
    m = SessionMachine(_hex(config, "identity_seed"), _hex(config, "peer_pub"),
                       rng=ListRng(rng), state=state, config=cfg)
    if role != "peer" and m.is_low != (role == "low"):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"the keys make this peer not {role}")
    return m


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04x}"


def event_json(ev: Event) -> Json:
    """An event as §13.2's event table writes it."""
    out: Json = {"event": ev.name}
    if isinstance(ev, ConnectionOpen):
        out.update(conn=ev.conn, generation=ev.generation, active=ev.active)
    elif isinstance(ev, ConnectionClosed):
        out.update(conn=ev.conn)
    elif isinstance(ev, ConnectionFailed):
        out.update(conn=ev.conn, code=_code_name(ev.code), by_peer=ev.by_peer)
    elif isinstance(ev, MessageReceived):
        out.update(inc=ev.inc.hex(), seq=ev.seq, payload=ev.payload.hex())
    elif isinstance(ev, Acked):
        out.update(through=ev.through)
    elif isinstance(ev, SignalReceived):
        out.update(conn=ev.conn, frame=ev.frame.hex())
    elif isinstance(ev, ReconnectNeeded):
        out.update(cause=ev.cause)
    elif isinstance(ev, Status):
        out.update(status=ev.status)
    else:
        assert isinstance(ev, SessionReset)
        out.update(kind=ev.kind, lost_in=list(ev.lost_in) if ev.lost_in else None,
                   lost_out=list(ev.lost_out) if ev.lost_out else None,
                   renumbered=ev.renumbered)
    return out


def step(m: SessionMachine, now_ms: int, inp: Json) -> Json:
    """One step (§13.2); a refused command raises (the step request answers ``error``)."""
    if "recv" in inp:
        m.receive_data(_int(inp, "conn"), _hex(inp, "recv"), now_ms)
    elif inp.get("tick") is True:
        m.handle_timer(now_ms)
    else:
        cmd = inp.get("cmd")
        if cmd == "open":
            m.open(_int(inp, "conn"), _int(inp, "generation"), _path(inp),
                   _hex(inp, "binding_local"), _hex(inp, "binding_remote"), now_ms)
        elif cmd == "send":
            m.send(_hex(inp, "payload"), now_ms)
        elif cmd == "inbox_committed":
            m.inbox_committed(_int(inp, "through"), now_ms)
        elif cmd == "send_signal":
            m.send_signal(_hex(inp, "frame"), now_ms)
        elif cmd == "probe":
            m.probe(now_ms)
        elif cmd == "network_changed":
            m.network_changed(now_ms)
        elif cmd == "give_up":
            m.give_up(now_ms)
        else:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown step {inp!r}")
    out: list[Json] = [{"send": d.hex(), "conn": c} for c, d in m.data_to_send()]
    failed: list[int] = []
    while (ev := m.next_event()) is not None:
        out.append(event_json(ev))
        if isinstance(ev, ConnectionFailed):
            failed.append(ev.code)
    out.extend({"error": _code_name(code)} for code in failed)
    return {"out": out, "state": m.state_string()}
