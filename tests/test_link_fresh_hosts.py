"""p4-04 SES-75: after a network change that brought new local addresses, the next generation
gathers host candidates on those only (ICE cannot nominate a pair on the network being left),
and on every address again once a generation has opened; configured addresses stay as they are.
Two real links in one process (aiortc on 127.0.0.1, a loopback stand-in for Tor)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import cast

import pytest

from p4ref.io.tor import TorDriver
from p4ref.io.webrtc import DirectConfig
from p4ref.link import Link
from p4ref.link._signalling import Signaller
from tests.test_files_outbox_ref import CONFIG, LoopbackTor, _on_datachannel, _pair, _until


def test_a_network_change_gathers_on_the_new_addresses_only(tmp_path: Path) -> None:
    async def main() -> None:
        home_a, home_b = _pair(tmp_path)
        tor = LoopbackTor()
        any_address = dataclasses.replace(CONFIG, host_addresses=None)  # as `p4 up` by default
        a = Link.open(home_a, "b", tor=cast(TorDriver, tor), config=any_address)
        b = Link.open(home_b, "a", tor=cast(TorDriver, tor), config=CONFIG)
        await a.start()
        await b.start()
        try:
            await _until(_on_datachannel(a, b), 60, "the first generation")  # (the session
            # is "connected" on the onion stream before: a generation may still be in flight)
            asked: list[tuple[int, DirectConfig]] = []
            direct_now = a._direct_now

            def spy() -> DirectConfig:
                d = direct_now()
                asked.append((a.generations_opened, d))
                return d
            a._direct_now = spy  # type: ignore[method-assign]
            opened = a.generations_opened
            a.network_changed(["127.0.0.1"])
            await _until(lambda: a.generations_opened > opened and a.path == "datachannel", 60,
                         "a generation after the change")
            assert asked, "no generation was set up after the change"
            assert asked[0][1].host_addresses == ("127.0.0.1",), asked[0]
            assert direct_now().host_addresses is None  # one opened: every address again
            a.network_changed([])  # nothing gained (the old network went): every address
            assert direct_now().host_addresses is None
            b.network_changed(["192.0.2.7"])  # configured addresses are never replaced
            assert b._direct_now().host_addresses == ("127.0.0.1",)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_a_generation_set_up_while_starting_meets_the_start(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The peer dials in and sets up generation 1 while this link is still publishing its
    rendezvous (``p4 up`` of the two started together): that generation meets this side's
    start, and no second one follows (one did, 2 s later, before the need was raised first):
    p4-04 SES-77."""
    async def main() -> None:
        home_a, home_b = _pair(tmp_path)
        tor = LoopbackTor()
        a = Link.open(home_a, "b", tor=cast(TorDriver, tor), config=CONFIG)
        b = Link.open(home_b, "a", tor=cast(TorDriver, tor), config=CONFIG)
        publish = Signaller.start

        async def slow_start(self: Signaller) -> None:
            await publish(self)
            if self is getattr(b, "signaller", None):  # returns only once a's generation opened
                await _until(lambda: b.generations_opened >= 1, 60, "a's generation")
        monkeypatch.setattr(Signaller, "start", slow_start)
        await a.start()
        try:
            await b.start()
            await _until(_on_datachannel(a, b), 60, "the first generation")
            await asyncio.sleep(CONFIG.high_delay + 3.0)  # a second one took ~2 s to open
            assert (a.generations_opened, b.generations_opened) == (1, 1)
            assert a.status == b.status == "connected" and b.path == "datachannel"
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(asyncio.wait_for(main(), 120))
