"""The WebRTC driver with real aiortc peers on loopback: generations, bindings, the persistent
certificate, per-connection host addresses, backpressure and the open deadline.

Never a public STUN server: every configuration here has no ICE servers.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import re
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioice.ice
import aioice.turn
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from cryptography.hazmat.primitives import hashes

from p4ref.errors import ErrorCode, P4Error
from p4ref.io import webrtc
from p4ref.io.store import ProfileError
from p4ref.io.webrtc import (
    CERT_ATTRIBUTE,
    CERT_FILE,
    DirectConfig,
    DirectPathError,
    Generation,
    IceServer,
    certificate_fingerprint,
    fingerprint_of,
    host_addresses,
    load_or_create_certificate,
    wait_background_closes,
)

LO = DirectConfig(host_addresses=("127.0.0.1",))
_CAND = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", re.M)


def run(factory: Callable[[], Awaitable[None]]) -> None:
    """Run a test body; fail on anything the loop's exception handler saw (e.g. "Task exception
    was never retrieved" from a background close)."""
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        await factory()
        await wait_background_closes()
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert seen == []


async def connect(generation: int, cfg_a: DirectConfig = LO, cfg_b: DirectConfig = LO,
                  **kw: Any) -> tuple[Generation, Generation]:
    a = await Generation.offer(generation, cfg_a, **kw)
    b = await Generation.answer(generation, a.local_sdp, a.local_fingerprint, cfg_b, **kw)
    await a.accept_answer(b.local_sdp, b.local_fingerprint)
    await asyncio.gather(a.opened(), b.opened())
    return a, b


def presented(g: Generation) -> bytes:
    """SHA-256 of the certificate the peer presented in the DTLS handshake, read through
    aiortc's private SSL object (what p4-04 SES-1 means by the remote binding)."""
    dtls: Any = g.pc.sctp.transport if g.pc.sctp is not None else None
    cert: Any = dtls._ssl.get_peer_certificate(as_cryptography=True)
    digest: bytes = cert.fingerprint(hashes.SHA256())
    return digest


def candidates(sdp: str) -> set[str]:
    return {m.group(1) for m in _CAND.finditer(sdp)}


# --- fingerprints and the persistent certificate -----------------------------------------------


def test_both_sides_agree_on_the_bindings() -> None:
    async def body() -> None:
        a, b = await connect(1)
        assert a.bindings is not None and b.bindings is not None
        assert a.bindings.local == b.bindings.remote == a.local_fingerprint
        assert b.bindings.local == a.bindings.remote == b.local_fingerprint
        assert a.bindings.local != a.bindings.remote and len(a.bindings.local) == 32
        # the fingerprint aiortc reports for the remote side is the presented certificate's
        assert presented(b) == b.bindings.remote and presented(a) == a.bindings.remote
        a.close()
        b.close()

    run(body)


def test_selected_pair_and_rtt_for_status() -> None:
    """``p4 status``'s path type and RTT come from aiortc's private state (no public accessor
    in the pinned version): this fails if that state moves, instead of status silently
    degrading to "direct" / no RTT."""
    async def body() -> None:
        a, b = await connect(1)
        assert a.candidate_types == ("host", "host") and b.candidate_types is not None
        assert a.path_type == "direct"
        a.send(b"x" * 1000)  # an acknowledged DATA chunk gives SCTP its first RTT sample
        await b.recv(5)
        for _ in range(100):
            if a.rtt_ms is not None:
                break
            await asyncio.sleep(0.02)
        assert a.rtt_ms is not None and 0 <= a.rtt_ms < 1000
        a.close()
        b.close()

    run(body)


def test_open_connections_get_the_configured_socket_buffers() -> None:
    """``DirectConfig.socket_buffer`` reaches aioice's UDP sockets (read through its private
    protocols: this fails if they move, instead of the buffers silently staying small);
    ``None`` leaves aioice's choice."""
    def buffers(g: Generation) -> set[tuple[int, int]]:
        ice: Any = g.pc.sctp.transport.transport if g.pc.sctp is not None else None
        socks = [p.transport.get_extra_info("socket") for p in ice._connection._protocols]
        assert socks
        return {(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                 s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)) for s in socks}

    async def body() -> None:
        small = DirectConfig(host_addresses=("127.0.0.1",), socket_buffer=None)
        big = DirectConfig(host_addresses=("127.0.0.1",), socket_buffer=1 << 20)
        a, b = await connect(1, big, small)
        # Linux doubles what is asked (bookkeeping), capped at rmem_max / wmem_max
        rmax = int(Path("/proc/sys/net/core/rmem_max").read_text())
        wmax = int(Path("/proc/sys/net/core/wmem_max").read_text())
        assert buffers(a) == {(2 * min(1 << 20, rmax), 2 * min(1 << 20, wmax))}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:
            default_snd = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert buffers(b) == {(2 * aioice.turn.UDP_SOCKET_BUFFER_SIZE, default_snd)}  # aioice's
        a.close()
        b.close()

    run(body)


def test_persistent_certificate_is_what_the_peer_sees(tmp_path: Path) -> None:
    """FAILS if aiortc renames ``_RTCPeerConnection__certificates`` (the certificate would be
    silently ignored and the peer would see a fresh one): keep aiortc pinned."""
    home = tmp_path / "profile"
    home.mkdir(mode=0o700)
    cert = load_or_create_certificate(home)
    assert stat.S_IMODE(os.stat(home / CERT_FILE).st_mode) == 0o600
    again = load_or_create_certificate(home)  # a restart
    fp = certificate_fingerprint(cert)
    assert certificate_fingerprint(again) == fp
    assert isinstance(getattr(RTCPeerConnection(), CERT_ATTRIBUTE), list)

    async def body() -> None:
        mine = DirectConfig(host_addresses=("127.0.0.1",), certificate=again)
        for generation in (1, 2):  # the same fingerprint in every generation, both roles
            a, b = await connect(generation, mine, LO)
            assert a.local_fingerprint == fp and b.bindings is not None
            assert b.bindings.remote == fp and fingerprint_of(b.pc.remoteDescription.sdp) == fp
            assert presented(b) == fp
            a.close()
            b.close()
        c, d = await connect(3, LO, mine)
        assert c.bindings is not None and c.bindings.remote == fp
        c.close()
        d.close()

    run(body)


def test_a_renamed_certificate_attribute_is_refused_not_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "p"
    home.mkdir(mode=0o700)
    cfg = DirectConfig(certificate=load_or_create_certificate(home))
    monkeypatch.setattr(webrtc, "CERT_ATTRIBUTE", "_RTCPeerConnection__certificate")
    with pytest.raises(P4Error) as exc:
        webrtc._new_pc(cfg)
    assert exc.value.code is ErrorCode.INTERNAL_ERROR


def test_certificate_file_is_checked_never_replaced(tmp_path: Path) -> None:
    home = tmp_path / "p"
    home.mkdir(mode=0o700)
    (home / CERT_FILE).write_bytes(b"not a pem")
    os.chmod(home / CERT_FILE, 0o600)
    with pytest.raises(ProfileError) as exc:
        load_or_create_certificate(home)
    assert exc.value.code is ErrorCode.PROFILE_CORRUPT
    assert (home / CERT_FILE).read_bytes() == b"not a pem"
    os.chmod(home / CERT_FILE, 0o644)
    with pytest.raises(ProfileError) as exc:
        load_or_create_certificate(home)
    assert exc.value.code is ErrorCode.PROFILE_INSECURE


# --- generations -------------------------------------------------------------------------------


def test_make_before_break_two_generations_carry_data_at_once() -> None:
    async def body() -> None:
        a1, b1 = await connect(1)
        t0 = time.perf_counter()
        a2, b2 = await connect(2)  # while generation 1 is open
        opened = time.perf_counter() - t0
        for i in range(20):  # both carry traffic, interleaved
            await a1.write(b"g1-%d" % i)
            await a2.write(b"g2-%d" % i)
        assert [await b1.recv(5) for _ in range(20)] == [b"g1-%d" % i for i in range(20)]
        assert [await b2.recv(5) for _ in range(20)] == [b"g2-%d" % i for i in range(20)]
        task = a1.close()  # break: returns at once, the close runs in the background
        assert not task.done() and a1.state == "closed"
        assert await a1.recv() == b""
        await a2.write(b"still here")
        assert await b2.recv(5) == b"still here"
        assert await b1.recv(10) == b""  # the peer's generation 1 sees its end
        await task
        assert a1.pc.connectionState == "closed"
        with pytest.raises(P4Error):
            a1.send(b"x")
        print(f"\nfresh generation opened in {opened * 1000:.1f} ms (one process, loopback)")
        for g in (a2, b1, b2):
            g.close()

    run(body)


def test_misuse_is_refused_with_codes() -> None:
    async def body() -> None:
        a = await Generation.offer(1, LO)
        with pytest.raises(P4Error) as exc:
            a.send(b"early")  # not open yet
        assert exc.value.code is ErrorCode.PROTOCOL_VIOLATION
        with pytest.raises(P4Error) as exc:
            await Generation.answer(1, a.local_sdp, bytes(32), LO)  # not the signed fingerprint
        assert exc.value.code is ErrorCode.MESSAGE_INVALID
        b = await Generation.answer(1, a.local_sdp, a.local_fingerprint, LO)
        with pytest.raises(P4Error) as exc:
            await a.accept_answer(b.local_sdp, bytes(32))
        assert exc.value.code is ErrorCode.MESSAGE_INVALID
        await a.accept_answer(b.local_sdp, b.local_fingerprint)
        with pytest.raises(P4Error) as exc:
            await a.accept_answer(b.local_sdp, b.local_fingerprint)  # twice
        assert exc.value.code is ErrorCode.UNEXPECTED_MESSAGE
        await asyncio.gather(a.opened(), b.opened())
        a.close()
        b.close()
        fp = ":".join(["AB"] * 32)
        bad = f"v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" \
              f"a=fingerprint:sha-256 {fp}\r\n"
        with pytest.raises(P4Error) as exc:  # signed, but not an offer aiortc can use
            await Generation.answer(2, bad, fingerprint_of(bad), LO)
        assert exc.value.code is ErrorCode.MESSAGE_INVALID
        c = await Generation.offer(2, LO)
        with pytest.raises(P4Error) as exc:
            await c.accept_answer(bad, fingerprint_of(bad))
        assert exc.value.code is ErrorCode.MESSAGE_INVALID and c.state == "closed"
        c = await Generation.offer(3, LO)
        c.close()  # before any answer: opened() reports the local close
        with pytest.raises(DirectPathError) as err:
            await c.opened()
        assert err.value.code is ErrorCode.NO_ERROR and err.value.reason == "closed"

    run(body)
    with pytest.raises(P4Error):
        DirectConfig(high_water=10, low_water=10)


def test_callbacks_get_messages_and_the_end_once() -> None:
    async def body() -> None:
        got: list[bytes] = []
        ends: list[str] = []
        a = await Generation.offer(1, LO)
        b = await Generation.answer(1, a.local_sdp, a.local_fingerprint, LO,
                                    on_message=got.append, on_closed=lambda: ends.append("b"))
        await a.accept_answer(b.local_sdp, b.local_fingerprint)
        await asyncio.gather(a.opened(), b.opened())
        a.send(b"one")
        a.send(b"two")
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        assert got == [b"one", b"two"]
        b.close()
        b.close()
        assert ends == ["b"]
        assert await a.recv(10) == b""
        a.close()

    run(body)


# --- ICE configuration -------------------------------------------------------------------------


def test_ice_servers_are_explicit_and_configurable() -> None:
    async def body() -> None:
        def connection(cfg: DirectConfig) -> Any:
            pc = webrtc._new_pc(cfg)
            pc.createDataChannel("p4")
            sctp: Any = pc.sctp
            conn = sctp.transport.transport.iceGatherer._connection
            webrtc._close_in_background(pc, "test")
            return conn

        none = connection(DirectConfig())
        assert none.stun_server is None and none.turn_server is None  # not Google's default
        cfg = DirectConfig(ice_servers=(
            IceServer(("stun:127.0.0.1:3478",)),
            IceServer(("turn:127.0.0.1:3479?transport=udp",), "user", "secret"),
        ))
        conn = connection(cfg)
        assert conn.stun_server == ("127.0.0.1", 3478)
        assert conn.turn_server == ("127.0.0.1", 3479)
        assert (conn.turn_username, conn.turn_password) == ("user", "secret")

    run(body)
    for urls in ((), ("http://x",), ("turn:127.0.0.1:3479",)):  # the last: no credentials
        with pytest.raises(P4Error) as exc:
            IceServer(urls)
        assert exc.value.code is ErrorCode.MESSAGE_INVALID


def test_host_addresses_are_chosen_per_connection() -> None:
    original = aioice.ice.get_host_addresses

    async def body() -> None:
        one = DirectConfig(host_addresses=("127.0.0.1",))
        two = DirectConfig(host_addresses=("127.0.0.2",))
        # gathered concurrently, in two tasks of one process
        a, c = await asyncio.gather(Generation.offer(1, one), Generation.offer(1, two))
        assert candidates(a.local_sdp) == {"127.0.0.1"}
        assert candidates(c.local_sdp) == {"127.0.0.2"}
        # they connect to each other across the two address sets
        b = await Generation.answer(1, a.local_sdp, a.local_fingerprint, two)
        assert candidates(b.local_sdp) == {"127.0.0.2"}
        await a.accept_answer(b.local_sdp, b.local_fingerprint)
        await asyncio.gather(a.opened(), b.opened())
        a.send(b"across")
        assert await b.recv(5) == b"across"
        # the legacy context manager is context-local too, and a config overrides it
        with host_addresses(["127.0.0.3"]):
            d = await Generation.offer(2)
            e = await Generation.offer(2, one)
        assert candidates(d.local_sdp) == {"127.0.0.3"}
        assert candidates(e.local_sdp) == {"127.0.0.1"}
        for g in (a, b, c, d, e):
            g.close()

    run(body)
    # nothing else in the process changed: aioice's own choice outside a generation
    assert webrtc._HOST_ADDRESSES.get() is None
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == \
        webrtc._aioice_get_host_addresses(use_ipv4=True, use_ipv6=True)
    assert original in (webrtc._aioice_get_host_addresses, webrtc._get_host_addresses)


# --- backpressure ------------------------------------------------------------------------------


def test_backpressure_bounds_the_senders_buffer() -> None:
    total, size = 20 << 20, 16384
    cfg = DirectConfig(host_addresses=("127.0.0.1",), high_water=1 << 20, low_water=256 << 10)

    async def body() -> None:
        got = hashlib.sha256()
        received = [0]
        done = asyncio.Event()

        def slow(msg: bytes) -> None:  # a slow receiver: blocks the loop now and then
            got.update(msg)
            received[0] += len(msg)
            if received[0] % (64 * size) == 0:
                time.sleep(0.005)
            if received[0] == total:
                done.set()

        a = await Generation.offer(1, cfg)
        b = await Generation.answer(1, a.local_sdp, a.local_fingerprint, cfg, on_message=slow)
        await a.accept_answer(b.local_sdp, b.local_fingerprint)
        await asyncio.gather(a.opened(), b.opened())
        sent = hashlib.sha256()
        peak = 0
        for i in range(total // size):
            msg = i.to_bytes(4, "big") * (size // 4)
            await a.write(msg)
            sent.update(msg)
            peak = max(peak, a.buffered_amount)
        assert peak <= cfg.high_water + size
        await asyncio.wait_for(done.wait(), 120)
        assert got.digest() == sent.digest()
        print(f"\npeak bufferedAmount {peak} B for {total >> 20} MiB (high water {cfg.high_water})")
        a.close()
        b.close()

    run(body)


def test_without_write_the_buffer_is_unbounded_and_size_is_limited() -> None:
    async def body() -> None:
        a, b = await connect(1)
        assert "a=max-message-size:16384" in a.local_sdp  # p4-04 SES-4
        for _ in range(256):
            a.send(bytes(16384))
        assert a.buffered_amount > 2 << 20  # what write() prevents
        with pytest.raises(P4Error) as exc:
            b.send(bytes(16385))
        assert exc.value.code is ErrorCode.FRAME_TOO_LARGE
        a.close()
        b.close()

    run(body)


# --- failures: P⁴'s own deadline, DTLS mismatch, wrong channel ----------------------------------


def test_open_deadline_abandons_a_generation_without_waiting_for_aiortc() -> None:
    async def body() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a path that drops everything
        silent.bind(("127.0.0.1", 0))
        try:
            cfg = DirectConfig(host_addresses=("127.0.0.1",), open_timeout=0.5)
            port = str(silent.getsockname()[1])

            def blackhole(sdp: str) -> str:  # every candidate now points at the silent socket
                return _CAND.sub(lambda m: m.group(0).replace(m.group(2), port), sdp)

            a = await Generation.offer(1, cfg)
            b = await Generation.answer(1, blackhole(a.local_sdp), a.local_fingerprint, cfg)
            t0 = time.monotonic()
            await a.accept_answer(blackhole(b.local_sdp), b.local_fingerprint)
            with pytest.raises(DirectPathError) as exc:
                await a.opened()
            assert exc.value.code is ErrorCode.TIMEOUT and exc.value.reason == "timeout"
            assert time.monotonic() - t0 < 10  # its own 0.5 s, not aiortc's 30 s or more
            assert a.state == "closed"
            with pytest.raises(DirectPathError):
                await b.opened()  # the answerer's deadline ran too
        finally:
            silent.close()

    run(body)


def test_a_dtls_failure_is_a_binding_mismatch_only_with_a_wrong_certificate() -> None:
    """What a DTLS failure before the open is reported as: SES_BINDING_MISMATCH when the peer
    presented a certificate that is not the signed fingerprint (the test below makes aiortc do
    it), PROTOCOL_VIOLATION when the handshake failed otherwise: no certificate received, or the
    right one and then a fatal alert (libdatachannel refusing ours, p4-03 RDV-78)."""
    class Cert:
        def __init__(self, fp: bytes) -> None:
            self.fp = fp

        def fingerprint(self, algorithm: hashes.HashAlgorithm) -> bytes:
            assert isinstance(algorithm, hashes.SHA256)
            return self.fp

    class Ssl:
        def __init__(self, cert: Cert | None) -> None:
            self.cert = cert

        def get_peer_certificate(self, *, as_cryptography: bool) -> Cert | None:
            return self.cert

    class Dtls:
        def __init__(self, cert: Cert | None) -> None:
            self._ssl = Ssl(cert)

    async def body() -> None:
        a = await Generation.offer(1, LO)
        b = await Generation.answer(1, a.local_sdp, a.local_fingerprint, LO)
        try:
            for dtls, code in ((Dtls(Cert(bytes(32))), ErrorCode.SES_BINDING_MISMATCH),
                               (Dtls(Cert(a.local_fingerprint)), ErrorCode.PROTOCOL_VIOLATION),
                               (Dtls(None), ErrorCode.PROTOCOL_VIOLATION),
                               (object(), ErrorCode.PROTOCOL_VIOLATION)):
                err = b._dtls_failure(dtls)
                assert (err.code, err.reason) == (code, "dtls"), (dtls, err)
        finally:
            a.close()
            b.close()

    run(body)


def test_a_certificate_that_is_not_the_signed_one_fails_fast() -> None:
    async def body() -> None:
        a = await Generation.offer(1, LO)
        forged = bytes(32)  # what a relay would sign: not a's certificate
        forged_hex = ":".join(f"{x:02X}" for x in forged)
        offer = re.sub(r"a=fingerprint:sha-256 \S+", f"a=fingerprint:sha-256 {forged_hex}",
                       a.local_sdp)
        offer = re.sub(r"a=fingerprint:sha-(384|512) \S+\r\n", "", offer)
        b = await Generation.answer(1, offer, forged, LO)
        await a.accept_answer(b.local_sdp, b.local_fingerprint)
        with pytest.raises(DirectPathError) as exc:
            await asyncio.wait_for(b.opened(), 10)
        assert exc.value.code is ErrorCode.SES_BINDING_MISMATCH and exc.value.reason == "dtls"
        a.close()

    run(body)


def test_a_channel_that_is_not_p4_is_refused() -> None:
    async def body() -> None:
        with host_addresses(["127.0.0.1"]):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.createDataChannel("chat", ordered=True)
            await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        b = await Generation.answer(1, offer, fingerprint_of(offer), LO)
        await pc.setRemoteDescription(b.pc.localDescription)
        with pytest.raises(DirectPathError) as exc:
            await asyncio.wait_for(b.opened(), 10)
        assert exc.value.code is ErrorCode.PROTOCOL_VIOLATION
        await pc.close()

    run(body)


def test_silent_servers_are_the_asked_urls_without_their_candidates() -> None:
    """aiortc asks the first ``stun:`` URL and the first usable TURN URL (``turn:`` over UDP or
    TCP, ``turns:`` over TCP); a server is silent when its kind of candidate is missing from
    the gathered SDP, and ``DirectConfig.without`` leaves its URL out so the next one is asked
    (issue 12: dead STUN/TURN servers are skipped, not waited for)."""
    servers = (IceServer(("stun:a.example:3478", "stun:b.example:3478")),
               IceServer(("turn:t.example:3478?transport=sctp", "turns:t.example:5349"), "u", "p"))
    host = "a=candidate:1 1 udp 2130706431 192.168.1.2 50000 typ host\r\n"
    srflx = "a=candidate:2 1 udp 1694498815 203.0.113.7 40000 typ srflx raddr 0.0.0.0\r\n"
    relay = "a=candidate:3 1 udp 16777215 198.51.100.9 41000 typ relay raddr 0.0.0.0\r\n"
    assert webrtc.silent_servers(servers, host + srflx + relay) == ()
    assert webrtc.silent_servers(servers, host) == ("stun:a.example:3478",
                                                    "turns:t.example:5349")
    assert webrtc.silent_servers(servers, host + relay) == ("stun:a.example:3478",)
    assert webrtc.silent_servers((), host) == ()
    cfg = DirectConfig(ice_servers=servers)
    assert cfg.without(()) is cfg
    left = cfg.without({"stun:a.example:3478"}).ice_servers
    assert left[0].urls == ("stun:b.example:3478",) and left[1] == servers[1]
    gone = cfg.without({"turn:t.example:3478?transport=sctp", "turns:t.example:5349"})
    assert gone.ice_servers == (servers[0],)


def test_a_stun_server_that_never_answers_is_reported_silent() -> None:
    """A real gathering against a STUN server that receives and never answers (a bound UDP
    socket): no ``srflx`` candidate, so the generation names the URL; without it the next
    generation asks no server at all (and does not wait aioice's 5 s for it)."""
    async def body() -> None:
        mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mute.bind(("127.0.0.1", 0))
        url = f"stun:127.0.0.1:{mute.getsockname()[1]}"
        cfg = DirectConfig(host_addresses=("127.0.0.1",), ice_servers=(IceServer((url,)),))
        try:
            g = await Generation.offer(1, cfg)
            assert g.silent_servers == (url,)
            assert " typ srflx" not in g.local_sdp
            g.close()
            g2 = await Generation.offer(2, cfg.without(g.silent_servers))
            assert g2.config.ice_servers == () and g2.silent_servers == ()
            g2.close()
        finally:
            mute.close()

    run(body)


def test_below_waits_for_the_backlog_to_drain_under_a_limit() -> None:
    """``Generation.below`` (the link's send queue, DC_QUEUE_LIMIT) returns once the backlog is
    under the limit, woken by ``bufferedamountlow``, and raises once the channel is closed."""
    async def body() -> None:
        a, b = await connect(1)
        for _ in range(128):  # 2 MiB queued at once
            a.send(bytes(16384))
        limit = 512 * 1024
        assert a.backlog >= limit
        await asyncio.wait_for(a.below(limit), 30)
        assert a.backlog < limit
        assert a.buffered_amount <= a.config.low_water  # woken by the event, not earlier
        for _ in range(128):
            a.send(bytes(16384))
        waiter = asyncio.ensure_future(a.below(limit))
        await asyncio.sleep(0)
        a.close()
        with pytest.raises(P4Error):
            await asyncio.wait_for(waiter, 10)
        b.close()

    run(body)
