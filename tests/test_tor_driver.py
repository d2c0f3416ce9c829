"""p4ref.io.tor against real tor in the private network (tools/tornet.py).

Client 0 hosts the onion services (driver ``host``), client 1 dials them (driver ``peer``).
Each test derives fresh seeds, so descriptors cached by an earlier test never interfere.
The restart test runs last: it stops and restarts client 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from python_socks import ProxyError, ProxyType
from python_socks.async_.asyncio import Proxy

import p4ref.io.tor as tor_mod
from p4ref.errors import ErrorCode
from p4ref.io.tor import (
    PASSWORD_ENV,
    BootstrapStatus,
    OnionHandle,
    TorConfig,
    TorDriver,
    TorError,
    _socks_reply_code,
)
from p4ref.io.tornet import TorNet, free_ports
from p4ref.rendezvous._onion import client_auth_keypair, onion_address_from_seed

TOR = shutil.which("tor") or ("/usr/sbin/tor" if os.path.exists("/usr/sbin/tor") else None)
needs_tor = pytest.mark.skipif(TOR is None, reason="tor is not installed")
# a directory authority nobody listens on: a tor that trusts only it can never bootstrap
NO_DIRECTORY = {
    "TestingTorNetwork": "1",
    "DirAuthority": "nowhere orport=1 no-v2 v3ident=" + "0" * 40 + " 127.0.0.1:1 " + "0" * 40,
}

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


# ---------------------------------------------------------------------- failures a user meets
# (issue 10 §2). Loopback only: fake listeners started here, or tors started here.


@dataclass
class _Tor:
    proc: subprocess.Popen[bytes]
    control_port: int
    socks_port: int
    data_dir: Path


@contextmanager
def _standalone_tor(tmp_path: Path, *lines: str, control: bool = True) -> Iterator[_Tor]:
    """A tor of our own on 127.0.0.1 (nothing else): ``lines`` are added to its torrc. It dies
    with this test process (``__OwningControllerProcess`` names a watchdog child)."""
    assert TOR is not None
    data = tmp_path / "tor"
    data.mkdir(mode=0o700)
    cport, sport = free_ports(2)
    watchdog = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.buffer.read()"],
                                stdin=subprocess.PIPE)  # fmt: skip
    torrc = [
        f"DataDirectory {data}",
        f"SocksPort 127.0.0.1:{sport}",
        f"Log notice file {data / 'notice.log'}",
        f"__OwningControllerProcess {watchdog.pid}",
        *( [f"ControlPort 127.0.0.1:{cport}", "CookieAuthentication 1"] if control else []),
        *lines,
    ]  # fmt: skip
    (data / "torrc").write_text("\n".join(torrc) + "\n")
    (data / "defaults").write_text("")
    proc = subprocess.Popen([TOR, "--defaults-torrc", str(data / "defaults"), "-f",
                             str(data / "torrc")], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            log = data / "notice.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            assert proc.poll() is None, text
            if "Opened Control listener" in text:
                break
            time.sleep(0.05)
        yield _Tor(proc, cport, sport, data)
    finally:
        proc.terminate()
        proc.wait(10)
        assert watchdog.stdin is not None
        watchdog.stdin.close()
        watchdog.wait(10)


async def _start_fails(drv: TorDriver, within: float) -> tuple[TorError, float]:
    t = time.monotonic()
    with pytest.raises(TorError) as ei:
        await asyncio.wait_for(drv.start(), within)
    await drv.close()
    return ei.value, time.monotonic() - t


@pytest.mark.timeout(60)
def test_silent_control_port_times_out_within_control_timeout() -> None:
    """A control port that accepts and never answers (a stopped tor) used to hang
    ``authenticate()`` forever; now connect + authenticate together take control_timeout."""

    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as silent:
            port = silent.getsockname()[1]
            drv = TorDriver(TorConfig(mode="system", control_port=port, control_timeout=1.5))
            err, took = await _start_fails(drv, 20)
        assert err.code == ErrorCode.TOR_TIMEOUT
        assert f"127.0.0.1:{port}" in err.message and "did not answer" in err.message
        assert took < 5

    asyncio.run(main())


def test_no_control_port_says_what_to_enable() -> None:
    """A stock Debian tor has no ControlPort: say what to put in torrc, or to use launch."""

    async def main() -> None:
        (port,) = free_ports(1)
        with socket.create_server(("127.0.0.1", 0)) as socks:  # a tor's SOCKS port, say
            sport = socks.getsockname()[1]
            drv = TorDriver(TorConfig(mode="system", control_port=port, socks_port=sport))
            err, _ = await _start_fails(drv, 10)
        assert err.code == ErrorCode.TOR_UNREACHABLE
        for text in (f"ControlPort {port}", "CookieAuthentication 1", "/etc/tor/torrc",
                     "--tor launch", f"SOCKS port {sport} answers"):  # fmt: skip
            assert text in err.message, (text, err.message)

    asyncio.run(main())


@needs_tor
def test_packaged_control_socket_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``system`` with no port: after 127.0.0.1:9051 the driver tries the control socket a
    packaged tor opens by default (Debian: /run/tor/control); here one in tmp_path."""
    (closed,) = free_ports(1)
    sock_path = tmp_path / "tor" / "control"
    monkeypatch.setattr(tor_mod, "DEFAULT_CONTROL_PORT", closed)
    monkeypatch.setattr(tor_mod, "SYSTEM_CONTROL_SOCKETS", ("/nonexistent/p4", str(sock_path)))
    with _standalone_tor(tmp_path, f"ControlSocket {sock_path}", "CookieAuthentication 1",
                         "DisableNetwork 1", control=False):  # fmt: skip

        async def main() -> None:
            err, _ = await _start_fails(TorDriver(TorConfig(mode="system")), 20)
            # it got in through the socket: what stops it now is DisableNetwork
            assert err.code == ErrorCode.TOR_TIMEOUT
            assert str(sock_path) in err.message and "DisableNetwork" in err.message

        asyncio.run(main())


@needs_tor
def test_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run([TOR or "tor", "--quiet", "--hash-password", "p4 sekrit"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    hashed = out.split()[-1]
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with _standalone_tor(tmp_path, "CookieAuthentication 0", f"HashedControlPassword {hashed}",
                         "DisableNetwork 1") as t:  # fmt: skip

        def cfg(**kw: object) -> TorConfig:
            return TorConfig(mode="system", control_port=t.control_port,
                             socks_port=t.socks_port, wait_bootstrap=False, **kw)  # type: ignore[arg-type]  # fmt: skip

        async def main() -> None:
            err, _ = await _start_fails(TorDriver(cfg()), 20)
            assert err.code == ErrorCode.TOR_UNREACHABLE
            assert "requires a password" in err.message and PASSWORD_ENV in err.message
            err, _ = await _start_fails(TorDriver(cfg(password="wrong")), 20)
            assert err.code == ErrorCode.TOR_UNREACHABLE and "rejected the password" in err.message
            monkeypatch.setenv(PASSWORD_ENV, "p4 sekrit")
            async with TorDriver(cfg()) as drv:
                assert drv.connected
                assert (await drv.bootstrap_status()).disable_network
            async with TorDriver(cfg(password="p4 sekrit")) as drv:
                assert drv.connected

        asyncio.run(main())


@needs_tor
def test_offline_tor_is_reported_at_once(tmp_path: Path) -> None:
    """``DisableNetwork 1``: was "tor has no SOCKS listener" (system) or a 60 s HSDir-upload
    TOR_TIMEOUT (launch); now TOR_TIMEOUT saying tor is offline, within seconds."""
    with _standalone_tor(tmp_path, "DisableNetwork 1", control=True) as t:

        async def system() -> None:
            drv = TorDriver(TorConfig(mode="system", control_port=t.control_port))
            err, took = await _start_fails(drv, 20)
            assert err.code == ErrorCode.TOR_TIMEOUT
            assert "offline" in err.message and "DisableNetwork" in err.message
            assert took < 5

        asyncio.run(system())

    async def launch() -> None:
        drv = TorDriver(TorConfig(mode="launch", torrc={"DisableNetwork": "1"}))
        err, took = await _start_fails(drv, 30)
        assert err.code == ErrorCode.TOR_TIMEOUT and "DisableNetwork" in err.message
        assert took < 15

    asyncio.run(launch())


@needs_tor
@pytest.mark.timeout(90)
def test_tor_that_cannot_bootstrap_is_reported(tmp_path: Path) -> None:
    """A tor whose only directory is unreachable (as on an offline machine): was a silent wait
    (600 s in ``p4 pair invite``); now TOR_TIMEOUT once bootstrap stalls, with tor's account."""
    lines = [f"{k} {v}" for k, v in NO_DIRECTORY.items()]
    with _standalone_tor(tmp_path, *lines) as t:
        seen: list[str] = []

        async def system() -> None:
            cfg = TorConfig(mode="system", control_port=t.control_port, bootstrap_stall_timeout=3)
            err, took = await _start_fails(TorDriver(cfg, on_status=seen.append), 30)
            assert err.code == ErrorCode.TOR_TIMEOUT
            assert "cannot connect to the Tor network" in err.message
            assert "no bootstrap progress for 3 s" in err.message
            assert "Connection refused" in err.message  # tor's own words about the problem
            assert took < 10

        asyncio.run(system())
        assert any("bootstrapped" in line for line in seen)

    async def launch() -> None:
        cfg = TorConfig(mode="launch", torrc=NO_DIRECTORY, bootstrap_stall_timeout=3)
        err, took = await _start_fails(TorDriver(cfg), 40)
        assert err.code == ErrorCode.TOR_TIMEOUT and "no bootstrap progress" in err.message
        assert took < 15

    asyncio.run(launch())


def test_stall_timeout_defaults() -> None:
    assert TorConfig(mode="launch").stall_timeout == 30
    assert TorConfig(mode="system").stall_timeout == 10
    assert TorConfig(mode="system", bootstrap_stall_timeout=2).stall_timeout == 2
    st = BootstrapStatus.parse(
        'WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay" '
        'WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=3 RECOMMENDATION=ignore '
        'HOSTID="$0000" HOSTADDR="127.0.0.1:1"'
    )
    assert (st.progress, st.tag, st.reason, st.host) == (5, "conn", "CONNECTREFUSED", "127.0.0.1:1")
    assert st.describe() == ("bootstrapped 5% (Connecting to a relay); last problem: "
                             "Connection refused (CONNECTREFUSED, 127.0.0.1:1)")  # fmt: skip
    assert BootstrapStatus.parse("NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"").done


# ------------------------------------------ SOCKS reply codes, with and without ExtendedErrors


@asynccontextmanager
async def _fake_socks(replies: list[int]) -> AsyncIterator[tuple[int, list[int]]]:
    """A SOCKS5 server on 127.0.0.1 answering CONNECT with ``replies`` in turn (the last one
    repeats); after 0x00 it echoes. Yields (port, codes sent)."""
    sent: list[int] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            _ver, n = await r.readexactly(2)
            methods = await r.readexactly(n)
            if 2 in methods:  # username/password (python-socks sends one)
                w.write(b"\x05\x02")
                _v, ulen = await r.readexactly(2)
                await r.readexactly(ulen)
                (plen,) = await r.readexactly(1)
                await r.readexactly(plen)
                w.write(b"\x01\x00")
            else:
                w.write(b"\x05\x00")
            _v, _cmd, _rsv, atyp = await r.readexactly(4)
            if atyp == 3:
                (alen,) = await r.readexactly(1)
                await r.readexactly(alen + 2)
            else:
                await r.readexactly((4 if atyp == 1 else 16) + 2)
            code = replies[min(len(sent), len(replies) - 1)]
            sent.append(code)
            w.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
            await w.drain()
            while code == 0 and (data := await r.read(4096)):
                w.write(data)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], sent
    finally:
        server.close()
        await server.wait_closed()


def test_socks_reply_code_from_python_socks() -> None:
    """0x01-0x08 come in ``error_code``; tor's 0xF0-0xF7 only in python-socks' text (its
    newest code still raises ``Invalid reply code: 0XF0`` without ``error_code``)."""

    async def main() -> None:
        for code in (0x01, 0x04, 0x05, 0xF0, 0xF4, 0xF7):
            async with _fake_socks([code]) as (port, _):
                proxy = Proxy(ProxyType.SOCKS5, "127.0.0.1", port, username="u", password="p",
                              rdns=True)  # fmt: skip
                with pytest.raises(ProxyError) as ei:
                    await proxy.connect("example.onion", 80, timeout=5)
                assert _socks_reply_code(ei.value) == code, ei.value

    asyncio.run(main())
    assert _socks_reply_code(ProxyError("Invalid reply code: 0XF3")) == 0xF3
    assert _socks_reply_code(ProxyError("General SOCKS server failure", error_code=1)) == 1
    assert _socks_reply_code(ProxyError("Malformed connect reply")) is None


_ONION = onion_address_from_seed(hashlib.sha256(b"p4 fake socks").digest())


def test_without_extended_errors_host_unreachable_is_retried() -> None:
    """Debian's SocksPort has no ExtendedErrors: "descriptor not found" arrives as 0x04, which
    used to fail at once; it is retried like 0xF0 and the stream opens once tor has it."""

    async def main() -> None:
        async with _fake_socks([0x04, 0x04, 0x00]) as (port, sent):
            drv = TorDriver(TorConfig(mode="system", socks_port=port))
            drv.extended_errors = False
            reader, writer = await drv.open_stream(_ONION, 80, timeout=10)
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
            writer.close()
            await writer.wait_closed()
            assert sent == [0x04, 0x04, 0x00]
        async with _fake_socks([0x04]) as (port, sent):
            drv = TorDriver(TorConfig(mode="system", socks_port=port))
            with pytest.raises(TorError) as ei:
                await drv.open_stream(_ONION, 80, timeout=1.2)
            assert ei.value.code == ErrorCode.TOR_ONION_UNREACHABLE
            assert "descriptor not found" in ei.value.message and len(sent) >= 2

    asyncio.run(main())


def test_without_extended_errors_general_failure_is_client_auth() -> None:
    async def main() -> None:
        async with _fake_socks([0x01]) as (port, sent):
            drv = TorDriver(TorConfig(mode="system", socks_port=port))
            drv.extended_errors = False
            with pytest.raises(TorError) as ei:
                await drv.open_stream(_ONION, 80, timeout=5)
            assert ei.value.code == ErrorCode.TOR_CLIENT_AUTH_FAILED
            assert "ExtendedErrors" in ei.value.message and sent == [0x01]

    asyncio.run(main())


@pytest.mark.tor
def test_socks_port_without_extended_errors(tornet: TorNet) -> None:
    """A SocksPort without ExtendedErrors (Debian's default) is detected and warned about once;
    a missing descriptor is retried and a missing client key is still TOR_CLIENT_AUTH_FAILED."""
    client = tornet.clients[1]
    (plain,) = free_ports(1)

    async def main() -> None:
        admin = TorDriver(TorConfig.testnet(client))
        await admin.start()
        try:
            resp = await admin._msg(admin._controller, f'SETCONF SocksPort="127.0.0.1:'
                                    f'{client.socks_port} ExtendedErrors" SocksPort="127.0.0.1:'
                                    f'{plain}"')  # fmt: skip
            assert resp.is_ok(), resp
            assert admin.extended_errors is True and admin.warnings == []
            seen: list[str] = []
            async with _echo_server() as lport, TorDriver(
                TorConfig.testnet(client, socks_port=plain), on_status=seen.append
            ) as peer, TorDriver(TorConfig.testnet(tornet.clients[0])) as host:
                assert peer.extended_errors is False
                assert len(peer.warnings) == 1 and "ExtendedErrors" in peer.warnings[0]
                assert seen == peer.warnings
                never = onion_address_from_seed(_seed("plain never"))
                t = time.monotonic()
                with pytest.raises(TorError) as ei:
                    await peer.open_stream(never, 80, timeout=3, fresh_circuit=True)
                assert ei.value.code == ErrorCode.TOR_ONION_UNREACHABLE
                assert "descriptor not found" in ei.value.message
                assert time.monotonic() - t > 2  # retried, not failed at the first 0x04
                handle, priv = await _publish_authed(host, peer, lport, "plain")
                with pytest.raises(TorError) as ei:
                    await peer.open_stream(handle.address, 80, timeout=20)
                assert ei.value.code == ErrorCode.TOR_CLIENT_AUTH_FAILED
                await peer.add_client_auth(handle.address, priv)
                assert await _roundtrip(peer, handle.address, b"plain") == b"plain"
                assert seen == peer.warnings  # warned once, not per stream
        finally:
            restore = f'SETCONF SocksPort="127.0.0.1:{client.socks_port} ExtendedErrors"'
            with contextlib.suppress(TorError):
                await admin._msg(admin._controller, restore)
            await admin.close()

    asyncio.run(main())


@needs_tor
def test_timeouts_after_start_say_tor_went_offline(tmp_path: Path) -> None:
    """A tor that goes offline after ``start``: publish and open_stream time out as before, and
    their message now says why (tor's own state), not only "0/0 HSDir uploads"."""
    with _standalone_tor(tmp_path, "DisableNetwork 1") as t:

        async def main() -> None:
            cfg = TorConfig(mode="system", control_port=t.control_port, socks_port=t.socks_port,
                            wait_bootstrap=False)  # fmt: skip
            async with TorDriver(cfg) as drv:
                with pytest.raises(TorError) as ei:
                    await drv.publish(_seed("offline publish"), {80: 1}, timeout=1)
                assert ei.value.code == ErrorCode.TOR_TIMEOUT
                assert "offline now (DisableNetwork is set)" in ei.value.message
                with pytest.raises(TorError) as ei:
                    await drv.open_stream(_ONION, 80, timeout=1)
                assert "offline now" in ei.value.message

        asyncio.run(main())


def test_unusable_packaged_control_socket_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packaged tor's control socket exists but cannot be used (here: not a socket at all;
    for a user outside the debian-tor group: permission denied): name it and say what to do."""
    (closed,) = free_ports(1)
    fake = tmp_path / "control"
    fake.write_text("")
    monkeypatch.setattr(tor_mod, "DEFAULT_CONTROL_PORT", closed)
    monkeypatch.setattr(tor_mod, "SYSTEM_CONTROL_SOCKETS", (str(fake),))

    async def main() -> None:
        err, _ = await _start_fails(TorDriver(TorConfig(mode="system")), 10)
        assert err.code == ErrorCode.TOR_UNREACHABLE
        assert str(fake) in err.message and "debian-tor" in err.message

    asyncio.run(main())


def test_bootstrap_stall_rules() -> None:
    """No progress for stall_timeout fails, except past 80% with no problem reported (tor is
    building circuits, which can be slow): then 4x as long; progress restarts the clock."""

    class Scripted(TorDriver):
        def __init__(self, phases: list[str]) -> None:
            super().__init__(TorConfig(mode="system"))
            self.phases = phases

        async def _bootstrap_status(self, c: object) -> BootstrapStatus:
            phase = self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]
            return BootstrapStatus.parse(phase)

    async def took(phases: list[str], stall: float) -> tuple[float, str]:
        t = time.monotonic()
        try:
            await Scripted(phases)._await_bootstrap(30, stall)
        except TorError as exc:
            assert exc.code == ErrorCode.TOR_TIMEOUT
            return time.monotonic() - t, exc.message
        return time.monotonic() - t, "done"

    async def main() -> None:
        warn = 'WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="x" WARNING="No route to host"'
        t, msg = await took([warn], 0.4)
        assert 0.3 < t < 1.0 and "No route to host" in msg
        t, msg = await took(["NOTICE BOOTSTRAP PROGRESS=95 TAG=circuit_create SUMMARY=\"y\""], 0.4)
        assert 1.5 < t < 2.5 and "no bootstrap progress" in msg
        moving = [f"NOTICE BOOTSTRAP PROGRESS={p} TAG=t" for p in (10, 10, 20, 20, 30, 100)]
        assert (await took(moving, 0.6))[1] == "done"

    asyncio.run(main())


def test_publish_waits_for_every_upload_but_not_for_ever(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    """The publish waits for every HSDir upload; at its timeout, uploads that are done make it
    a warning (the onion is reachable through those HSDirs; on a loaded machine 2 of 18 stayed
    pending), none done is TOR_TIMEOUT."""
    from p4ref.io.tor import _UploadWaiter

    async def main() -> None:
        drv = TorDriver(TorConfig(mode="system", control_port=9))
        w = _UploadWaiter(pending={"hsdir1": 1, "hsdir2": 1}, uploads=3, uploaded=1)
        with caplog.at_level(logging.WARNING, logger="p4ref.io.tor"):
            await drv._await_uploads("x", w, 0.2)
        assert "1/3 HSDir uploads done" in caplog.text
        w = _UploadWaiter(pending={"hsdir1": 1}, uploads=1)
        with pytest.raises(TorError) as ei:
            await drv._await_uploads("x", w, 0.2)
        assert ei.value.code == ErrorCode.TOR_TIMEOUT and "0/1 HSDir uploads" in str(ei.value)
        w = _UploadWaiter(uploads=2, uploaded=2)  # all done: at once
        await asyncio.wait_for(drv._await_uploads("x", w, 30), 5)

    asyncio.run(main())
