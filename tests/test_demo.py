"""The README's demo scenario, run on the session's private Tor network (the command itself
starts its own network; tests share one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from p4ref.demo import _scenario
from p4ref.io.store import Profile
from p4ref.io.webrtc import host_addresses


def test_demo_scenario_pairs_signals_and_opens_the_direct_path(
    tornet: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timings: dict[str, float] = {}
    with host_addresses(["127.0.0.1"]):
        asyncio.run(asyncio.wait_for(_scenario(tornet, tmp_path, timings), 300))
    out = capsys.readouterr().out
    assert "same pair root key: True" in out
    assert "laptop received 'hello from the phone, directly' over WebRTC" in out
    for step in ("pairing over Tor (dial + PAKE + confirm)",
                 "signed HELLO+OFFER/ANSWER via onions", "direct round trip"):
        assert timings[step] > 0
    # Both profiles on disk hold the pair.
    assert Profile.open(tmp_path / "laptop").peer("phone").pair_root_key == \
        Profile.open(tmp_path / "phone").peer("laptop").pair_root_key
