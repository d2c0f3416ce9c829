"""The local API fuzzed from its OpenAPI document (docs/openapi.yaml) with schemathesis.

A real ``ApiServer`` (TCP mode, FakeBackend) runs in a thread. For every generated request
(valid and invalid bodies, headers, methods) the test asserts:

- no 5xx and no traceback in any answer; every answer conforms to the document (status code,
  content type, body schema);
- the same request without the token is 401, and with the token in the URL is 400 TOKEN_IN_URL,
  so nothing bypasses authentication;
- the profile's API files are intact afterwards (tokens unchanged, endpoint file removed);
- the fuzzed app ("notes": peer phone, prefix ``notes/``) never reaches another app's channels:
  the backend never opens a channel outside ``notes/`` with a peer other than the phone, and the
  messages waiting for app "sched" are never handed to it nor confirmed.

``P4_API_FUZZ_EXAMPLES`` sets the examples per operation (default 20).
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from p4ref.api.fake import FakeBackend
from p4ref.api.listen import ApiServer
from p4ref.api.server import Limits
from p4ref.api.testing import LAPTOP, PHONE
from p4ref.api.tokens import TokenStore

DOC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
EXAMPLES = int(os.environ.get("P4_API_FUZZ_EXAMPLES", "20"))
SECRET = b"sched-only-secret"

schema = schemathesis.openapi.from_path(DOC)
COUNT: dict[str, int] = {"requests": 0}


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.backend: FakeBackend | None = None
        self.url = ""
        self.token = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.backend = FakeBackend([PHONE, LAPTOP], echo=True)
        tokens = TokenStore(self.home)
        self.token = tokens.add("notes", [PHONE.device_id], "notes/")
        tokens.add("sched", ["*"], "sched/")
        for peer in (PHONE, LAPTOP):  # another app's traffic, waiting for it
            self.backend.inject(peer.device_id, "sched/secret", SECRET)
        self.backend.inject(PHONE.device_id, "notes/inbox", b"for notes")
        # small waits keep long polls short; the document allows up to 60000 ms, the server
        # answers a larger wait_ms with a documented 400
        self.server = ApiServer(self.home, self.backend, transport="tcp",
                                limits=Limits(max_message_bytes=4096, max_wait_ms=20))
        ep = await self.server.start()
        self.url = f"http://127.0.0.1:{ep.port}"

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    def invariants(self) -> None:
        b = self.backend
        assert b is not None
        for (peer, name) in b.channels:
            if name == "sched/secret":
                continue
            assert name.startswith("notes/") and peer == PHONE.device_id, (peer, name)
        for peer, name, _ in b.confirmed:
            assert name.startswith("notes/") and peer == PHONE.device_id, (peer, name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("api-fuzz") / "home"
    home.mkdir(mode=0o700)
    s = Server(home)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\nschemathesis: {COUNT.pop('requests')} requests; as the app:",
              ", ".join(f"{k}: {v}" for k, v in sorted(COUNT.items())))
    # nothing the requests did changed the profile's API state
    assert [a.name for a in TokenStore(home).apps()] == ["notes", "sched"]
    assert TokenStore(home).verify(s.token) is not None
    assert sorted(os.listdir(home / "api")) == ["lock", "tokens.json"]  # endpoint file gone


def _check_body(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text
    assert base64.b64encode(SECRET).decode() not in text and SECRET.decode() not in text


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case: Any, server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    # 1. as the app
    response = case.call(base_url=server.url, headers=auth)
    COUNT["requests"] += 1
    key = f"{case.operation.label} {response.status_code}"
    COUNT[key] = COUNT.get(key, 0) + 1
    case.validate_response(response, checks=checks, headers=auth)
    _check_body(response.text)
    server.invariants()
    # 2. without the token: refused, whatever the request
    anon = case.call(base_url=server.url, headers={"Authorization": ""})
    COUNT["requests"] += 1
    assert anon.status_code in (400, 401), anon.text  # 400 only for a token-shaped URL
    _check_body(anon.text)
    # 3. the token in the URL as well as in the header: refused before it is looked at
    leaked = case.call(base_url=server.url, headers=auth, params={"token": server.token})
    COUNT["requests"] += 1
    assert leaked.status_code == 400 and leaked.json()["error"]["code"] == "TOKEN_IN_URL"
    server.invariants()
