"""Reference-adapter ops and machine for file transfer (spec/p4-06-files-v1.md §14); pure.

Ops: ``files.encode``, ``files.decode``, ``files.check_name``, ``files.block_hashes``,
``files.root``.  Machine (``MACHINE = "files"``, roles ``sender`` and ``receiver``, §14.2):
:func:`new` / :func:`step`; a ``send`` item is one record, a ``recv`` item bytes of the peer's
direction of the channel.
"""

from __future__ import annotations

from typing import Any

from ..errors import ErrorCode, LocalProtocolError
from ..files import _codec as codec
from ..files._events import (
    Accepted,
    BlockVerified,
    Event,
    FileFailed,
    OfferReceived,
    ReadBlock,
    Refused,
    Write,
)
from ..files._machine import FileReceiver, FileSender
from ._jsonargs import Json, Op, run_listed_op
from ._jsonargs import hex_arg as _hex
from ._jsonargs import int_arg as _int
from ._jsonargs import str_arg as _str

__all__ = ["MACHINE", "event_json", "new", "record_json", "run_op", "step", "vectors_ops"]

MACHINE = "files"
SENDER_KEYS = ("name", "size", "block_size", "root")
RECEIVER_KEYS = ("max_size",)


def code_name(code: int) -> str:
    """A registry name, or ``0x`` and four hex digits for a value it does not name (§10)."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04x}"


def _code_value(value: Any, what: str) -> int:
    if isinstance(value, str):
        if value in ErrorCode.__members__:
            return int(ErrorCode[value])
        if len(value) == 6 and value.startswith("0x"):
            try:
                return int(value[2:], 16)
            except ValueError:
                pass
    raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{what}: not a registry code name")


def record_json(record: codec.Record) -> Json:
    """The object form of a record (§14.1)."""
    out: Json = {"type": codec._TYPE_OF[type(record)].name}
    if isinstance(record, codec.Offer):
        out.update(name=record.name, size=record.size, block_size=record.block_size,
                   root=record.root.hex())
    elif isinstance(record, codec.Accept):
        out["offset"] = record.offset
    elif isinstance(record, codec.Refuse | codec.Cancel):
        out["code"] = code_name(record.code)
    elif isinstance(record, codec.Hashes):
        out.update(first=record.first, hashes=[h.hex() for h in record.hashes])
    elif isinstance(record, codec.Data):
        out["data"] = record.data.hex()
    return out


_FIELDS: dict[str, tuple[str, ...]] = {
    "FILE_OFFER": ("name", "size", "block_size", "root"), "FILE_ACCEPT": ("offset",),
    "FILE_REFUSE": ("code",), "FILE_HASHES": ("first", "hashes"), "FILE_DATA": ("data",),
    "FILE_COMPLETE": (), "FILE_CANCEL": ("code",),
}


def record_from_json(obj: Any) -> codec.Record:
    if not isinstance(obj, dict) or obj.get("type") not in _FIELDS:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "record: an object with a type")
    rtype = str(obj["type"])
    if set(obj) != {"type", *_FIELDS[rtype]}:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{rtype}: fields {sorted(obj)}")
    if rtype == "FILE_OFFER":
        return codec.Offer(_str(obj, "name"), _int(obj, "size"), _int(obj, "block_size"),
                           _hex(obj, "root"))
    if rtype == "FILE_ACCEPT":
        return codec.Accept(_int(obj, "offset"))
    if rtype == "FILE_REFUSE":
        return codec.Refuse(_code_value(obj["code"], "code"))
    if rtype == "FILE_CANCEL":
        return codec.Cancel(_code_value(obj["code"], "code"))
    if rtype == "FILE_HASHES":
        items = obj["hashes"]
        if not isinstance(items, list):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "hashes: a list of hex")
        return codec.Hashes(_int(obj, "first"), tuple(_hex({"h": h}, "h") for h in items))
    if rtype == "FILE_DATA":
        return codec.Data(_hex(obj, "data"))
    return codec.Complete()


def _encode(params: Json, inp: Json) -> Json:
    return {"record": codec.encode_record(record_from_json(inp.get("record"))).hex()}


def _decode(params: Json, inp: Json) -> Json:
    return {"record": record_json(codec.decode_record(_hex(inp, "record")))}


def _check_name(params: Json, inp: Json) -> Json:
    name = _str(inp, "name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(ErrorCode.FILE_NAME_INVALID, "not UTF-8") from None
    codec.check_name(name)
    return {}


def _block_size(inp: Json) -> int:
    bs = _int(inp, "block_size")
    if not codec.MIN_BLOCK_SIZE <= bs <= codec.MAX_BLOCK_SIZE or bs & (bs - 1):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"block_size {bs}")
    return bs


def _block_hashes(params: Json, inp: Json) -> Json:
    data, bs = _hex(inp, "data"), _block_size(inp)
    return {"leaves": [h.hex() for h in codec.leaf_hashes(data, bs)]}


def _root(params: Json, inp: Json) -> Json:
    data, bs = _hex(inp, "data"), _block_size(inp)
    root, chains = codec.root_of(len(data), bs, codec.leaf_hashes(data, bs))
    return {"root": root.hex(), "chains": [c.hex() for c in chains]}


def vectors_ops() -> dict[str, Op]:
    return {
        "files.encode": _encode,
        "files.decode": _decode,
        "files.check_name": _check_name,
        "files.block_hashes": _block_hashes,
        "files.root": _root,
    }


def run_op(op: str, params: Json, inp: Json) -> Json:
    """Helper for tests and the vector builder: ``{"value": …}`` or ``{"error": NAME}``."""
    return run_listed_op(vectors_ops(), op, params, inp)


# ------------------------------------------------------------------------------ the machine

Machine = FileSender | FileReceiver


def _u63(config: Json, key: str, default: int | None = None) -> int:
    value = _int(config, key, default)
    if not 0 <= value <= codec.MAX_SIZE:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{key} out of range")
    return value


def new(role: str, config: Json, rng: list[bytes]) -> Machine:
    """``machine.new`` for machine ``files`` (§14.2), refusing a bad config in FIL-44's order."""
    del rng  # the machines draw nothing
    if role not in ("sender", "receiver"):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"role {role!r}")
    keys = SENDER_KEYS if role == "sender" else RECEIVER_KEYS
    unknown = set(config) - set(keys)
    if unknown:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown config {sorted(unknown)}")
    if role == "receiver":
        return FileReceiver(_u63(config, "max_size", codec.MAX_SIZE))
    missing = [k for k in SENDER_KEYS if k not in config]
    if missing:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"missing config {missing}")
    name = _str(config, "name")
    size, bs, root = _u63(config, "size"), _int(config, "block_size"), _hex(config, "root")
    if not codec.MIN_BLOCK_SIZE <= bs <= codec.MAX_BLOCK_SIZE or bs & (bs - 1) or \
            len(root) != codec.HASH_LEN:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "block_size or root")
    try:  # FIL-44: the name is checked last
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(ErrorCode.FILE_NAME_INVALID, "name is not UTF-8") from None
    return FileSender(name, size, bs, root)


def event_json(ev: Event) -> Json:
    """An event as §14.2's event table writes it."""
    out: Json = {"event": ev.name}
    if isinstance(ev, Accepted):
        out["offset"] = ev.offset
    elif isinstance(ev, ReadBlock):
        out.update(index=ev.index, offset=ev.offset, length=ev.length)
    elif isinstance(ev, Refused):
        out["code"] = code_name(ev.code)
    elif isinstance(ev, FileFailed):
        out.update(code=code_name(ev.code), by_peer=ev.by_peer)
    elif isinstance(ev, OfferReceived):
        out.update(name=ev.file_name, size=ev.size, block_size=ev.block_size,
                   root=ev.root.hex())
    elif isinstance(ev, Write):
        out.update(offset=ev.offset, data=ev.data.hex())
    elif isinstance(ev, BlockVerified):
        out.update(index=ev.index, verified=ev.verified, chain=ev.chain.hex())
    return out


_ARGS: dict[str, frozenset[str]] = {
    "start": frozenset(), "block": frozenset({"index", "data", "hash"}),
    "read_failed": frozenset({"code"}), "accept": frozenset({"offset", "chain"}),
    "refuse": frozenset({"code"}), "write_failed": frozenset({"code"}),
    "finish": frozenset(), "cancel": frozenset(),
}
_SENDER_CMDS = frozenset({"start", "block", "read_failed", "cancel"})
_RECEIVER_CMDS = frozenset({"accept", "refuse", "write_failed", "finish", "cancel"})


def _command(m: Machine, inp: Json) -> None:
    cmd = inp.get("cmd")
    if not isinstance(cmd, str) or cmd not in _ARGS:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown command {inp!r}")
    ours = _SENDER_CMDS if isinstance(m, FileSender) else _RECEIVER_CMDS
    if cmd not in ours or not any((m.state, f"{cmd}{v}") in m.TABLE
                                  for v in ("", " (last)", " (offset = size)")):
        # §14.2: the state is checked before the arguments
        raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, f"{cmd} in state {m.state}")
    if set(inp) - {"cmd"} - _ARGS[cmd]:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown argument in {inp!r}")
    code = _code_value(inp["code"], "code") if "code" in inp else None
    if isinstance(m, FileSender):
        if cmd == "start":
            m.start()
        elif cmd == "block":
            m.block(_int(inp, "index"), _hex(inp, "data"), _hex(inp, "hash"))
        elif cmd == "read_failed":
            m.read_failed(ErrorCode.FILE_IO_ERROR if code is None else code)
        else:
            m.cancel()
        return
    if cmd == "accept":
        m.accept(_int(inp, "offset"), _hex(inp, "chain") if "chain" in inp else None)
    elif cmd == "refuse":
        m.refuse(ErrorCode.FILE_REFUSED if code is None else code)
    elif cmd == "write_failed":
        m.write_failed(ErrorCode.FILE_IO_ERROR if code is None else code)
    elif cmd == "finish":
        m.finish()
    else:
        m.cancel()


def step(m: Machine, now_ms: int, inp: Json) -> Json:
    """One step (§14.2); a refused command raises (the step request answers ``error``)."""
    del now_ms  # no timers (§9.6)
    if "recv" in inp:
        m.receive_data(_hex(inp, "recv"))
    elif inp.get("tick") is True:
        pass
    else:
        _command(m, inp)
    out: list[Json] = [{"send": r.hex()} for r in m.data_to_send()]
    failed: list[int] = []
    while (ev := m.next_event()) is not None:
        out.append(event_json(ev))
        if isinstance(ev, FileFailed):
            failed.append(ev.code)
    out.extend({"error": code_name(code)} for code in failed)
    return {"out": out, "state": str(m.state)}

