"""A local API on a :class:`~p4ref.api.fake.FakeBackend`, for tests and client examples.

    async with Harness(tmp_path) as h:        # two peers, apps "notes" and "sched"
        r = await h.client.get("/v1/peers", headers=h.auth("notes"))

``Harness`` listens on 127.0.0.1 (aiohttp's test server, ``.client``) or, with ``unix=True`` or
``tcp=True``, through :class:`~p4ref.api.listen.ApiServer` as ``p4 up`` does (``.session``), on
the profile's Unix socket or on 127.0.0.1, with ``endpoint.json``. ``python -m
p4ref.api.testing HOME`` runs one in the foreground (echoing peers) for trying the clients in
``examples/clients`` without Tor; it prints the tokens as JSON on its first line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from types import TracebackType

from aiohttp import ClientSession, UnixConnector, web
from aiohttp.test_utils import TestClient, TestServer

from .backend import PeerInfo
from .fake import FakeBackend
from .listen import ApiServer
from .server import Limits, make_app
from .tokens import TokenStore

__all__ = ["LAPTOP", "PHONE", "Harness"]

PHONE = PeerInfo("PHONEAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA", "phone")
LAPTOP = PeerInfo("LAPTOPB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB", "laptop")


class Harness:
    """A FakeBackend with peers ``phone`` and ``laptop``; app ``notes`` (prefix ``notes/``,
    phone only) and app ``sched`` (prefix ``sched/``, every peer); more with :meth:`add_app`."""

    def __init__(self, home: Path, *, echo: bool = False, unix: bool = False, tcp: bool = False,
                 limits: Limits | None = None, quota_messages: int = 64,
                 window: int = 64) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.backend = FakeBackend([PHONE, LAPTOP], echo=echo, window=window)
        self.tokens = TokenStore(home)
        self.token: dict[str, str] = {}
        self.limits = limits
        self.unix = unix
        self.tcp = tcp
        self._quota = quota_messages
        self._client: TestClient[web.Request, web.Application] | None = None
        self.server: ApiServer | None = None
        self.session: ClientSession | None = None

    def add_app(self, name: str, peers: list[str], prefix: str, **quota: int) -> str:
        self.token[name] = self.tokens.add(name, peers, prefix, **quota)
        return self.token[name]

    def auth(self, app: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token[app]}"}

    @property
    def client(self) -> TestClient[web.Request, web.Application]:
        assert self._client is not None, "unix=True and tcp=True harnesses use .session"
        return self._client

    async def __aenter__(self) -> Harness:
        for scope in self.tokens.apps():  # a fresh token each run
            self.tokens.remove(scope.name)
        self.add_app("notes", [PHONE.device_id], "notes/", quota_messages=self._quota)
        self.add_app("sched", ["*"], "sched/", quota_messages=self._quota)
        if self.unix or self.tcp:
            self.server = ApiServer(self.home, self.backend,
                                    transport="unix" if self.unix else "tcp", limits=self.limits)
            ep = await self.server.start()
            if ep.path is not None:
                self.session = ClientSession(connector=UnixConnector(path=ep.path),
                                             base_url="http://localhost")
            else:
                self.session = ClientSession(base_url=f"http://127.0.0.1:{ep.port}")
        else:
            app = make_app(self.backend, self.tokens, self.limits)
            client = TestClient(TestServer(app, host="127.0.0.1"))
            await client.start_server()
            self._client = client
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.close()
        if self.session is not None:
            await self.session.close()
        if self.server is not None:
            await self.server.stop()


async def _serve(home: Path, transport: str) -> None:
    h = Harness(home, echo=True)
    for scope in h.tokens.apps():  # a fresh token each run
        h.tokens.remove(scope.name)
    h.add_app("notes", [PHONE.device_id], "notes/")
    h.add_app("sched", ["*"], "sched/")
    server = ApiServer(home, h.backend, transport="tcp" if transport == "tcp" else "unix")
    ep = await server.start()
    print(json.dumps({"endpoint": ep.to_json(), "tokens": h.token}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m p4ref.api.testing HOME [unix|tcp]", file=sys.stderr)
        return 2
    home = Path(argv[0])
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(home, argv[1] if len(argv) > 1 else "unix"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
