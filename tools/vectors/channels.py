"""Channel vectors (spec/p4-05-channels-v1.md §13): item codec, and transcripts of the
``channels`` machine: open, data, fragmentation and reassembly, credit stall and release (credit
only on ``consumed``), half-close both ways, reset, duplicates and old offsets after a restart,
resync, refused OPENs and commands, a broken item stream, and every error code.

Peer items are built with the reference codec; expected outputs come from the reference adapter
(``p4ref.adapter.channels``).  The machine draws no randomness and has no timers.
"""

from __future__ import annotations

from typing import Any

from p4ref.adapter import channels as adapter
from p4ref.channels import MAX_DATA, Close, Credit, Data, Item, Open, Reset, encode_item
from p4ref.errors import ErrorCode, P4Error
from p4ref.framing import encode_cbor

from ._envelope import Json, envelope, group, test

SPEC, REVISION = "p4-05-channels-v1", 2
W = 16384  # INITIAL_WINDOW, and the window most vectors configure

NOTES: dict[str, Json] = {
    "CREDIT": {"bugType": "MISSING_CHECK",
               "description": "Credit flow control: a write or DATA beyond the limit, or credit "
                              "released at the wrong moment (only the application's consumption "
                              "releases it)."},
    "DEDUPE": {"bugType": "EDGE_CASE",
               "description": "Items delivered again after a restart: bytes are trimmed or "
                              "dropped by offset, never delivered twice."},
    "ORDER": {"bugType": "EDGE_CASE", "description": "Several rules broken: the check order."},
    "SCHEMA": {"bugType": "MISSING_CHECK", "description": "Missing, unknown or mistyped key."},
    "NON_CANONICAL": {"bugType": "MALLEABILITY",
                      "description": "A body that is not deterministic CBOR."},
    "NAME": {"bugType": "MISSING_CHECK", "description": "A channel name outside the rules."},
    "IDS": {"bugType": "MISSING_CHECK", "description": "A channel id the peer may not use."},
    "SPLIT": {"bugType": "EDGE_CASE",
              "description": "SES_MSG frames split across recv steps."},
    "FINAL": {"bugType": "MISSING_CHECK",
              "description": "Data beyond, or a CLOSE inconsistent with, the final offset."},
}

T = {
    "one": "CHN-1", "confirm": "CHN-3", "report": "CHN-4", "write": "CHN-5", "types": "CHN-6",
    "schema": "CHN-7", "name": "CHN-8", "dupname": "CHN-9", "badname": "CHN-10",
    "data": "CHN-11", "datarej": "CHN-12", "order": "CHN-13", "enc": "CHN-14",
    "ids": "CHN-15", "route": "CHN-16", "late": "CHN-17", "open": "CHN-18", "many": "CHN-19",
    "opened": "CHN-20", "forget": "CHN-21", "offsets": "CHN-22", "checks": "CHN-23",
    "deliver": "CHN-24", "cumulative": "CHN-25", "credit": "CHN-26", "nobeyond": "CHN-27",
    "release": "CHN-28", "threshold": "CHN-29", "initial": "CHN-30", "consume": "CHN-31",
    "frag": "CHN-32", "close": "CHN-33", "peerclose": "CHN-34", "reset": "CHN-35",
    "resetfwd": "CHN-36", "violation": "CHN-37", "table": "CHN-38", "localcodes": "CHN-39",
    "broken": "CHN-40", "stored": "CHN-41", "resync": "CHN-42", "repeatclose": "CHN-45",
    "sessionreset": "CHN-46",
}


def _tags(names: list[str]) -> list[str]:
    return [T[n] for n in names]


def raw_open(chan: int, name: str) -> bytes:
    """An OPEN whose name the encoder would refuse (CHN-14): what a broken peer sends."""
    return b"\x01" + encode_cbor({1: chan, 2: name})


def rec(item: Item | bytes, seq: int) -> bytes:
    """The SES_MSG frame carrying ``item`` as message ``seq`` of the vector stream (§13.2)."""
    raw = item if isinstance(item, bytes) else encode_item(item)
    return adapter.record(raw, seq)


# ------------------------------------------------------------------------------ codec ops


def _op(op: str, inp: Json) -> Json:
    return adapter.run_op(op, {}, inp)


def _decode_tests() -> list[Json]:
    out: list[Json] = []

    def ok(ident: str, comment: str, raw: bytes, tags: list[str]) -> None:
        res = _op("channels.decode_item", {"item": raw.hex()})
        assert "value" in res, (ident, res)
        out.append(test(ident, comment, _tags(tags), {"item": raw.hex()}, value=res["value"]))

    def bad(ident: str, comment: str, raw: bytes, error: str, tags: list[str],
            flags: list[str] | None = None) -> None:
        res = _op("channels.decode_item", {"item": raw.hex()})
        assert res.get("error") == error, (ident, res)
        out.append(test(ident, comment, _tags(tags), {"item": raw.hex()}, valid=False,
                        error=error, flags=flags))

    ok("chn-dec-open", "OPEN {1: 0, 2: \"chat\"}", encode_item(Open(0, "chat")), ["types"])
    ok("chn-dec-open-any-name", "names are not checked by the decoder (§5.5): a space is "
       "decoded", bytes.fromhex("01a2010102636120") + b"b", ["order"])
    ok("chn-dec-data-eom", "DATA with END_OF_MESSAGE", encode_item(Data(1, 0, b"hello", True)),
       ["data"])
    ok("chn-dec-data-max", "DATA with MAX_DATA bytes at a large offset",
       encode_item(Data(2**62 - 1, 2**60, b"\x5a" * MAX_DATA, False)), ["data"])
    ok("chn-dec-credit-max", "CREDIT with limit 2^64 - 1", encode_item(Credit(3, 2**64 - 1)),
       ["cumulative"])
    ok("chn-dec-close", "CLOSE {1: 4, 2: 0}", encode_item(Close(4, 0)), ["types"])
    ok("chn-dec-reset", "RESET with code 65535", encode_item(Reset(5, 0xFFFF)), ["types"])

    bad("chn-dec-empty", "an empty item", b"", "MESSAGE_INVALID", ["order"])
    bad("chn-dec-too-long", "16372 bytes: longer than MAX_ITEM", encode_item(
        Data(0, 0, b"\x00" * MAX_DATA, False)) + b"\x00", "MESSAGE_INVALID", ["order"])
    bad("chn-dec-too-long-before-cbor", "17000 bytes of a CBOR item: the size is checked first",
        b"\x01\xa1" + b"\x00" * 16998, "MESSAGE_INVALID", ["order"], ["ORDER"])
    bad("chn-dec-type-0", "type 0x00 is unassigned", bytes.fromhex("00a0"), "MESSAGE_INVALID",
        ["types"])
    bad("chn-dec-type-6", "type 0x06 is unassigned", bytes.fromhex("06a20100020a"),
        "MESSAGE_INVALID", ["types"])
    bad("chn-dec-type-ff-bad-cbor", "an unassigned type with a broken body: the type is "
        "checked first", bytes.fromhex("ffa2020001"), "MESSAGE_INVALID", ["order"], ["ORDER"])
    bad("chn-dec-data-no-data", "DATA without data", encode_item(Data(0, 0, b"a", False))[:-1],
        "MESSAGE_INVALID", ["data", "datarej"])
    bad("chn-dec-data-short-header", "DATA cut inside its header", bytes.fromhex("0201000000"),
        "MESSAGE_INVALID", ["datarej"])
    bad("chn-dec-data-flag", "DATA with flag bit 1", bytes.fromhex("0202") + bytes(16) + b"a",
        "MESSAGE_INVALID", ["datarej"])
    bad("chn-dec-data-overflow", "DATA whose offset plus length exceeds 2^64 - 1",
        bytes.fromhex("0200") + bytes(8) + b"\xff" * 8 + b"ab", "MESSAGE_INVALID", ["datarej"])
    body = encode_item(Open(0, "chat"))
    bad("chn-dec-open-missing-name", "OPEN without key 2", bytes.fromhex("01a10100"),
        "MESSAGE_INVALID", ["schema"], ["SCHEMA"])
    bad("chn-dec-open-extra-key", "OPEN with a key 3", bytes.fromhex("01a3010002616103f5"),
        "MESSAGE_INVALID", ["schema"], ["SCHEMA"])
    bad("chn-dec-open-name-bytes", "OPEN whose name is a byte string", bytes.fromhex(
        "01a201000241aa"), "MESSAGE_INVALID", ["schema"], ["SCHEMA"])
    bad("chn-dec-credit-negative", "CREDIT with a negative limit", bytes.fromhex("03a2010002 20"
        .replace(" ", "")), "MESSAGE_INVALID", ["schema"], ["SCHEMA"])
    bad("chn-dec-reset-code-range", "RESET with code 65536", bytes.fromhex(
        "05a20100021a00010000"), "MESSAGE_INVALID", ["schema"], ["SCHEMA"])
    bad("chn-dec-close-bool", "CLOSE whose final is true", bytes.fromhex("04a2010002f5"),
        "MESSAGE_INVALID", ["schema"], ["SCHEMA"])
    bad("chn-dec-not-map", "CREDIT whose body is an array", bytes.fromhex("03820001"),
        "CBOR_NOT_MAP", ["order"], ["NON_CANONICAL"])
    bad("chn-dec-nonminimal", "CLOSE with final 5 written in two bytes",
        bytes.fromhex("04a20100021805"), "CBOR_NON_MINIMAL", ["order"], ["NON_CANONICAL"])
    bad("chn-dec-unsorted", "CREDIT with keys 2, 1", bytes.fromhex("03a202000100"),
        "CBOR_UNSORTED_KEYS", ["order"], ["NON_CANONICAL"])
    bad("chn-dec-duplicate", "RESET with key 1 twice", bytes.fromhex("05a201000100"),
        "CBOR_DUPLICATE_KEY", ["order"], ["NON_CANONICAL"])
    bad("chn-dec-float", "CREDIT with a float limit", bytes.fromhex("03a2010002f93c00"),
        "CBOR_FORBIDDEN", ["order"], ["NON_CANONICAL"])
    bad("chn-dec-utf8", "OPEN whose name is not UTF-8", bytes.fromhex("01a201000262c328"),
        "CBOR_INVALID_UTF8", ["order", "badname"], ["NAME"])
    bad("chn-dec-trailing", "OPEN with a byte after the map", body + b"\x00", "CBOR_TRAILING",
        ["order"], ["NON_CANONICAL"])
    bad("chn-dec-truncated", "CLOSE cut inside its map", bytes.fromhex("04a20100"),
        "CBOR_MALFORMED", ["order"])
    bad("chn-dec-cbor-before-schema", "key 1 missing and a trailing byte: the CBOR rule first",
        bytes.fromhex("03a1020001"), "CBOR_TRAILING", ["order"], ["ORDER"])
    return out


def _encode_tests() -> list[Json]:
    out: list[Json] = []

    def run(ident: str, comment: str, kind: str, fields: Json, tags: list[str],
            error: str | None = None, flags: list[str] | None = None) -> None:
        inp = {"type": kind, "fields": fields}
        res = _op("channels.encode_item", inp)
        if error is None:
            assert "value" in res, (ident, res)
            out.append(test(ident, comment, _tags(tags), inp, value=res["value"]))
        else:
            assert res.get("error") == error, (ident, res)
            out.append(test(ident, comment, _tags(tags), inp, valid=False, error=error,
                            flags=flags))

    run("chn-enc-open", "OPEN of channel 2", "OPEN", {"chan": 2, "name": "file/photo.jpg"},
        ["enc", "name"])
    run("chn-enc-open-64", "a 64-character name", "OPEN", {"chan": 0, "name": "n" * 64},
        ["name"])
    run("chn-enc-data", "DATA", "DATA", {"chan": 1, "offset": 5, "end_of_message": False,
                                         "data": "00ff"}, ["data"])
    run("chn-enc-credit", "CREDIT", "CREDIT", {"chan": 1, "limit": 98304}, ["cumulative"])
    run("chn-enc-close", "CLOSE", "CLOSE", {"chan": 3, "final": 16354}, ["close"])
    run("chn-enc-reset", "RESET with CHAN_FLOW_CONTROL", "RESET",
        {"chan": 3, "code": int(ErrorCode.CHAN_FLOW_CONTROL)}, ["reset"])
    for ident, name, why in (("empty", "", "an empty name"), ("space", "a b", "a space"),
                             ("long", "n" * 65, "65 characters"),
                             ("non-ascii", "caf\u00e9", "a non-ASCII character"),
                             ("control", "a\tb", "a control character"),
                             ("del", "a\x7f", "DEL (0x7F)")):
        run(f"chn-enc-name-{ident}", f"a name with {why}", "OPEN", {"chan": 0, "name": name},
            ["name", "enc"], "CHAN_NAME_INVALID", ["NAME"])
    run("chn-enc-name-after-fields", "a bad name and a bad chan: MESSAGE_INVALID first", "OPEN",
        {"chan": -1, "name": ""}, ["enc"], "MESSAGE_INVALID", ["ORDER"])
    run("chn-enc-data-empty", "DATA without data", "DATA",
        {"chan": 0, "offset": 0, "end_of_message": True, "data": ""}, ["data", "enc"],
        "MESSAGE_INVALID")
    run("chn-enc-data-too-long", "DATA with MAX_DATA + 1 bytes", "DATA",
        {"chan": 0, "offset": 0, "end_of_message": False, "data": "00" * (MAX_DATA + 1)},
        ["data", "enc"], "MESSAGE_INVALID")
    run("chn-enc-reset-code", "RESET with code 65536", "RESET", {"chan": 0, "code": 65536},
        ["enc"], "MESSAGE_INVALID", ["SCHEMA"])
    run("chn-enc-missing-field", "CREDIT without limit", "CREDIT", {"chan": 0}, ["enc"],
        "MESSAGE_INVALID", ["SCHEMA"])
    run("chn-enc-unknown-type", "type PING is not an item", "PING", {"chan": 0}, ["enc"],
        "MESSAGE_INVALID", ["SCHEMA"])
    return out


# ------------------------------------------------------------------------------ transcripts


class _Rec:
    """One ``channels`` machine driven through the adapter; its steps become a transcript."""

    def __init__(self, role: str, **config: Any) -> None:
        self.role, self.config = role, config
        self.h = adapter.new(role, config, [])
        self.steps: list[Json] = []
        self.outs: list[Json] = []
        self.now = 0
        self.peer_seq = 0

    def step(self, inp: Json) -> list[bytes]:
        self.now += 10
        try:
            out = adapter.step(self.h, self.now, inp)
        except P4Error as exc:
            out = {"error": exc.code.name}
        self.steps.append({"now": self.now, "in": inp})
        self.outs.append(out)
        return [bytes.fromhex(o["send"]) for o in out.get("out", []) if "send" in o]

    def cmd(self, command: str, /, **args: Any) -> list[bytes]:
        return self.step({"cmd": command, **args})

    def recv(self, *items: Item | bytes) -> list[bytes]:
        return self.step({"recv": self.frames(*items).hex()})

    def frames(self, *items: Item | bytes) -> bytes:
        """The peer's next SES_MSG frames, numbered on from the last (§13.2)."""
        out = b""
        for i in items:
            self.peer_seq += 1
            out += rec(i, self.peer_seq)
        return out

    def recv_raw(self, data: bytes) -> list[bytes]:
        return self.step({"recv": data.hex()})

    def params(self) -> Json:
        return {"machine": "channels", "role": self.role, "config": self.config}

    def case(self, ident: str, comment: str, tags: list[str],
             flags: list[str] | None = None) -> Json:
        return test(ident, comment, _tags(tags), {"rng": [], "steps": self.steps},
                    value={"steps": self.outs}, flags=flags)


def _transcripts() -> list[Json]:
    groups: dict[str, tuple[Json, list[Json]]] = {}

    def add(r: _Rec, ident: str, comment: str, tags: list[str],
            flags: list[str] | None = None) -> None:
        key = repr(r.params())
        groups.setdefault(key, (r.params(), []))[1].append(r.case(ident, comment, tags, flags))

    # --- open and data -------------------------------------------------------------------------
    lo = _Rec("low", window=W)
    lo.cmd("open", name="chat")
    lo.cmd("write", chan=0, data=b"hello".hex(), end_of_message=True)
    lo.cmd("open", name="chat")
    add(lo, "chn-tx-open-write-low", "LOW opens ids 0 and 2 (twice the name chat) and writes "
        "one message", ["ids", "open", "dupname", "offsets", "one"])

    hi = _Rec("high", window=W)
    hi.recv(Open(0, "chat"))
    hi.recv(Data(0, 0, b"hello", True))
    hi.cmd("open", name="chat")
    hi.cmd("write", chan=1, data=b"hi".hex(), end_of_message=True)
    add(hi, "chn-tx-accept-high", "HIGH accepts LOW's channel 0, gets its message, opens its own "
        "id 1", ["opened", "deliver", "ids", "report"])

    hi = _Rec("high", window=4 * W)
    hi.cmd("open", name="big")
    hi.recv(Open(0, "peer"))
    add(hi, "chn-tx-open-initial-credit", "window 262144 > INITIAL_WINDOW: CREDIT follows the "
        "OPEN it sends and the OPEN it accepts", ["initial"], ["CREDIT"])

    # --- fragmentation and reassembly ----------------------------------------------------------
    lo = _Rec("low", window=W)
    lo.cmd("open", name="bulk")
    lo.recv(Credit(0, 2 * W))
    frags = lo.cmd("write", chan=0, data=(bytes(range(256)) * 65).hex()[: 2 * 16400],
                   end_of_message=True)
    assert len(frags) == 2
    add(lo, "chn-tx-fragment", "after CREDIT 32768, a 16400-byte message becomes DATA of "
        "16353 and 47 bytes, END_OF_MESSAGE on the last", ["frag", "data", "offsets", "credit"])
    hi = _Rec("high", window=2 * W)
    hi.recv(Open(0, "bulk"))
    hi.recv_raw(b"".join(frags))
    add(hi, "chn-tx-reassemble", "two DATA items in one recv step: two CHANNEL_DATA, the "
        "mark on the last", ["deliver", "frag"])
    hi = _Rec("high", window=W)
    stream = hi.frames(Open(0, "bulk"), Data(0, 0, b"abc", False), Data(0, 3, b"de", True))
    hi.recv_raw(stream[:4])
    hi.recv_raw(stream[4:20])
    hi.recv_raw(stream[20:50])
    hi.recv_raw(stream[50:])
    hi.step({"recv": ""})
    hi.step({"tick": True})
    add(hi, "chn-tx-split-records", "SES_MSG frames split inside a header and inside items; an "
        "empty recv and a tick change nothing", ["one", "deliver"], ["SPLIT"])

    # --- credit: stall and release ---------------------------------------------------------------
    lo = _Rec("low", window=W)
    lo.cmd("open", name="bulk")
    lo.cmd("write", chan=0, data="5a" * W, end_of_message=False)
    lo.cmd("write", chan=0, data="5a", end_of_message=False)
    lo.recv(Credit(0, W + W // 2))
    lo.recv(Credit(0, W))
    lo.cmd("write", chan=0, data="5b" * (W // 2 + 1), end_of_message=True)
    lo.cmd("write", chan=0, data="5b" * (W // 2), end_of_message=True)
    add(lo, "chn-tx-credit-sender-stall", "the writer stalls at INITIAL_WINDOW (a write of one "
        "more byte is refused), CREDIT raises the limit, a stale CREDIT is ignored",
        ["nobeyond", "write", "credit", "cumulative"], ["CREDIT"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "bulk"))
    hi.recv(*(Data(0, o, b"\x5a" * min(MAX_DATA, W - o), False) for o in range(0, W, MAX_DATA)))
    hi.cmd("consumed", chan=0, nbytes=W // 2 - 1)
    hi.cmd("consumed", chan=0, nbytes=1)
    hi.cmd("consumed", chan=0, nbytes=W // 2)
    hi.cmd("consumed", chan=0, nbytes=1)
    add(hi, "chn-tx-credit-release-on-consume", "64 KiB arrive: no CREDIT; consuming 32767 "
        "bytes: none; the 32768th: CREDIT 98304; all: CREDIT 131072; one more byte is refused",
        ["release", "threshold", "consume"], ["CREDIT"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "slow"), Open(2, "fast"))
    hi.recv(*(Data(0, o, b"\x01" * min(MAX_DATA, W - o), False) for o in range(0, W, MAX_DATA)))
    for k in range(2):
        hi.recv(Data(2, k * W, b"\x02" * MAX_DATA, False))
        hi.cmd("consumed", chan=2, nbytes=MAX_DATA)
        hi.recv(*(Data(2, k * W + o, b"\x02" * min(MAX_DATA, W - o), False)
                  for o in range(MAX_DATA, W, MAX_DATA)))
        hi.cmd("consumed", chan=2, nbytes=W - MAX_DATA)
    add(hi, "chn-tx-credit-stall-isolated", "channel 0 is full and never consumed; channel 2 "
        "keeps receiving 2 windows, with CREDIT on consumption", ["release", "threshold"],
        ["CREDIT"])
    lo = _Rec("low", window=W)
    lo.cmd("open", name="slow")
    lo.cmd("open", name="fast")
    lo.cmd("write", chan=0, data="01" * W, end_of_message=False)
    lo.cmd("write", chan=2, data="02" * W, end_of_message=False)
    lo.cmd("write", chan=0, data="01", end_of_message=False)
    lo.recv(Credit(2, 2 * W))
    lo.cmd("write", chan=2, data="02" * 100, end_of_message=True)
    add(lo, "chn-tx-credit-sender-isolated", "channel 0 has no credit left, channel 2 gets more "
        "and writes on", ["nobeyond", "credit"], ["CREDIT"])

    # --- flow-control, gap and final-offset violations -----------------------------------------
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "a"), Open(2, "b"))
    hi.recv(Data(0, 0, b"x" * 10, False))
    hi.recv(Data(0, W - 5, b"x" * 10, False))
    hi.recv(Data(0, 10, b"y", False), Credit(0, 5 * W))
    hi.recv(Data(2, 0, b"ok", True))
    add(hi, "chn-tx-flow-control", "DATA ending beyond the limit (and above the next offset): "
        "RESET CHAN_FLOW_CONTROL, no error output (the side goes on); later items of channel 0 "
        "are ignored, channel 2 goes on", ["checks", "violation", "late", "forget"],
        ["CREDIT", "ORDER"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "a"))
    hi.recv(Data(0, 0, b"abc", False))
    hi.recv(Data(0, 4, b"e", False))
    add(hi, "chn-tx-offset-gap", "DATA at offset 4 after 3 bytes: CHAN_OFFSET_GAP",
        ["checks", "violation"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "a"), Data(0, 0, b"abc", True))
    hi.recv(Close(0, 3))
    hi.recv(Close(0, 3))
    hi.recv(Data(0, 1, b"bc", True))
    hi.recv(Data(0, W, b"z", False))
    add(hi, "chn-tx-final-offset-order", "after CLOSE at 3: a repeated CLOSE and a duplicate "
        "DATA are ignored; DATA beyond the final offset, the limit and the next offset is "
        "CHAN_FINAL_OFFSET", ["peerclose", "checks", "violation", "repeatclose"],
        ["FINAL", "ORDER"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "a"), Data(0, 0, b"abc", True))
    hi.recv(Close(0, 5))
    add(hi, "chn-tx-close-wrong-final", "CLOSE at 5 after 3 bytes: CHAN_FINAL_OFFSET",
        ["peerclose", "violation"], ["FINAL"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "a"), Data(0, 0, b"abc", True), Close(0, 3))
    hi.recv(Close(0, 2))
    add(hi, "chn-tx-close-moved", "a second CLOSE with another final offset: CHAN_FINAL_OFFSET",
        ["peerclose", "violation", "repeatclose"], ["FINAL"])

    # --- half-close both ways ------------------------------------------------------------------
    lo = _Rec("low", window=W)
    lo.cmd("open", name="f")
    lo.cmd("write", chan=0, data=b"abc".hex(), end_of_message=True)
    lo.cmd("close", chan=0)
    lo.cmd("write", chan=0, data="00", end_of_message=True)
    lo.cmd("close", chan=0)
    lo.recv(Data(0, 0, b"xy", False), Credit(0, 2 * W))
    lo.recv(Close(0, 2))
    lo.cmd("consumed", chan=0, nbytes=1)
    lo.cmd("consumed", chan=0, nbytes=1)
    lo.cmd("write", chan=0, data="00", end_of_message=True)
    add(lo, "chn-tx-half-close-local-first", "LOW closes first (then write and close are "
        "refused), the peer still writes and closes; the channel is forgotten once consumed",
        ["close", "peerclose", "forget", "table", "credit"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "f"), Data(0, 0, b"abc", True))
    hi.recv(Close(0, 3))
    hi.cmd("consumed", chan=0, nbytes=3)
    hi.cmd("write", chan=0, data=b"reply".hex(), end_of_message=True)
    hi.cmd("resync")
    hi.cmd("close", chan=0)
    add(hi, "chn-tx-half-close-remote-first", "the peer closes first: HALF_CLOSED_REMOTE still "
        "writes, consumption sends no CREDIT, resync skips it; the own CLOSE finishes it",
        ["peerclose", "close", "forget", "resync"])

    # --- reset -----------------------------------------------------------------------------------
    lo = _Rec("low", window=W)
    lo.cmd("open", name="r")
    lo.cmd("reset", chan=0, code=70000)
    lo.cmd("reset", chan=0, code=int(ErrorCode.CHAN_CLOSED))
    lo.cmd("reset", chan=0, code=0x0601)
    lo.cmd("reset", chan=0, code=0)
    lo.recv(Data(0, 0, b"late", False), Credit(0, 2 * W), Reset(0, 0))
    lo.cmd("write", chan=0, data="00", end_of_message=True)
    lo.cmd("reset", chan=0, code=0)
    add(lo, "chn-tx-reset-local", "reset codes above 65535 and local-only codes are refused; "
        "RESET forgets the channel; late items are ignored; later calls are CHAN_UNKNOWN",
        ["reset", "localcodes", "late", "forget"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "r"), Data(0, 0, b"abc", False))
    hi.recv(Reset(0, 42))
    hi.cmd("consumed", chan=0, nbytes=3)
    hi.recv(Reset(0, 42))
    add(hi, "chn-tx-reset-by-peer", "the peer's RESET: CHANNEL_RESET by_peer, no error; "
        "unconsumed bytes are dropped; a repeated RESET is ignored", ["resetfwd", "late"])

    # --- restart, duplicates, resync -------------------------------------------------------------
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "f"))
    hi.recv(Data(0, 0, b"hello", True))
    hi.recv(Data(0, 5, b"world", True))
    hi.cmd("consumed", chan=0, nbytes=7)
    hi.cmd("restart")
    hi.recv(Data(0, 0, b"hello", True))
    hi.recv(Data(0, 5, b"world", True))
    hi.recv(Data(0, 5, b"world", True))
    hi.recv(Data(0, 10, b"!", True))
    add(hi, "chn-tx-restart-redelivery", "7 of 10 bytes consumed, restart: the redelivered "
        "items give exactly the bytes from offset 7, once", ["deliver", "stored", "confirm"],
        ["DEDUPE"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "f"), Open(2, "g"))
    hi.recv(Data(0, 0, b"x" * 100, False))
    hi.cmd("consumed", chan=0, nbytes=100)
    hi.recv(Close(2, 0))
    hi.cmd("restart")
    hi.cmd("resync")
    hi.recv(Open(0, "f"), Data(0, 0, b"x" * 100, False))
    hi.recv(Credit(0, 3 * W))
    hi.cmd("write", chan=0, data="00", end_of_message=True)
    add(hi, "chn-tx-restart-resync", "after a restart the stored limits survive: resync "
        "re-announces channel 0's limit only (channel 2 is half-closed by the peer); a "
        "repeated OPEN and consumed DATA are dropped", ["resync", "stored", "route", "deliver"],
        ["DEDUPE"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "f"), Data(0, 0, b"hello", False), Data(0, 5, b"world", False))
    hi.recv(Open(0, "f"), Data(0, 0, b"hello", False))  # renumbered by a SESSION_RESET
    hi.recv(Data(0, 15, b"late", True))  # 10 .. 15 lost with the reset
    hi.recv(Open(2, "g"))
    hi.cmd("resync")
    add(hi, "chn-tx-session-reset", "a p4-04 SESSION_RESET is nothing to this layer: items it "
        "renumbered arrive again and are dropped by offset (the repeated OPEN too), a DATA "
        "item it lost shows as a gap at the next DATA (CHAN_OFFSET_GAP resets that channel "
        "only), the other channels go on, resync re-announces the live ones",
        ["sessionreset", "deliver", "checks", "resync"], ["DEDUPE"])
    lo = _Rec("low", window=W)
    lo.cmd("open", name="s")
    lo.cmd("write", chan=0, data="11" * 10, end_of_message=False)
    lo.cmd("restart")
    lo.cmd("write", chan=0, data="22" * 5, end_of_message=True)
    lo.cmd("open", name="t")
    add(lo, "chn-tx-restart-sender", "a writer restarts: offsets and ids continue from the "
        "stored state", ["stored", "offsets", "ids"])

    # --- refused OPENs and local opens -----------------------------------------------------------
    hi = _Rec("high", window=W, max_channels=1)
    hi.recv(raw_open(0, "has space"))
    hi.recv(Open(2, "ok"))
    hi.recv(raw_open(4, "x" * 65))
    hi.recv(Open(6, "two"))
    hi.recv(raw_open(8, "caf\u00e9"))
    hi.recv(Data(6, 0, b"late", False))
    hi.cmd("open", name="mine")
    add(hi, "chn-tx-open-refused", "max_channels 1: bad names are refused with "
        "CHAN_NAME_INVALID (before the count), a second channel with CHAN_TOO_MANY; no event, "
        "no error; the refused ids are late ids", ["badname", "many", "name", "late"], ["NAME"])
    lo = _Rec("low", window=W, max_channels=2)
    lo.cmd("open", name="")
    lo.cmd("open", name="tab\there")
    lo.cmd("open", name="a")
    lo.recv(Open(1, "b"))
    lo.cmd("open", name="c")
    lo.cmd("open", name="bad name")
    add(lo, "chn-tx-open-local-refused", "local opens with bad names are refused "
        "(CHAN_NAME_INVALID), and beyond max_channels (CHAN_TOO_MANY); the name is checked "
        "first", ["badname", "many"], ["NAME", "ORDER"])
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "a"))
    hi.recv(Open(0, "a-again"))
    hi.recv(Data(0, 0, b"q", True))
    add(hi, "chn-tx-open-repeated", "a repeated OPEN of a live channel is ignored",
        ["route", "table"])

    # --- local misuse ----------------------------------------------------------------------------
    hi = _Rec("high", window=W)
    hi.recv(Open(0, "a"), Data(0, 0, b"abc", True))
    hi.cmd("consumed", chan=0, nbytes=4)
    hi.cmd("consumed", chan=2, nbytes=0)
    hi.cmd("write", chan=0, data="", end_of_message=True)
    hi.cmd("write", chan=5, data="00", end_of_message=True)
    hi.cmd("close", chan=7)
    hi.cmd("write", chan=9, data="00")  # end_of_message missing: before CHAN_UNKNOWN
    hi.cmd("consumed", chan=0, nbytes=0)
    hi.cmd("consumed", chan=0, nbytes=3)
    add(hi, "chn-tx-local-misuse", "refused calls change nothing: consuming more than "
        "delivered, unknown channels, an empty write, a missing argument", ["consume", "write"])

    # --- a broken item stream ------------------------------------------------------------------
    for ident, comment, items, code in (
        ("own-parity", "an OPEN with HIGH's parity sent to HIGH", [Open(1, "x")],
         "CHAN_ID_INVALID"),
        ("skipped-id", "an OPEN of id 2 before id 0", [Open(2, "x")], "CHAN_ID_INVALID"),
        ("never-opened", "DATA for LOW's id 4, never opened", [Open(0, "x"),
                                                               Data(4, 0, b"a", False)],
         "CHAN_ID_INVALID"),
        ("own-never-opened", "CREDIT for HIGH's own id 3, never opened", [Credit(3, 10**6)],
         "CHAN_ID_INVALID"),
        ("undecodable", "an item of type 0x09", [bytes.fromhex("09a0")], "MESSAGE_INVALID"),
        ("cbor", "an OPEN with unsorted keys", [bytes.fromhex("01a2020001000161")],
         "CBOR_UNSORTED_KEYS"),
    ):
        hi = _Rec("high", window=W)
        hi.recv(*items)
        assert hi.outs[-1]["out"][-1] == {"error": code}, ident
        hi.recv(Open(0, "after"))
        hi.cmd("open", name="x")
        hi.cmd("restart")
        hi.recv(Open(0, "after"))
        add(hi, f"chn-tx-broken-{ident}", f"{comment}: CHANNELS_FAILED, later items are "
            "discarded, calls are refused; restart runs again", ["broken", "route"], ["IDS"])
    hi = _Rec("high", window=W)
    hi.recv_raw(bytes.fromhex("0133000008") + bytes(8))
    add(hi, "chn-tx-broken-empty-record", "a SES_MSG without an item: MESSAGE_INVALID",
        ["broken", "order"])
    hi = _Rec("high", window=W)
    hi.recv_raw(bytes.fromhex("0102000008") + bytes(8))
    add(hi, "chn-tx-broken-not-ses-msg", "a frame that is not a SES_MSG (a PING): "
        "MESSAGE_INVALID, as soon as its header is read", ["broken"])
    hi = _Rec("high", window=W)
    hi.recv_raw(bytes.fromhex("0133004001"))
    add(hi, "chn-tx-broken-long-record", "a SES_MSG longer than 16384 bytes of body, reported "
        "as soon as its header is read", ["broken", "order"])
    hi = _Rec("high", window=W)
    hi.recv_raw(rec(encode_item(Data(0, 0, b"\x00" * MAX_DATA, False)) + b"\x00", 1))
    add(hi, "chn-tx-broken-item-too-long", "a SES_MSG carrying 16372 bytes: an item longer "
        "than MAX_ITEM is MESSAGE_INVALID", ["broken", "order"])
    return [group("machine.transcript", tests, params) for params, tests in groups.values()]


def _pair_run(config: Json, script: list[Json], latency: int = 10) -> dict[str, Json]:
    """The relay of conformance/README.md §5.2 on a perfect network: each role's final state and
    events, from the reference adapter."""
    import heapq

    roles = ("low", "high")
    machines = {r: adapter.new(r, config[r], []) for r in roles}
    queue: list[tuple[int, int, str, Json]] = []
    seq = 0
    for entry in script:
        heapq.heappush(queue, (entry["now"], seq, entry["role"], entry["in"]))
        seq += 1
    final: dict[str, Json] = {r: {"state": "", "events": []} for r in roles}
    while queue:
        now, _, role, item = heapq.heappop(queue)
        got = adapter.step(machines[role], now, item)  # a refusal raises: never in a pair vector
        final[role]["state"] = got["state"]
        for out in got["out"]:
            if "send" in out:
                other = "high" if role == "low" else "low"
                heapq.heappush(queue, (now + latency, seq, other, {"recv": out["send"]}))
                seq += 1
            elif "event" in out:
                final[role]["events"].append(out)
            else:
                raise AssertionError(f"no errors in the pair vectors: {out}")
    return final


def _pairs() -> list[Json]:
    config = {"low": {"window": W}, "high": {"window": W}}
    tests: list[Json] = []

    def s(role: str, now: int, cmd: str, **args: Any) -> Json:
        return {"role": role, "now": now, "in": {"cmd": cmd, **args}}

    script = [
        s("low", 0, "open", name="chat"), s("high", 0, "open", name="back"),
        s("low", 5, "write", chan=0, data=b"hel".hex(), end_of_message=False),
        s("low", 6, "write", chan=0, data=b"lo".hex(), end_of_message=True),
        s("low", 7, "write", chan=0, data=b"again".hex(), end_of_message=True),
        s("high", 5, "write", chan=1, data=b"hi".hex(), end_of_message=True),
        s("high", 50, "consumed", chan=0, nbytes=10), s("low", 50, "consumed", chan=1, nbytes=2),
        s("low", 60, "close", chan=0), s("high", 60, "close", chan=1),
        s("high", 100, "close", chan=0), s("low", 100, "close", chan=1),
    ]
    final = _pair_run(config, script)
    assert final["low"]["state"] == final["high"]["state"] == "RUNNING", final
    want = {r: {"state": "RUNNING", "events": [e for e in final[r]["events"]
                                               if e["event"] != "CHANNEL_DATA"]}
            for r in final}
    tests.append(test(
        "chn-pair-exchange", "both sides open a channel, write messages (one in two writes), "
        "consume them and half-close both ways: every channel is forgotten", _tags(
            ["open", "opened", "deliver", "close", "peerclose", "forget", "ids"]),
        {"rng": {}, "script": script, "latencyMs": 10},
        value={"final": want, "streams": [
            {"role": "high", "event": "CHANNEL_DATA", "field": "data",
             "values": [b"hel".hex(), b"lo".hex(), b"again".hex()]},
            {"role": "low", "event": "CHANNEL_DATA", "field": "data", "values": [b"hi".hex()]},
        ]}))
    script = [
        s("low", 0, "open", name="bulk"),
        s("low", 5, "write", chan=0, data="61" * W, end_of_message=False),
        s("high", 100, "consumed", chan=0, nbytes=W // 2),
        s("low", 200, "write", chan=0, data="62" * (W // 2), end_of_message=True),
        s("high", 300, "consumed", chan=0, nbytes=W // 2),
        s("high", 300, "consumed", chan=0, nbytes=W // 2),
    ]
    final = _pair_run(config, script)
    events = {r: [e for e in final[r]["events"] if e["event"] in ("CREDIT_GRANTED",
                                                                   "CHANNEL_OPENED")]
              for r in final}
    assert events["low"], final
    tests.append(test(
        "chn-pair-credit", "the writer uses the whole initial window, the reader consumes half: "
        "CREDIT; the writer writes the granted half", _tags(["release", "threshold", "credit"]),
        {"rng": {}, "script": script, "latencyMs": 10},
        value={"final": {r: {"state": final[r]["state"], "events": events[r]} for r in final}},
        flags=["CREDIT"]))
    return [group("machine.pair", tests, {"machine": "channels", "roles": ["low", "high"],
                                          "config": config})]


def _config_tests() -> list[Json]:
    out: list[Json] = []
    for ident, role, config, why in (
        ("unknown-key", "low", {"windw": 1}, "an unknown config key"),
        ("window-zero", "low", {"window": 0}, "window 0"),
        ("max-channels-zero", "high", {"max_channels": 0}, "max_channels 0"),
    ):
        try:
            adapter.new(role, config, [])
        except P4Error as exc:
            assert exc.code.name == "MESSAGE_INVALID"
        else:
            raise AssertionError(ident)
        out.append(group("machine.transcript", [
            test(f"chn-tx-config-{ident}", f"machine.new refuses {why}", [], {"rng": [],
                 "steps": []}, valid=False, error="MESSAGE_INVALID")],
            {"machine": "channels", "role": role, "config": config}))
    return out


def build() -> dict[str, Json]:
    return {
        "channels/items.json": envelope("channels", SPEC, REVISION, NOTES, [
            group("channels.decode_item", _decode_tests()),
            group("channels.encode_item", _encode_tests()),
        ]),
        "channels/transcripts.json": envelope("channels", SPEC, REVISION, NOTES,
                                              _transcripts() + _config_tests()),
        "channels/pairs.json": envelope("channels", SPEC, REVISION, NOTES, _pairs()),
    }


__all__ = ["build"]
