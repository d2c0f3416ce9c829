"""The CLI's client of the running ``p4 up``: HTTP over the local API (aiohttp's client, on the
Unix socket or 127.0.0.1 that ``<home>/api/endpoint.json`` names), with the ``p4-cli`` token
``p4 up`` writes to ``<home>/api/cli.token``.  No protocol logic: requests and answers only.

Errors are :class:`CliError` with a code a script can branch on and one line saying what to do:
DAEMON_NOT_RUNNING, or the local API's code (PEER_UNKNOWN, …).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..io.store import read_private_file

if TYPE_CHECKING:
    import aiohttp

__all__ = ["CliError", "Client"]


class CliError(Exception):
    """One line for the user: ``p4: error: <message> [<code>]``, exit status 1."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{message} [{code}]")


def _not_running(home: Path) -> CliError:
    return CliError("DAEMON_NOT_RUNNING",
                    f"p4 up is not running for {home}; start it (`p4 --home {home} up`, e.g."
                    " in another terminal) and try again")


class Client:
    """``async with Client(home) as c: await c.get("/v1/status")``."""

    def __init__(self, home: Path, timeout: float = 30.0) -> None:
        self.home = home
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._base = "http://p4"

    async def __aenter__(self) -> Client:
        import aiohttp  # only the verbs that talk to p4 up need it

        try:
            data = read_private_file(self.home / "api" / "endpoint.json")
            token = (read_private_file(self.home / "api" / "cli.token") or b"").decode().strip()
        except OSError:
            data, token = None, ""
        if not data or not token:
            raise _not_running(self.home)
        try:
            ep = json.loads(data)
        except ValueError:
            raise _not_running(self.home) from None
        if ep.get("transport") == "unix":
            conn: aiohttp.BaseConnector = aiohttp.UnixConnector(path=str(ep["path"]))
        else:
            conn = aiohttp.TCPConnector()
            self._base = f"http://127.0.0.1:{int(ep['port'])}"
        self._session = aiohttp.ClientSession(
            connector=conn, headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None,
                      timeout: float | None = None) -> Any:
        import aiohttp

        assert self._session is not None
        try:
            async with self._session.request(
                    method, self._base + path, json=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as r:
                try:
                    doc = await r.json(content_type=None)
                except ValueError:
                    doc = None
                if r.status >= 400:
                    err = (doc or {}).get("error", {}) if isinstance(doc, dict) else {}
                    raise CliError(str(err.get("code", f"HTTP_{r.status}")),
                                   str(err.get("message", r.reason)))
                return doc
        except aiohttp.ClientConnectionError:
            raise _not_running(self.home) from None
        except TimeoutError:
            raise CliError("DAEMON_TIMEOUT", f"p4 up for {self.home} did not answer in time;"
                           " see its log") from None

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any, **kw: Any) -> Any:
        return await self.request("POST", path, body, **kw)
