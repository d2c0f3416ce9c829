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
  (research/tor-lab.md pitfalls 4 and "Step 6.3").  At the timeout, some uploads done and
  others still pending is a warning, not a failure: the onion is reachable through those.
  Onions are *not* detached, so tor removes them when our control connection closes.
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
- **Failing fast, in words a person can act on** (issue 10 §2). Connecting and authenticating
  together are bounded by ``control_timeout`` (stem has no timeout there: a stopped tor hung it).
  ``system`` with no port tries 127.0.0.1:9051, then a packaged tor's control socket
  (``/run/tor/control``); when nothing answers the message says what to add to torrc — we do
  not fall back to launching a tor, because a system tor may use bridges where Tor is blocked.
  The control password comes from ``TorConfig.password`` or ``$P4_TOR_CONTROL_PASSWORD``.
  :meth:`TorDriver.start` then checks ``DisableNetwork`` (offline: fail at once) and waits for
  bootstrap, failing when it makes no progress for ``stall_timeout`` seconds (30 s for a tor we
  launch, 10 s otherwise) with tor's own ``status/bootstrap-phase`` warning. A SOCKS port
  without ``ExtendedErrors`` is warned about once (:attr:`TorDriver.warnings`) and its generic
  codes are mapped (0x04 retried like 0xF0; 0x01 taken as a client-authorization failure).
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
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, Self

from p4ref.errors import ErrorCode, P4Error
from p4ref.rendezvous._onion import (
    client_auth_private_b64,
    client_auth_public_b32,
    onion_address_from_seed,
    parse_onion_address,
    tor_key_blob,
)

from ._platform import find_tor

__all__ = [
    "PASSWORD_ENV",
    "BootstrapStatus",
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
# Without ``ExtendedErrors`` on its SocksPort (Debian's default torrc) tor answers an onion it
# cannot find, or whose introduction failed, with 0x04 and a descriptor it cannot decrypt
# (client authorization missing or wrong) with 0x01 (checked against tor 0.4.9).
SOCKS_GENERAL_FAILURE = 0x01
SOCKS_HOST_UNREACHABLE = 0x04
_RETRYABLE_PLAIN = frozenset({SOCKS_HOST_UNREACHABLE})

_CIRCUIT_PHASE = 80  # bootstrap progress from which tor has its directory info (ap_conn…done)

PASSWORD_ENV = "P4_TOR_CONTROL_PASSWORD"
"""Environment variable holding the control-port password (``HashedControlPassword``)."""
DEFAULT_CONTROL_PORT = 9051
DEFAULT_SOCKS_PORT = 9050


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

    ``system``: ``control_port`` or ``control_socket``; with neither, 127.0.0.1:9051 and then
    :data:`SYSTEM_CONTROL_SOCKETS`. ``socks_port`` is asked from tor when ``None`` (a port with
    ``ExtendedErrors`` preferred). ``password``: for ``HashedControlPassword``; ``None`` reads
    ``$P4_TOR_CONTROL_PASSWORD``. ``launch``: free ports and a temporary ``data_dir`` unless
    given; ``torrc`` adds options (values may be lists for repeated lines). ``testnet``: use
    :meth:`testnet`. Timeouts are in seconds: ``control_timeout`` bounds connecting plus
    authenticating and each control command; ``start`` waits for bootstrap (unless
    ``wait_bootstrap`` is false) up to ``bootstrap_timeout``, giving up after
    :attr:`stall_timeout` seconds without progress.
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
    wait_bootstrap: bool = True
    bootstrap_timeout: float = 300.0
    bootstrap_stall_timeout: float | None = None

    @property
    def stall_timeout(self) -> float:
        """Seconds without bootstrap progress after which :meth:`TorDriver.start` gives up:
        ``bootstrap_stall_timeout``, else 30 s for a tor we launch (it starts from nothing) and
        10 s for a running tor (it normally finished long ago). Four times as long when tor is
        past 80% (building circuits) and reports no problem."""
        if self.bootstrap_stall_timeout is not None:
            return self.bootstrap_stall_timeout
        return 30.0 if self.mode == "launch" else 10.0

    def control_password(self) -> str | None:
        """``password``, else the environment variable ``P4_TOR_CONTROL_PASSWORD``."""
        if self.password is not None:
            return self.password
        return os.environ.get(PASSWORD_ENV) or None

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
    """The SOCKS5 reply code of a python-socks ``ProxyError``.

    Codes 0x01–0x08 come structured, in ``error_code``. python-socks (2.8.2 here, and its
    repository's newest code, checked) builds ``ReplyCode(data[1])`` and, for a code outside
    RFC 1928's table, raises ``ReplyError(f"Invalid reply code: {data[1]:#02X}")`` with no
    ``error_code``: tor's extended 0xF0–0xF7 therefore exist only in that text, which is parsed
    here (pinned by tests against the installed python-socks and a fake SOCKS server)."""
    code = getattr(exc, "error_code", None)
    if isinstance(code, int):
        return int(code)
    m = re.search(r"reply code:\s*0x([0-9a-f]{1,2})\b", str(exc), re.IGNORECASE)
    return int(m.group(1), 16) if m else None


_KV = re.compile(r'([A-Z_]+)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass(frozen=True, slots=True)
class BootstrapStatus:
    """``GETINFO status/bootstrap-phase`` (control-spec "Bootstrap events"), plus
    ``DisableNetwork`` and ``network-liveness``."""

    progress: int = 0
    tag: str = ""
    summary: str = ""
    warning: str = ""
    reason: str = ""
    host: str = ""
    disable_network: bool = False
    liveness: str = ""

    @classmethod
    def parse(cls, phase: str, *, disable_network: bool = False, liveness: str = "") -> Self:
        kv = {k: v[1:-1].replace('\\"', '"') if v.startswith('"') else v
              for k, v in _KV.findall(phase)}  # fmt: skip
        try:
            progress = int(kv.get("PROGRESS", "0"))
        except ValueError:
            progress = 0
        return cls(progress, kv.get("TAG", ""), kv.get("SUMMARY", ""), kv.get("WARNING", ""),
                   kv.get("REASON", ""), kv.get("HOSTADDR", ""), disable_network,
                   liveness)  # fmt: skip

    @property
    def done(self) -> bool:
        return self.progress >= 100 and not self.disable_network

    def describe(self) -> str:
        """One line for a person: ``bootstrapped 5% (Connecting to a relay); last problem:
        Connection refused (CONNECTREFUSED, 127.0.0.1:1)``."""
        out = f"bootstrapped {self.progress}%" + (f" ({self.summary})" if self.summary else "")
        if self.warning:
            extra = ", ".join(x for x in (self.reason, self.host) if x)
            out += f"; last problem: {self.warning}" + (f" ({extra})" if extra else "")
        if self.liveness == "down" and self.progress >= 100:
            out += "; tor reports the network as down (no circuit completed lately)"
        return out


def _normalize_onion(addr: str) -> str:
    parse_onion_address(addr)  # raises DecodeError(ONION_ADDRESS_INVALID)
    label = addr.strip().lower()
    return label[: -len(".onion")] if label.endswith(".onion") else label


SYSTEM_CONTROL_SOCKETS: tuple[str, ...] = (
    () if os.name == "nt" else ("/run/tor/control", "/var/run/tor/control")
)
"""Control sockets a packaged tor opens without any torrc change (Debian/Ubuntu's
``tor-service-defaults-torrc``: ``ControlSocket /run/tor/control GroupWritable`` with cookie
authentication, group ``debian-tor``); ``system`` mode with no port given tries them after
127.0.0.1:9051."""


def _probe(host: str, port: int | None, timeout: float = 5.0) -> None:
    """Connect once and close: stem's ``Controller.from_port`` leaks its socket when the
    connection is refused (a ResourceWarning later), and its connect has no timeout, so refuse
    early, within ``timeout``, without stem."""
    if port is None:
        raise OSError("no control port configured")
    with socket.create_connection((host, port), timeout=max(0.1, min(5.0, timeout))):
        pass


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _socks_flags(conf: Iterable[str], port: int) -> list[str] | None:
    """The flags of the ``SocksPort`` entry (``GETCONF SocksPort`` values such as ``9050``,
    ``127.0.0.1:9050 ExtendedErrors`` or ``unix:/run/tor/socks WorldWritable``) that listens on
    TCP ``port``; ``None`` if no entry names that port."""
    for entry in conf:
        words = (entry or "").split()
        if not words or words[0].lower().startswith("unix:"):
            continue
        where = words[0].rsplit(":", 1)[-1]
        if where.isdigit() and int(where) == port:
            return words[1:]
    return None


def _has_flag(flags: Iterable[str], name: str) -> bool:
    return any(f.lower() == name.lower() for f in flags)


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


def _socket_text(path: str, exc: BaseException) -> str:
    return (f"cannot use tor's control socket {path} ({exc}): is tor running, and may your user "
            "use the socket? (Debian/Ubuntu: `sudo adduser $USER debian-tor`, then log in "
            "again.) Or let P⁴ start a tor of its own: `--tor launch`")


def _auth_text(where: str, exc: BaseException) -> str:
    """A person's account of a stem authentication failure, with what to do."""
    import stem.connection as sc

    env = f"the environment variable {PASSWORD_ENV}"
    if isinstance(exc, sc.MissingPassword):
        return (f"tor's control port {where} requires a password (HashedControlPassword): "
                f"put it in {env}")
    if isinstance(exc, sc.IncorrectPassword | sc.PasswordAuthRejected):
        return (f"tor's control port {where} rejected the password (from {env} or the "
                "password setting): use the one whose hash is tor's HashedControlPassword")
    if isinstance(exc, sc.UnreadableCookieFile):
        return (f"cannot read tor's authentication cookie {exc.cookie_path} ({exc}): let your "
                "user read it (Debian/Ubuntu: `sudo adduser $USER debian-tor`, then log in "
                "again; torrc needs `CookieAuthFileGroupReadable 1`)")
    if isinstance(exc, sc.IncorrectSocketType):
        return f"{where} is not a tor control port ({exc})"
    return f"tor control authentication at {where} failed: {exc}"


def _find_tor(cmd: str) -> str | None:
    """The tor executable for ``launch`` mode: for the default name, where each platform's
    packages put it (:func:`p4ref.io._platform.find_tor`); else ``cmd`` on PATH or in /usr/sbin."""
    if cmd == "tor":
        return find_tor()
    sbin = os.path.join("/usr/sbin", cmd)
    return shutil.which(cmd) or (sbin if os.path.exists(sbin) else None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TorDriver:
    """One tor, driven from asyncio. ``await start()`` before use, ``await close()`` after
    (or ``async with TorDriver(cfg) as tor``)."""

    def __init__(
        self, config: TorConfig, *, on_status: Callable[[str], None] | None = None
    ) -> None:
        """``on_status`` (optional) receives one line for a person whenever something worth
        showing happens: bootstrap progress, tor's bootstrap problems, configuration warnings
        (each also logged)."""
        self.config = config
        self.on_status = on_status
        self.extended_errors: bool | None = None
        """Whether the SOCKS port in use has ``ExtendedErrors`` (``None`` before ``start``)."""
        self.warnings: list[str] = []
        """Configuration warnings found by :meth:`start` (each logged once)."""
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
        self._nudge_lock = asyncio.Lock()
        self._nudged_at = float("-inf")
        self._tmpdir: str | None = None
        self._control_port = config.control_port
        self._control_socket = config.control_socket
        self._refused = False  # the last connect attempt was refused (nothing listens there)
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
        """Launch tor (``launch`` mode), connect and authenticate to its control port (each
        attempt bounded by ``control_timeout``), then, unless ``wait_bootstrap`` is false, wait
        until tor has bootstrapped: at once TOR_TIMEOUT if tor is offline (``DisableNetwork``),
        and TOR_TIMEOUT with tor's own account of the problem when bootstrap makes no progress
        for ``stall_timeout`` seconds or does not finish within ``bootstrap_timeout``."""
        loop = self._loop = asyncio.get_running_loop()
        self._closing = False
        try:
            if self.config.mode == "launch":
                await asyncio.to_thread(self._launch_sync)
            deadline = loop.time() + self.config.launch_timeout
            while True:
                try:
                    controller = await self._connect()
                    break
                except TorError as exc:
                    # a tor we just launched may open its control port a moment later
                    if (self.config.mode != "launch" or loop.time() >= deadline
                            or exc.code != ErrorCode.TOR_UNREACHABLE):  # fmt: skip
                        raise
                    if self._proc is not None and self._proc.poll() is not None:
                        raise TorError(
                            ErrorCode.TOR_LAUNCH_FAILED,
                            f"tor exited (code {self._proc.returncode}) before opening its "
                            f"control port: {exc.message}",
                        ) from exc
                    await asyncio.sleep(0.1)
            await self._install(controller)
            if self.config.wait_bootstrap:
                cfg = self.config
                await self._await_bootstrap(cfg.bootstrap_timeout, cfg.stall_timeout)
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

    async def wait_bootstrapped(
        self, timeout: float = 120.0, stall_timeout: float | None = None
    ) -> None:
        """Wait for ``Bootstrapped 100%`` (``GETINFO status/bootstrap-phase``); TOR_TIMEOUT at
        once if tor is offline (``DisableNetwork``), after ``stall_timeout`` seconds without
        progress (default: ``timeout``), or after ``timeout``."""
        await self._ctrl()
        await self._await_bootstrap(timeout, timeout if stall_timeout is None else stall_timeout)

    async def bootstrap_status(self) -> BootstrapStatus:
        """tor's bootstrap phase, ``DisableNetwork`` and ``network-liveness`` right now."""
        return await self._bootstrap_status(await self._ctrl())

    async def _bootstrap_status(self, c: Any) -> BootstrapStatus:
        info = await self._getinfo(c, "status/bootstrap-phase")
        info.update(await self._getinfo(c, "network-liveness"))  # alone: older tors lack it
        conf = await self._msg(c, "GETCONF DisableNetwork")
        disabled = any(line.strip().lower() == "disablenetwork=1"
                       for _code, _div, line in conf.content())  # fmt: skip
        return BootstrapStatus.parse(info.get("status/bootstrap-phase", ""),
                                     disable_network=disabled,
                                     liveness=info.get("network-liveness", ""))  # fmt: skip

    def _status(self, line: str, *, warn: bool = False) -> None:
        """To ``on_status`` if given (and logged at debug level), else logged."""
        if self.on_status is None:
            (log.warning if warn else log.info)("%s", line)
            return
        log.debug("%s", line)
        with contextlib.suppress(Exception):
            self.on_status(line)

    async def _await_bootstrap(self, timeout: float, stall: float) -> None:
        c = self._controller
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeout
        best, since = -1, start
        shown = ""
        while True:
            st = await self._bootstrap_status(c)
            where = self._where()
            if st.disable_network:
                raise TorError(
                    ErrorCode.TOR_TIMEOUT,
                    f"tor ({where}) is offline: its DisableNetwork option is set, so it makes no "
                    "connections and cannot publish or reach onion services (Tor Browser's tor "
                    "waits like this until you press Connect). Set `DisableNetwork 0` in its "
                    "torrc (or send it SETCONF DisableNetwork=0) and try again",
                )
            if st.done:
                return
            now = loop.time()
            if st.progress > best:
                best, since = st.progress, now
            if st.describe() != shown:
                shown = st.describe()
                self._status(f"tor: {shown}", warn=bool(st.warning))
            # Offline or blocked, tor stays below 80% (no directory) or reports a problem (a
            # WARN bootstrap phase: connection refused, no route, timeout). Past 80% with no
            # problem reported it is building circuits, which can be slow: allow 4x as long.
            limit = stall if st.warning or st.progress < _CIRCUIT_PHASE else 4 * stall
            if now - since >= limit or now >= deadline:
                stuck = (f"no bootstrap progress for {now - since:.0f} s" if now - since >= limit
                         else f"not bootstrapped after {timeout:.0f} s")  # fmt: skip
                bridges = ("for a system tor and use it: `--tor system`)"
                           if self.config.mode == "launch" else "in tor's torrc.)")  # fmt: skip
                raise TorError(
                    ErrorCode.TOR_TIMEOUT,
                    f"tor ({where}) cannot connect to the Tor network: {stuck}, {st.describe()}. "
                    f"Is this machine offline, or is Tor blocked here? (Then configure bridges "
                    f"{bridges}",
                )
            await asyncio.sleep(min(0.25, max(0.0, deadline - now)))

    # ------------------------------------------------------------------ onion services

    @property
    def launched(self) -> bool:
        """This driver started the tor process (``launch``), so it may reconfigure it
        (p4-03 RDV-63: a tor P⁴ did not launch is never reconfigured)."""
        return self._proc is not None

    async def nudge(self) -> None:
        """After a network change, make tor drop its connections at once: ``DisableNetwork``
        1 then 0 (p4-03 RDV-63; Briar's Tor plugin does the same).  Only for a tor this driver
        launched (:attr:`launched`), else TOR_REFUSED; TOR_REFUSED with tor's text when tor
        refuses, TOR_UNREACHABLE / TOR_TIMEOUT as for any control command."""
        if not self.launched:
            raise TorError(ErrorCode.TOR_REFUSED, "this tor was not launched by P⁴: not "
                           "reconfigured (RDV-63)")
        loop = asyncio.get_running_loop()
        async with self._nudge_lock:  # one nudge for all the links a network change reaches
            if loop.time() - self._nudged_at < 1.0:
                return
            c = await self._ctrl()
            for value in ("1", "0"):
                resp = await self._msg(c, f"SETCONF DisableNetwork={value}")
                if not resp.is_ok():
                    raise TorError(ErrorCode.TOR_REFUSED,
                                   f"SETCONF DisableNetwork={value}: {resp}")
            self._nudged_at = loop.time()

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
                if why := await self._diagnosis():
                    raise TorError(exc.code, exc.message + why) from exc
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

        Without ``ExtendedErrors`` on tor's SOCKS port (:attr:`extended_errors` false) 0x04 is
        retried like 0xF0 and 0x01 is taken as a client-authorization failure.

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
                plain = self.extended_errors is False  # see _install: Debian's default
                if code == SOCKS_HOST_UNREACHABLE:
                    text = ("onion service descriptor not found or introduction failed "
                            "(tor said only 'host unreachable')")  # fmt: skip
                if code == SOCKS_GENERAL_FAILURE and plain:
                    key = "a wrong" if addr in self._client_auth else "no"
                    raise TorError(
                        ErrorCode.TOR_CLIENT_AUTH_FAILED,
                        f"{addr}.onion: tor said only 'general SOCKS server failure' (0x01), "
                        "which for an onion is usually client authorization: this tor has "
                        f"{key} client key for it (its SOCKS port lacks ExtendedErrors, which "
                        "would say exactly)",
                    ) from exc
                if code in (SOCKS_MISSING_CLIENT_AUTH, SOCKS_WRONG_CLIENT_AUTH):
                    raise TorError(
                        ErrorCode.TOR_CLIENT_AUTH_FAILED, f"{addr}.onion: {text} (0x{code:02x})"
                    ) from exc
                if code not in _RETRYABLE and code not in _RETRYABLE_PLAIN:
                    raise TorError(
                        ErrorCode.TOR_ONION_UNREACHABLE,
                        f"{addr}.onion:{port}: {text}" + (f" (0x{code:02x})" if code else ""),
                    ) from exc
                last = f"{text} (0x{code:02x})"
                last_code = ErrorCode.TOR_ONION_UNREACHABLE
                refetch = code in (SOCKS_INTRO_FAILED, SOCKS_INTRO_TIMED_OUT,
                                   SOCKS_HOST_UNREACHABLE)  # fmt: skip
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
            + (f": {last}" if last else "") + await self._diagnosis(),
        )

    async def _diagnosis(self) -> str:
        """After a timeout: tor's own state, if it explains the failure (it went offline or
        lost its circuits after :meth:`start`); else ""."""
        if not self.connected:
            return ""
        try:
            st = await self._bootstrap_status(self._controller)
        except TorError:
            return ""
        if st.disable_network:
            return "; tor is offline now (DisableNetwork is set)"
        if not st.done or st.liveness == "down":
            return f"; tor: {st.describe()}"
        return ""

    # ------------------------------------------------------------------ control-port plumbing

    async def _ctrl(self) -> Any:
        if self._closing:
            raise TorError(ErrorCode.TOR_UNREACHABLE, "driver closed")
        if self._loop is None:
            raise TorError(ErrorCode.TOR_UNREACHABLE, "driver not started")
        await self.wait_ready()
        return self._controller

    async def _msg(self, c: Any, command: str) -> Any:
        return await self._call(c, command.split()[0], c.msg, command)

    async def _call(self, c: Any, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` (a blocking stem call on ``c``) in a worker thread, bounded by
        ``control_timeout``. On timeout the connection is closed: that wakes the thread (stem
        would otherwise wait for the reply forever, and ``asyncio.run`` waits for its worker
        threads at exit), and a late reply must not be taken for the next command's."""
        import stem

        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.config.control_timeout)
        except stem.SocketClosed as exc:
            self._lost(c)
            raise TorError(ErrorCode.TOR_UNREACHABLE, "tor control connection lost") from exc
        except TimeoutError as exc:
            await asyncio.to_thread(c.close)
            raise TorError(
                ErrorCode.TOR_TIMEOUT,
                f"tor ({self._where()}) did not answer {what} within "
                f"{self.config.control_timeout:g} s; the control connection was closed",
            ) from exc

    async def _getinfo(self, c: Any, *keys: str) -> dict[str, str]:
        """``GETINFO k1 k2 …`` → {key: value}; a key tor does not know is left out."""
        resp = await self._msg(c, "GETINFO " + " ".join(keys))
        out: dict[str, str] = {}
        for code, _div, line in resp.content():
            key, eq, value = line.partition("=")
            if code == "250" and eq and key in keys:
                out[key] = value.strip()
        return out

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
                # the onion is reachable through the HSDirs that have it (a client asking a
                # late one gets 0xF0 and retries, open_stream): failing the publish for the
                # rest (seen on a loaded machine: 16 of 18 done after 60 s) helps no one
                if w.uploaded:
                    log.warning("%s: %d/%d HSDir uploads done (%d failed) after %.1fs; published"
                                " without the rest", addr, w.uploaded, w.uploads, w.failed,
                                timeout)
                    return
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

    def _where(self) -> str:
        port = self._control_port or DEFAULT_CONTROL_PORT
        return self._control_socket or f"{self.config.control_host}:{port}"

    async def _connect(self) -> Any:
        """Connect and authenticate; ``system`` mode with no port or socket given tries
        127.0.0.1:9051, then the packaged tor's control socket (:data:`SYSTEM_CONTROL_SOCKETS`)."""
        cfg = self.config
        if cfg.mode != "system" or cfg.control_port is not None or self._control_socket:
            return await self._connect_bounded()
        self._control_port = DEFAULT_CONTROL_PORT
        try:
            return await self._connect_bounded()
        except TorError as exc:
            if not self._refused:  # something answered there: its error is the one to show
                raise
            first = exc
        for path in SYSTEM_CONTROL_SOCKETS:
            if os.path.exists(path):
                return await self._connect_bounded(path)
        raise first

    async def _connect_bounded(self, control_socket: str | None = None) -> Any:
        """:meth:`_connect_sync` in a thread; ``control_timeout`` bounds connecting and
        authenticating together (:meth:`_connect_sync` closes the socket when it passes)."""
        timeout = self.config.control_timeout
        return await asyncio.to_thread(self._connect_sync, timeout, control_socket)

    def _connect_sync(self, timeout: float, control_socket: str | None = None) -> Any:
        import stem
        import stem.connection
        import stem.control
        import stem.socket

        cfg = self.config
        path = control_socket or self._control_socket
        where = path or self._where()
        deadline = time.monotonic() + timeout
        try:
            if path is not None:
                sock = stem.socket.ControlSocketFile(path)
            else:
                _probe(cfg.control_host, self._control_port, timeout)
                sock = stem.socket.ControlPort(cfg.control_host, self._control_port)
        except (stem.SocketError, OSError) as exc:
            _close_leaked_socket(exc)
            self._refused = isinstance(exc, ConnectionRefusedError) or "refused" in str(exc)
            text = (_socket_text(path, exc) if path is not None
                    else self._unreachable_text(where, exc))  # fmt: skip
            raise TorError(ErrorCode.TOR_UNREACHABLE, text) from None
        self._refused = False
        # stem has no timeout for the PROTOCOLINFO/AUTHENTICATE exchange: a tor that accepts
        # and never answers (stopped with SIGSTOP, hung) would block authenticate() forever.
        # Closing the socket when the time is up wakes it; stem then reconnects once and asks
        # again, so keep closing until authenticate() has given up.
        expired, finished = threading.Event(), threading.Event()

        def expire() -> None:
            expired.set()
            while not finished.is_set():
                sock.close()
                finished.wait(0.05)

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        c: Any = None
        try:
            c = stem.control.Controller(sock)
            c.authenticate(password=cfg.control_password())
            if expired.is_set():
                raise stem.SocketClosed("timed out")
        except Exception as exc:
            (c or sock).close()
            if expired.is_set():
                raise TorError(
                    ErrorCode.TOR_TIMEOUT,
                    f"tor's control port {where} accepted the connection but did not answer "
                    f"within {timeout:g} s: is tor stopped (e.g. suspended) or hung, or is "
                    "something other than tor listening there?",
                ) from None
            if isinstance(exc, stem.connection.AuthenticationFailure | stem.SocketError):
                raise TorError(ErrorCode.TOR_UNREACHABLE, _auth_text(where, exc)) from None
            raise
        finally:
            finished.set()
            timer.cancel()
        self._control_socket = path
        return c

    def _unreachable_text(self, where: str, exc: BaseException) -> str:
        """What to do when nothing answers at the control port (issue 10: a stock Debian tor
        has no ControlPort; we say what to enable rather than start a tor of our own, because
        a system tor may be configured with bridges where Tor is blocked, and a tor we launch
        would silently bypass them)."""
        cfg = self.config
        text = f"cannot reach tor's control port {where}: {exc}"
        if cfg.mode == "launch":
            return text
        if cfg.mode == "testnet":
            return text + " (is the private Tor network still up? `python tools/tornet.py up`)"
        port = self._control_port or DEFAULT_CONTROL_PORT
        socks = cfg.socks_port or DEFAULT_SOCKS_PORT
        if _port_open(cfg.socks_host, socks):
            text += f". A tor is running (its SOCKS port {socks} answers) but has no control port"
        else:
            text += ". Is tor running? If it is"
        return (
            text + f": tor opens none by default. Add `ControlPort {port}` and "
            "`CookieAuthentication 1` to its torrc (Debian/Ubuntu: /etc/tor/torrc; "
            "Homebrew: $(brew --prefix)/etc/tor/torrc), restart tor (`sudo systemctl restart "
            "tor`), and let your user read the cookie (Debian/Ubuntu: `sudo adduser $USER "
            "debian-tor`, then log in again). Or let P⁴ start a tor of its own: `--tor launch`"
        )

    async def _install(self, c: Any) -> None:
        import stem.control

        def setup() -> tuple[list[tuple[str, int]], list[str]]:
            c.add_event_listener(self._on_hs_desc, stem.control.EventType.HS_DESC)
            c.add_status_listener(self._on_status)
            listeners: list[tuple[str, int]] = []
            for item in c.get_info("net/listeners/socks", "").split():
                addr, _, port = item.strip('"').rpartition(":")
                if addr and addr != "unix" and port.isdigit():
                    listeners.append((addr.strip("[]"), int(port)))
            conf: list[str] = [str(x) for x in c.get_conf("SocksPort", [], True) if x]
            return listeners, conf

        try:
            listeners, conf = await self._call(c, "SETEVENTS/GETINFO", setup)
        except TorError:
            await asyncio.to_thread(c.close)
            raise
        except Exception as exc:
            await asyncio.to_thread(c.close)
            raise TorError(ErrorCode.TOR_UNREACHABLE, f"tor control setup failed: {exc}") from exc
        self._controller = c
        self._failure = None
        if self._socks_port is None:
            if not listeners:
                st = await self._bootstrap_status(c)
                if st.disable_network and self.config.wait_bootstrap:
                    return  # start() says "offline", which is why there is no listener
                self._controller = None
                await asyncio.to_thread(c.close)
                why = (" because it is offline (DisableNetwork is set)" if st.disable_network
                       else ": add `SocksPort 9050 ExtendedErrors` to its torrc")  # fmt: skip
                raise TorError(
                    ErrorCode.TOR_UNREACHABLE, f"tor ({self._where()}) has no SOCKS listener{why}"
                )
            # prefer a port with ExtendedErrors (tor's onion error codes 0xF0-0xF7)
            ext = [x for x in listeners
                   if _has_flag(_socks_flags(conf, x[1]) or [], "ExtendedErrors")]  # fmt: skip
            self._socks_port = (ext or listeners)[0][1]
        flags = _socks_flags(conf, self._socks_port)
        if flags is None and not conf:
            flags = []  # no SocksPort line: tor's default, 9050 without flags
        self.extended_errors = None if flags is None else _has_flag(flags, "ExtendedErrors")
        if self.extended_errors is False:
            text = (
                f"tor's SOCKS port {self.config.socks_host}:{self._socks_port} lacks "
                "ExtendedErrors, so tor reports onion failures only as generic SOCKS errors: "
                "a missing or wrong client key looks like 'general failure' and a missing "
                "descriptor like 'host unreachable' (P⁴ retries the latter). Add the flag to "
                f"that SocksPort line in tor's torrc, e.g. `SocksPort {self._socks_port} "
                "ExtendedErrors`, and restart tor"
            )
            if text not in self.warnings:
                self.warnings.append(text)
                self._status(text, warn=True)

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
                c = await self._connect()
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
        tor = _find_tor(cfg.tor_cmd)
        if tor is None:
            raise TorError(
                ErrorCode.TOR_NOT_INSTALLED,
                f"`{cfg.tor_cmd}` not found; install tor (Debian/Ubuntu: `sudo apt-get install "
                "tor`; macOS: `brew install tor`; Windows: the Tor Expert Bundle)",
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
