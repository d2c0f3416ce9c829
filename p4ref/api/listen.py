"""Where the local API listens, and how apps find it: :class:`ApiServer` (``p4 up`` runs one).

- **Unix socket** (default where the platform has ``AF_UNIX``): ``<home>/api/api.sock``, mode
  0600 in a 0700 directory, so only the profile's owner can connect. The socket is bound under a
  temporary name, chmod-ed, then renamed into place: it is never reachable with a wider mode.
- **TCP** (Windows, a socket path too long for ``AF_UNIX``, or ``transport="tcp"``):
  ``127.0.0.1:PORT`` only (``PORT`` 0 picks a free one). Any local user can connect there, so
  the app tokens and the Host/Origin checks are what keep others out.

Either way ``<home>/api/endpoint.json`` (mode 0600) tells clients where to go:
``{"format": "p4-api-endpoint", "version": 1, "transport": "unix", "path": …}`` or
``{…, "transport": "tcp", "host": "127.0.0.1", "port": N}``; it is removed on :meth:`stop`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Literal

from aiohttp import web

from p4ref.io.store import atomic_write

from .backend import Backend
from .endpoint import ENDPOINT_FILE, Endpoint, read_endpoint
from .server import Limits, make_app
from .tokens import TokenStore, api_dir

__all__ = ["ENDPOINT_FILE", "SOCKET_FILE", "ApiServer", "Endpoint", "read_endpoint"]

log = logging.getLogger("p4.api")

SOCKET_FILE = "api.sock"
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin
Transport = Literal["auto", "unix", "tcp"]


# Windows' Python has no AF_UNIX (getattr: mypy --platform win32 checks this module too)
_AF_UNIX: int | None = getattr(socket, "AF_UNIX", None)


def _unix_available() -> bool:
    return _AF_UNIX is not None


def _bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` that never existed with a mode wider than 0600."""
    if _AF_UNIX is None:
        raise OSError("this platform has no Unix-domain sockets; use the TCP transport")
    if path.exists() or path.is_symlink():
        probe = socket.socket(_AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: left by a p4 up that died
        else:
            raise OSError(f"{path}: another process serves the local API here")
        finally:
            probe.close()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    sock = socket.socket(_AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return sock


class ApiServer:
    """The local API of one profile, listening (see the module docstring)."""

    def __init__(self, home: Path, backend: Backend, *, transport: Transport = "auto",
                 port: int = 0, limits: Limits | None = None) -> None:
        self.home = home
        self.tokens = TokenStore(home)
        self.app = make_app(backend, self.tokens, limits)
        self._transport = transport
        self._port = port
        self._runner: web.AppRunner | None = None
        self.endpoint: Endpoint | None = None

    async def start(self) -> Endpoint:
        d = api_dir(self.home)
        transport = self._transport
        sock_path = d / SOCKET_FILE
        if transport == "auto":
            fits = len(os.fsencode(sock_path)) <= _MAX_UNIX_PATH
            transport = "unix" if _unix_available() and fits else "tcp"
            if _unix_available() and not fits:
                log.warning("%s is too long for a Unix socket; listening on 127.0.0.1",
                            sock_path)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        try:
            if transport == "unix":
                site: web.BaseSite = web.SockSite(runner, _bind_unix(sock_path))
                await site.start()
                self.endpoint = Endpoint("unix", path=str(sock_path))
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind(("127.0.0.1", self._port))
                    sock.listen(128)
                    sock.setblocking(False)
                except BaseException:
                    sock.close()
                    raise
                port = int(sock.getsockname()[1])
                await web.SockSite(runner, sock).start()
                self.endpoint = Endpoint("tcp", host="127.0.0.1", port=port)
            atomic_write(d / ENDPOINT_FILE,
                         (json.dumps(self.endpoint.to_json()) + "\n").encode())
        except BaseException:
            await self.stop()
            raise
        log.info("local API on %s", self.endpoint)
        return self.endpoint

    async def stop(self) -> None:
        d = self.home / "api"
        with contextlib.suppress(FileNotFoundError):
            (d / ENDPOINT_FILE).unlink()
        if self.endpoint is not None and self.endpoint.transport == "unix":
            with contextlib.suppress(FileNotFoundError):
                (d / SOCKET_FILE).unlink()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
