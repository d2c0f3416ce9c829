"""Who gets into the local API: tokens in a header only, Host and Origin checks on 127.0.0.1,
the Unix socket's mode, the token file, and the ``p4 api token`` commands."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, UnixConnector

from p4ref.api.fake import FakeBackend
from p4ref.api.listen import ApiServer, read_endpoint
from p4ref.api.testing import LAPTOP, PHONE, Harness
from p4ref.api.tokens import TokenError, TokenStore

pytestmark = pytest.mark.timeout(60)


async def _code(r: Any) -> tuple[int, str]:
    return r.status, (await r.json())["error"]["code"]


def test_token_header_host_and_origin(tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness(tmp_path / "home") as h:
            c = h.client
            token = h.token["notes"]
            assert await _code(await c.get("/v1/peers")) == (401, "AUTH_REQUIRED")
            r = await c.get("/v1/peers")
            assert r.headers["WWW-Authenticate"] == "Bearer"
            for bad in ("Bearer p4tok_wrong", "Bearer " + token[:-1], "Basic " + token,
                        token, "Bearer " + token + "x" * 300):
                r = await c.get("/v1/peers", headers={"Authorization": bad})
                assert await _code(r) == (401, "TOKEN_INVALID"), bad
            ok = h.auth("notes")
            # a token in the URL is refused, even with a valid header, and never checked
            for url in (f"/v1/peers?token={token}", f"/v1/peers?access_token={token}",
                        "/v1/peers?api_key=x", f"/v1/{token}", "/v1/peers?x=p4tok%5Fabc"):
                assert await _code(await c.get(url, headers=ok)) == (400, "TOKEN_IN_URL"), url
            # browsers: any Origin or fetch-metadata header
            for hdr in ({"Origin": "http://127.0.0.1"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Mode": "cors"}):
                r = await c.get("/v1/peers", headers={**ok, **hdr})
                assert await _code(r) == (403, "FORBIDDEN_ORIGIN"), hdr
            # DNS rebinding: the name in Host is not ours
            port = c.port
            for host in (f"evil.example:{port}", "127.0.0.1", "localhost:1",
                         f"127.0.0.1.nip.io:{port}", ""):
                r = await c.get("/v1/peers", headers={**ok, "Host": host})
                assert await _code(r) == (403, "FORBIDDEN_HOST"), host
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
                r = await c.get("/v1/peers", headers={**ok, "Host": host})
                assert r.status == 200, host
            # the WebSocket goes through the same checks
            r = await c.get("/v1/stream", headers={**ok, "Origin": "http://evil.example"})
            assert await _code(r) == (403, "FORBIDDEN_ORIGIN")
            # a removed app's token stops working at once
            h.tokens.remove("notes")
            assert await _code(await c.get("/v1/peers", headers=ok)) == (401, "TOKEN_INVALID")

    asyncio.run(main())


def test_unix_socket_is_private_and_endpoint_file(tmp_path: Path) -> None:
    async def main() -> None:
        home = tmp_path / "home"
        async with Harness(home, unix=True) as h:
            sock = home / "api" / "api.sock"
            st = os.lstat(sock)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
            assert stat.S_IMODE(os.stat(home / "api").st_mode) == 0o700
            ep_file = home / "api" / "endpoint.json"
            assert stat.S_IMODE(os.stat(ep_file).st_mode) == 0o600
            assert json.loads(ep_file.read_text())["transport"] == "unix"
            assert read_endpoint(home) == h.server.endpoint  # type: ignore[union-attr]
            assert h.session is not None
            # any Host is fine on the Unix socket (no DNS there); the token is not optional
            r = await h.session.get("/v1/peers", headers={**h.auth("notes"), "Host": "x"})
            assert r.status == 200
            r = await h.session.get("/v1/peers")
            assert await _code(r) == (401, "AUTH_REQUIRED")
            r = await h.session.get("/v1/peers", headers={**h.auth("notes"), "Origin": "x"})
            assert await _code(r) == (403, "FORBIDDEN_ORIGIN")
            # a second server on the same profile is refused while the first listens
            second = ApiServer(home, FakeBackend(), transport="unix")
            with pytest.raises(OSError, match="another process"):
                await second.start()
        assert not sock.exists() and not ep_file.exists()
        # a stale socket (p4 up killed) is replaced
        async with Harness(home, unix=True):
            assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600

    asyncio.run(main())


def test_tcp_mode_with_endpoint_file(tmp_path: Path) -> None:
    async def main() -> None:
        home = tmp_path / "home"
        home.mkdir(mode=0o700)
        backend = FakeBackend([PHONE, LAPTOP])
        token = TokenStore(home).add("app", ["*"], "app/")
        server = ApiServer(home, backend, transport="tcp")
        ep = await server.start()
        try:
            assert ep.transport == "tcp" and ep.host == "127.0.0.1" and ep.port
            assert read_endpoint(home) == ep
            async with ClientSession(f"http://127.0.0.1:{ep.port}") as s:
                auth = {"Authorization": f"Bearer {token}"}
                r = await s.get("/v1/peers", headers=auth)
                assert r.status == 200 and len((await r.json())["peers"]) == 2
                r = await s.get("/v1/peers", headers={**auth, "Host": "attacker.example"})
                assert await _code(r) == (403, "FORBIDDEN_HOST")
                ws = await s.ws_connect("/v1/stream", headers=auth)
                hello = await ws.receive_json()
                assert hello["type"] == "hello" and hello["app"] == "app"
                await ws.close()
        finally:
            await server.stop()
        assert read_endpoint(home) is None

    asyncio.run(main())


def test_long_home_falls_back_to_tcp(tmp_path: Path) -> None:
    async def main() -> None:
        home = tmp_path / ("x" * 120)
        home.mkdir(mode=0o700)
        server = ApiServer(home, FakeBackend())
        ep = await server.start()
        try:
            assert ep.transport == "tcp"
        finally:
            await server.stop()

    asyncio.run(main())


def test_token_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    store = TokenStore(home)
    token = store.add("notes", [PHONE.device_id], "notes/")
    assert token.startswith("p4tok_") and len(token) > 40
    raw = (home / "api" / "tokens.json").read_text()
    assert token not in raw and token[6:] not in raw  # only the hash is stored
    assert stat.S_IMODE(os.stat(home / "api" / "tokens.json").st_mode) == 0o600
    scope = store.verify(token)
    assert scope is not None and scope.name == "notes" and scope.allows_peer(PHONE.device_id)
    assert not scope.allows_peer(LAPTOP.device_id) and scope.allows_channel("notes/x")
    assert store.verify(token + "x") is None
    for args, code in [
        (("notes", ["*"], "other/"), "APP_EXISTS"),
        (("notes2", [PHONE.device_id], "notes/sub/"), "SCOPE_OVERLAP"),
        (("notes2", ["*"], "no"), "SCOPE_OVERLAP"),
        (("notes2", [PHONE.device_id], ""), "SCOPE_INVALID"),  # would own p4's channels
        (("files", ["*"], "p4files/"), "SCOPE_INVALID"),
        (("files", ["*"], "p"), "SCOPE_INVALID"),
        (("Bad Name", ["*"], "x/"), "APP_NAME_INVALID"),
        (("ok", ["*"], "has space/"), "SCOPE_INVALID"),
        (("ok", [], "x/"), "SCOPE_INVALID"),
    ]:
        with pytest.raises(TokenError) as e:
            store.add(*args)  # type: ignore[arg-type]
        assert e.value.code == code, args
    # the same prefix on disjoint peers is fine: each channel still has one owner
    store.add("notes-laptop", [LAPTOP.device_id], "notes/")
    store.add("p4-cli", ["*"], "p4chat/")  # p4 up's own app may own a reserved prefix
    assert [a.name for a in store.apps()] == ["notes", "notes-laptop", "p4-cli"]
    store.remove("notes")
    assert store.verify(token) is None
    with pytest.raises(TokenError, match="no app"):
        store.remove("notes")


def test_cli_token_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from p4ref.api.cli import add_api_parser

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--home", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="p4")
    add_api_parser(parser.add_subparsers(), [parent])

    def p4(*argv: str) -> int:
        args = parser.parse_args([*argv, "--home", str(home)])
        return int(args.func(args))

    assert p4("api", "token", "add", "sched", "--all-peers", "--prefix", "sched/",
              "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["token"].startswith("p4tok_") and out["peers"] == ["*"]
    assert TokenStore(home).verify(out["token"]) is not None
    tf = tmp_path / "notes.token"
    assert p4("api", "token", "add", "notes", "--all-peers", "--prefix", "notes/",
              "--token-file", str(tf)) == 0
    assert stat.S_IMODE(os.stat(tf).st_mode) == 0o600
    assert "p4tok_" not in capsys.readouterr().out
    assert p4("api", "token", "add", "x", "--all-peers", "--prefix", "notes/a") == 1
    assert "[SCOPE_OVERLAP]" in capsys.readouterr().err
    assert p4("api", "token", "add", "p4-x", "--all-peers", "--prefix", "p4x/") == 1
    assert "[APP_NAME_INVALID]" in capsys.readouterr().err
    assert p4("api", "token", "list", "--json") == 0
    names = [a["name"] for a in json.loads(capsys.readouterr().out)["apps"]]
    assert names == ["notes", "sched"]
    assert p4("api", "token", "remove", "notes") == 0
    assert p4("api", "endpoint") == 1
    assert "[BACKEND_UNAVAILABLE]" in capsys.readouterr().err


def test_unix_session_helper(tmp_path: Path) -> None:
    """A client needs nothing but the endpoint file and its token."""

    async def main() -> None:
        async with Harness(tmp_path / "home", unix=True) as h:
            ep = read_endpoint(h.home)
            assert ep is not None and ep.path is not None
            async with ClientSession(connector=UnixConnector(path=ep.path)) as s:
                r = await s.get("http://p4/v1/whoami", headers=h.auth("sched"))
                assert (await r.json())["app"] == "sched"

    asyncio.run(main())


def test_a_broken_tokens_file_is_503_not_a_crash(tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness(tmp_path / "home") as h:
            path = h.home / "api" / "tokens.json"
            os.chmod(path, 0o644)  # someone loosened it
            r = await h.client.get("/v1/peers", headers=h.auth("notes"))
            status, code = await _code(r)
            assert (status, code) == (503, "BACKEND_UNAVAILABLE")
            assert "chmod" in (await r.json())["error"]["message"]
            os.chmod(path, 0o600)
            path.write_text("{not json")
            r = await h.client.get("/v1/peers", headers=h.auth("notes"))
            assert await _code(r) == (503, "BACKEND_UNAVAILABLE")

    asyncio.run(main())
