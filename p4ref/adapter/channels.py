"""Reference-adapter ops for the channels layer (p4-05 §13); pure.

Ops: ``channels.decode_item`` and ``channels.encode_item`` (one item, §5).

Machine (``MACHINE = "channels"``, roles ``low`` / ``high``, §13.2): the step stream is the
session stream that carries the items: one p4-04 SES_MSG frame per item, its Seq counting the
items this machine sent (a received Seq is not checked: the session below did that).  Commands
are :class:`~p4ref.channels.ChannelMux`'s calls, plus ``restart``: rebuild the multiplexer from
its persisted state, as after a crash.
"""

from __future__ import annotations

from typing import Any

from ..channels import (
    ChannelConfig,
    ChannelData,
    ChannelEvent,
    ChannelHalfClosed,
    ChannelMux,
    ChannelOpened,
    ChannelReset,
    Close,
    Credit,
    CreditGranted,
    Data,
    Item,
    Open,
    Reset,
    decode_item,
    encode_item,
)
from ..errors import DecodeError, ErrorCode, LocalProtocolError, RemoteProtocolError
from ._jsonargs import Json, Op, run_listed_op
from ._jsonargs import hex_arg as _hex
from ._jsonargs import int_arg as _int
from ._jsonargs import str_arg as _str

__all__ = ["MACHINE", "ChannelsHarness", "event_json", "item_json", "new", "record", "run_op",
           "step", "vectors_ops"]

MACHINE = "channels"
CONFIG_KEYS = frozenset({"window", "max_channels"})
_U64 = (1 << 64) - 1


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04x}"


#: SES_MSG header: Version 1, Type 0x33, Flags 0 (p4-01 §4, p4-04 §6.4); then Length (16).
SES_MSG_HEAD = bytes([1, 0x33, 0])
SEQ_LEN = 8
MAX_BODY = 16384


def record(item: bytes, seq: int) -> bytes:
    """The SES_MSG frame that carries ``item`` as the ``seq``-th message (§13.2)."""
    body = seq.to_bytes(SEQ_LEN, "big") + item
    return SES_MSG_HEAD + len(body).to_bytes(2, "big") + body


# ------------------------------------------------------------------------------ codec ops


def item_json(item: Item) -> Json:
    """``{type, fields}`` as ``channels.decode_item`` answers (§13.1)."""
    if isinstance(item, Open):
        return {"type": "OPEN", "fields": {"chan": item.chan, "name": item.name}}
    if isinstance(item, Data):
        return {"type": "DATA", "fields": {"chan": item.chan, "offset": item.offset,
                                           "end_of_message": item.end_of_message,
                                           "data": item.data.hex()}}
    if isinstance(item, Credit):
        return {"type": "CREDIT", "fields": {"chan": item.chan, "limit": item.limit}}
    if isinstance(item, Close):
        return {"type": "CLOSE", "fields": {"chan": item.chan, "final": item.final}}
    return {"type": "RESET", "fields": {"chan": item.chan, "code": item.code}}


_FIELDS = {"OPEN": ("chan", "name"), "DATA": ("chan", "offset", "end_of_message", "data"),
           "CREDIT": ("chan", "limit"), "CLOSE": ("chan", "final"), "RESET": ("chan", "code")}


def _decode(params: Json, inp: Json) -> Json:
    return item_json(decode_item(_hex(inp, "item")))


def _u64(fields: Json, key: str) -> int:
    value = _int(fields, key)
    if not 0 <= value <= _U64:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{key} is 0 … 2^64-1")
    return value


def _encode(params: Json, inp: Json) -> Json:
    kind, fields = _str(inp, "type"), inp.get("fields")
    if kind not in _FIELDS or not isinstance(fields, dict) or set(fields) != set(_FIELDS[kind]):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"type {kind!r} with {fields!r}")
    item: Item
    if kind == "OPEN":
        item = Open(_u64(fields, "chan"), _str(fields, "name"))
    elif kind == "DATA":
        eom = fields["end_of_message"]
        if not isinstance(eom, bool):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "end_of_message is a bool")
        item = Data(_u64(fields, "chan"), _u64(fields, "offset"), _hex(fields, "data"), eom)
    elif kind == "CREDIT":
        item = Credit(_u64(fields, "chan"), _u64(fields, "limit"))
    elif kind == "CLOSE":
        item = Close(_u64(fields, "chan"), _u64(fields, "final"))
    else:
        item = Reset(_u64(fields, "chan"), _int(fields, "code"))
    return {"item": encode_item(item).hex()}


def vectors_ops() -> dict[str, Op]:
    return {"channels.decode_item": _decode, "channels.encode_item": _encode}


def run_op(op: str, params: Json, inp: Json) -> Json:
    """Helper for tests and the vector builder: ``{"value": …}`` or ``{"error": NAME}``."""
    return run_listed_op(vectors_ops(), op, params, inp)


# ------------------------------------------------------------------------------ the machine


class ChannelsHarness:
    """One ``channels`` machine of the vectors: a ChannelMux, the record reader of its
    stream, and the store of its persisted state (always the latest, CHN-2, CHN-41)."""

    def __init__(self, low: bool, config: ChannelConfig) -> None:
        self.low, self.config = low, config
        self.mux = ChannelMux(low=low, config=config)
        self.buf = bytearray()
        self.seq = 0  # items sent: the session's numbering, which a restart does not reset

    def restart(self) -> None:
        self.mux = ChannelMux(low=self.low, config=self.config,
                              state=self.mux.persistent_state())
        self.buf.clear()


def new(role: str, config: Json, rng: list[bytes]) -> ChannelsHarness:
    """``machine.new`` for machine ``channels`` (roles ``low``, ``high``), §13.2."""
    if role not in ("low", "high"):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"role {role!r}")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown config {sorted(unknown)}")
    defaults = ChannelConfig()
    cfg = ChannelConfig(window=_int(config, "window", defaults.window),
                        max_channels=_int(config, "max_channels", defaults.max_channels))
    return ChannelsHarness(role == "low", cfg)


def event_json(ev: ChannelEvent) -> Json:
    out: Json = {"event": ev.kind}
    if isinstance(ev, ChannelOpened):
        out.update(chan=ev.chan, name=ev.name)
    elif isinstance(ev, ChannelData):
        out.update(chan=ev.chan, offset=ev.offset, data=ev.data.hex(),
                   end_of_message=ev.end_of_message)
    elif isinstance(ev, ChannelHalfClosed):
        out.update(chan=ev.chan, final=ev.final)
    elif isinstance(ev, ChannelReset):
        out.update(chan=ev.chan, code=ev.code, by_peer=ev.by_peer)
    elif isinstance(ev, CreditGranted):
        out.update(chan=ev.chan, credit=ev.credit, limit=ev.limit)
    else:
        out.update(code=code_name(ev.code))
    return out


def _bool(inp: Json, key: str) -> bool:
    value = inp.get(key)
    if not isinstance(value, bool):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{key} must be a bool")
    return value


def _receive(h: ChannelsHarness, data: bytes) -> tuple[list[bytes], list[Json], list[str]]:
    sends: list[bytes] = []
    events: list[Json] = []
    errors: list[str] = []
    if h.mux.failed is not None:
        return sends, events, errors  # nothing after the failure is read [CHN-40]
    h.buf += data
    while len(h.buf) >= 5:
        n = int.from_bytes(h.buf[3:5], "big")
        try:
            if h.buf[:3] != SES_MSG_HEAD or not SEQ_LEN < n <= MAX_BODY:
                raise DecodeError(ErrorCode.MESSAGE_INVALID, "not a SES_MSG carrying an item")
            if len(h.buf) < 5 + n:
                break
            item = bytes(h.buf[5 + SEQ_LEN : 5 + n])
            del h.buf[: 5 + n]
            evs = h.mux.receive(item)
        except RemoteProtocolError as exc:
            h.mux.failed = exc.code  # a frame no session would deliver: a broken stream too
            h.buf.clear()
            events.append({"event": "CHANNELS_FAILED", "code": exc.code.name})
            errors.append(exc.code.name)
            break
        sends += h.mux.items_to_send()
        events += [event_json(ev) for ev in evs]  # a reset channel is no failure (§13.2)
    return sends, events, errors


def step(h: ChannelsHarness, now_ms: int, inp: Json) -> Json:
    """One step (§13.2); a refused command raises (the step request answers ``error``)."""
    del now_ms  # the channels layer has no timers
    sends: list[bytes] = []
    events: list[Json] = []
    errors: list[str] = []
    m = h.mux
    if "recv" in inp:
        sends, events, errors = _receive(h, _hex(inp, "recv"))
    elif inp.get("tick") is True:
        pass
    else:
        cmd = inp.get("cmd")
        if cmd == "open":
            sends = m.open(_str(inp, "name"))[1]
        elif cmd == "write":
            sends = m.write(_int(inp, "chan"), _hex(inp, "data"),
                            end_of_message=_bool(inp, "end_of_message"))
        elif cmd == "close":
            sends = m.close(_int(inp, "chan"))
        elif cmd == "reset":
            sends = m.reset(_int(inp, "chan"), _int(inp, "code"))
        elif cmd == "consumed":
            sends = m.consumed(_int(inp, "chan"), _int(inp, "nbytes"))
        elif cmd == "resync":
            sends = m.resync()
        elif cmd == "restart":
            h.restart()
        else:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown step {inp!r}")
    out: list[Any] = []
    for item in sends:
        h.seq += 1
        out.append({"send": record(item, h.seq).hex()})
    out += events
    out += [{"error": e} for e in errors[-1:]]
    return {"out": out, "state": h.mux.state_string()}
