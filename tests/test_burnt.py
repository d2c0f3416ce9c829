"""The burnt-codes cache (p4ref/io/burnt.py): concurrent writers keep every entry."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.burnt import BurntCodes

SEED = bytes(range(32))


def _remember(home: str, i: int) -> None:
    burnt = BurntCodes(Path(home), SEED)
    for k in range(5):
        burnt.remember(f"{100 + i * 10 + k}-adroitness-aardvark", ErrorCode.PAIR_CONFIRM_FAILED)


def test_concurrent_accepters_keep_each_others_entries(tmp_path: Path) -> None:
    """Eight processes each burn five codes at the same time: all forty are refused afterwards
    (read-modify-write under the profile lock, IDN-26; without it entries are lost)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_remember, args=(str(tmp_path), i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    burnt = BurntCodes(tmp_path, SEED)
    refused = 0
    for i in range(8):
        for k in range(5):
            try:
                burnt.check(f"{100 + i * 10 + k}-adroitness-aardvark")
            except P4Error as e:
                assert e.code is ErrorCode.PAIR_CONFIRM_FAILED
                refused += 1
    assert refused == 40
