"""p4ref.io.tor against real tor in the private network (tools/tornet.py).

Client 0 hosts the onion services (driver ``host``), client 1 dials them (driver ``peer``).
Each test derives fresh seeds, so descriptors cached by an earlier test never interfere.
The restart test runs last: it stops and restarts client 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from p4ref.errors import ErrorCode
from p4ref.io.tor import OnionHandle, TorConfig, TorDriver, TorError
from p4ref.io.tornet import TorNet, free_ports
from p4ref.rendezvous._onion import client_auth_keypair, onion_address_from_seed

_counter = itertools.count()


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"p4 tor test {label} {next(_counter)}".encode()).digest()


@asynccontextmanager
async def _echo_server() -> AsyncIterator[int]:
    """An echo server on 127.0.0.1; on exit it also closes the connections still open."""
    tasks: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writers.discard(writer)
            writer.close()

    def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(spawn, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        for w in list(writers):
            w.close()
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def _drivers(net: TorNet) -> AsyncIterator[tuple[TorDriver, TorDriver]]:
    host = TorDriver(TorConfig.testnet(net.clients[0]))
    peer = TorDriver(TorConfig.testnet(net.clients[1]))
    await host.start()
    try:
        await peer.start()
        try:
            yield host, peer
        finally:
            await peer.close()
    finally:
        await host.close()


async def _roundtrip(peer: TorDriver, addr: str, payload: bytes, **kw: object) -> bytes:
    reader, writer = await peer.open_stream(addr, 80, timeout=60, **kw)  # type: ignore[arg-type]
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 30)
    finally:
        writer.close()
        await writer.wait_closed()


def _run(net: TorNet, body: Callable[[TorDriver, TorDriver, int], Awaitable[None]]) -> None:
    async def main() -> None:
        async with _echo_server() as lport, _drivers(net) as (host, peer):
            await body(host, peer, lport)

    asyncio.run(main())


async def _publish_authed(
    host: TorDriver, peer: TorDriver, lport: int, label: str
) -> tuple[OnionHandle, bytes]:
    seed = _seed(label)
    priv, pub = client_auth_keypair(_seed(label + " auth"))
    handle = await host.publish(seed, {80: lport}, [pub])
    return handle, priv


@pytest.mark.tor
def test_publish_service_id_is_the_seed_address(tornet: TorNet) -> None:
    async def body(host: TorDriver, peer: TorDriver, lport: int) -> None:
        seed = _seed("service-id")
        handle = await host.publish(seed, {80: lport, 443: lport})
        assert handle.address == onion_address_from_seed(seed)
        assert dict(handle.ports) == {80: f"127.0.0.1:{lport}", 443: f"127.0.0.1:{lport}"}
        ctrl = host._controller
        current = await asyncio.to_thread(ctrl.get_info, "onions/current")
        assert handle.address in current.split()
        assert host.published == [handle]
        # without client auth anyone (here: the peer, with no key) can connect
        assert await _roundtrip(peer, handle.address, b"open") == b"open"
        await host.unpublish(handle)
        assert host.published == []

    _run(tornet, body)


@pytest.mark.tor
def test_client_auth_echo_and_missing_key(tornet: TorNet) -> None:
    async def body(host: TorDriver, peer: TorDriver, lport: int) -> None:
        handle, priv = await _publish_authed(host, peer, lport, "echo")
        # without the key the peer gets the descriptor but cannot decrypt it: SOCKS 0xF4
        with pytest.raises(TorError) as ei:
            await peer.open_stream(handle.address, 80, timeout=30)
        assert ei.value.code == ErrorCode.TOR_CLIENT_AUTH_FAILED
        # a wrong key does not help either
        wrong, _ = client_auth_keypair(_seed("wrong key"))
        await peer.add_client_auth(handle.address, wrong)
        with pytest.raises(TorError) as ei:
            await peer.open_stream(handle.address, 80, timeout=30, fresh_circuit=True)
        assert ei.value.code == ErrorCode.TOR_CLIENT_AUTH_FAILED
        await peer.add_client_auth(handle.address, priv)
        payload = bytes(range(256)) * 64  # 16 KiB
        assert await _roundtrip(peer, handle.address, payload, fresh_circuit=True) == payload
        # one open stream carries many messages
        reader, writer = await peer.open_stream(handle.address, 80, timeout=30)
        try:
            for i in range(20):
                msg = f"message {i}".encode()
                writer.write(msg)
                await writer.drain()
                assert await asyncio.wait_for(reader.readexactly(len(msg)), 10) == msg
        finally:
            writer.close()
            await writer.wait_closed()
        await peer.remove_client_auth(handle.address)

    _run(tornet, body)


@pytest.mark.tor
def test_unpublish_makes_it_unreachable(tornet: TorNet) -> None:
    async def body(host: TorDriver, peer: TorDriver, lport: int) -> None:
        handle, priv = await _publish_authed(host, peer, lport, "unpublish")
        await peer.add_client_auth(handle.address, priv)
        assert await _roundtrip(peer, handle.address, b"before") == b"before"
        await host.unpublish(handle)
        with pytest.raises(TorError) as ei:
            await peer.open_stream(handle.address, 80, timeout=6, fresh_circuit=True)
        assert ei.value.code in (ErrorCode.TOR_ONION_UNREACHABLE, ErrorCode.TOR_TIMEOUT)

    _run(tornet, body)


@pytest.mark.tor
def test_timeouts_and_unknown_onion(tornet: TorNet) -> None:
    async def body(host: TorDriver, peer: TorDriver, lport: int) -> None:
        never = onion_address_from_seed(_seed("never published"))
        # the deadline passes while tor has not answered yet
        with pytest.raises(TorError) as ei:
            await peer.open_stream(never, 80, timeout=0.001)
        assert ei.value.code == ErrorCode.TOR_TIMEOUT
        # tor answers 0xF0 (no descriptor) again and again until the deadline
        with pytest.raises(TorError) as ei:
            await peer.open_stream(never, 80, timeout=4, fresh_circuit=True)
        assert ei.value.code == ErrorCode.TOR_ONION_UNREACHABLE
        assert "descriptor not found" in ei.value.message
        # publishing cannot finish its HSDir uploads in 1 ms
        with pytest.raises(TorError) as ei:
            await host.publish(_seed("fast publish"), {80: lport}, timeout=0.001)
        assert ei.value.code == ErrorCode.TOR_TIMEOUT

    _run(tornet, body)


@pytest.mark.tor
def test_refused_includes_tor_text(tornet: TorNet) -> None:
    async def body(host: TorDriver, peer: TorDriver, lport: int) -> None:
        seed = _seed("twice")
        await host.publish(seed, {80: lport})
        with pytest.raises(TorError) as ei:
            await host.publish(seed, {80: lport})
        assert ei.value.code == ErrorCode.TOR_REFUSED
        assert "collision" in ei.value.message.lower()
        with pytest.raises(TorError) as ei:
            await host.publish(_seed("bad target"), {80: "nowhere:at:all"})
        assert ei.value.code == ErrorCode.TOR_REFUSED
        assert "ADD_ONION" in ei.value.message

    _run(tornet, body)


def test_unreachable_control_port() -> None:
    async def main() -> None:
        (port,) = free_ports(1)
        drv = TorDriver(TorConfig(mode="system", control_port=port))
        with pytest.raises(TorError) as ei:
            await drv.start()
        assert ei.value.code == ErrorCode.TOR_UNREACHABLE
        assert str(port) in ei.value.message
        await drv.close()

    asyncio.run(main())


def test_launch_without_tor_installed() -> None:
    async def main() -> None:
        drv = TorDriver(TorConfig(mode="launch", tor_cmd="p4-no-such-tor"))
        with pytest.raises(TorError) as ei:
            await drv.start()
        assert ei.value.code == ErrorCode.TOR_NOT_INSTALLED
        await drv.close()

    asyncio.run(main())


@pytest.mark.tor
def test_launch_mode_joins_testnet(tornet: TorNet) -> None:
    """``launch`` mode: stem starts a standalone tor (free ports, temp dir) that joins the private
    network as a client; it publishes and the testnet peer reaches it, also after that tor died
    and the driver relaunched it."""

    async def main() -> None:
        async with _echo_server() as lport:
            launched = TorDriver(TorConfig(mode="launch", torrc=tornet.client_options()))
            peer = TorDriver(TorConfig.testnet(tornet.clients[1]))
            await launched.start()
            try:
                await peer.start()
                await launched.wait_bootstrapped(60)
                handle, priv = await _publish_authed(launched, peer, lport, "launch")
                await peer.add_client_auth(handle.address, priv)
                assert await _roundtrip(peer, handle.address, b"launched") == b"launched"
                first = launched._proc
                assert first is not None and first.poll() is None
                # the launched tor dies: the driver relaunches it (same ports and data
                # directory), reconnects and re-publishes
                first.terminate()
                await asyncio.to_thread(first.wait, 10)
                for _ in range(100):
                    if not launched.connected:
                        break
                    await asyncio.sleep(0.05)
                await launched.wait_ready(90)
                assert launched.reconnects == 1
                proc = launched._proc
                assert proc is not None and proc is not first and proc.poll() is None
                got = await _roundtrip(peer, handle.address, b"relaunched", fresh_circuit=True)
                assert got == b"relaunched"
            finally:
                await peer.close()
                await launched.close()
            assert proc.poll() is not None  # the launched tor is gone

    asyncio.run(main())


@pytest.mark.tor
def test_survives_tor_restart(tornet: TorNet) -> None:
    """SIGTERM the host's tor; restart it; the driver reconnects, re-publishes the same onion
    (and re-adds client auth on its side), and the peer reaches it again."""

    async def body(host: TorDriver, peer: TorDriver, lport: int) -> None:
        handle, priv = await _publish_authed(host, peer, lport, "restart")
        other = onion_address_from_seed(_seed("restart other"))
        other_priv, _ = client_auth_keypair(_seed("restart other auth"))
        await host.add_client_auth(other, other_priv)
        await peer.add_client_auth(handle.address, priv)
        assert await _roundtrip(peer, handle.address, b"before") == b"before"

        await asyncio.to_thread(tornet.stop_client, 0)
        for _ in range(100):
            if not host.connected:
                break
            await asyncio.sleep(0.05)
        assert not host.connected
        await asyncio.to_thread(tornet.restart_client, 0)
        await host.wait_ready(90)
        assert host.connected and host.reconnects == 1
        ctrl = host._controller
        current = await asyncio.to_thread(ctrl.get_info, "onions/current")
        assert handle.address in current.split()
        view = await asyncio.to_thread(ctrl.msg, "ONION_CLIENT_AUTH_VIEW")
        assert other in str(view)
        got = await _roundtrip(peer, handle.address, b"after restart", fresh_circuit=True)
        assert got == b"after restart"

    _run(tornet, body)
