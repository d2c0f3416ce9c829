"""The direct path: one aiortc RTCPeerConnection and its ``p4`` data channel per generation
(ARCHITECTURE §5, p4-04 §4.1, §5.2, §10.2).

The driver is thin: it moves bytes, reports *open* (with the two channel bindings the session
handshake signs), *closed* and failures, and takes the signalling SDPs.  Every decision (when to
start a generation, which one carries traffic, when a path is dead) is the session machine's.

Use::

    a = await Generation.offer(7, config)                 # offerer: a.local_sdp → RV_OFFER
    b = await Generation.answer(7, offer_sdp, signed_fp, config)   # b.local_sdp → RV_ANSWER
    await a.accept_answer(answer_sdp, signed_fp)          # both: the open deadline is running
    bindings = await a.opened()                           # Bindings(local, remote): SES_HELLO
    await a.write(frame)                                  # backpressured send
    frame = await b.recv()                                # b"" once the channel has closed
    a.close()                                             # in the background, never awaited

Facts this module relies on (aiortc 1.16.0 / aioice 0.13.0, pinned in pyproject.toml;
research/webrtc-lab.md):

- **No ICE restart.**  Every generation is a fresh ``RTCPeerConnection`` (p4-04 SES-11); the old
  one is closed by a background task that the critical path never awaits (:meth:`close`), so
  generation N keeps carrying data while N+1 is set up (make-before-break).
- **``iceServers`` is always explicit.**  ``RTCConfiguration()`` without servers means aiortc's
  default, a public Google STUN server; P⁴ contacts no third party unless configured
  (:class:`DirectConfig.ice_servers`).
- **Host addresses per connection.**  aioice gathers on every interface address except
  127.0.0.1 and has no per-connection option (aioice issue #2, open since 2018; PR #57, a
  block/allow list, not merged).  :func:`aioice.ice.get_host_addresses` is the single function
  ``Connection.gather_candidates`` asks; this module replaces it *once* by a wrapper that returns
  the addresses of a :class:`contextvars.ContextVar` when one is set and else calls aioice's own.
  A generation sets the variable only around its own ``setLocalDescription`` (the only call that
  gathers); asyncio tasks copy the context, so two generations gathering concurrently in one
  process each see their own list, and nothing outside this module changes behaviour.
- **Persistent DTLS certificate.**  ``RTCConfiguration`` has no ``certificates`` field; every
  ``RTCPeerConnection()`` generates a fresh 30-day certificate in its constructor and keeps it in
  the name-mangled private attribute ``_RTCPeerConnection__certificates`` (:data:`CERT_ATTRIBUTE`),
  which the DTLS transport reads when ``createDataChannel``/``setRemoteDescription`` creates it.
  :func:`load_or_create_certificate` keeps one certificate per device in the profile and
  :func:`_new_pc` puts it there right after construction; it refuses (INTERNAL_ERROR) if the
  attribute is not what aiortc 1.16.0 has, and tests/test_webrtc_generations.py fails if the
  fingerprint the peer sees is not the stored one.
- **Fingerprints.**  aiortc checks the peer's DTLS certificate against every fingerprint of the
  remote SDP and fails the connection otherwise (``RTCDtlsTransport._validate_peer_identity``), so
  once the channel is open the remote SDP's SHA-256 fingerprint *is* the presented certificate's
  (p4-04 SES-1 allows exactly this).  A mismatch leaves the data channel ``connecting`` and the
  connection ``failed``: the driver watches the connection state, not only the channel.
- **No ``disconnected`` state, and ``closed`` after ~30 s of path loss** (ICE consent): liveness
  is the session layer's; the driver's own timer is only the open deadline (CONNECT_TIMEOUT,
  SES-55), never aiortc's 30 s / 63.5 s timers.
- **Backpressure.**  ``RTCDataChannel.send`` never blocks: aiortc queues without bound and lowers
  ``bufferedAmount`` as messages enter SCTP; :meth:`Generation.write` waits for the
  ``bufferedamountlow`` event at the low watermark once ``bufferedAmount`` reaches the high one.
  There is no receive-side flow control in aiortc: bytes are handed over as they arrive (the
  session and channel layers' windows and credit bound them, p4-04 SES-37, p4-05).
- **Silent STUN/TURN servers.**  aioice waits up to 5 s for the STUN and the TURN server it asks
  (the first usable URL of each kind: aiortc ignores the rest) before the offer or answer is
  complete.  :attr:`Generation.silent_servers` names the asked URLs whose kind of candidate
  (``srflx``, ``relay``) is missing, so the caller can leave them out of the next generations
  (the link does, until a network change) instead of waiting for them every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import logging
import os
import re
import socket
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import aioice.ice
from aiortc import (
    RTCCertificate,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcsctptransport import USERDATA_MAX_LENGTH
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import ErrorCode, P4Error
from .store import ProfileError, atomic_write, read_private_file

__all__ = [
    "CERT_ATTRIBUTE",
    "CERT_FILE",
    "Bindings",
    "DirectChannel",
    "DirectConfig",
    "DirectPathError",
    "Generation",
    "IceServer",
    "accept_offer",
    "certificate_fingerprint",
    "complete_offer",
    "fingerprint_of",
    "host_addresses",
    "load_or_create_certificate",
    "make_offer",
    "silent_servers",
    "wait_background_closes",
]

log = logging.getLogger(__name__)

LABEL: Final = "p4"  # p4-04 SES-4
CERT_FILE: Final = "dtls.pem"
#: aiortc 1.16.0 keeps the connection's certificates here (name-mangled ``self.__certificates``)
CERT_ATTRIBUTE: Final = "_RTCPeerConnection__certificates"
_CLOSE_TIMEOUT: Final = 5.0

_FP = re.compile(r"^a=fingerprint:sha-256 ([0-9A-Fa-f:]{95})\s*$", re.M)
_MAX_MSG = re.compile(r"^a=max-message-size:\d+\r?$", re.M)


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server (W3C ``RTCIceServer``): ``stun:host:port``, ``turn:host:port``
    (``?transport=udp|tcp``) or ``turns:host:port?transport=tcp``; TURN needs ``username`` and
    ``credential`` (password credentials only).  aiortc uses the first STUN and the first TURN
    URL it can use and ignores the rest."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.urls or not all(
            isinstance(u, str) and u.startswith(("stun:", "turn:", "turns:")) for u in self.urls
        ):
            raise P4Error(ErrorCode.MESSAGE_INVALID, f"ICE server URLs {self.urls!r}")
        if any(u.startswith("turn") for u in self.urls) and (
            self.username is None or self.credential is None
        ):
            raise P4Error(ErrorCode.MESSAGE_INVALID, "a TURN server needs username and credential")


def _asked_urls(servers: Sequence[IceServer]) -> dict[str, str]:
    """The URL aioice asks for each kind, as aiortc 1.16 picks them
    (``aiortc.rtcicetransport.connection_kwargs``): the first ``stun:`` URL, and the first
    ``turn:`` (UDP or TCP) or ``turns:`` (TCP) URL."""
    asked: dict[str, str] = {}
    for server in servers:
        for url in server.urls:
            transport = url.partition("?transport=")[2] or ("tcp" if url.startswith("turns:")
                                                            else "udp")
            if url.startswith("stun:"):
                asked.setdefault("srflx", url)
            elif (url.startswith("turn:") and transport in ("udp", "tcp")) or (
                    url.startswith("turns:") and transport == "tcp"):
                asked.setdefault("relay", url)
    return asked


def silent_servers(servers: Sequence[IceServer], sdp: str) -> tuple[str, ...]:
    """The asked STUN/TURN URLs (see :func:`_asked_urls`) whose candidate type is missing
    from the gathered ``sdp``: a STUN server that gave no ``srflx`` candidate, a TURN server
    that gave no ``relay`` candidate within aioice's gathering time."""
    return tuple(url for kind, url in _asked_urls(servers).items()
                 if f" typ {kind}" not in sdp)


@dataclass(frozen=True, slots=True)
class DirectConfig:
    """How one generation's peer connection is built.

    ``ice_servers`` — STUN/TURN servers, default **none**: aiortc's own default is a public
    Google STUN server, and P⁴ never contacts a third party unless configured (ARCHITECTURE §5).
    With none, only host candidates are offered (enough on one LAN, on loopback, or when the
    other side has a public address).

    ``host_addresses`` — the local addresses to gather host candidates on, for this connection
    only; ``None``: aioice's choice (every interface address except 127.0.0.1 and ``::1``).

    ``certificate`` — the device's persistent DTLS certificate
    (:func:`load_or_create_certificate`); ``None``: aiortc's fresh one per connection.

    ``open_timeout`` — seconds from the RV_ANSWER (sent or received) until the data channel must
    be open, else the generation is abandoned with TIMEOUT (p4-04 CONNECT_TIMEOUT, SES-55).

    ``high_water`` / ``low_water`` — :meth:`Generation.write` waits once ``bufferedAmount``
    reaches ``high_water`` until it is down to ``low_water``.

    ``max_message_size`` — advertised in the SDP (p4-04 SES-4: at most 16384); the peer's stack
    refuses to send larger messages.

    ``socket_buffer`` — bytes of kernel receive and send buffer asked for each of the
    connection's UDP sockets once it is open (``SO_RCVBUF``/``SO_SNDBUF``; the kernel caps it at
    ``net.core.rmem_max``/``wmem_max``); ``None``: aioice's choice (256 KiB to receive, the
    system's default to send).  aiortc's SCTP grows its congestion window towards the peer's
    1 MiB receive window without pacing: with aioice's buffer a receiver busy for a few
    milliseconds dropped datagrams on loopback (hundreds to thousands per 20 MiB in
    bench/bench_session.py (a)), and every SACK until a retransmission arrives walks the whole
    sent queue; with 2 MiB none were dropped (:meth:`Generation._size_buffers`).
    """

    ice_servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] | None = None
    certificate: RTCCertificate | None = None
    open_timeout: float = 15.0
    high_water: int = 1 << 20
    low_water: int = 1 << 18
    max_message_size: int = 16384
    socket_buffer: int | None = 1 << 21

    def without(self, urls: Collection[str]) -> DirectConfig:
        """This configuration without the STUN/TURN ``urls`` (a server left with no URL is
        dropped)."""
        if not urls:
            return self
        servers = tuple(replace(s, urls=tuple(u for u in s.urls if u not in urls))
                        for s in self.ice_servers if any(u not in urls for u in s.urls))
        return replace(self, ice_servers=servers)

    def __post_init__(self) -> None:
        if not 0 <= self.low_water < self.high_water:
            raise P4Error(ErrorCode.MESSAGE_INVALID, "need 0 ≤ low_water < high_water")
        if self.open_timeout <= 0 or not 0 < self.max_message_size <= 262144:
            raise P4Error(ErrorCode.MESSAGE_INVALID, "open_timeout / max_message_size")


# ---------------------------------------------------------------------------------------------
# Host addresses per connection: one wrapper around aioice's address source, consulted per
# context (see the module docstring)

_HOST_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "p4_host_addresses", default=None
)
_aioice_get_host_addresses: Callable[..., list[str]] = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _HOST_ADDRESSES.get()
    if chosen is None:
        return _aioice_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]


def _install_address_source() -> None:
    current = aioice.ice.get_host_addresses
    if current is _get_host_addresses:
        return
    if current is not _aioice_get_host_addresses:
        raise P4Error(ErrorCode.INTERNAL_ERROR,
                      "aioice.ice.get_host_addresses was replaced by someone else")
    aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Gather host candidates on ``addresses`` only, for connections built in this context
    (the current task and tasks it starts; ``asyncio.run`` inside the block included), unless
    their :class:`DirectConfig` names its own."""
    _install_address_source()
    token = _HOST_ADDRESSES.set(tuple(addresses))
    try:
        yield
    finally:
        _HOST_ADDRESSES.reset(token)


# ---------------------------------------------------------------------------------------------
# Fingerprints and the persistent certificate


def fingerprint_of(sdp: str) -> bytes:
    """The sha-256 DTLS certificate fingerprint an SDP announces (RFC 8122 §5), as 32 bytes."""
    found = {m.group(1).upper() for m in _FP.finditer(sdp)}
    if len(found) != 1:
        raise P4Error(ErrorCode.MESSAGE_INVALID, f"SDP has {len(found)} sha-256 fingerprints")
    return bytes.fromhex(found.pop().replace(":", ""))


def certificate_fingerprint(certificate: RTCCertificate) -> bytes:
    """The SHA-256 fingerprint (32 bytes) of ``certificate``, as its SDP ``a=fingerprint``."""
    for fp in certificate.getFingerprints():
        if fp.algorithm == "sha-256":
            return bytes.fromhex(fp.value.replace(":", ""))
    raise P4Error(ErrorCode.INTERNAL_ERROR, "aiortc reports no sha-256 fingerprint")


def _corrupt(path: Path, why: str) -> ProfileError:
    return ProfileError(ErrorCode.PROFILE_CORRUPT, f"{path}: {why}")


def _decode_certificate(path: Path, data: bytes) -> RTCCertificate:
    try:
        key = serialization.load_pem_private_key(data, password=None)
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise _corrupt(path, f"not a PEM key and certificate ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _corrupt(path, "the key is not ECDSA P-256")
    if cert.public_key() != key.public_key():
        raise _corrupt(path, "the certificate is not the key's")
    return RTCCertificate(key=key, cert=cert)


def load_or_create_certificate(home: Path, *, days: int = 3650) -> RTCCertificate:
    """The device's DTLS certificate from ``<home>/dtls.pem`` (mode 0600), created on first use.

    ECDSA P-256, self-signed, valid ``days`` (WebRTC stacks compare fingerprints only), so the
    fingerprint stays the same across restarts.  The file is written with the profile store's
    atomic, exclusive write: two processes creating it at once end up with the same one.  A file
    that does not parse is reported (PROFILE_CORRUPT) and never replaced.
    """
    path = home / CERT_FILE
    data = read_private_file(path)
    if data is not None:
        return _decode_certificate(path, data)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, os.urandom(16).hex())])
    now = datetime.datetime.now(tz=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    try:
        atomic_write(path, pem, exclusive=True)
    except ProfileError as e:
        if e.code is not ErrorCode.PROFILE_EXISTS:
            raise
        data = read_private_file(path)  # another process won the race: use its certificate
        if data is None:
            raise
        return _decode_certificate(path, data)
    return RTCCertificate(key=key, cert=cert)


# ---------------------------------------------------------------------------------------------
# Background closes: tracked, never awaited on the critical path, exceptions logged

_CLOSING: set[asyncio.Task[None]] = set()


async def _close_pc(pc: RTCPeerConnection, what: str) -> None:
    try:
        await asyncio.wait_for(pc.close(), _CLOSE_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # logged, never "Task exception was never retrieved"
        log.warning("closing %s: %r", what, e)


def _close_in_background(pc: RTCPeerConnection, what: str) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(_close_pc(pc, what), name=f"p4 close {what}")
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)
    return task


async def wait_background_closes(timeout: float = _CLOSE_TIMEOUT + 1) -> None:
    """Wait for the background closes started so far (shutdown and tests; never the data path)."""
    pending = [t for t in _CLOSING if t.get_loop() is asyncio.get_running_loop()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# One generation


class DirectPathError(P4Error):
    """A generation was abandoned before its data channel opened.

    ``reason``: ``timeout`` (not open within ``open_timeout``: TIMEOUT), ``ice`` (ICE failed or
    the connection closed before opening: TIMEOUT), ``dtls`` (DTLS failed: SES_BINDING_MISMATCH
    when the peer's certificate is not the signalled fingerprint, PROTOCOL_VIOLATION for a fatal
    alert from the peer or a broken handshake), ``protocol`` (the peer
    opened a channel that is not one reliable, ordered ``p4`` channel: PROTOCOL_VIOLATION),
    ``closed`` (closed locally: NO_ERROR).
    """

    def __init__(self, code: ErrorCode, reason: str, message: str) -> None:
        super().__init__(code, message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Bindings:
    """The channel bindings of an open data channel (p4-04 §4.1 SES-1): SHA-256 fingerprints of
    the local certificate and of the one the peer presented, 32 bytes each."""

    local: bytes
    remote: bytes


def _new_pc(config: DirectConfig) -> RTCPeerConnection:
    servers = [RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
               for s in config.ice_servers]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))  # never None: no default STUN
    if config.certificate is not None:
        current = getattr(pc, CERT_ATTRIBUTE, None)
        if not (isinstance(current, list) and len(current) == 1
                and isinstance(current[0], RTCCertificate)):
            raise P4Error(ErrorCode.INTERNAL_ERROR,
                          f"aiortc has no {CERT_ATTRIBUTE}: the pinned aiortc version changed")
        setattr(pc, CERT_ATTRIBUTE, [config.certificate])
    return pc


class Generation:
    """One generation: a fresh RTCPeerConnection and its ``p4`` data channel (p4-04 §5.2).

    Build with :meth:`offer` or :meth:`answer`.  States: ``signalling`` (SDPs being exchanged),
    ``connecting`` (the open deadline runs), ``open``, ``closed``.  Received messages go to
    ``on_message`` if given, else to a queue read by :meth:`recv`; the end of the channel is
    ``on_closed()`` or ``b""`` from :meth:`recv`, exactly once, and only after :meth:`opened`
    succeeded (a generation that never opened reports through :meth:`opened` instead).
    """

    def __init__(self, generation: int, config: DirectConfig, *, offerer: bool,
                 on_message: Callable[[bytes], None] | None = None,
                 on_closed: Callable[[], None] | None = None) -> None:
        self.generation = generation
        self.config = config
        self.offerer = offerer
        self.pc = _new_pc(config)
        self.local_sdp = ""
        #: asked STUN/TURN URLs that gave no candidate while gathering (see silent_servers)
        self.silent_servers: tuple[str, ...] = ()
        self.error: DirectPathError | None = None
        self.bindings: Bindings | None = None
        self.opened_at: float | None = None
        self._on_message = on_message
        self._on_closed = on_closed
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._channel: RTCDataChannel | None = None
        self._state = "signalling"
        self._done = asyncio.Event()  # open, failed or closed
        self._low_waiters: list[asyncio.Future[None]] = []
        self._deadline: asyncio.TimerHandle | None = None
        self._close_task: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)

    # --- construction ---

    @classmethod
    async def offer(cls, generation: int = 0, config: DirectConfig | None = None, *,
                    on_message: Callable[[bytes], None] | None = None,
                    on_closed: Callable[[], None] | None = None) -> Generation:
        """A new peer connection with its ``p4`` channel and a complete (non-trickle) offer in
        :attr:`local_sdp`."""
        g = cls(generation, config or DirectConfig(), offerer=True, on_message=on_message,
                on_closed=on_closed)
        try:
            g._attach(g.pc.createDataChannel(LABEL, ordered=True))
            await g._set_local(await g.pc.createOffer())
        except BaseException:
            g.close()
            raise
        return g

    @classmethod
    async def answer(cls, generation: int, offer_sdp: str, signed_fingerprint: bytes,
                     config: DirectConfig | None = None, *,
                     on_message: Callable[[bytes], None] | None = None,
                     on_closed: Callable[[], None] | None = None) -> Generation:
        """Answer an offer whose fingerprint the rendezvous layer verified as signed; the answer
        is in :attr:`local_sdp` and the open deadline starts now (SES-55)."""
        if fingerprint_of(offer_sdp) != signed_fingerprint:
            raise P4Error(ErrorCode.MESSAGE_INVALID,
                          "offer fingerprint differs from the signed one")
        g = cls(generation, config or DirectConfig(), offerer=False, on_message=on_message,
                on_closed=on_closed)
        try:
            g.pc.on("datachannel", g._on_datachannel)
            await g._set_remote(offer_sdp, "offer")
            await g._set_local(await g.pc.createAnswer())
        except BaseException:
            g.close()
            raise
        g._start_deadline()
        return g

    async def accept_answer(self, answer_sdp: str, signed_fingerprint: bytes) -> None:
        """Offerer: apply the peer's answer (fingerprint verified as signed); the open deadline
        starts now (SES-55)."""
        if fingerprint_of(answer_sdp) != signed_fingerprint:
            raise P4Error(ErrorCode.MESSAGE_INVALID,
                          "answer fingerprint differs from the signed one")
        if not self.offerer or self._state != "signalling":
            raise P4Error(ErrorCode.UNEXPECTED_MESSAGE, f"no answer expected ({self._state})")
        try:
            await self._set_remote(answer_sdp, "answer")
        except BaseException:
            self.close()
            raise
        self._start_deadline()

    async def _set_remote(self, sdp: str, kind: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp, kind))
        except P4Error:
            raise
        except Exception as e:  # a signed but unusable SDP is bad input, never a crash
            raise P4Error(ErrorCode.MESSAGE_INVALID, f"{kind} SDP refused: {e!r}") from None

    async def _set_local(self, description: RTCSessionDescription) -> None:
        sdp = _MAX_MSG.sub(f"a=max-message-size:{self.config.max_message_size}",
                           description.sdp)
        _install_address_source()
        chosen = self.config.host_addresses
        token = _HOST_ADDRESSES.set(chosen if chosen is not None else _HOST_ADDRESSES.get())
        try:  # the only call that gathers candidates (aiortc 1.16)
            await self.pc.setLocalDescription(RTCSessionDescription(sdp, description.type))
        finally:
            _HOST_ADDRESSES.reset(token)
        self.local_sdp = self.pc.localDescription.sdp
        self.silent_servers = silent_servers(self.config.ice_servers, self.local_sdp)

    # --- state ---

    @property
    def state(self) -> str:
        return self._state

    @property
    def local_fingerprint(self) -> bytes:
        """The SHA-256 fingerprint this side's SDP announces (what RV_OFFER/RV_ANSWER sign)."""
        return fingerprint_of(self.local_sdp)

    @property
    def buffered_amount(self) -> int:
        return self._channel.bufferedAmount if self._channel is not None else 0

    @property
    def candidate_types(self) -> tuple[str, str] | None:
        """The ICE candidate types (``host``, ``srflx``, ``prflx``, ``relay``) of the selected
        pair, ``(local, remote)``; None before ICE connected or if aiortc hides them.  aiortc
        1.16 has no public accessor: this reads aioice's nominated pair (:meth:`_aioice`) and
        degrades to None, never fails."""
        try:
            conn = self._aioice()
            pair = conn._nominated.get(1) if conn is not None else None
            if pair is None:
                return None
            return (str(pair.local_candidate.type), str(pair.remote_candidate.type))
        except AttributeError:
            return None

    @property
    def path_type(self) -> str:
        """``turn`` when either side of the selected pair is a TURN relay candidate, else
        ``direct`` (host, server- or peer-reflexive; also when the pair is unknown)."""
        types = self.candidate_types
        return "turn" if types is not None and "relay" in types else "direct"

    @property
    def rtt_ms(self) -> float | None:
        """SCTP's smoothed round-trip time on this connection (RFC 9260 SRTT), None before the
        first measurement.  Read from aiortc's SCTP transport (pinned version; None if gone)."""
        srtt = getattr(self.pc.sctp, "_srtt", None) if self.pc.sctp is not None else None
        return None if not isinstance(srtt, float | int) else float(srtt) * 1000

    async def opened(self) -> Bindings:
        """Wait until the data channel is open and return its bindings, or raise the
        :class:`DirectPathError` that abandoned the generation."""
        await self._done.wait()
        if self.bindings is None:
            raise self.error or DirectPathError(ErrorCode.NO_ERROR, "closed", "closed")
        return self.bindings

    async def wait_open(self, timeout: float | None = None) -> None:
        """:meth:`opened`, with an extra local ``timeout`` (TIMEOUT) on top of the deadline."""
        if timeout is None:
            await self.opened()
            return
        try:
            await asyncio.wait_for(self.opened(), timeout)
        except TimeoutError:
            state = self.pc.connectionState
            raise P4Error(ErrorCode.TIMEOUT, f"data channel not open ({state})") from None

    # --- data ---

    def _open_channel(self) -> RTCDataChannel:
        ch = self._channel
        if self._state != "open" or ch is None or ch.readyState != "open":
            raise P4Error(ErrorCode.PROTOCOL_VIOLATION, "data channel is not open")
        return ch

    def send(self, data: bytes) -> None:
        """Queue ``data`` now, whatever is buffered (see :meth:`write`)."""
        ch = self._open_channel()
        try:
            ch.send(bytes(data))
        except ValueError as e:  # over the peer's max-message-size
            raise P4Error(ErrorCode.FRAME_TOO_LARGE, str(e)) from None

    async def drain(self) -> None:
        """If ``bufferedAmount`` has reached the high watermark, wait until it is down to the
        low one (``bufferedamountlow``); raises if the channel closes meanwhile."""
        while self._open_channel().bufferedAmount >= self.config.high_water:
            await self._low()

    async def _low(self) -> None:
        """The next ``bufferedamountlow`` event (raises if the channel closes first)."""
        fut = asyncio.get_running_loop().create_future()
        self._low_waiters.append(fut)
        try:
            await fut
        finally:
            with contextlib.suppress(ValueError):
                self._low_waiters.remove(fut)

    async def below(self, limit: int) -> None:
        """Wait until :attr:`backlog` is under ``limit`` (``limit`` above the low watermark).
        While ``bufferedAmount`` is above the low watermark, ``bufferedamountlow`` wakes it: no
        timer per wait (a 2 ms poll cost the sender thousands of timer wake-ups per 50 MiB,
        bench_session (a)); only aiortc's SCTP queue, which drains without an event, is
        polled.  Raises if the channel closes meanwhile."""
        while self.backlog >= limit:
            if self._open_channel().bufferedAmount > self.config.low_water:
                await self._low()
            else:
                await asyncio.sleep(0.002)

    async def write(self, data: bytes) -> None:
        """Send ``data`` with backpressure: ``bufferedAmount`` never exceeds the high watermark
        plus one message."""
        await self.drain()
        self.send(data)

    async def recv(self, timeout: float | None = 15.0) -> bytes:
        """The next message (queue mode only); ``b""`` once the channel has closed; TIMEOUT
        after ``timeout`` seconds (``None``: wait as long as it takes)."""
        if self._on_message is not None:
            raise P4Error(ErrorCode.UNEXPECTED_MESSAGE, "messages go to on_message")
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout)
        except TimeoutError:
            raise P4Error(ErrorCode.TIMEOUT, "no data-channel message") from None

    @property
    def backlog(self) -> int:
        """Bytes written but not yet sent on the wire, at most: ``bufferedAmount`` plus the
        SCTP chunks aiortc 1.16 queued and has not transmitted (a frame written now waits behind
        them), each counted as a full chunk (``USERDATA_MAX_LENGTH``, 1160 bytes).  An upper
        bound in O(1): the link asks before every frame, and a walk of the queue (hundreds of
        chunks under load) cost more than the frame's own encoding."""
        sctp = self.pc.sctp
        queued = getattr(sctp, "_outbound_queue", None) if sctp is not None else None
        return self.buffered_amount + len(queued or ()) * USERDATA_MAX_LENGTH

    @property
    def drained(self) -> bool:
        """Everything written has left this side and been acknowledged by the peer's SCTP
        stack (aiortc 1.16's send queues; a closed channel counts as drained)."""
        if self._state != "open" or self.buffered_amount:
            return False
        sctp = self.pc.sctp
        if sctp is None:
            return True
        return not any(getattr(sctp, q, None) for q in (
            "_data_channel_queue", "_outbound_queue", "_sent_queue"))

    async def close_when_drained(self, timeout: float = 10.0) -> None:
        """:meth:`close` once :attr:`drained` (or after ``timeout``): closing at once would drop
        frames still queued for the peer — the last ones of a connection that ended
        gracefully (p4-04 SES_END), which the peer expects before it closes."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self._state == "open" and not self.drained and loop.time() < end:
            await asyncio.sleep(0.05)
        self.close()

    def close(self) -> asyncio.Task[None]:
        """End this generation now and close its peer connection in the background.

        Returns the background task: the data path never awaits it (make-before-break), a
        shutdown may; its exceptions are logged, never raised.
        """
        if self._state != "closed":
            if self.bindings is None:
                self._fail(DirectPathError(ErrorCode.NO_ERROR, "closed", "closed locally"))
            else:
                self._finish()
        assert self._close_task is not None
        return self._close_task

    # --- aiortc callbacks ---

    def _attach(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        channel.bufferedAmountLowThreshold = self.config.low_water
        channel.on("open", self._on_open)
        channel.on("message", self._on_data)
        channel.on("close", self._on_channel_close)
        channel.on("bufferedamountlow", self._on_low)
        if channel.readyState == "open":
            self._on_open()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None or channel.label != LABEL or not channel.ordered or (
            channel.maxRetransmits is not None or channel.maxPacketLifeTime is not None
        ):
            self._fail(DirectPathError(ErrorCode.PROTOCOL_VIOLATION, "protocol",
                                       f"unexpected data channel {channel.label!r}"))
            return
        self._attach(channel)

    def _on_open(self) -> None:
        if self._state not in ("signalling", "connecting"):
            return
        dtls = self.pc.sctp.transport if self.pc.sctp is not None else None
        local = [f.value for f in dtls.getLocalParameters().fingerprints
                 if f.algorithm == "sha-256"] if dtls is not None else []
        if dtls is None or dtls.state != "connected" or len(local) != 1:
            self._fail(DirectPathError(ErrorCode.INTERNAL_ERROR, "dtls", "no DTLS state"))
            return
        # aiortc verified the presented certificate against the remote SDP's fingerprints
        remote = fingerprint_of(self.pc.remoteDescription.sdp)
        self.bindings = Bindings(bytes.fromhex(local[0].replace(":", "")), remote)
        self._state = "open"
        self.opened_at = asyncio.get_running_loop().time()
        self._cancel_deadline()
        self._size_buffers()
        self._done.set()

    def _aioice(self) -> Any:
        """aioice's ``Connection`` under this generation's ICE transport, or None: aiortc 1.16
        has no public accessor (the version is pinned; ``tests/test_webrtc_generations.py``
        notices a change).  May raise AttributeError if the private path moved."""
        sctp = self.pc.sctp
        ice = sctp.transport.transport if sctp is not None else None
        return ice._connection if ice is not None else None

    def _size_buffers(self) -> None:
        """``DirectConfig.socket_buffer`` on the UDP sockets aioice opened for this connection.
        aioice 0.13 has no option for it: this reads its protocols (:meth:`_aioice`) and
        degrades to aioice's own sizes, never fails."""
        size = self.config.socket_buffer
        if size is None:
            return
        try:
            conn = self._aioice()
            protocols = list(conn._protocols) if conn is not None else []
        except AttributeError:
            return
        for proto in protocols:
            sock = getattr(getattr(proto, "transport", None), "get_extra_info",
                           lambda _name: None)("socket")
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def _on_data(self, msg: Any) -> None:
        if self._state != "open":
            return
        if not isinstance(msg, bytes):  # P⁴ sends binary messages only
            log.warning("generation %d: text message on the data channel; closing", self.generation)
            self._finish()
            return
        if self._on_message is not None:
            try:
                self._on_message(msg)
            except Exception:  # never into aiortc's SCTP loop
                log.exception("generation %d: on_message failed; closing", self.generation)
                self._finish()
        else:
            self._inbox.put_nowait(msg)

    def _on_low(self) -> None:
        waiters, self._low_waiters = self._low_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _on_channel_close(self) -> None:
        if self.bindings is None:
            self._fail(DirectPathError(ErrorCode.TIMEOUT, "ice", "data channel closed unopened"))
        else:
            self._finish()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state not in ("failed", "closed") or self._state == "closed":
            return
        if self.bindings is not None:
            self._finish()
            return
        sctp = self.pc.sctp
        if sctp is not None and sctp.transport.state == "failed":
            self._fail(self._dtls_failure(sctp.transport))
        else:
            self._fail(DirectPathError(ErrorCode.TIMEOUT, "ice", f"connection {state} unopened"))

    def _dtls_failure(self, dtls: Any) -> DirectPathError:
        """Why DTLS failed before the channel opened.  SES_BINDING_MISMATCH only when the peer
        presented a certificate whose SHA-256 fingerprint is not the signed one (aiortc checks it
        once the handshake is complete, and fails without saying why); any other failure, a
        fatal alert from the peer (a stack that refused our certificate, e.g. before it had our
        fingerprint, p4-03 RDV-78) or a broken handshake, is PROTOCOL_VIOLATION.  The peer's
        certificate is read from aiortc 1.16's OpenSSL connection (``_ssl``, private: the
        forged-certificate test of tests/test_webrtc_generations.py fails if it goes)."""
        cert = None
        remote = self.pc.remoteDescription
        with contextlib.suppress(Exception):  # no connection, or no certificate received
            cert = dtls._ssl.get_peer_certificate(as_cryptography=True)
        if cert is not None and remote is not None \
                and cert.fingerprint(hashes.SHA256()) != fingerprint_of(remote.sdp):
            return DirectPathError(ErrorCode.SES_BINDING_MISMATCH, "dtls",
                                   "DTLS: the peer's certificate is not the signed fingerprint")
        return DirectPathError(ErrorCode.PROTOCOL_VIOLATION, "dtls",
                               "DTLS handshake failed before it completed (a fatal alert from "
                               "the peer, or a broken handshake)")

    # --- the open deadline (SES-55) and endings ---

    def _start_deadline(self) -> None:
        if self._state != "signalling":
            return
        self._state = "connecting"
        if self.bindings is not None:  # opened before the answer was applied
            self._state = "open"
            return
        self._deadline = asyncio.get_running_loop().call_later(
            self.config.open_timeout, self._on_deadline)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.bindings is None:
            self._fail(DirectPathError(
                ErrorCode.TIMEOUT, "timeout",
                f"data channel not open {self.config.open_timeout:g} s after the answer "
                f"({self.pc.connectionState})"))

    def _fail(self, error: DirectPathError) -> None:
        if self._state == "closed":
            return
        self.error = error
        log.debug("generation %d abandoned: %s", self.generation, error)
        self._end()

    def _finish(self) -> None:
        if self._state == "closed":
            return
        self._end()
        if self._on_closed is not None:
            self._on_closed()
        else:
            self._inbox.put_nowait(b"")

    def _end(self) -> None:
        self._state = "closed"
        self._cancel_deadline()
        self._done.set()
        for fut in self._low_waiters:
            if not fut.done():
                fut.set_exception(P4Error(ErrorCode.PROTOCOL_VIOLATION, "data channel closed"))
        self._low_waiters = []
        self._close_task = _close_in_background(self.pc, f"generation {self.generation}")


# ---------------------------------------------------------------------------------------------
# The entry points of the first version (demo, rendezvous tests)

DirectChannel = Generation


async def make_offer(config: DirectConfig | None = None) -> Generation:
    """A new peer connection with a ``p4`` data channel and a complete (non-trickle) offer."""
    return await Generation.offer(0, config)


async def accept_offer(offer_sdp: str, signed_fingerprint: bytes,
                       config: DirectConfig | None = None) -> Generation:
    """Answer an offer whose fingerprint the rendezvous layer has verified as signed."""
    return await Generation.answer(0, offer_sdp, signed_fingerprint, config)


async def complete_offer(direct: Generation, answer_sdp: str, signed_fingerprint: bytes) -> None:
    """Apply the peer's answer (fingerprint already checked against its signature)."""
    await direct.accept_answer(answer_sdp, signed_fingerprint)
