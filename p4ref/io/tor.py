"""asyncio driver for tor's control port (stem) and SOCKS port (python-socks).

P⁴ uses Tor as the meeting place, never the data path (ARCHITECTURE decision 4): each peer
publishes an onion service derived from a seed, restricted to its peer by v3 client
authorization, and dials the peer's onion through the SOCKS port. This module is the I/O half of
that; the key/address encodings are the pure functions in :mod:`p4ref.rendezvous._onion`.

Theory of operation
-------------------
- **Modes** (:class:`TorConfig`): ``system`` — a running tor's control port or socket;
  ``launch`` — start a tor with ``stem.process.launch_tor_with_config`` on free 127.0.0.1 ports
  in a temporary data directory (it dies with the driver: ``take_ownership``); ``testnet`` —
  one client of ``tools/tornet.py``'s private network (:meth:`TorConfig.testnet`).
- **Threads.** stem is synchronous, so every control-port call runs in a worker thread
  (``asyncio.to_thread``); stem's event and status callbacks arrive on stem's threads and are
  handed to the loop with ``call_soon_threadsafe``. The loop never blocks on tor.
- **Publishing** (:meth:`TorDriver.publish`): ``ADD_ONION ED25519-V3:<expanded key>
  Flags=DiscardPK[,V3Auth] Port=… ClientAuthV3=…`` (control-spec ``ADD_ONION``), then wait until
  every ``HS_DESC UPLOAD`` has its ``UPLOADED``/``FAILED`` (at least one ``UPLOADED``): stem's
  ``await_publication`` returns at the first upload, and a client may then get SOCKS 0xF0
  (research/tor-lab.md pitfalls 4 and "Step 6.3"). Onions are *not* detached, so tor removes
  them when our control connection closes.
- **Dialling** (:meth:`TorDriver.open_stream`): SOCKS5 with remote DNS to ``<addr>.onion``; the
  client tor's ``SocksPort … ExtendedErrors`` gives the onion error codes 0xF0–0xF7. 0xF0
  (descriptor not found), 0xF2 (introduction failed), 0xF3 (rendezvous failed) and 0xF7
  (introduction timed out) are retried every 0.5 s until the timeout; 0xF4/0xF5 (client
  authorization missing/wrong) fail at once. A SOCKS attempt with no answer for
  ``attempt_timeout`` is abandoned and retried, and after a hang or an introduction failure the
  descriptor is refetched (``HSFETCH``): a restarted peer has new introduction points. A distinct
  SOCKS username per call puts the stream on a fresh circuit (tor's default
  ``IsolateSOCKSAuth``).
- **Surviving a tor restart.** A status listener notices the control connection closing; a
  reconnect task retries every 0.5 s (relaunching tor in ``launch`` mode), then restores state
  from the registries: every client-auth key (``ONION_CLIENT_AUTH_ADD``) and every published
  onion (same seed → same address). :meth:`TorDriver.wait_ready` waits for that.
- **Errors** are :class:`TorError` (a :class:`~p4ref.errors.P4Error`) with codes
  ``TOR_NOT_INSTALLED``, ``TOR_UNREACHABLE``, ``TOR_REFUSED`` (tor's reply text included),
  ``TOR_TIMEOUT`` (the deadline passed while tor had not answered), ``TOR_ONION_UNREACHABLE``
  (tor answered, the onion could not be reached, retries included), ``TOR_CLIENT_AUTH_FAILED``
  and ``TOR_LAUNCH_FAILED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from p4ref.errors import ErrorCode, P4Error
from p4ref.rendezvous._onion import (
    client_auth_private_b64,
    client_auth_public_b32,
    onion_address_from_seed,
    parse_onion_address,
    tor_key_blob,
)

__all__ = [
    "ClientLike",
    "OnionHandle",
    "TorConfig",
    "TorDriver",
    "TorError",
]

log = logging.getLogger(__name__)

Mode = Literal["system", "launch", "testnet"]

SOCKS_DESCRIPTOR_NOT_FOUND = 0xF0
SOCKS_DESCRIPTOR_INVALID = 0xF1
SOCKS_INTRO_FAILED = 0xF2
SOCKS_RENDEZVOUS_FAILED = 0xF3
SOCKS_MISSING_CLIENT_AUTH = 0xF4
SOCKS_WRONG_CLIENT_AUTH = 0xF5
SOCKS_BAD_ADDRESS = 0xF6
SOCKS_INTRO_TIMED_OUT = 0xF7
_RETRYABLE = frozenset(
    {SOCKS_DESCRIPTOR_NOT_FOUND, SOCKS_INTRO_FAILED, SOCKS_RENDEZVOUS_FAILED, SOCKS_INTRO_TIMED_OUT}
)
_SOCKS_TEXT = {
    0xF0: "onion service descriptor not found",
    0xF1: "onion service descriptor invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service needs client authorization",
    0xF5: "onion service client authorization wrong",
    0xF6: "bad onion address",
    0xF7: "onion service introduction timed out",
}
_RETRY_INTERVAL = 0.5


class TorError(P4Error):
    """An error from the tor driver; ``code`` is one of the ``TOR_*`` registry codes."""


class ClientLike(Protocol):
    """What :meth:`TorConfig.testnet` needs from ``p4ref.io.tornet.ClientInfo``."""

    @property
    def control_port(self) -> int: ...
    @property
    def socks_port(self) -> int: ...
    @property
    def cookie_path(self) -> str: ...
    @property
    def data_dir(self) -> str: ...


@dataclass(frozen=True, slots=True)
class TorConfig:
    """How to reach (or start) tor.

    ``system``: ``control_port`` (default 9051) or ``control_socket``; ``socks_port`` is asked
    from tor when ``None``. ``launch``: free ports and a temporary ``data_dir`` unless given;
    ``torrc`` adds options (values may be lists for repeated lines). ``testnet``: use
    :meth:`testnet`. Timeouts are in seconds.
    """

    mode: Mode = "system"
    control_host: str = "127.0.0.1"
    control_port: int | None = None
    control_socket: str | None = None
    socks_host: str = "127.0.0.1"
    socks_port: int | None = None
    data_dir: str | None = None
    cookie_path: str | None = None
    password: str | None = None
    tor_cmd: str = "tor"
    torrc: Mapping[str, str | list[str]] = field(default_factory=dict)
    launch_timeout: float = 90.0
    control_timeout: float = 10.0
    publish_timeout: float = 60.0
    reconnect_timeout: float = 120.0

    @classmethod
    def testnet(cls, client: ClientLike, **overrides: Any) -> TorConfig:
        """Config for one client of the private network (``p4ref.io.tornet.ClientInfo``)."""
        cfg = cls(
            mode="testnet",
            control_port=client.control_port,
            socks_port=client.socks_port,
            cookie_path=client.cookie_path,
            data_dir=client.data_dir,
        )
        return replace(cfg, **overrides)


@dataclass(frozen=True, slots=True)
class OnionHandle:
    """A published onion service: ``address`` is the 56-char label without ``.onion``."""

    address: str
    ports: tuple[tuple[int, str], ...] = ()


@dataclass(slots=True)
class _Published:
    seed: bytes
    port_map: dict[int, int | str]
    client_auth_pubs: list[bytes]
    handle: OnionHandle


@dataclass(slots=True)
class _UploadWaiter:
    """Counts ``HS_DESC`` upload events for one onion address (see module docstring)."""

    pending: dict[str, int] = field(default_factory=dict)
    uploads: int = 0
    uploaded: int = 0
    failed: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.uploads > 0 and self.uploaded > 0 and sum(self.pending.values()) == 0


def _socks_reply_code(exc: BaseException) -> int | None:
    """The SOCKS5 reply code of a python-socks ``ProxyError``. python-socks 2.x knows only codes
    0x00–0x08; tor's extended 0xF0–0xF7 come back as "Invalid reply code: 0XF0" with no
    ``error_code``, so the message is parsed too."""
    code = getattr(exc, "error_code", None)
    if isinstance(code, int):
        return code
    m = re.search(r"reply code:\s*0x([0-9a-f]{1,2})", str(exc), re.IGNORECASE)
    return int(m.group(1), 16) if m else None


def _normalize_onion(addr: str) -> str:
    parse_onion_address(addr)  # raises DecodeError(ONION_ADDRESS_INVALID)
    label = addr.strip().lower()
    return label[: -len(".onion")] if label.endswith(".onion") else label


def _probe(host: str, port: int | None) -> None:
    """Connect once and close: stem's ``Controller.from_port`` leaks its socket when the
    connection is refused (a ResourceWarning later), so refuse early without stem."""
    if port is None:
        raise OSError("no control port configured")
    with socket.create_connection((host, port), timeout=5):
        pass


def _close_leaked_socket(exc: BaseException) -> None:
    """Close the socket stem left behind in the failed call's frames (see :func:`_probe`)."""
    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, socket.socket):
                value.close()
        tb = tb.tb_next
    if exc.__context__ is not None and exc.__context__ is not exc:
        _close_leaked_socket(exc.__context__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TorDriver:
    """One tor, driven from asyncio. ``await start()`` before use, ``await close()`` after
    (or ``async with TorDriver(cfg) as tor``)."""

    def __init__(self, config: TorConfig) -> None:
        self.config = config
        self.reconnects = 0
        self._controller: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._failure: TorError | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._published: dict[str, _Published] = {}
        self._client_auth: dict[str, bytes] = {}
        self._waiters: dict[str, _UploadWaiter] = {}
        self._proc: Any = None
        self._tmpdir: str | None = None
        self._control_port = config.control_port
        self._socks_port = config.socks_port

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> TorDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def socks_address(self) -> tuple[str, int]:
        if self._socks_port is None:
            raise TorError(ErrorCode.TOR_UNREACHABLE, "SOCKS port unknown: call start() first")
        return self.config.socks_host, self._socks_port

    @property
    def control_port(self) -> int | None:
        return self._control_port

    @property
    def connected(self) -> bool:
        """True while the control connection is up and any restore after a reconnect is done."""
        return self._ready.is_set() and self._failure is None and self._controller is not None

    @property
    def published(self) -> list[OnionHandle]:
        return [p.handle for p in self._published.values()]

    async def start(self) -> None:
        """Launch tor (``launch`` mode), connect and authenticate to its control port."""
        loop = self._loop = asyncio.get_running_loop()
        self._closing = False
        try:
            if self.config.mode == "launch":
                await asyncio.to_thread(self._launch_sync)
            elif self._control_port is None and self.config.control_socket is None:
                self._control_port = 9051
            deadline = loop.time() + self.config.launch_timeout
            while True:
                try:
                    controller = await asyncio.to_thread(self._connect_sync)
                    break
                except TorError:
                    # a tor we just launched may open its control port a moment later
                    if self.config.mode != "launch" or loop.time() >= deadline:
                        raise
                    await asyncio.sleep(0.1)
            await self._install(controller)
        except BaseException:
            await self.close()
            raise
        self._ready.set()

    async def close(self) -> None:
        """Close the control connection (tor drops our non-detached onions) and stop a launched
        tor. Idempotent."""
        self._closing = True
        self._ready.clear()
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnect_task
            self._reconnect_task = None
        c, self._controller = self._controller, None
        if c is not None:
            await asyncio.to_thread(c.close)
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(self._stop_proc, proc)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._published.clear()
        self._client_auth.clear()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until connected and, after a reconnect, until every onion and client-auth key is
        restored. Raises TOR_UNREACHABLE if reconnecting gave up, TOR_TIMEOUT on ``timeout``."""
        if self._failure is not None:
            raise self._failure
        try:
            await asyncio.wait_for(
                self._ready.wait(),
                timeout if timeout is not None else self.config.reconnect_timeout,
            )
        except TimeoutError as exc:
            if self._failure is not None:
                raise self._failure from exc
            raise TorError(ErrorCode.TOR_TIMEOUT, "tor control connection not ready") from exc
        if self._failure is not None:
            raise self._failure

    async def wait_bootstrapped(self, timeout: float = 120.0) -> None:
        """Wait for ``Bootstrapped 100%`` (``GETINFO status/bootstrap-phase``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        phase = ""
        while loop.time() < deadline:
            c = await self._ctrl()
            with contextlib.suppress(Exception):
                phase = await asyncio.to_thread(c.get_info, "status/bootstrap-phase")
            if "PROGRESS=100" in phase:
                return
            await asyncio.sleep(0.2)
        raise TorError(ErrorCode.TOR_TIMEOUT, f"tor not bootstrapped: {phase}")

    # ------------------------------------------------------------------ onion services

    async def publish(
        self,
        seed: bytes,
        port_map: Mapping[int, int | str],
        client_auth_pubs: Iterable[bytes] = (),
        timeout: float | None = None,
    ) -> OnionHandle:
        """Publish the onion service derived from ``seed`` and wait for its descriptor uploads.

        ``port_map`` maps a virtual (onion) port to a local port on 127.0.0.1 (or to a full tor
        target string such as ``"unix:/path"``). ``client_auth_pubs`` are x25519 public keys
        (32 bytes); when given, only their holders can decrypt the descriptor (``V3Auth``).
        Returns when every HSDir upload is done; raises TOR_REFUSED with tor's text, TOR_TIMEOUT.
        """
        pub = _Published(bytes(seed), dict(port_map), [bytes(k) for k in client_auth_pubs],
                         OnionHandle(onion_address_from_seed(seed)))  # fmt: skip
        if not pub.port_map:
            raise TorError(ErrorCode.TOR_REFUSED, "publish needs at least one port")
        c = await self._ctrl()
        try:
            handle = await self._add_onion(c, pub, timeout or self.config.publish_timeout)
        except TorError as exc:
            if exc.code == ErrorCode.TOR_TIMEOUT:  # tor has it but it is not (fully) out yet
                with contextlib.suppress(TorError):
                    await self._msg(c, f"DEL_ONION {pub.handle.address}")
            raise
        pub.handle = handle
        self._published[handle.address] = pub
        return handle

    async def unpublish(self, handle: OnionHandle | str) -> None:
        """``DEL_ONION``: remove the service (its descriptor stays on the HSDirs until it
        expires, but its introduction points are gone, so dialling it fails)."""
        addr = _normalize_onion(handle.address if isinstance(handle, OnionHandle) else handle)
        self._published.pop(addr, None)
        c = await self._ctrl()
        resp = await self._msg(c, f"DEL_ONION {addr}")
        if not resp.is_ok() and "Unknown Onion Service" not in str(resp):
            raise TorError(ErrorCode.TOR_REFUSED, f"DEL_ONION: {resp}")

    async def add_client_auth(self, onion_addr: str, x25519_priv: bytes) -> None:
        """``ONION_CLIENT_AUTH_ADD <addr> x25519:<base64>``: let this tor decrypt the
        descriptor of ``onion_addr`` (control-spec; stem has no helper)."""
        addr = _normalize_onion(onion_addr)
        c = await self._ctrl()
        await self._client_auth_add(c, addr, bytes(x25519_priv))
        self._client_auth[addr] = bytes(x25519_priv)

    async def remove_client_auth(self, onion_addr: str) -> None:
        """``ONION_CLIENT_AUTH_REMOVE <addr>``."""
        addr = _normalize_onion(onion_addr)
        self._client_auth.pop(addr, None)
        c = await self._ctrl()
        resp = await self._msg(c, f"ONION_CLIENT_AUTH_REMOVE {addr}")
        if not resp.is_ok():
            raise TorError(ErrorCode.TOR_REFUSED, f"ONION_CLIENT_AUTH_REMOVE: {resp}")

    async def open_stream(
        self,
        onion_addr: str,
        port: int,
        timeout: float = 60.0,
        *,
        fresh_circuit: bool = False,
        isolation: str | None = None,
        attempt_timeout: float = 20.0,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to ``onion_addr:port`` through this tor's SOCKS port.

        ``fresh_circuit`` uses a random SOCKS username (a new circuit); ``isolation`` names a
        circuit explicitly. Retries 0xF0/0xF2/0xF3/0xF7 every 0.5 s until ``timeout``. A single
        SOCKS attempt that gets no answer within ``attempt_timeout`` is abandoned and retried
        (on a new circuit when ``fresh_circuit``); after a hang or an introduction failure the
        descriptor is refetched (``HSFETCH``, at most every 5 s) — a peer that restarted has new
        introduction points, and tor may still hold the old descriptor.

        Raises TOR_CLIENT_AUTH_FAILED (0xF4/0xF5, at once), TOR_ONION_UNREACHABLE (other onion
        errors, or retries exhausted), TOR_TIMEOUT (tor never answered before the deadline),
        TOR_UNREACHABLE (the SOCKS port stayed closed).
        """
        from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
        from python_socks.async_.asyncio import Proxy

        addr = _normalize_onion(onion_addr)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        username = isolation or (secrets.token_hex(8) if fresh_circuit else "p4")
        last = ""
        last_code = ErrorCode.TOR_TIMEOUT
        last_fetch = loop.time()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            host, sport = self.socks_address
            proxy = Proxy(ProxyType.SOCKS5, host, sport, username=username, password="p4",
                          rdns=True)  # fmt: skip
            refetch = False
            try:
                sock = await proxy.connect(
                    f"{addr}.onion", port, timeout=min(remaining, attempt_timeout)
                )
            except ProxyTimeoutError:
                if remaining > attempt_timeout or not last:
                    # a hang; an attempt merely cut short by the deadline keeps the last error
                    last = f"no SOCKS answer within {min(remaining, attempt_timeout):.1f}s"
                    last_code = ErrorCode.TOR_TIMEOUT
                refetch = True
                if fresh_circuit:
                    username = secrets.token_hex(8)
            except ProxyConnectionError as exc:  # tor restarting? retry until the deadline
                last = f"SOCKS port {host}:{sport} unreachable: {exc}"
                last_code = ErrorCode.TOR_UNREACHABLE
            except ProxyError as exc:
                code = _socks_reply_code(exc)
                text = _SOCKS_TEXT.get(code or -1, str(exc))
                if code in (SOCKS_MISSING_CLIENT_AUTH, SOCKS_WRONG_CLIENT_AUTH):
                    raise TorError(
                        ErrorCode.TOR_CLIENT_AUTH_FAILED, f"{addr}.onion: {text} (0x{code:02x})"
                    ) from exc
                if code not in _RETRYABLE:
                    raise TorError(
                        ErrorCode.TOR_ONION_UNREACHABLE,
                        f"{addr}.onion:{port}: {text}" + (f" (0x{code:02x})" if code else ""),
                    ) from exc
                last = f"{text} (0x{code:02x})"
                last_code = ErrorCode.TOR_ONION_UNREACHABLE
                refetch = code in (SOCKS_INTRO_FAILED, SOCKS_INTRO_TIMED_OUT)
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    return await asyncio.open_connection(sock=sock)
                except BaseException:
                    sock.close()
                    raise
            if refetch and loop.time() - last_fetch >= 5.0 and self.connected:
                last_fetch = loop.time()
                with contextlib.suppress(TorError):
                    await self._msg(self._controller, f"HSFETCH {addr}")
            await asyncio.sleep(min(_RETRY_INTERVAL, max(0.0, deadline - loop.time())))
        raise TorError(
            last_code,
            f"{addr}.onion:{port} not reached within {timeout:.1f}s"
            + (f": {last}" if last else ""),
        )

    # ------------------------------------------------------------------ control-port plumbing

    async def _ctrl(self) -> Any:
        if self._closing:
            raise TorError(ErrorCode.TOR_UNREACHABLE, "driver closed")
        if self._loop is None:
            raise TorError(ErrorCode.TOR_UNREACHABLE, "driver not started")
        await self.wait_ready()
        return self._controller

    async def _msg(self, c: Any, command: str) -> Any:
        import stem

        try:
            return await asyncio.wait_for(
                asyncio.to_thread(c.msg, command), self.config.control_timeout
            )
        except stem.SocketClosed as exc:
            self._lost(c)
            raise TorError(ErrorCode.TOR_UNREACHABLE, "tor control connection lost") from exc
        except TimeoutError as exc:
            raise TorError(
                ErrorCode.TOR_TIMEOUT, f"no answer from tor to {command.split()[0]}"
            ) from exc

    async def _client_auth_add(self, c: Any, addr: str, priv: bytes) -> None:
        resp = await self._msg(
            c, f"ONION_CLIENT_AUTH_ADD {addr} x25519:{client_auth_private_b64(priv)}"
        )
        # 250 OK, 251 "Client for onion existed and replaced", 252 "Registered client and
        # decrypted desc" (control-spec ONION_CLIENT_AUTH_ADD)
        if not all(code in ("250", "251", "252") for code, _div, _line in resp.content()):
            raise TorError(ErrorCode.TOR_REFUSED, f"ONION_CLIENT_AUTH_ADD: {resp}")

    async def _add_onion(self, c: Any, pub: _Published, timeout: float) -> OnionHandle:
        expected = pub.handle.address
        ports: list[tuple[int, str]] = []
        for vport, target in sorted(pub.port_map.items()):
            ports.append((int(vport), f"127.0.0.1:{target}" if isinstance(target, int) else target))
        flags = ["DiscardPK"] + (["V3Auth"] if pub.client_auth_pubs else [])
        cmd = f"ADD_ONION ED25519-V3:{tor_key_blob(pub.seed)} Flags={','.join(flags)}"
        cmd += "".join(f" Port={v},{t}" for v, t in ports)
        cmd += "".join(f" ClientAuthV3={client_auth_public_b32(k)}" for k in pub.client_auth_pubs)
        waiter = _UploadWaiter()
        self._waiters[expected] = waiter
        try:
            resp = await self._msg(c, cmd)
            if not resp.is_ok():
                raise TorError(ErrorCode.TOR_REFUSED, f"ADD_ONION refused: {resp}")
            ids = [
                line.split("=", 1)[1]
                for _code, _div, line in resp.content()
                if line.startswith("ServiceID=")
            ]
            if ids != [expected]:
                raise TorError(
                    ErrorCode.INTERNAL_ERROR, f"tor's ServiceID {ids} != derived {expected}"
                )
            await self._await_uploads(expected, waiter, timeout)
        finally:
            self._waiters.pop(expected, None)
        return OnionHandle(expected, tuple(ports))

    async def _await_uploads(self, addr: str, w: _UploadWaiter, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if w.done:
                # a short grace period in case a second batch of UPLOADs follows
                w.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(w.changed.wait(), 0.25)
                if w.done:
                    return
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TorError(
                    ErrorCode.TOR_TIMEOUT,
                    f"{addr}: {w.uploaded}/{w.uploads} HSDir uploads done ({w.failed} failed)"
                    f" after {timeout:.1f}s",
                )
            w.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(w.changed.wait(), remaining)

    def _on_hs_desc(self, event: Any) -> None:
        """stem event thread → loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        args = (str(event.action), str(event.address), str(event.directory_fingerprint or ""))
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._hs_desc, *args)

    def _hs_desc(self, action: str, address: str, directory: str) -> None:
        w = self._waiters.get(address)
        if action == "UPLOAD":
            if w is None:
                return
            w.pending[directory] = w.pending.get(directory, 0) + 1
            w.uploads += 1
        elif action in ("UPLOADED", "FAILED"):
            if w is None or w.pending.get(directory, 0) == 0:
                # tor has sent UPLOADED without the address (stem's note); match on HSDir
                w = next((x for x in self._waiters.values() if x.pending.get(directory)), None)
                if w is None:
                    return
            w.pending[directory] -= 1
            if action == "UPLOADED":
                w.uploaded += 1
            else:
                w.failed += 1
        else:
            return
        w.changed.set()

    # ------------------------------------------------------------------ connect / reconnect

    def _connect_sync(self) -> Any:
        import stem
        import stem.connection
        import stem.control

        cfg = self.config
        where = cfg.control_socket or f"{cfg.control_host}:{self._control_port}"
        try:
            if cfg.control_socket is not None:
                c = stem.control.Controller.from_socket_file(cfg.control_socket)
            else:
                _probe(cfg.control_host, self._control_port)
                c = stem.control.Controller.from_port(cfg.control_host, self._control_port)
        except (stem.SocketError, OSError) as exc:
            _close_leaked_socket(exc)
            raise TorError(
                ErrorCode.TOR_UNREACHABLE, f"cannot reach tor's control port {where}: {exc}"
            ) from None
        try:
            c.authenticate(password=cfg.password)
        except (stem.connection.AuthenticationFailure, stem.SocketError) as exc:
            c.close()
            raise TorError(ErrorCode.TOR_UNREACHABLE, f"tor control authentication: {exc}") from exc
        return c

    async def _install(self, c: Any) -> None:
        import stem.control

        def setup() -> list[tuple[str, int]]:
            c.add_event_listener(self._on_hs_desc, stem.control.EventType.HS_DESC)
            c.add_status_listener(self._on_status)
            if self._socks_port is None:
                listeners: list[tuple[str, int]] = c.get_listeners(stem.control.Listener.SOCKS)
                return listeners
            return []

        try:
            listeners = await asyncio.to_thread(setup)
        except Exception as exc:
            await asyncio.to_thread(c.close)
            raise TorError(ErrorCode.TOR_UNREACHABLE, f"tor control setup failed: {exc}") from exc
        if self._socks_port is None:
            if not listeners:
                await asyncio.to_thread(c.close)
                raise TorError(ErrorCode.TOR_UNREACHABLE, "tor has no SOCKS listener")
            self._socks_port = int(listeners[0][1])
        self._controller = c
        self._failure = None

    def _on_status(self, controller: Any, state: Any, timestamp: float) -> None:
        """stem status thread → loop: the control connection closed."""
        import stem.control

        if state != stem.control.State.CLOSED:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._lost, controller)

    def _lost(self, controller: Any) -> None:
        if self._closing or controller is not self._controller:
            return
        log.warning("tor control connection lost; reconnecting")
        self._controller = None
        self._ready.clear()
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.reconnect_timeout
        while not self._closing:
            try:
                if self.config.mode == "launch" and (
                    self._proc is None or self._proc.poll() is not None
                ):
                    await asyncio.to_thread(self._launch_sync)
                c = await asyncio.to_thread(self._connect_sync)
                await self._install(c)
                await self._restore(c)
            except TorError as exc:
                if loop.time() >= deadline:
                    self._failure = TorError(
                        ErrorCode.TOR_UNREACHABLE, f"reconnecting to tor failed: {exc.message}"
                    )
                    self._ready.set()  # wake waiters; they see _failure
                    return
                if self._controller is not None:
                    c, self._controller = self._controller, None
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(c.close)
                await asyncio.sleep(_RETRY_INTERVAL)
                continue
            self.reconnects += 1
            log.info("tor reconnected; restored %d onions", len(self._published))
            self._ready.set()
            return

    async def _restore(self, c: Any) -> None:
        """Re-add client-auth keys and re-publish onions after a reconnect (same seeds, same
        addresses); an onion tor still has (``Onion address collision``) counts as restored."""
        for addr, priv in list(self._client_auth.items()):
            await self._client_auth_add(c, addr, priv)
        for addr, pub in list(self._published.items()):
            try:
                pub.handle = await self._add_onion(c, pub, self.config.publish_timeout)
            except TorError as exc:
                if "collision" not in exc.message.lower():
                    raise
            self._published[addr] = pub

    # ------------------------------------------------------------------ launch mode

    def _launch_sync(self) -> None:
        import stem.process

        cfg = self.config
        tor = shutil.which(cfg.tor_cmd) or (
            f"/usr/sbin/{cfg.tor_cmd}" if os.path.exists(f"/usr/sbin/{cfg.tor_cmd}") else None
        )
        if tor is None:
            raise TorError(
                ErrorCode.TOR_NOT_INSTALLED,
                f"`{cfg.tor_cmd}` not found; install tor (Debian/Ubuntu: apt-get install tor)",
            )
        if cfg.data_dir is not None:
            data_dir = cfg.data_dir
            os.makedirs(data_dir, mode=0o700, exist_ok=True)
        else:
            if self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix="p4-tor-")
            data_dir = self._tmpdir
        if self._control_port is None:
            self._control_port = _free_port()
        if self._socks_port is None:
            self._socks_port = _free_port()
        config: dict[str, str | list[str]] = {
            "DataDirectory": data_dir,
            "ControlPort": f"127.0.0.1:{self._control_port}",
            "SocksPort": f"127.0.0.1:{self._socks_port} ExtendedErrors",
            "CookieAuthentication": "1",
            "Log": ["notice stdout", f"notice file {os.path.join(data_dir, 'notice.log')}"],
            **cfg.torrc,
        }
        try:
            self._proc = stem.process.launch_tor_with_config(
                config,
                tor_cmd=tor,
                completion_percent=0,
                timeout=None,  # stem's timeout uses SIGALRM: main thread only
                take_ownership=True,
            )
        except OSError as exc:
            raise TorError(ErrorCode.TOR_LAUNCH_FAILED, f"tor did not start: {exc}") from exc

    @staticmethod
    def _stop_proc(proc: Any) -> None:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except Exception:
            proc.kill()
            proc.wait()
