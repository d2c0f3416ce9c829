"""File-transfer vectors (spec/p4-06-files-v1.md §14): records valid and invalid, names, hashes,
sender and receiver transcripts (happy path, resume, bad block, refusal, cancel, disk full, every
error code) and two-party runs through the harness relay.

The file contents are fixed byte patterns; every expected value comes from the reference adapter
(``p4ref.adapter.files``), driven step by step.
"""

from __future__ import annotations

import hashlib
from typing import Any

from p4ref.adapter import files as adapter
from p4ref.errors import ErrorCode, P4Error
from p4ref.files import _codec as codec

from ._envelope import Json, envelope, group, test

SPEC, REV = "p4-06-files-v1", 4
BS = 1024
#: The worked example of §15: byte i is i mod 251; three blocks of 1024, 1024 and 452.
FILE = bytes(i % 251 for i in range(2500))
NAME = "notes.txt"
LEAVES = codec.leaf_hashes(FILE, BS)
ROOT, CHAINS = codec.root_of(len(FILE), BS, LEAVES)
SENDER_CFG: Json = {"name": NAME, "size": len(FILE), "block_size": BS, "root": ROOT.hex()}

NOTES: dict[str, Json] = {
    "RECORD": {"bugType": "MISSING_CHECK",
               "description": "A record header with an unknown type or a Length over its limit."},
    "SCHEMA": {"bugType": "MISSING_CHECK", "description": "Missing, unknown or mistyped key."},
    "NON_CANONICAL": {"bugType": "MALLEABILITY",
                      "description": "A body that is not deterministic CBOR."},
    "PATH_TRAVERSAL": {"bugType": "PATH_TRAVERSAL",
                       "description": "A name that would leave the receiver's directory, or "
                                      "spoof how it is displayed."},
    "HUGE": {"bugType": "RESOURCE_EXHAUSTION",
             "description": "A size, count or length at or past its limit."},
    "FLOOD": {"bugType": "RESOURCE_EXHAUSTION",
              "description": "Leaf hashes sent further ahead of the data than allowed."},
    "LYING_SIZE": {"bugType": "MISSING_CHECK",
                   "description": "Data past the end of its block or of the offered size."},
    "CORRUPT": {"bugType": "INTEGRITY",
                "description": "A block or a root that does not match: must be detected."},
    "RESUME": {"bugType": "EDGE_CASE", "description": "A transfer resumed from an offset."},
    "SPLIT": {"bugType": "EDGE_CASE",
              "description": "Input split across recv steps at arbitrary points."},
    "ORDER": {"bugType": "EDGE_CASE", "description": "Several rules broken: the check order."},
    "REFUSED_COMMAND": {"bugType": "API_MISUSE",
                        "description": "A command the machine must refuse without changing."},
    "DISK": {"bugType": "EDGE_CASE", "description": "A failed read or write at either side."},
    "EOF": {"bugType": "EDGE_CASE", "description": "The peer ended its direction."},
}


def _tags(*nums: int) -> list[str]:
    return [f"FIL-{n}" for n in nums]


def _enc(record: codec.Record) -> bytes:
    return codec.encode_record(record)


def _hdr(rtype: int, length: int, version: int = 1, flags: int = 0) -> bytes:
    return bytes([version, rtype, flags]) + length.to_bytes(2, "big")


def _raw(rtype: int, body: bytes, version: int = 1, flags: int = 0) -> bytes:
    return _hdr(rtype, len(body), version, flags) + body


# ----------------------------------------------------------------------------------- codec


def _codec_groups() -> list[Json]:
    enc: list[Json] = []
    dec: list[Json] = []
    examples: list[tuple[str, codec.Record]] = [
        ("offer", codec.Offer(NAME, len(FILE), BS, ROOT)),
        ("offer-utf8-name", codec.Offer("Résumé P⁴ 日本.pdf", 0, 1 << 20, ROOT)),
        ("offer-max-size", codec.Offer("big", codec.MAX_SIZE, codec.MAX_BLOCK_SIZE, ROOT)),
        ("accept", codec.Accept(1024)), ("refuse", codec.Refuse(ErrorCode.FILE_REFUSED)),
        ("hashes", codec.Hashes(0, (LEAVES[0],))),
        ("hashes-64", codec.Hashes(5, tuple(LEAVES[i % 3] for i in range(64)))),
        ("data", codec.Data(FILE[:16])), ("data-max", codec.Data(bytes(codec.MAX_DATA_LEN))),
        ("complete", codec.Complete()), ("cancel", codec.Cancel(ErrorCode.FILE_CANCELLED)),
        ("cancel-unknown-code", codec.Cancel(0x0899)),
    ]
    for label, rec in examples:
        obj = adapter.record_json(rec)
        raw = _enc(rec).hex()
        enc.append(test(f"fil-encode-{label}", f"encode {obj['type']}", _tags(12, 15, 16),
                        {"record": obj}, value={"record": raw}))
        dec.append(test(f"fil-decode-{label}", f"decode {obj['type']}", _tags(12, 15, 21),
                        {"record": raw}, value={"record": obj}))

    def enc_bad(label: str, obj: Json, error: str, tags: list[str], flags: list[str]) -> None:
        got = adapter.run_op("files.encode", {}, {"record": obj})
        assert got == {"error": error}, (label, got)
        enc.append(test(f"fil-encode-{label}", f"the encoder refuses: {label}", tags,
                        {"record": obj}, valid=False, error=error, flags=flags))

    offer = adapter.record_json(codec.Offer(NAME, len(FILE), BS, ROOT))
    enc_bad("name-with-slash", {**offer, "name": "a/b"}, "FILE_NAME_INVALID", _tags(5, 7),
            ["PATH_TRAVERSAL"])
    enc_bad("block-size-not-power-of-two", {**offer, "block_size": 1536}, "MESSAGE_INVALID",
            _tags(15, 16), ["SCHEMA"])
    enc_bad("size-2-63", {**offer, "size": 1 << 63}, "MESSAGE_INVALID", _tags(15, 16), ["HUGE"])
    enc_bad("data-empty", {"type": "FILE_DATA", "data": ""}, "MESSAGE_INVALID", _tags(13),
            ["SCHEMA"])
    enc_bad("hashes-65", {"type": "FILE_HASHES", "first": 0, "hashes": [ROOT.hex()] * 65},
            "MESSAGE_INVALID", _tags(19), ["FLOOD"])

    def dec_bad(label: str, raw: bytes, error: str, tags: list[str], flags: list[str],
                comment: str = "") -> None:
        got = adapter.run_op("files.decode", {}, {"record": raw.hex()})
        assert got == {"error": error}, (label, got)
        dec.append(test(f"fil-decode-{label}", comment or label, tags, {"record": raw.hex()},
                        valid=False, error=error, flags=flags))

    accept = _enc(codec.Accept(0))
    dec_bad("empty", b"", "FILE_RECORD_INVALID", _tags(21), ["RECORD"])
    dec_bad("short-header", b"\x01\x11\x00\x00", "FILE_RECORD_INVALID", _tags(21), ["RECORD"])
    dec_bad("version-2", _raw(0x11, b"\xa1\x01\x00", version=2), "VERSION_UNSUPPORTED",
            _tags(47), ["RECORD"])
    dec_bad("version-0", _raw(0x11, b"\xa1\x01\x00", version=0), "VERSION_UNSUPPORTED",
            _tags(47), ["RECORD"])
    dec_bad("flags", _raw(0x11, b"\xa1\x01\x00", flags=0x80), "FILE_RECORD_INVALID",
            _tags(47), ["RECORD"])
    dec_bad("version-before-type", _raw(0x77, b"\xa0", version=9), "VERSION_UNSUPPORTED",
            _tags(21, 47), ["RECORD", "ORDER"], "a bad version and a bad type: the version first")
    dec_bad("unknown-type-17", _raw(0x17, b"\xa0"), "FILE_RECORD_INVALID", _tags(14), ["RECORD"])
    dec_bad("unknown-type-01", _raw(0x01, b"\xa1\x01\x00"), "FILE_RECORD_INVALID", _tags(14),
            ["RECORD"], "a p4-01 ERROR frame (type 0x01) is not a file record")
    dec_bad("data-empty", _raw(0x14, b""), "FILE_RECORD_INVALID", _tags(13), ["RECORD"])
    dec_bad("data-over-limit", _hdr(0x14, 32769) + bytes(32769), "FILE_RECORD_INVALID", _tags(13),
            ["RECORD", "HUGE"])
    dec_bad("cbor-over-limit", _hdr(0x11, 4097) + bytes(4097), "FILE_RECORD_INVALID", _tags(13),
            ["RECORD", "HUGE"])
    dec_bad("length-over-limit-before-body", _hdr(0x14, 0xFFFF), "FILE_RECORD_INVALID", _tags(13),
            ["RECORD", "ORDER"], "a Length over the limit is reported from the header alone")
    dec_bad("trailing-byte", accept + b"\x00", "FILE_RECORD_INVALID", _tags(21), ["RECORD"])
    dec_bad("truncated-body", accept[:-1], "FILE_RECORD_INVALID", _tags(21), ["RECORD"])
    dec_bad("accept-non-minimal", _raw(0x11, bytes.fromhex("a1011800")), "CBOR_NON_MINIMAL",
            _tags(1, 21), ["NON_CANONICAL"])
    dec_bad("offer-unsorted-keys", _raw(0x10, bytes.fromhex("a202010161")), "CBOR_UNSORTED_KEYS",
            _tags(1, 21), ["NON_CANONICAL"])
    dec_bad("accept-not-map", _raw(0x11, b"\x01"), "CBOR_NOT_MAP", _tags(1, 21),
            ["NON_CANONICAL"])
    dec_bad("cancel-float", _raw(0x16, bytes.fromhex("a101f93c00")), "CBOR_FORBIDDEN",
            _tags(1, 21), ["NON_CANONICAL"])
    dec_bad("offer-name-bad-utf8", _raw(0x10, bytes.fromhex("a40162c328020003190400045820") + ROOT),
            "CBOR_INVALID_UTF8", _tags(1, 21), ["NON_CANONICAL"])

    def body(value: dict[int, Any]) -> bytes:
        from p4ref.framing import encode_cbor
        return encode_cbor(value)

    okoffer = {1: NAME, 2: len(FILE), 3: BS, 4: ROOT}
    for label, value, tags in [
        ("offer-missing-root", {1: NAME, 2: 1, 3: BS}, _tags(15)),
        ("offer-extra-key", {**okoffer, 5: 0}, _tags(15)),
        ("offer-size-2-63", {**okoffer, 2: 1 << 63}, _tags(15, 16)),
        ("offer-block-size-512", {**okoffer, 3: 512}, _tags(15, 16)),
        ("offer-block-size-1536", {**okoffer, 3: 1536}, _tags(15, 16)),
        ("offer-block-size-8mib", {**okoffer, 3: 1 << 23}, _tags(15, 16)),
        ("offer-root-31", {**okoffer, 4: ROOT[:31]}, _tags(15, 16)),
        ("offer-name-bytes", {**okoffer, 1: b"notes"}, _tags(15)),
        ("offer-size-negative", {**okoffer, 2: -1}, _tags(15)),
    ]:
        dec_bad(label, _raw(0x10, body(value)), "MESSAGE_INVALID", tags, ["SCHEMA"])
    others: list[tuple[str, int, dict[int, Any]]] = [
        ("accept-offset-2-63", 0x11, {1: 1 << 63}), ("refuse-code-over-16-bits", 0x12, {1: 65536}),
        ("hashes-empty", 0x13, {1: 0, 2: []}), ("hashes-65", 0x13, {1: 0, 2: [ROOT] * 65}),
        ("hashes-short-hash", 0x13, {1: 0, 2: [ROOT[:31]]}), ("complete-with-key", 0x15, {1: 0}),
        ("cancel-missing-code", 0x16, {}),
    ]
    for label, rtype, value in others:
        dec_bad(label, _raw(rtype, body(value)), "MESSAGE_INVALID", _tags(15, 17, 18, 19),
                ["SCHEMA"])
    for label, name in [("dotdot", ".."), ("slash", "../etc/passwd"), ("drive", "C:x")]:
        dec_bad(f"offer-name-{label}", _raw(0x10, body({**okoffer, 1: name})),
                "FILE_NAME_INVALID", _tags(5, 7, 8, 21), ["PATH_TRAVERSAL"])
    dec_bad("offer-schema-before-name", _raw(0x10, body({**okoffer, 1: "a/b", 3: 1000})),
            "MESSAGE_INVALID", _tags(21), ["ORDER"],
            "both the block size and the name are bad: the schema is checked first (§7.4)")
    return [group("files.encode", enc), group("files.decode", dec)]


def _name_groups() -> list[Json]:
    tests: list[Json] = []
    good = ["notes.txt", ".bashrc", "a b c", "Résumé.pdf", "P⁴ 日本語 😀.md", "a..b", "-rf",
            "x" * 255, "é" * 127 + "x", "~", "a\u00a0b"]
    for i, name in enumerate(good):
        tests.append(test(f"fil-name-ok-{i + 1}", f"a valid name ({len(name.encode())} bytes)",
                          _tags(5, 6, 7, 8), {"name": name}, value={}))
    bad = [("empty", ""), ("256-bytes", "x" * 256), ("256-bytes-utf8", "é" * 128),
           ("slash", "a/b"), ("backslash", "a\\b"), ("colon", "C:x"), ("dot", "."),
           ("dotdot", ".."), ("trailing-dot", "a.txt."), ("trailing-space", "a.txt "),
           ("nul", "a\x00b"), ("newline", "a\nb"), ("tab", "a\tb"), ("del", "a\x7fb"),
           ("c1", "a\u0085b"), ("rlo", "invoice\u202efdp.exe"), ("lrm", "a\u200eb"),
           ("fsi", "a\u2068b"), ("alm", "a\u061cb"), ("absolute", "/etc/passwd")]
    for label, name in bad:
        tests.append(test(f"fil-name-{label}", f"invalid name: {label}", _tags(5, 6, 7, 8),
                          {"name": name}, valid=False, error="FILE_NAME_INVALID",
                          flags=["PATH_TRAVERSAL"]))
    tests.append(test("fil-name-lone-surrogate", "a JSON string holding a lone surrogate "
                      "(\\ud800), which has no UTF-8 form: invalid, never replaced by U+FFFD",
                      [*_tags(5, 6, 7, 8), "FIL-48"], {"name": "a\ud800b"}, valid=False,
                      error="FILE_NAME_INVALID", flags=["PATH_TRAVERSAL"]))
    for t in tests:
        want = t["expect"].get("value", None)
        got = adapter.run_op("files.check_name", {}, t["input"])
        assert got == ({"value": want} if "value" in t["expect"] else t["expect"]), (t["id"], got)
    return [group("files.check_name", tests)]


def _hash_groups() -> list[Json]:
    leaves: list[Json] = []
    roots: list[Json] = []
    cases = [("empty", b"", BS), ("one-byte", b"\x61", BS), ("one-block", FILE[:BS], BS),
             ("block-plus-one", FILE[: BS + 1], BS), ("worked-example", FILE, BS),
             ("big-block", FILE, 1 << 22)]
    for label, data, bs in cases:
        inp = {"data": data.hex(), "block_size": bs}
        lv = [h.hex() for h in codec.leaf_hashes(data, bs)]
        # an independent computation: hashlib directly, §6.1–§6.2 written out
        chain = hashlib.sha256(b"P4-FILES-v1\x00" + len(data).to_bytes(8, "big")
                               + bs.to_bytes(4, "big")).digest()
        chains = [chain.hex()]
        for i in range(0, len(data), bs):
            chain = hashlib.sha256(chain + hashlib.sha256(data[i : i + bs]).digest()).digest()
            chains.append(chain.hex())
        assert adapter.run_op("files.block_hashes", {}, inp) == {"value": {"leaves": lv}}
        assert adapter.run_op("files.root", {}, inp) == {
            "value": {"root": chains[-1], "chains": chains}}
        leaves.append(test(f"fil-leaves-{label}", f"leaves of {len(data)} bytes, block {bs}",
                           _tags(10), inp, value={"leaves": lv}))
        roots.append(test(f"fil-root-{label}", f"root of {len(data)} bytes, block {bs}",
                          _tags(10, 11), inp, value={"root": chains[-1], "chains": chains}))
    for label, bs in (("block-size-1000", 1000), ("block-size-8mib", 1 << 23)):
        inp = {"data": "00", "block_size": bs}
        leaves.append(test(f"fil-leaves-{label}", "a block size §7.3 forbids", _tags(16), inp,
                           valid=False, error="MESSAGE_INVALID", flags=["SCHEMA"]))
        roots.append(test(f"fil-root-{label}", "a block size §7.3 forbids", _tags(16), inp,
                          valid=False, error="MESSAGE_INVALID", flags=["SCHEMA"]))
    return [group("files.block_hashes", leaves), group("files.root", roots)]


# ------------------------------------------------------------------------------- machines


class _Rec:
    """One machine driven through the adapter; its steps become a transcript test."""

    def __init__(self, role: str, config: Json) -> None:
        self.role = role
        self.config = config
        self.m = adapter.new(role, config, [])
        self.steps: list[Json] = []
        self.outs: list[Json] = []
        self.now = 0

    def step(self, inp: Json) -> bytes:
        self.now += 10
        try:
            out = adapter.step(self.m, self.now, inp)
        except P4Error as exc:
            out = {"error": exc.code.name}
        self.steps.append({"now": self.now, "in": inp})
        self.outs.append(out)
        return b"".join(bytes.fromhex(o["send"]) for o in out.get("out", []) if "send" in o)

    def recv(self, data: bytes) -> bytes:
        return self.step({"recv": data.hex()})

    def cmd(self, name: str, **args: Any) -> bytes:
        return self.step({"cmd": name, **args})

    def events(self) -> list[Json]:
        return [o for out in self.outs for o in out.get("out", []) if "event" in o]

    def case(self, ident: str, comment: str, tags: list[str],
             flags: list[str] | None = None) -> Json:
        inp = {"rng": [], "steps": self.steps}
        return test(ident, comment, tags, inp, value={"steps": self.outs}, flags=flags)

    def params(self) -> Json:
        return {"machine": "files", "role": self.role, "config": self.config}


def _block(i: int, data: bytes = FILE, bs: int = BS) -> Json:
    chunk = data[i * bs : (i + 1) * bs]
    return {"cmd": "block", "index": i, "data": chunk.hex(),
            "hash": hashlib.sha256(chunk).hexdigest()}


def _stream(first: int = 0, data: bytes = FILE, bs: int = BS) -> bytes:
    """What a v1 sender writes for blocks ``first`` … n − 1 (FIL-26)."""
    out = b""
    for i in range(first, codec.block_count(len(data), bs)):
        chunk = data[i * bs : (i + 1) * bs]
        out += _enc(codec.Hashes(i, (hashlib.sha256(chunk).digest(),)))
        for j in range(0, len(chunk), codec.MAX_DATA_LEN):
            out += _enc(codec.Data(chunk[j : j + codec.MAX_DATA_LEN]))
    return out


def _block_records(i: int, data: bytes = FILE, bs: int = BS) -> bytes:
    chunk = data[i * bs : (i + 1) * bs]
    return _enc(codec.Hashes(i, (hashlib.sha256(chunk).digest(),))) + _enc(codec.Data(chunk))


OFFER = _enc(codec.Offer(NAME, len(FILE), BS, ROOT))
COMPLETE = _enc(codec.Complete())


def _cancel(code: int) -> bytes:
    return _enc(codec.Cancel(code))


def _sender_cases(add: Any) -> None:
    def sender(cfg: Json | None = None) -> _Rec:
        r = _Rec("sender", cfg or dict(SENDER_CFG))
        r.cmd("start")
        return r

    s = sender()
    s.recv(_enc(codec.Accept(0)))
    for i in range(3):
        s.step(_block(i))
    s.recv(COMPLETE)
    s.recv(b"")
    add(s, "fil-tx-worked-example", "the worked example of §15: offer, accept at 0, three "
        "blocks (one leaf each, then the data), FILE_COMPLETE; the half-close after DONE is "
        "ignored", _tags(16, 22, 26, 27, 30, 39, 41), [])

    s = sender()
    s.recv(_enc(codec.Accept(1024)))
    s.step(_block(1))
    s.step(_block(2))
    s.recv(COMPLETE)
    add(s, "fil-tx-resume-from-block-1", "the receiver holds block 0: data starts at block 1",
        _tags(17, 25, 26, 36), ["RESUME"])

    s = sender()
    s.recv(_enc(codec.Accept(len(FILE))))
    s.recv(COMPLETE)
    add(s, "fil-tx-resume-at-size", "the receiver holds the whole file: no data, FILE_COMPLETE",
        _tags(25), ["RESUME"])

    s = sender({**SENDER_CFG, "size": 0, "root": codec.chain_init(0, BS).hex()})
    s.recv(_enc(codec.Accept(0)))
    s.recv(COMPLETE)
    add(s, "fil-tx-empty-file", "an empty file has no block: accept at 0 = size",
        _tags(10, 11, 25), [])

    big = bytes(range(256)) * 160  # 40960 bytes, one block of 64 KiB
    bcfg = {"name": "big.bin", "size": len(big), "block_size": 1 << 16,
            "root": codec.root_of(len(big), 1 << 16, codec.leaf_hashes(big, 1 << 16))[0].hex()}
    s = sender(bcfg)
    s.recv(_enc(codec.Accept(0)))
    s.step(_block(0, big, 1 << 16))
    s.recv(COMPLETE)
    add(s, "fil-tx-send-data-split-32768", "a 40960-byte block goes out as FILE_DATA of 32768 "
        "and 8192 bytes", _tags(26), [])

    s = sender()
    accept = _enc(codec.Accept(1024))
    for b in accept:
        s.recv(bytes([b]))
    add(s, "fil-tx-split-accept", "FILE_ACCEPT one byte per step", _tags(42), ["SPLIT"])

    s = sender()
    s.recv(_enc(codec.Refuse(ErrorCode.FILE_REFUSED)))
    s.recv(_enc(codec.Accept(0)))
    s.cmd("cancel")
    add(s, "fil-tx-refused", "REFUSE(FILE_REFUSED): REFUSED; later bytes are discarded and "
        "commands refused", _tags(18, 24, 41), ["REFUSED_COMMAND"])

    s = sender()
    s.recv(_enc(codec.Refuse(0x0899)))
    add(s, "fil-tx-refused-unknown-code", "a refusal code the registry does not name is "
        "reported as 0x0899", _tags(18), [])

    s = sender()
    s.recv(_enc(codec.Accept(0)))
    s.step(_block(0))
    s.cmd("cancel")
    s.step(_block(1))
    add(s, "fil-tx-cancel", "the user cancels while sending: FILE_CANCEL(FILE_CANCELLED), "
        "CANCELLED; the next block is refused", _tags(31, 41), ["REFUSED_COMMAND"])

    s = sender()
    s.recv(_enc(codec.Accept(0)))
    s.recv(_cancel(ErrorCode.FILE_CANCELLED))
    add(s, "fil-tx-cancelled-by-peer", "the receiver cancels: CANCELLED, nothing sent back",
        _tags(33), [])

    s = sender()
    s.recv(_enc(codec.Accept(0)))
    s.step(_block(0))
    s.recv(_cancel(ErrorCode.FILE_DISK_FULL))
    add(s, "fil-tx-peer-disk-full", "the receiver's disk is full: FILE_FAILED(FILE_DISK_FULL, "
        "by_peer)", _tags(33, 38), ["DISK"])

    for label, cmd in [("hash", {**_block(1), "data": FILE[1024:2048][::-1].hex()}),
                       ("short-read", {**_block(1), "data": FILE[1024:2000].hex()})]:
        s = sender()
        s.recv(_enc(codec.Accept(0)))
        s.step(_block(0))
        s.step(cmd)
        add(s, f"fil-tx-source-changed-{label}", f"block 1 read now differs from its leaf "
            f"({label}): FILE_CANCEL(FILE_SOURCE_CHANGED)", _tags(27, 32), ["CORRUPT"])

    for label, args in [("io-error", {}), ("source-changed", {"code": "FILE_SOURCE_CHANGED"})]:
        s = sender()
        s.recv(_enc(codec.Accept(0)))
        s.cmd("read_failed", **args)
        add(s, f"fil-tx-read-failed-{label}", f"the driver cannot read the file ({label})",
            _tags(32, 38), ["DISK"])

    for label, offset in [("not-on-block", 100), ("past-size", 4096)]:
        s = sender()
        s.recv(_enc(codec.Accept(offset)))
        add(s, f"fil-tx-offset-invalid-{label}", f"FILE_ACCEPT offset {offset}",
            _tags(25, 32), ["LYING_SIZE"])

    s = sender()
    s.recv(_enc(codec.Accept(0)))
    s.recv(COMPLETE)
    add(s, "fil-tx-complete-too-early", "FILE_COMPLETE before the data: UNEXPECTED_MESSAGE",
        _tags(40), [])

    s = sender()
    s.recv(_enc(codec.Accept(0)))
    s.recv(_enc(codec.Data(b"x")))
    add(s, "fil-tx-data-from-receiver", "a sender never receives FILE_DATA", _tags(40), [])

    s = sender()
    s.recv(_raw(0x17, b"\xa0"))
    add(s, "fil-tx-record-invalid", "an unknown record type: FILE_CANCEL(FILE_RECORD_INVALID)",
        _tags(14, 32), ["RECORD"])

    s = sender()
    s.recv(_raw(0x11, b"\xa1\x01\x00", version=2))
    add(s, "fil-tx-version-unsupported", "a record of version 2: FILE_CANCEL(VERSION_UNSUPPORTED)",
        _tags(32, 47), ["RECORD"])

    s = sender()
    s.recv(_raw(0x11, bytes.fromhex("a1011800")))
    add(s, "fil-tx-non-canonical", "a non-minimal integer: FILE_CANCEL(CBOR_NON_MINIMAL)",
        _tags(1, 21, 32), ["NON_CANONICAL"])

    s = sender()
    s.recv(_raw(0x11, bytes.fromhex("a201000200")))
    add(s, "fil-tx-schema", "FILE_ACCEPT with an unknown key: MESSAGE_INVALID",
        _tags(15, 32), ["SCHEMA"])

    s = sender()
    s.recv(_enc(codec.Accept(0)))
    s.recv(b"")
    add(s, "fil-tx-interrupted", "the receiver ends its direction mid-transfer: "
        "FILE_INTERRUPTED by the peer, nothing sent", _tags(34), ["EOF"])

    s = sender()
    s.recv(_enc(codec.Accept(0))[:2])
    s.recv(b"")
    add(s, "fil-tx-interrupted-inside-record", "the end comes inside a record",
        _tags(21, 34), ["EOF"])

    s = _Rec("sender", dict(SENDER_CFG))
    s.cmd("cancel")
    s.cmd("accept", offset=0)
    s.cmd("start")
    s.cmd("start")
    s.recv(_enc(codec.Accept(0)))
    s.step({**_block(1)})
    s.step({**_block(0), "hash": "00" * 31})
    s.cmd("read_failed", code="FILE_DISK_FULL")
    s.cmd("finish")
    s.step(_block(0))
    add(s, "fil-tx-refused-commands", "commands refused without a change: cancel before start, "
        "a receiver's command, start twice, the wrong block, a short hash, a code outside "
        "read_failed's list, finish", _tags(40), ["REFUSED_COMMAND"])


def _receiver_cases(add: Any) -> None:
    def receiver(cfg: Json | None = None, offer: bytes = OFFER) -> _Rec:
        r = _Rec("receiver", cfg if cfg is not None else {})
        r.recv(offer)
        return r

    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_block_records(0))
    r.recv(_block_records(1) + _block_records(2))
    r.cmd("finish")
    r.recv(b"")
    add(r, "fil-rx-worked-example", "offer, accept at 0, three blocks verified as they arrive, "
        "FILE_VERIFIED, finish sends FILE_COMPLETE", _tags(19, 23, 28, 29, 30, 36), [])

    r = receiver()
    r.cmd("accept", offset=0)
    stream = _stream()
    for i in range(0, len(stream), 700):
        r.recv(stream[i : i + 700])
    r.cmd("finish")
    add(r, "fil-rx-split-700", "the sender's stream in 700-byte pieces", _tags(3, 42), ["SPLIT"])

    r = receiver()
    r.cmd("accept", offset=1024, chain=CHAINS[1].hex())
    r.recv(_stream(1))
    r.cmd("finish")
    add(r, "fil-rx-resume-from-block-1", "a resume from the persisted (1024, chain_1): the "
        "bytes before the offset are never seen", _tags(17, 36), ["RESUME"])

    r = receiver()
    r.cmd("accept", offset=len(FILE), chain=ROOT.hex())
    r.cmd("finish")
    add(r, "fil-rx-resume-at-size", "the whole file was verified before a restart: accept at "
        "size, FILE_VERIFIED at once", _tags(25, 29), ["RESUME"])

    r = receiver()
    r.cmd("accept", offset=1024, chain=CHAINS[2].hex())
    r.recv(_block_records(1) + _enc(codec.Hashes(2, (LEAVES[2],))))
    r.recv(_enc(codec.Data(FILE[2048:])))
    add(r, "fil-rx-resume-wrong-chain", "a wrong persisted chain value shows as "
        "FILE_ROOT_MISMATCH after the last block", _tags(29, 35), ["RESUME", "CORRUPT"])

    r = receiver()
    r.cmd("accept", offset=len(FILE), chain=CHAINS[2].hex())
    add(r, "fil-rx-resume-at-size-wrong-chain", "accept at size with a chain that is not the "
        "root: FILE_ROOT_MISMATCH", _tags(29), ["RESUME", "CORRUPT"])

    r = receiver(offer=_enc(codec.Offer("hashes.bin", len(FILE), BS, ROOT)))
    r.cmd("accept", offset=0)
    r.recv(_enc(codec.Hashes(0, tuple(LEAVES))))
    r.recv(b"".join(_enc(codec.Data(FILE[i : i + BS])) for i in range(0, len(FILE), BS)))
    add(r, "fil-rx-hashes-batch", "all three leaves in one FILE_HASHES, then the data",
        _tags(19, 28), [])

    empty_root = codec.chain_init(0, BS)
    r = receiver(offer=_enc(codec.Offer("empty", 0, BS, empty_root)))
    r.cmd("accept", offset=0)
    r.cmd("finish")
    add(r, "fil-rx-empty-file", "an empty file: accept at 0 = size, verified at once",
        _tags(11, 25), [])

    r = receiver()
    r.cmd("refuse")
    r.recv(_block_records(0))
    add(r, "fil-rx-refuse", "the user declines: FILE_REFUSE(FILE_REFUSED); later bytes "
        "discarded", _tags(18, 24, 41), [])

    r = receiver()
    r.cmd("refuse", code="FILE_DISK_FULL")
    add(r, "fil-rx-refuse-disk-full", "not enough space: FILE_REFUSE(FILE_DISK_FULL)",
        _tags(18, 24), ["DISK"])

    r = receiver({"max_size": 2000})
    add(r, "fil-rx-too-large", "a size above max_size: FILE_REFUSE(FILE_TOO_LARGE) without "
        "asking", _tags(23), ["HUGE"])

    huge = _enc(codec.Offer("huge.iso", codec.MAX_SIZE, codec.MAX_BLOCK_SIZE, ROOT))
    r = receiver(offer=huge)
    r.cmd("accept", offset=0)
    r.recv(_enc(codec.Hashes(0, (ROOT,) * 64)))
    r.recv(_enc(codec.Hashes(64, (ROOT,))))
    add(r, "fil-rx-hashes-flood", "a 2^63 − 1 byte offer: 64 leaves ahead are taken, the 65th "
        "is FILE_HASHES_INVALID", _tags(28), ["FLOOD", "HUGE"])

    bad = bytearray(FILE)
    bad[1500] ^= 1
    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_block_records(0))
    r.recv(_enc(codec.Hashes(1, (LEAVES[1],))) + _enc(codec.Data(bytes(bad[1024:2048]))))
    add(r, "fil-rx-bad-block", "one bit flipped in block 1: FILE_BLOCK_MISMATCH at that block, "
        "block 0 stays verified", _tags(29, 32, 35), ["CORRUPT"])

    wrong_root = hashlib.sha256(b"not the root").digest()
    r = receiver(offer=_enc(codec.Offer(NAME, len(FILE), BS, wrong_root)))
    r.cmd("accept", offset=0)
    r.recv(_block_records(0) + _block_records(1) + _enc(codec.Hashes(2, (LEAVES[2],))))
    r.recv(_enc(codec.Data(FILE[2048:])))
    add(r, "fil-rx-root-mismatch", "leaves and data agree but not with the offered root: "
        "FILE_ROOT_MISMATCH after the last block", _tags(29, 35), ["CORRUPT"])

    for label, records, tags, flags in [  # the last recv holds the offending record alone
        ("hashes-out-of-order", _enc(codec.Hashes(1, (LEAVES[1],))), _tags(28), ["FLOOD"]),
        ("hashes-past-end", _enc(codec.Hashes(0, (*LEAVES, ROOT))), _tags(28), ["LYING_SIZE"]),
        ("data-before-hash", _enc(codec.Data(FILE[:10])), _tags(28), []),
        ("data-across-blocks", _enc(codec.Hashes(0, (LEAVES[0],))) +
         _enc(codec.Data(FILE[:1025])), _tags(26, 28), ["LYING_SIZE"]),
        ("data-past-size", _enc(codec.Data(FILE[2048:] + b"!")), _tags(28), ["LYING_SIZE"]),
        ("data-before-hash-and-overrun", _enc(codec.Data(FILE[:1025])), _tags(28), ["ORDER"]),
        ("record-too-long", _hdr(0x14, 32769), _tags(13), ["RECORD"]),
        ("accept-from-sender", _enc(codec.Accept(0)), _tags(40), []),
        ("offer-twice", OFFER, _tags(40), []),
    ]:
        r = receiver()
        r.cmd("accept", offset=0)
        if label == "data-past-size":
            r.recv(_block_records(0) + _block_records(1) + _enc(codec.Hashes(2, (LEAVES[2],))))
        r.recv(records)
        add(r, f"fil-rx-{label}", label.replace("-", " "), tags, flags)

    r = receiver()
    r.recv(_block_records(0))
    add(r, "fil-rx-data-before-accept", "FILE_HASHES before the application accepted: "
        "UNEXPECTED_MESSAGE", _tags(40), [])

    r = receiver(offer=_raw(0x10, bytes.fromhex(OFFER[5:].hex().replace(
        "696e6f7465732e747874", "692e2e2f2e2e2f657463"))))
    add(r, "fil-rx-name-traversal", "an offer named ../../etc: FILE_CANCEL(FILE_NAME_INVALID)",
        _tags(5, 7, 9, 32), ["PATH_TRAVERSAL"])

    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_block_records(0))
    r.cmd("write_failed", code="FILE_DISK_FULL")
    add(r, "fil-rx-disk-full", "a write fails, the disk is full: FILE_CANCEL(FILE_DISK_FULL); "
        "the verified prefix (1024) stays for a resume", _tags(35, 38), ["DISK"])

    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_stream())
    r.cmd("write_failed")
    add(r, "fil-rx-sync-failed", "the final sync or rename fails in VERIFIED: FILE_IO_ERROR",
        _tags(30, 38), ["DISK"])

    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_block_records(0))
    r.cmd("cancel")
    r.cmd("finish")
    add(r, "fil-rx-cancel", "the user cancels while receiving", _tags(31, 41),
        ["REFUSED_COMMAND"])

    r = receiver()
    r.recv(_cancel(ErrorCode.FILE_CANCELLED))
    add(r, "fil-rx-cancelled-by-peer", "the sender cancels before the user decided",
        _tags(33), [])

    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_block_records(0) + _cancel(ErrorCode.FILE_SOURCE_CHANGED))
    add(r, "fil-rx-peer-source-changed", "the sender's file changed: FILE_FAILED by the peer",
        _tags(27, 33), ["CORRUPT"])

    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_block_records(0) + _enc(codec.Hashes(1, (LEAVES[1],))))
    r.recv(b"")
    add(r, "fil-rx-interrupted", "the sender ends its direction mid-transfer: "
        "FILE_INTERRUPTED, nothing sent", _tags(34, 35), ["EOF"])

    r = receiver()
    r.cmd("accept", offset=0)
    r.recv(_stream())
    r.recv(b"")
    r.cmd("finish")
    add(r, "fil-rx-eof-in-verified", "the end of the sender's direction in VERIFIED changes "
        "nothing; finish still completes", _tags(34), ["EOF"])

    r = _Rec("receiver", {})
    r.cmd("accept", offset=0)
    r.recv(OFFER)
    r.cmd("accept", offset=100)
    r.cmd("accept", offset=4096, chain=ROOT.hex())
    r.cmd("accept", offset=1024)
    r.cmd("accept", offset=0, chain=CHAINS[0].hex())
    r.cmd("accept", offset=1024, chain="00" * 31)
    r.cmd("refuse", code="FILE_CANCELLED")
    r.cmd("finish")
    r.cmd("start")
    r.cmd("accept", offset=0)
    add(r, "fil-rx-refused-commands", "commands refused without a change: accept before the "
        "offer, offsets off a block or past the size, a missing, superfluous or short chain, a "
        "code outside refuse's list, finish too early, a sender's command",
        _tags(25, 40), ["REFUSED_COMMAND"])


def _config_cases() -> list[Json]:
    out: list[Json] = []
    bad: list[tuple[str, str, Json, str]] = [
        ("unknown-key", "sender", {**SENDER_CFG, "max_size": 1}, "MESSAGE_INVALID"),
        ("missing-root", "sender", {k: v for k, v in SENDER_CFG.items() if k != "root"},
         "MESSAGE_INVALID"),
        ("size-2-63", "sender", {**SENDER_CFG, "size": 1 << 63}, "MESSAGE_INVALID"),
        ("block-size", "sender", {**SENDER_CFG, "block_size": 1000}, "MESSAGE_INVALID"),
        ("root-31", "sender", {**SENDER_CFG, "root": ROOT[:31].hex()}, "MESSAGE_INVALID"),
        ("name", "sender", {**SENDER_CFG, "name": "../x"}, "FILE_NAME_INVALID"),
        ("name-and-block-size", "sender", {**SENDER_CFG, "name": "../x", "block_size": 3},
         "MESSAGE_INVALID"),
        ("receiver-name", "receiver", {"name": NAME}, "MESSAGE_INVALID"),
        ("receiver-max-size", "receiver", {"max_size": 1 << 63}, "MESSAGE_INVALID"),
    ]
    for label, role, cfg, error in bad:
        try:
            adapter.new(role, cfg, [])
            raise AssertionError(label)
        except P4Error as exc:
            assert exc.code.name == error, (label, exc.code.name)
        t = test(f"fil-config-{label}", f"machine.new refuses: {label}", _tags(44),
                 {"rng": [], "steps": []}, valid=False, error=error, flags=["ORDER"])
        out.append(group("machine.transcript", [t],
                         {"machine": "files", "role": role, "config": cfg}))
    return out


def _transcript_groups() -> tuple[list[Json], list[Json]]:
    per: dict[str, dict[str, tuple[Json, list[Json]]]] = {"sender": {}, "receiver": {}}

    def add(rec: _Rec, ident: str, comment: str, tags: list[str], flags: list[str]) -> None:
        key = repr(rec.params())
        per[rec.role].setdefault(key, (rec.params(), []))[1].append(
            rec.case(ident, comment, tags, flags))

    _sender_cases(add)
    _receiver_cases(add)
    return ([group("machine.transcript", ts, p) for p, ts in per["sender"].values()],
            [group("machine.transcript", ts, p) for p, ts in per["receiver"].values()])


def _pair_groups() -> list[Json]:
    small = FILE[:600]
    root = codec.root_of(len(small), BS, codec.leaf_hashes(small, BS))[0]
    cfg = {"sender": {"name": "small.txt", "size": len(small), "block_size": BS,
                      "root": root.hex()}, "receiver": {}}
    script = [
        {"role": "sender", "now": 0, "in": {"cmd": "start"}},
        {"role": "receiver", "now": 20, "in": {"cmd": "accept", "offset": 0}},
        {"role": "sender", "now": 40, "in": _block(0, small)},
        {"role": "receiver", "now": 60, "in": {"cmd": "finish"}},
    ]
    final = {"sender": {"state": "DONE", "events": [{"event": "ACCEPTED", "offset": 0},
                                                    {"event": "READ_BLOCK", "index": 0},
                                                    {"event": "COMPLETED"}]},
             "receiver": {"state": "DONE", "events": [
                 {"event": "OFFER_RECEIVED", "name": "small.txt", "root": root.hex()},
                 {"event": "WRITE", "offset": 0, "data": small.hex()},
                 {"event": "FILE_VERIFIED"}]}}
    happy = test("fil-pair-happy", "two parties: offer, accept, one block, verify, complete",
                 _tags(22, 24, 26, 29, 30), {"rng": {}, "script": script, "latencyMs": 10},
                 value={"final": final})
    big = {"sender": {**cfg["sender"], "size": 5000}, "receiver": {"max_size": 4096}}
    refused = test("fil-pair-too-large", "two parties: the receiver's limit refuses the offer",
                   _tags(23), {"rng": {}, "script": script[:1], "latencyMs": 10},
                   value={"final": {"sender": {"state": "REFUSED", "events": [
                       {"event": "REFUSED", "code": "FILE_TOO_LARGE"}]},
                       "receiver": {"state": "REFUSED"}}}, flags=["HUGE"])
    params = {"machine": "files", "roles": ["sender", "receiver"]}
    return [group("machine.pair", [happy], {**params, "config": cfg}),
            group("machine.pair", [refused], {**params, "config": big})]


def build() -> dict[str, Json]:
    sender, receiver = _transcript_groups()
    return {
        "files/records.json": envelope("files", SPEC, REV, NOTES, _codec_groups()),
        "files/names.json": envelope("files", SPEC, REV, NOTES, _name_groups()),
        "files/hashes.json": envelope("files", SPEC, REV, NOTES, _hash_groups()),
        "files/sender.json": envelope("files", SPEC, REV, NOTES, sender + _config_cases()),
        "files/receiver.json": envelope("files", SPEC, REV, NOTES, receiver),
        "files/pairs.json": envelope("files", SPEC, REV, NOTES, _pair_groups()),
    }
