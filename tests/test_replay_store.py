"""p4ref.io.replay_store: the per-peer high-water mark survives restarts, only grows, and a
corrupt file is a typed error that is never rewritten (p4-03 §8.3, RDV-52)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.replay_store import ReplayStore, ReplayStoreError

PEER, OTHER = b"\x01" * 32, b"\x02" * 32


def test_missing_file_is_zero_and_marks_persist(tmp_path: Path) -> None:
    path = tmp_path / "p" / "replay.json"
    store = ReplayStore(path)
    assert store.last_generation(PEER) == 0
    assert store.advance(PEER, 5) == 5
    assert store.advance(OTHER, 2**64 - 1) == 2**64 - 1
    again = ReplayStore(path)  # a restart
    assert again.last_generation(PEER) == 5 and again.last_generation(OTHER) == 2**64 - 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc == {"format": "p4-replay", "version": 1,
                   "peers": {PEER.hex(): {"last_generation": 5},
                             OTHER.hex(): {"last_generation": 2**64 - 1}}}


def test_the_mark_only_grows(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path / "replay.json")
    store.advance(PEER, 9)
    assert store.advance(PEER, 3) == 9 and store.last_generation(PEER) == 9


def test_no_temp_files_left_behind(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path / "replay.json")
    for g in range(1, 4):
        store.advance(PEER, g)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay.json", "replay.json.lock"]


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe", b"[]", b"null",
    b'{"format": "p4-replay", "version": 2, "peers": {}}',
    b'{"format": "p4-replay", "version": 1, "peers": {}, "extra": 1}',
    b'{"format": "p4-replay", "version": 1, "peers": {"' + b"0" * 64
    + b'": {"last_generation": -1}}}',
    b'{"format": "p4-replay", "version": 1, "peers": {"' + b"0" * 64
    + b'": {"last_generation": 18446744073709551616}}}',
    b'{"format": "p4-replay", "version": 1, "peers": {"' + b"0" * 64
    + b'": {"last_generation": 1.0}}}',
    b'{"format": "p4-replay", "version": 1, "peers": {"' + b"A" * 64
    + b'": {"last_generation": 1}}}',
    b'{"format": "p4-replay", "format": "p4-replay", "version": 1, "peers": {}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"format": "p4-replay", "version": 1, "peers": {"' + b"0" * 64
    + b'": {"last_generation": ' + b"9" * 5000 + b"}}}",
], ids=["empty", "truncated", "not-utf8", "list", "null", "version-2", "extra-key", "negative",
        "above-u64", "float", "upper-hex", "duplicate-key", "deep-nesting", "5000-digits"])
def test_corrupt_file_is_a_typed_error_and_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "replay.json"
    path.write_bytes(content)
    store = ReplayStore(path)
    with pytest.raises(ReplayStoreError) as exc:
        store.last_generation(PEER)
    assert exc.value.code is ErrorCode.PROFILE_CORRUPT
    with pytest.raises(ReplayStoreError):
        store.advance(PEER, 1)  # never "repaired" by a write
    assert path.read_bytes() == content


def test_a_fifo_or_symlink_does_not_block_or_follow(tmp_path: Path) -> None:
    fifo = tmp_path / "replay.json"
    os.mkfifo(fifo)
    with pytest.raises(ReplayStoreError):
        ReplayStore(fifo).last_generation(PEER)  # returns at once: O_NONBLOCK, then fstat
    link = tmp_path / "link.json"
    target = tmp_path / "target.json"
    ReplayStore(target).advance(PEER, 1)
    link.symlink_to(target)
    with pytest.raises(ReplayStoreError):
        ReplayStore(link).last_generation(PEER)


def test_arguments_are_checked(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path / "replay.json")
    with pytest.raises(P4Error) as exc:
        store.advance(b"short", 1)
    assert exc.value.code is ErrorCode.RDV_KEY_INVALID
    for bad in (-1, 2**64, True):
        with pytest.raises(P4Error):
            store.advance(PEER, bad)
    assert not (tmp_path / "replay.json").exists()
