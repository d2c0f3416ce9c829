"""File bytes are kept in the session outbox as references to the file, not copies (p4-06
FIL-39; p4ref/io/fileref.py, p4ref.link.Channel.send_file_regions): the reference format and its
change detector, send_file's regions, and two real links (SQLite stores, aiortc on 127.0.0.1,
signalling over a loopback stand-in for Tor) — no file bytes in the outbox's payload column
during a transfer, the unacknowledged items of a restarted sender read back from the file
byte-exact, and a file changed before the restart failing only its own channel with
FILE_SOURCE_CHANGED."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from p4ref.channels import DATA_HEADER_LEN
from p4ref.errors import ErrorCode, P4Error
from p4ref.io import files as fio
from p4ref.io.fileref import FileRegions, SourceChanged, encode_ref, resolve_ref
from p4ref.io.session_store import SESSION_DB
from p4ref.io.store import Profile
from p4ref.io.tor import OnionHandle, TorDriver
from p4ref.link import Channel, ChannelError, Link, LinkConfig, LinkEvent
from p4ref.rendezvous._onion import onion_address_from_seed

# --- the reference format -----------------------------------------------------------------


def test_ref_rebuilds_the_item_and_detects_any_change(tmp_path: Path) -> None:
    src = tmp_path / "a file with spaces %.bin"
    data = os.urandom(100_000)
    src.write_bytes(data)
    head, mid = b"\x02\x00" + bytes(16), b"\x01\x14\x00\x80\x00"
    item = head + data[1000:9000] + mid + data[9000:16000]
    spans = [(len(head), 1000, 8000), (len(head) + 8000 + len(mid), 9000, 7000)]
    ref = encode_ref(item, spans, str(src))
    assert ref is not None and len(ref) < 300
    assert resolve_ref(ref, len(item)) == item

    st = os.stat(src)
    changed = bytearray(data)
    changed[12_345] ^= 1
    src.write_bytes(bytes(changed))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: still caught
    with pytest.raises(SourceChanged) as exc:
        resolve_ref(ref, len(item))
    assert exc.value.code is ErrorCode.FILE_SOURCE_CHANGED

    src.write_bytes(data)  # the same bytes again (a new mtime): resolves
    assert resolve_ref(ref, len(item)) == item
    src.write_bytes(data[:15_000])  # truncated
    with pytest.raises(SourceChanged):
        resolve_ref(ref, len(item))
    src.unlink()  # gone
    with pytest.raises(SourceChanged):
        resolve_ref(ref, len(item))


def test_ref_only_when_smaller_than_the_item(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x" * 64)
    assert encode_ref(bytes(18) + b"x" * 10, [(18, 0, 10)], str(src)) is None  # tiny item
    assert encode_ref(bytes(18) + b"x" * 64, [], str(src)) is None  # no file bytes
    long = str(tmp_path / ("d" * 200) / ("e" * 200) / "f")
    assert encode_ref(bytes(18) + b"x" * 300, [(18, 0, 300)], long) is None


# --- send_file names every FILE_DATA byte -------------------------------------------------


class _Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def confirm(self) -> None:
        return None


class _Pipe:
    """One direction of an in-memory channel without credit (the file is small)."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[bytes] = asyncio.Queue()


class _End:
    def __init__(self, out: _Pipe, inp: _Pipe) -> None:
        self.out, self.inp = out, inp
        self.plain: list[bytes] = []
        self.by_ref: list[tuple[bytes, FileRegions]] = []

    async def send(self, data: bytes) -> None:
        self.plain.append(data)
        self.out.q.put_nowait(data)

    async def recv(self) -> Any:
        data = await self.inp.q.get()
        return None if not data else _Msg(data)

    async def close(self) -> None:
        self.out.q.put_nowait(b"")


class _RegionEnd(_End):
    async def send_file_regions(self, data: bytes, regions: FileRegions) -> None:
        self.by_ref.append((data, regions))
        self.out.q.put_nowait(data)


class _DurableEnd(_RegionEnd):
    """A channel like p4ref.link's: a message is taken in call order at once, and the call
    returns only once it is "durable" (a commit a few ms later)."""

    def __init__(self, out: _Pipe, inp: _Pipe) -> None:
        super().__init__(out, inp)
        self.under_way = self.most = 0

    async def _durable(self) -> None:
        self.under_way += 1
        self.most = max(self.most, self.under_way)
        try:
            await asyncio.sleep(0.003)
        finally:  # (the sender stops waiting once the receiver said FILE_COMPLETE)
            self.under_way -= 1

    async def send(self, data: bytes) -> None:
        await super().send(data)
        await self._durable()

    async def send_file_regions(self, data: bytes, regions: FileRegions) -> None:
        await super().send_file_regions(data, regions)
        await self._durable()


def test_send_file_keeps_bulk_messages_under_way(tmp_path: Path) -> None:
    """Over a channel with ``send_file_regions`` (which carries concurrent sends in call
    order) the sender does not wait for each message's commit before the next: up to
    ``INFLIGHT`` are under way at once, and the receiver still gets every byte in order."""
    src = tmp_path / "src.bin"
    data = os.urandom(40 * 65536 + 99)
    src.write_bytes(data)
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    async def run() -> _DurableEnd:
        ab, ba = _Pipe(), _Pipe()
        a, b = _DurableEnd(ab, ba), _End(ba, ab)
        res = await asyncio.wait_for(asyncio.gather(
            fio.send_file(a, src, block_size=1 << 20), fio.receive_file(b, inbox)), 60)
        assert res[0].state == "DONE" and res[1].state == "DONE", res
        assert res[1].path is not None and res[1].path.read_bytes() == data
        return a

    a = asyncio.run(run())
    assert 1 < a.most <= fio.INFLIGHT + 1, a.most


def test_send_file_names_the_file_bytes_of_every_message(tmp_path: Path) -> None:
    """Every FILE_DATA body byte goes out in a message whose regions say where it is in the
    file, exactly; the other bytes are not claimed; a channel without the method gets plain
    sends (the fallback)."""
    src = tmp_path / "src.bin"
    data = os.urandom(3 * 65536 + 4321)
    src.write_bytes(data)
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    async def run(cls: type[_End]) -> _End:
        ab, ba = _Pipe(), _Pipe()
        a, b = cls(ab, ba), _End(ba, ab)
        res = await asyncio.wait_for(asyncio.gather(
            fio.send_file(a, src, block_size=65536), fio.receive_file(b, inbox)), 60)
        assert res[0].state == "DONE" and res[1].state == "DONE", res
        assert res[1].path is not None and res[1].path.read_bytes() == data
        res[1].path.unlink()
        return a

    a = asyncio.run(run(_RegionEnd))
    assert a.by_ref, "no message went by reference"
    claimed = 0
    for msg, regions in a.by_ref:
        assert regions.path == str(src.resolve())
        for pos, off, n in regions.spans:
            assert msg[pos:pos + n] == data[off:off + n]
            claimed += n
    assert claimed == len(data)  # every file byte, once
    assert sum(len(m) for m in a.plain) < 1024  # FILE_OFFER and the half-close only
    b = asyncio.run(run(_End))  # no send_file_regions: plain sends, the same transfer
    assert not b.by_ref and sum(len(m) for m in b.plain) > len(data)


# --- two real links -------------------------------------------------------------------------


class LoopbackTor:
    """The part of TorDriver a Link uses, in one process: an onion is a local port."""

    launched = False

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}

    async def publish(self, seed: bytes, port_map: Any, client_auth_pubs: Any = (),
                      timeout: float | None = None) -> OnionHandle:
        addr = onion_address_from_seed(seed)
        self.ports[addr.removesuffix(".onion")] = int(next(iter(port_map.values())))
        return OnionHandle(addr)

    async def unpublish(self, handle: OnionHandle | str) -> None:
        addr = handle.address if isinstance(handle, OnionHandle) else handle
        self.ports.pop(addr.removesuffix(".onion"), None)

    async def add_client_auth(self, *_: Any) -> None:
        return None

    async def nudge(self) -> None:
        return None

    async def open_stream(self, addr: str, port: int, timeout: float = 60.0, **_: Any
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        for _i in range(int(timeout * 10) + 1):
            local = self.ports.get(addr.removesuffix(".onion"))
            if local is not None:
                try:
                    return await asyncio.open_connection("127.0.0.1", local)
                except OSError:
                    pass
            await asyncio.sleep(0.1)
        raise P4Error(ErrorCode.TOR_TIMEOUT, f"{addr} not published")


def _pair(base: Path) -> tuple[Path, Path]:
    root = os.urandom(32)
    pa = Profile.init(base / "a", os.urandom)
    pb = Profile.init(base / "b", os.urandom)
    pa.add_peer("b", pb.identity.public_key, root, "test")
    pb.add_peer("a", pa.identity.public_key, root, "test")
    return base / "a", base / "b"


CONFIG = LinkConfig(host_addresses=("127.0.0.1",), synchronous="NORMAL", channels=True,
                    high_delay=0.2, follower_delay=1.0)


async def _up(home: Path, peer: str, tor: LoopbackTor,
              on_event: Callable[[LinkEvent], None] | None = None) -> Link:
    link = Link.open(home, peer, tor=cast(TorDriver, tor), config=CONFIG, on_event=on_event)
    await link.start()
    return link


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _on_datachannel(*links: Link) -> Callable[[], bool]:
    return lambda: all(ln.status == "connected" and ln.path == "datachannel" for ln in links)


async def _accept(link: Link, names: set[str]) -> dict[str, Channel]:
    got: dict[str, Channel] = {}
    while set(got) != names:
        ch = await asyncio.wait_for(link.accept_channel(), 60)
        got[ch.name] = ch
    return got


def _record_rows(link: Link) -> list[tuple[bytes | None, str | None, int | None]]:
    """Every row the link appends to its outbox, as (payload, ref, size)."""
    rows: list[tuple[bytes | None, str | None, int | None]] = []
    db = link.store.db
    plan = db.plan_append_outbox

    def hooked(peer_pub: bytes, payload: bytes | None = b"", **kw: Any) -> Any:
        rows.append((payload, kw.get("ref"), kw.get("size")))
        return plan(peer_pub, payload, **kw)
    db.plan_append_outbox = hooked  # type: ignore[method-assign]
    return rows


def _no_file_bytes(payload: bytes, data: bytes) -> None:
    """A plain outbox payload carries no run of 24 or more bytes of the (random) file."""
    body = payload[DATA_HEADER_LEN:] if payload[:1] == b"\x02" else payload
    assert len(payload) <= 1024, f"a plain row of {len(payload)} bytes"
    for i in range(0, len(body) - 15, 8):
        assert data.find(body[i:i + 16]) < 0, "file bytes in the payload column"


def test_send_file_over_links_keeps_no_file_bytes_in_the_outbox(tmp_path: Path) -> None:
    """(a) A 6 MiB p4 send-style transfer over two links: every outbox row the sender
    appends that carries file bytes is a reference (``payload`` NULL), every plain row is small
    and holds no file bytes; the receiver gets the file exactly."""
    home_a, home_b = _pair(tmp_path)
    src = tmp_path / "big.bin"
    data = os.urandom(6 << 20)
    src.write_bytes(data)
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    async def main() -> None:
        tor = LoopbackTor()
        a = await _up(home_a, "b", tor)
        b = await _up(home_b, "a", tor)
        try:
            await _until(_on_datachannel(a, b), 60, "a data channel")
            rows = _record_rows(a)
            ch = await a.open_channel("p4files/test.1")
            peer = (await _accept(b, {"p4files/test.1"}))["p4files/test.1"]
            from p4ref.peer.files import _FileChannel
            sent, got = await asyncio.wait_for(asyncio.gather(
                fio.send_file(_FileChannel(ch), src),
                fio.receive_file(_FileChannel(peer), inbox)), 240)
            assert sent.state == "DONE" and got.state == "DONE", (sent, got)
            assert got.path is not None and got.path.read_bytes() == data
            refs = [(r, n) for p, r, n in rows if p is None]
            plain = [p for p, _, _ in rows if p is not None]
            assert all(r is not None and n is not None for r, n in refs)
            assert sum(n or 0 for _, n in refs) >= len(data)  # every file byte by reference
            for p in plain:
                _no_file_bytes(p, data)
            await a.store.flush()
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(asyncio.wait_for(main(), 300))


def _outbox_rows(home: Path) -> list[tuple[bytes | None, str | None, int]]:
    db = sqlite3.connect((home / SESSION_DB).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return [(None if p is None else bytes(p), r, s) for p, r, s in
                db.execute("SELECT payload, ref, size FROM outbox ORDER BY seq").fetchall()]
    finally:
        db.close()


async def _write_while_peer_away(home_a: Path, home_b: Path, src: Path, data: bytes,
                                 tor: LoopbackTor) -> None:
    """Open ``file`` and ``other`` on a, let b take them (its CREDIT gives a the window), stop
    b, then write the file (by reference) and two messages on ``other``: all unacknowledged."""
    a = await _up(home_a, "b", tor)
    b = await _up(home_b, "a", tor)
    try:
        await _until(_on_datachannel(a, b), 60, "a data channel")
        fch = await a.open_channel("file")
        och = await a.open_channel("other")
        await _accept(b, {"file", "other"})
        layer = a.channels
        assert layer is not None
        await _until(lambda: layer.mux.credit(fch.id) >= len(data), 30, "b's credit")
        await b.stop()
        await fch.send_file_regions(data, FileRegions(str(src), ((0, 0, len(data)),)))
        await och.send(b"other one")
        await och.send(b"other two")
    finally:
        await a.stop()
        await b.stop()
    rows = _outbox_rows(home_a)
    refs = [r for p, r, _ in rows if p is None]
    assert sum(s for p, _, s in rows if p is None) >= len(data) and len(refs) > 100
    for p, _, _ in rows:
        if p is not None:
            _no_file_bytes(p, data)


async def _read(ch: Channel, n: int, got: bytearray) -> None:
    while len(got) < n:
        m = await asyncio.wait_for(ch.recv(), 60)
        assert m is not None
        got += m.data
        await m.confirm()


def test_restarted_sender_reads_unacknowledged_items_back_from_the_file(tmp_path: Path) -> None:
    """(b) The sender's link stops with 3 MiB of file items unacknowledged (the receiver was
    away), stored only as references; started again on the same store, it replays them read
    from the file, and the receiver gets the bytes exactly, the other channel too."""
    home_a, home_b = _pair(tmp_path)
    src = tmp_path / "src.bin"
    data = os.urandom(3 << 20 | 12345)
    src.write_bytes(data)

    async def main() -> None:
        tor = LoopbackTor()
        await _write_while_peer_away(home_a, home_b, src, data, tor)
        a = await _up(home_a, "b", tor)
        b = await _up(home_b, "a", tor)
        try:
            chans = await _accept(b, {"file", "other"})  # offered again after b's restart
            got = bytearray()
            await _read(chans["file"], len(data), got)
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            other = [(await _next(chans["other"])), (await _next(chans["other"]))]
            assert other == [b"other one", b"other two"]
            await _until(lambda: a.stats().outbox_messages == 0, 60, "the ACKs")
        finally:
            await a.stop()
            await b.stop()
        assert _outbox_rows(home_a) == []

    asyncio.run(asyncio.wait_for(main(), 300))


async def _next(ch: Channel) -> bytes:
    m = await asyncio.wait_for(ch.recv(), 60)
    assert m is not None
    await m.confirm()
    return m.data


def test_changed_source_resets_only_its_channel(tmp_path: Path) -> None:
    """(c) The file changes (one byte, same size and modification time) between the sender's
    stop and its restart: the receiver gets a prefix of the original bytes, never a changed
    byte, then its channel is reset with FILE_SOURCE_CHANGED; the sender's channel raises the
    same code; the other channel's messages arrive, and both links keep working."""
    home_a, home_b = _pair(tmp_path)
    src = tmp_path / "src.bin"
    data = os.urandom(3 << 20)
    src.write_bytes(data)
    flip = (5 << 19) + 77  # 2.5 MiB: the receiver gets a 2 MiB piece before it

    async def main() -> None:
        tor = LoopbackTor()
        await _write_while_peer_away(home_a, home_b, src, data, tor)
        st = os.stat(src)
        changed = bytearray(data)
        changed[flip] ^= 0xFF
        src.write_bytes(bytes(changed))
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        events: list[LinkEvent] = []
        a = await _up(home_a, "b", tor, events.append)
        b = await _up(home_b, "a", tor)
        try:
            mine = a.channel("file")
            assert mine is not None and mine.error is not None
            assert mine.error.code is ErrorCode.FILE_SOURCE_CHANGED
            with pytest.raises(ChannelError) as local:
                await mine.send(b"more")
            assert local.value.code is ErrorCode.FILE_SOURCE_CHANGED
            assert [e.code for e in events if e.kind == "channel_reset"] == [
                ErrorCode.FILE_SOURCE_CHANGED]

            chans = await _accept(b, {"file", "other"})
            got = bytearray()
            with pytest.raises(ChannelError) as remote:
                await _read(chans["file"], len(data), got)
            assert remote.value.reset_code == ErrorCode.FILE_SOURCE_CHANGED
            assert len(got) <= flip and bytes(got) == data[:len(got)]
            assert [await _next(chans["other"]), await _next(chans["other"])] == [
                b"other one", b"other two"]
            # both links go on: a new channel works both ways
            fresh = await a.open_channel("after")
            await fresh.send(b"still here")
            peer = (await _accept(b, {"after"}))["after"]
            assert await _next(peer) == b"still here"
            await _until(lambda: a.stats().outbox_messages == 0, 60, "the ACKs")
        finally:
            await a.stop()
            await b.stop()
        assert _outbox_rows(home_a) == []

    asyncio.run(asyncio.wait_for(main(), 300))
