"""p4-04 SES-78: when stream glare (p4-03 RDV-39) makes a peer close the onion stream that
carries the session, it closes it only once the session connection on the kept stream has
opened, so the session is carried throughout: no ``none`` path, no ``reconnecting`` status.

Two real links in one process over a loopback stand-in for Tor, with no generation set up (the
session runs on the onion stream, as when no direct path exists).  The LOW peer dials at once
but its stream's first bytes are slowed, so the HIGH peer's follower dial is authenticated
first and carries the session; the LOW-dialed stream is authenticated while that one is live,
and RDV-39 keeps it at both peers.  CI saw this at the start of
``test_tor_fallback``: both peers said ``reconnecting``, path ``none``, for 47 ms."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from p4ref.io.tor import TorDriver
from p4ref.link import Link, LinkEvent
from p4ref.link import _signalling as signalling
from tests.test_files_outbox_ref import CONFIG, LoopbackTor, _pair, _until


class _SlowDial(LoopbackTor):
    """A LoopbackTor whose dialed streams deliver their first bytes ``delay`` seconds late (a
    slow circuit): the stream is connected at once, its RV_HELLO exchange completes late."""

    def __init__(self, ports: dict[str, int], delay: float) -> None:
        super().__init__()
        self.ports = ports
        self.delay = delay
        self._tasks: set[asyncio.Task[None]] = set()

    async def open_stream(self, addr: str, port: int, timeout: float = 60.0, **kw: Any
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await super().open_stream(addr, port, timeout, **kw)
        if not self.delay:
            return reader, writer
        late = asyncio.StreamReader()

        async def feed() -> None:
            first = True
            while data := await reader.read(65536):
                if first:
                    await asyncio.sleep(self.delay)
                    first = False
                late.feed_data(data)
            late.feed_eof()
        t = asyncio.create_task(feed())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return late, writer


def test_stream_glare_keeps_the_session_carried(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_generations(self: Link) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(Link, "_reconnect_loop", no_generations)
    monkeypatch.setattr(signalling, "RECENT_RX", 30.0)  # the first stream counts as live

    async def main() -> None:
        home_a, home_b = _pair(tmp_path)
        ports: dict[str, int] = {}
        events: dict[str, list[LinkEvent]] = {"a": [], "b": []}
        links, tors = {}, {}
        for name, home, peer in (("a", home_a, "b"), ("b", home_b, "a")):
            tors[name] = _SlowDial(ports, 0.0)
            links[name] = Link.open(home, peer, tor=cast(TorDriver, tors[name]), config=CONFIG,
                                    on_event=events[name].append)
        low = "a" if links["a"].peer_pub > links["b"].peer_pub else "b"  # p4-03 §3: LOW's key
        high = "b" if low == "a" else "a"
        # LOW dials at once but its stream is authenticated only after HIGH's follower dial
        # (1 s) was: the LOW's dial is abandoned too late, both streams live [RDV-39]
        tors[low].delay = 2.5
        for ln in links.values():
            await ln.start()
        try:
            def settled() -> bool:
                return all(ln.signaller.stream is not None and ln.signaller.stream.dialed_by_low
                           and len(ln.signaller._streams) == 1
                           and ln._onion.get(ln.machine.active or 0) is ln.signaller.stream
                           and ln.path == "tor" for ln in links.values())
            try:
                await _until(settled, 30, "the LOW-dialed stream carrying the session at both")
            except AssertionError:
                for n, ln in links.items():
                    sg = ln.signaller
                    print(n, n == low, ln.path, ln.status, sg.dials, [
                        (x is sg.stream, x.dialed_by_low, x.authenticated, x.session,
                         x.machine.state) for x in sg._streams])
                    print([(e.kind, e.detail, e.status, e.generation) for e in events[n]])
                raise
            assert links[low].signaller.is_low
            assert links[high].signaller.dials >= 1, "the HIGH peer never dialed: no glare"
            for name, evs in events.items():
                paths = [e.detail for e in evs if e.kind == "path"]
                statuses = [e.status for e in evs if e.kind == "status"]
                assert paths == ["tor"], (name, paths)
                assert statuses == ["reconnecting", "connected"], (name, statuses)
                opened = [e for e in evs if e.kind == "connection_open"]
                assert len(opened) == 2, (name, evs)  # one per stream: the swap happened
        finally:
            for ln in links.values():
                await ln.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
