"""LinkBackend, the local API over p4ref.link, against stand-in links that behave like the real
channel layer where it matters here: a durable byte offset per channel, cumulative confirm,
channels offered by accept_channel, and writes that a crash can interrupt half-way."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from p4ref.api.idempotency import SendStore
from p4ref.api.linkbackend import LinkBackend
from p4ref.api.server import make_app
from p4ref.api.tokens import TokenStore
from p4ref.identity import Identity
from p4ref.io.store import Profile

pytestmark = pytest.mark.timeout(60)


class Crash(Exception):
    pass


@dataclass
class Msg:
    channel: Chan
    offset: int
    data: bytes

    async def confirm(self) -> None:  # cumulative, as in p4ref.link
        self.channel.confirmed_through = self.offset + len(self.data)


@dataclass
class Info:
    name: str
    local: bool


class Chan:
    def __init__(self, cid: int, name: str, local: bool) -> None:
        self.id, self.name, self.local = cid, name, local
        self.written = bytearray()
        self.messages: list[bytes] = []
        self.crash_after: int | None = None  # bytes this write gets through before a "crash"
        self.inbox: asyncio.Queue[Msg | None] = asyncio.Queue()
        self.peer_off = 0
        self.confirmed_through = 0
        self.closed = False

    @property
    def offset(self) -> int:
        return len(self.written)

    async def write(self, data: bytes, *, end_of_message: bool) -> None:
        if self.crash_after is not None:
            self.written += data[: self.crash_after]
            self.crash_after = None
            raise Crash
        self.written += data
        self.messages.append(bytes(data))

    async def recv(self) -> Msg | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.closed = True

    def peer_sends(self, data: bytes) -> None:
        self.inbox.put_nowait(Msg(self, self.peer_off, data))
        self.peer_off += len(data)


class Mux:
    def __init__(self, link: FakeLink) -> None:
        self.link = link

    def channels(self) -> list[Info]:
        return [Info(c.name, c.local) for c in self.link.chans.values()]


class Layer:
    def __init__(self, link: FakeLink) -> None:
        self.mux = Mux(link)


class FakeLink:
    def __init__(self) -> None:
        self.chans: dict[str, Chan] = {}
        self.incoming: asyncio.Queue[Chan] = asyncio.Queue()
        self.channels = Layer(self)
        self.status = "connected"
        self.active_generation = 3
        self.event_q: asyncio.Queue[Any] = asyncio.Queue()

    async def open_channel(self, name: str) -> Chan:
        ch = self.chans[name] = Chan(len(self.chans), name, True)
        return ch

    async def accept_channel(self) -> Chan:
        return await self.incoming.get()

    def channel(self, name: str) -> Chan | None:
        return self.chans.get(name)

    async def events(self) -> AsyncIterator[Any]:
        while True:
            yield await self.event_q.get()

    def peer_opens(self, name: str) -> Chan:
        ch = self.chans[name] = Chan(len(self.chans), name, False)
        self.incoming.put_nowait(ch)
        return ch


@dataclass
class Ev:
    kind: str
    status: str | None = None
    generation: int | None = None
    code: int | None = None
    detail: str = ""


def profile(tmp_path: Path) -> tuple[Path, str]:
    home = tmp_path / "home"
    Profile.init(home, lambda n: bytes(n))
    peer = Identity(bytes(range(32)))
    Profile.open(home).add_peer("phone", peer.public_key, bytes(range(1, 33)), "sas")
    return home, peer.device_id


def test_send_idempotent_and_recovered_after_a_crash(tmp_path: Path) -> None:
    home, phone = profile(tmp_path)

    async def main() -> None:
        link = FakeLink()
        b = LinkBackend(home, {phone: link})
        await b.start()
        ch = await b.open_channel(phone, "notes/a")
        r1 = await ch.send(b"hello", idempotency_key="app/k1")
        assert (r1.message_id, r1.replayed) == ("0", False)
        r2 = await ch.send(b"hello", idempotency_key="app/k1")
        assert r2.replayed and r2.message_id == "0"
        with pytest.raises(Exception, match="IDEMPOTENCY_CONFLICT"):
            await ch.send(b"other", idempotency_key="app/k1")
        # a crash in the middle of a write: 3 of 11 bytes are durable
        raw = link.chans["notes/a"]
        raw.crash_after = 3
        with pytest.raises(Crash):
            await ch.send(b"interrupted", idempotency_key="app/k2")
        # until a restart, the channel refuses sends (half a message is in its stream)
        with pytest.raises(Exception, match="BACKEND_UNAVAILABLE"):
            await ch.send(b"next", idempotency_key="app/k4")
        # and one before anything was written
        ch3 = await b.open_channel(phone, "notes/b")
        link.chans["notes/b"].crash_after = 0
        with pytest.raises(Crash):
            await ch3.send(b"never", idempotency_key="app/k3")
        await b.close()
        # restart: the interrupted send is completed before anything else uses the channel
        b2 = LinkBackend(home, {phone: link})
        await b2.start()
        ch2 = await b2.open_channel(phone, "notes/a")
        assert bytes(raw.written) == b"hellointerrupted"
        r3 = await ch2.send(b"interrupted", idempotency_key="app/k2")  # the app's retry
        assert r3.replayed and r3.message_id == "5"
        ch4 = await b2.open_channel(phone, "notes/b")
        r4 = await ch4.send(b"never", idempotency_key="app/k3")  # never written: sent now
        assert not r4.replayed and link.chans["notes/b"].messages == [b"never"]
        assert (await ch2.send(b"next", idempotency_key="app/k4")).message_id == "16"
        await b2.close()

    asyncio.run(main())


def test_confirm_passes_on_only_a_confirmed_prefix(tmp_path: Path) -> None:
    home, phone = profile(tmp_path)

    async def main() -> None:
        link = FakeLink()
        b = LinkBackend(home, {phone: link})
        await b.start()
        raw = link.peer_opens("notes/in")
        ch = await b.accept_channel(phone, "notes/")
        for data in (b"aa", b"bbb", b"c"):
            raw.peer_sends(data)
        ms = [await ch.receive() for _ in range(3)]
        assert [m.id for m in ms if m] == ["0", "2", "5"]
        await ch.confirm("2")
        assert raw.confirmed_through == 0  # "0" is not confirmed yet
        await ch.confirm("0")
        assert raw.confirmed_through == 5
        await ch.confirm("bogus")
        await ch.confirm("5")
        assert raw.confirmed_through == 6
        await b.close()

    asyncio.run(main())


def test_routing_by_prefix_and_own_channels_after_restart(tmp_path: Path) -> None:
    home, phone = profile(tmp_path)

    async def main() -> None:
        link = FakeLink()
        await link.open_channel("sched/mine")  # opened by this side before a restart
        b = LinkBackend(home, {phone: link})
        await b.start()
        link.peer_opens("notes/x")
        link.peer_opens("other/y")  # nobody's: parked
        got = await asyncio.wait_for(b.accept_channel(phone, "notes/"), 5)
        assert got.name == "notes/x"
        mine = await asyncio.wait_for(b.accept_channel(phone, "sched/"), 5)
        assert mine.name == "sched/mine"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.accept_channel(phone, "notes/"), 0.2)
        assert [p.name for p in b.peers()] == ["phone"]
        st = b.status(phone)
        assert (st.state, st.generation, st.path) == ("connected", 3, "direct")
        link.event_q.put_nowait(Ev("connection_failed", generation=3, code=1, detail="dead path"))
        link.event_q.put_nowait(Ev("connection_open", generation=4))
        link.event_q.put_nowait(Ev("status", status="reconnecting"))
        events = b.events()
        kinds = [(await asyncio.wait_for(events.__anext__(), 5)).kind for _ in range(3)]
        assert kinds == ["connection_failed", "connection_open", "state"]
        rec = b.status(phone).last_reconnect
        assert rec is not None and rec.reason == "dead path"
        await b.close()

    asyncio.run(main())


def test_api_over_link_backend(tmp_path: Path) -> None:
    """The HTTP API end to end on LinkBackend: send, receive the peer's message, confirm."""
    home, phone = profile(tmp_path)

    async def main() -> None:
        link = FakeLink()
        b = LinkBackend(home, {phone: link})
        await b.start()
        token = TokenStore(home).add("notes", [phone], "notes/")
        auth = {"Authorization": f"Bearer {token}"}
        async with TestClient(TestServer(make_app(b, TokenStore(home)),
                                         host="127.0.0.1")) as c:
            r = await c.post("/v1/send", json={"peer": "phone", "channel": "notes/t",
                                               "text": "hi"},
                             headers={**auth, "Idempotency-Key": "x1"})
            assert r.status == 202, await r.text()
            assert link.chans["notes/t"].messages == [b"hi"]
            link.chans["notes/t"].peer_sends(b"reply")
            r = await c.post("/v1/receive", json={"wait_ms": 3000}, headers=auth)
            (m,) = (await r.json())["messages"]
            assert base64.b64decode(m["data"]) == b"reply" and m["peer_name"] == "phone"
            r = await c.post("/v1/confirm", json={"ids": [m["id"]]}, headers=auth)
            assert (await r.json())["confirmed"] == [m["id"]]
            assert link.chans["notes/t"].confirmed_through == 5
            r = await c.get("/v1/status", headers=auth)
            assert (await r.json())["peers"][0]["state"] == "connected"
        await b.close()

    asyncio.run(main())


def test_send_store_keeps_records(tmp_path: Path) -> None:
    async def main() -> None:
        s = SendStore(tmp_path / "sends.db")
        await s.open()
        await s.put_pending("a/k", "P", "c", b"d" * 32, 7, b"xyz")
        rec = await s.get("a/k")
        assert rec is not None and not rec.done and rec.start == 7 and rec.length == 3
        assert [r.key for r in await s.pending("P", "c")] == ["a/k"]
        await s.mark_done("a/k")
        assert (await s.get("a/k")).done  # type: ignore[union-attr]
        assert await s.pending("P", "c") == []
        await s.close()
        assert (tmp_path / "sends.db").stat().st_mode & 0o077 == 0

    asyncio.run(main())


def test_serve_links_as_p4_up_runs_it(tmp_path: Path) -> None:
    """serve_links: the API on the profile's socket over the links; stopping it closes open
    streams with 1001 (going away) and removes the socket and endpoint file."""
    from aiohttp import ClientSession, UnixConnector, WSMsgType

    from p4ref.api.linkbackend import serve_links

    home, phone = profile(tmp_path)

    async def main() -> None:
        link = FakeLink()
        token = TokenStore(home).add("notes", [phone], "notes/")
        auth = {"Authorization": f"Bearer {token}"}
        async with serve_links(home, {phone: link}) as api:
            assert api.endpoint is not None and api.endpoint.path is not None
            session = ClientSession(connector=UnixConnector(path=api.endpoint.path))
            r = await session.get("http://p4/v1/peers", headers=auth)
            assert [p["name"] for p in (await r.json())["peers"]] == ["phone"]
            ws = await session.ws_connect("http://p4/v1/stream", headers=auth)
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
        try:
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
        finally:
            await session.close()
        assert not (home / "api" / "api.sock").exists()
        assert not (home / "api" / "endpoint.json").exists()

    asyncio.run(main())


def test_links_added_and_removed_while_running(tmp_path: Path) -> None:
    home, phone = profile(tmp_path)

    async def main() -> None:
        b = LinkBackend(home, {})
        await b.start()
        assert b.peers() == []
        link = FakeLink()
        b.add_link(phone, link)
        events = b.events()
        ev = await asyncio.wait_for(events.__anext__(), 5)
        assert (ev.peer, ev.kind) == (phone, "paired")
        link.peer_opens("notes/late")
        ch = await asyncio.wait_for(b.accept_channel(phone, "notes/"), 5)
        assert ch.name == "notes/late" and [p.name for p in b.peers()] == ["phone"]
        b.remove_link(phone)
        ev = await asyncio.wait_for(events.__anext__(), 5)
        assert ev.kind == "forgotten" and b.peers() == []
        with pytest.raises(Exception, match="PEER_UNKNOWN"):
            await b.open_channel(phone, "notes/x")
        await b.close()

    asyncio.run(main())


def test_release_offers_the_channel_again_with_its_unconfirmed_messages(tmp_path: Path) -> None:
    home, phone = profile(tmp_path)

    async def main() -> None:
        link = FakeLink()
        b = LinkBackend(home, {phone: link})
        await b.start()
        raw = link.peer_opens("notes/r")
        ch = await asyncio.wait_for(b.accept_channel(phone, "notes/"), 5)
        for data in (b"a", b"b", b"c"):
            raw.peer_sends(data)
        m1, m2 = await ch.receive(), await ch.receive()
        assert m1 is not None and m2 is not None
        await ch.confirm(m1.id)
        b.release(ch)
        again = await asyncio.wait_for(b.accept_channel(phone, "notes/"), 5)
        assert again is ch
        n2, n3 = await again.receive(), await again.receive()
        assert (n2.id, n2.data, n3.data) == (m2.id, b"b", b"c")  # type: ignore[union-attr]
        await again.confirm(n3.id)  # type: ignore[union-attr]
        assert raw.confirmed_through == 1  # "b" is not confirmed yet
        await again.confirm(n2.id)  # type: ignore[union-attr]
        assert raw.confirmed_through == 3
        await b.close()

    asyncio.run(main())
