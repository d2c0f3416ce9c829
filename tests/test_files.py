"""File transfer (p4-06): codec, names, hashes, the two machines, interruption and resume at any
point, corruption detected at its block, any split; the spec's tables match the code."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4ref.errors import DecodeError, ErrorCode, LocalProtocolError, P4Error
from p4ref.files import (
    MAX_DATA_LEN,
    RECEIVER_TRANSITIONS,
    SENDER_TRANSITIONS,
    Accept,
    BlockVerified,
    Cancel,
    Cancelled,
    Complete,
    Completed,
    Data,
    FileFailed,
    FileReceiver,
    FileSender,
    FileVerified,
    Hashes,
    Offer,
    OfferReceived,
    ReadBlock,
    Refuse,
    Refused,
    State,
    Write,
    chain_init,
    check_name,
    decode_record,
    encode_record,
    leaf_hashes,
    root_of,
    transition_table_markdown,
)

ROOT_DIR = Path(__file__).resolve().parent.parent
SPEC = (ROOT_DIR / "spec" / "p4-06-files-v1.md").read_text("utf-8")
BS = 1024


def _content(n: int, seed: int = 0) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return out[:n]


@dataclass
class Partial:
    """What a receiving driver keeps on disk: the file's bytes and (verified, chain)."""

    data: bytearray = field(default_factory=bytearray)
    verified: int = 0
    chain: bytes | None = None


def _sender(data: bytes, bs: int = BS, name: str = "f.bin") -> FileSender:
    root, _ = root_of(len(data), bs, leaf_hashes(data, bs))
    return FileSender(name, len(data), bs, root)


def _drain_receiver(r: FileReceiver, part: Partial, *, finish: bool = True) -> list[object]:
    """Run the receiving driver's duties for every queued event: writes, persisting the
    verified prefix, ``finish`` after FILE_VERIFIED."""
    seen: list[object] = []
    while (ev := r.next_event()) is not None:
        seen.append(ev)
        if isinstance(ev, Write):
            end = ev.offset + len(ev.data)
            if len(part.data) < end:
                part.data.extend(bytes(end - len(part.data)))
            part.data[ev.offset : end] = ev.data
        elif isinstance(ev, BlockVerified):
            part.verified, part.chain = ev.verified, ev.chain
        elif isinstance(ev, FileVerified) and finish:
            r.finish()
    return seen


def _accept(r: FileReceiver, part: Partial) -> None:
    if part.verified:
        r.accept(part.verified, part.chain)
    else:
        r.accept(0)


def transfer(data: bytes, part: Partial, *, cut: int | None = None, bs: int = BS,
             flip: int | None = None) -> tuple[FileSender, FileReceiver]:
    """One transfer over an in-memory channel: the receiver resumes from ``part``.  ``cut``
    stops after that many bytes of the sender's direction (a crash or a lost channel);
    ``flip`` flips one bit of that byte of the sender's direction."""
    s, r = _sender(data, bs), FileReceiver()
    s.start()
    sent = 0
    leaves = leaf_hashes(data, bs)
    while True:
        moved = False
        for rec in s.data_to_send():
            moved = True
            if flip is not None and sent <= flip < sent + len(rec):
                b = bytearray(rec)
                b[flip - sent] ^= 0x01
                rec = bytes(b)
            if cut is not None and sent + len(rec) > cut:
                r.receive_data(rec[: cut - sent])
                sent = cut
                _drain_receiver(r, part)
                return s, r
            sent += len(rec)
            r.receive_data(rec)
        for rec in r.data_to_send():
            moved = True
            s.receive_data(rec)
        for ev in _drain_receiver(r, part):
            moved = True
            if isinstance(ev, OfferReceived):
                _accept(r, part)
        while (sev := s.next_event()) is not None:
            moved = True
            if isinstance(sev, ReadBlock):
                s.block(sev.index, data[sev.offset : sev.offset + sev.length], leaves[sev.index])
        if not moved:
            return s, r


# --------------------------------------------------------------------------------- codec


def test_worked_example_matches_spec() -> None:
    data = bytes(i % 251 for i in range(2500))
    leaves = leaf_hashes(data, BS)
    root, chains = root_of(len(data), BS, leaves)
    flat = re.sub(r"\s+", "", SPEC)  # long hex is wrapped in the text
    assert root.hex() in flat and all(c.hex() in flat for c in chains)
    offer = encode_record(Offer("notes.txt", 2500, BS, root)).hex()
    assert offer in flat
    for rec in (Accept(0), Accept(1024), Complete(), Cancel(ErrorCode.FILE_CANCELLED),
                Refuse(ErrorCode.FILE_REFUSED), Hashes(0, (leaves[0],))):
        assert encode_record(rec).hex() in flat


def test_chain_definition() -> None:
    assert chain_init(2500, 1024) == hashlib.sha256(
        b"P4-FILES-v1\x00" + (2500).to_bytes(8, "big") + (1024).to_bytes(4, "big")).digest()
    root, chains = root_of(0, BS, [])
    assert root == chains[0] == chain_init(0, BS)


records = st.one_of(
    st.builds(Offer, st.sampled_from(["a", "notes.txt", "Résumé P⁴.pdf", ".x"]),
              st.integers(0, 2**63 - 1), st.sampled_from([1 << k for k in range(10, 23)]),
              st.binary(min_size=32, max_size=32)),
    st.builds(Accept, st.integers(0, 2**63 - 1)),
    st.builds(Refuse, st.integers(0, 0xFFFF)),
    st.builds(Cancel, st.integers(0, 0xFFFF)),
    st.builds(Hashes, st.integers(0, 2**63 - 1),
              st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=64).map(tuple)),
    st.builds(Data, st.binary(min_size=1, max_size=2000)),
    st.just(Complete()),
)


@given(records)
@settings(max_examples=200, deadline=None)
def test_record_round_trip(rec: object) -> None:
    raw = encode_record(rec)  # type: ignore[arg-type]
    assert decode_record(raw) == rec


@given(st.binary(max_size=80))
@settings(max_examples=300, deadline=None)
def test_decode_never_raises_foreign_errors(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_record(raw)


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", "C:x", ".", "..", "x.", "x ", "a\x00",
                                  "a\u202eb", "a\u0085", "x" * 256, "é" * 128])
def test_bad_names(name: str) -> None:
    with pytest.raises(DecodeError) as err:
        check_name(name)
    assert err.value.code is ErrorCode.FILE_NAME_INVALID


@given(st.text(min_size=1, max_size=60))
@settings(max_examples=300, deadline=None)
def test_valid_names_are_one_safe_component(name: str) -> None:
    try:
        check_name(name)
    except DecodeError:
        return
    assert "/" not in name and "\\" not in name and ":" not in name
    assert name not in (".", "..") and not name.endswith((".", " "))
    assert Path("/inbox", name).parent == Path("/inbox")


# ------------------------------------------------------------------------------- machines


@pytest.mark.parametrize("size", [0, 1, BS - 1, BS, BS + 1, 3 * BS + 17, 40 * BS])
def test_transfer_reconstructs_the_file(size: int) -> None:
    data = _content(size)
    part = Partial()
    s, r = transfer(data, part)
    assert (s.state, r.state) == (State.DONE, State.DONE)
    assert bytes(part.data) == data and part.verified == size


def test_a_v1_transfer_uses_only_v1_records() -> None:
    """FIL-43: every record of a transfer, both ways, is a §7.2 type with its §7.3 keys."""
    data = _content(3 * BS + 5)
    s, r = _sender(data), FileReceiver()
    s.start()
    seen: set[int] = set()
    leaves = leaf_hashes(data, BS)
    part = Partial()
    for _ in range(50):
        for rec in s.data_to_send():
            seen.add(rec[1])
            decode_record(rec)
            r.receive_data(rec)
        for rec in r.data_to_send():
            seen.add(rec[1])
            decode_record(rec)
            s.receive_data(rec)
        for ev in _drain_receiver(r, part):
            if isinstance(ev, OfferReceived):
                r.accept(0)
        while (sev := s.next_event()) is not None:
            if isinstance(sev, ReadBlock):
                s.block(sev.index, data[sev.offset : sev.offset + sev.length], leaves[sev.index])
    assert r.state is State.DONE and seen == {0x10, 0x11, 0x13, 0x14, 0x15}


def test_data_records_never_span_blocks_and_are_bounded() -> None:
    data = _content(100_000)
    bs = 1 << 16
    s = _sender(data, bs)
    s.start()
    s.receive_data(encode_record(Accept(0)))
    s.data_to_send()
    leaves = leaf_hashes(data, bs)
    ev = s.next_event()
    assert ev is not None
    ev = s.next_event()
    assert isinstance(ev, ReadBlock) and ev.length == bs
    s.block(0, data[:bs], leaves[0])
    recs = [decode_record(x) for x in s.data_to_send()]
    assert isinstance(recs[0], Hashes) and recs[0].hashes == (leaves[0],)
    sizes = [len(x.data) for x in recs[1:] if isinstance(x, Data)]
    assert sizes == [MAX_DATA_LEN, MAX_DATA_LEN] and sum(sizes) == bs


@given(size=st.integers(0, 6 * BS), cut_frac=st.floats(0, 1), seed=st.integers(0, 5),
       cuts=st.integers(1, 3))
@settings(max_examples=120, deadline=None)
def test_any_interruption_then_resume_reconstructs_exactly(size: int, cut_frac: float,
                                                          seed: int, cuts: int) -> None:
    """Interrupt the sender's direction at any byte, up to three times, keeping the partial file
    and its verified prefix; the next transfer resumes and the result is the exact file."""
    data = _content(size, seed)
    part = Partial()
    for k in range(cuts):
        stream_len = len(data) + 200 * (len(data) // BS + 2)
        s, r = transfer(data, part, cut=int(cut_frac * stream_len / (k + 1)))
        if r.state is State.DONE:
            break
        assert part.verified % BS == 0 and part.data[: part.verified] == data[: part.verified]
    s, r = transfer(data, part)
    assert (s.state, r.state) == (State.DONE, State.DONE)
    assert bytes(part.data[:size]) == data


@given(size=st.integers(1, 5 * BS), pos_frac=st.floats(0, 1), seed=st.integers(0, 3))
@settings(max_examples=150, deadline=None)
def test_a_corrupted_block_is_detected_at_that_block(size: int, pos_frac: float,
                                                     seed: int) -> None:
    """Flip one bit of one file byte inside the sender's stream: the receiver fails with
    FILE_BLOCK_MISMATCH when that block's last byte arrives, every earlier block verified."""
    data = _content(size, seed)
    target = min(size - 1, int(pos_frac * size))  # the file byte to corrupt
    block = target // BS
    # where that byte is in the sender's direction: the offer, then HASHES + DATA per block
    leaves = leaf_hashes(data, BS)
    stream = encode_record(Offer("f.bin", size, BS, root_of(size, BS, leaves)[0]))
    for i in range(block):
        stream += encode_record(Hashes(i, (leaves[i],))) + encode_record(Data(data[i * BS:
                                                                                 (i + 1) * BS]))
    stream_pos = len(stream) + len(encode_record(Hashes(block, (leaves[block],)))) + 5 \
        + (target - block * BS)
    part = Partial()
    s, r = transfer(data, part, flip=stream_pos)
    assert r.state is State.FAILED and s.state is State.FAILED
    assert part.verified == block * BS
    assert part.data[: part.verified] == data[: part.verified]
    s, r = transfer(data, part)  # and the resume repairs it
    assert (s.state, r.state) == (State.DONE, State.DONE) and bytes(part.data) == data


@given(st.lists(st.integers(1, 400), min_size=1, max_size=40), st.integers(0, 4 * BS))
@settings(max_examples=100, deadline=None)
def test_receiver_accepts_any_split(splits: list[int], size: int) -> None:
    data = _content(size)
    leaves = leaf_hashes(data, BS)
    stream = b"".join(encode_record(Hashes(i, (leaves[i],)))
                      + encode_record(Data(data[i * BS : (i + 1) * BS]))
                      for i in range(len(leaves)))

    def run(pieces: list[bytes]) -> tuple[list[object], list[bytes], State]:
        r = FileReceiver()
        r.receive_data(encode_record(Offer("f", size, BS, root_of(size, BS, leaves)[0])))
        r.next_event()
        r.accept(0)
        out = r.data_to_send()
        events: list[object] = []
        for p in pieces:
            if not p:
                continue  # an empty recv would be the end of the stream
            r.receive_data(p)
            out += r.data_to_send()
            while (ev := r.next_event()) is not None:
                events.append(ev)
        return events, out, r.state

    whole = run([stream])
    pieces, i, k = [], 0, 0
    while i < len(stream):
        n = splits[k % len(splits)]
        pieces.append(stream[i : i + n])
        i, k = i + n, k + 1
    got = run(pieces)
    assert got == whole


def test_refused_commands_change_nothing() -> None:
    data = _content(3000)
    s = _sender(data)
    with pytest.raises(LocalProtocolError) as err:
        s.cancel()
    assert err.value.code is ErrorCode.UNEXPECTED_MESSAGE and s.state is State.IDLE
    s.start()
    s.receive_data(encode_record(Accept(0)))
    s.data_to_send()
    with pytest.raises(LocalProtocolError):
        s.block(2, data[2048:], bytes(32))
    with pytest.raises(LocalProtocolError):
        s.read_failed(ErrorCode.FILE_DISK_FULL)
    assert s.state is State.SENDING and s.data_to_send() == []
    r = FileReceiver()
    r.receive_data(encode_record(Offer("f", 3000, BS, bytes(32))))
    for args in ((100, None), (1024, None), (0, bytes(32)), (4096, bytes(32))):
        with pytest.raises(LocalProtocolError):
            r.accept(*args)
    with pytest.raises(LocalProtocolError):
        r.refuse(ErrorCode.FILE_CANCELLED)
    assert r.state is State.OFFERED and r.data_to_send() == []


def test_cancel_and_failures_report_codes() -> None:
    data = _content(2000)
    s = _sender(data)
    s.start()
    s.receive_data(encode_record(Cancel(ErrorCode.FILE_CANCELLED)))
    assert s.state is State.CANCELLED and isinstance(s.next_event(), Cancelled)
    s = _sender(data)
    s.start()
    s.receive_data(encode_record(Refuse(0x0899)))
    ev = s.next_event()
    assert isinstance(ev, Refused) and ev.code == 0x0899 and s.state is State.REFUSED
    s = _sender(data)
    s.start()
    s.receive_data(encode_record(Accept(0)))
    s.receive_data(encode_record(Complete()))
    assert s.state is State.FAILED
    out = [decode_record(x) for x in s.data_to_send()]
    assert out[-1] == Cancel(ErrorCode.UNEXPECTED_MESSAGE)
    evs = []
    while (e := s.next_event()) is not None:
        evs.append(e)
    assert evs[-1] == FileFailed(ErrorCode.UNEXPECTED_MESSAGE, False)
    assert not any(isinstance(e, Completed) for e in evs)


def test_disk_full_keeps_the_verified_prefix_and_resumes() -> None:
    data = _content(5 * BS + 3)
    part = Partial()
    s, r = transfer(data, part, cut=3 * (BS + 45) + 60)
    assert r.state is State.RECEIVING
    r.write_failed(ErrorCode.FILE_DISK_FULL)
    assert r.state is State.FAILED
    assert decode_record(r.data_to_send()[-1]) == Cancel(ErrorCode.FILE_DISK_FULL)
    s.receive_data(encode_record(Cancel(ErrorCode.FILE_DISK_FULL)))
    assert s.state is State.FAILED
    kept = part.verified
    assert 0 < kept < len(data) and kept % BS == 0
    s, r = transfer(data, part)
    assert (s.state, r.state) == (State.DONE, State.DONE) and bytes(part.data) == data


def test_huge_offer_is_refused_without_asking() -> None:
    r = FileReceiver(max_size=10)
    r.receive_data(encode_record(Offer("big", 2**63 - 1, 1 << 22, bytes(32))))
    assert r.state is State.REFUSED
    assert decode_record(r.data_to_send()[0]) == Refuse(ErrorCode.FILE_TOO_LARGE)


def test_terminal_states_discard_input() -> None:
    r = FileReceiver(max_size=10)
    r.receive_data(encode_record(Offer("big", 11, BS, bytes(32))))
    r.data_to_send()
    r.receive_data(b"\xff" * 100_000)
    r.receive_data(b"")
    assert r.state is State.REFUSED and r.data_to_send() == []


# ---------------------------------------------------------------------- spec ↔ code, purity


def test_spec_tables_are_generated_from_the_code() -> None:
    assert transition_table_markdown(SENDER_TRANSITIONS) in SPEC
    assert transition_table_markdown(RECEIVER_TRANSITIONS) in SPEC


def test_spec_registry_matches_error_codes() -> None:
    rows = re.findall(r"^\| (0x08[0-9A-F]{2}) \| (FILE_\w+) \|", SPEC, re.M)
    assert rows and all(ErrorCode[name] == int(code, 16) for code, name in rows)
    assert {n for n in ErrorCode.__members__ if n.startswith("FILE_")} == {n for _, n in rows}


def test_machines_do_no_io() -> None:
    banned = {"asyncio", "os", "socket", "time", "random", "secrets", "sqlite3", "pathlib"}
    for path in (ROOT_DIR / "p4ref" / "files").glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & banned, (path, names)


def test_errors_are_p4errors() -> None:
    with pytest.raises(P4Error):
        FileSender("a/b", 1, BS, bytes(32))
    with pytest.raises(P4Error):
        FileSender("a", 1, 1000, bytes(32))
