"""The local API over HTTP (p4ref/api, docs/openapi.yaml): endpoints, scopes, durability,
idempotency, the subscription's quota and leases, on the FakeBackend."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from p4ref.api.testing import LAPTOP, PHONE, Harness

pytestmark = pytest.mark.timeout(60)


def run(tmp_path: Path, body: Callable[[Harness], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with Harness(tmp_path / "home", **kw) as h:
            await body(h)

    asyncio.run(main())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def post(h: Harness, path: str, app: str, body: Any, key: str | None = None
               ) -> tuple[int, Any]:
    headers = h.auth(app)
    if key is not None:
        headers["Idempotency-Key"] = key
    r = await h.client.post(path, json=body, headers=headers)
    return r.status, await r.json()


def test_peers_status_and_whoami_are_scoped(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        r = await h.client.get("/v1/peers", headers=h.auth("notes"))
        assert r.status == 200
        assert await r.json() == {"peers": [{"device_id": PHONE.device_id, "name": "phone"}]}
        r = await h.client.get("/v1/peers", headers=h.auth("sched"))
        assert [p["name"] for p in (await r.json())["peers"]] == ["phone", "laptop"]
        h.backend.set_status(PHONE.device_id, state="connecting", generation=7, path="tor",
                             rtt_ms=None)
        r = await h.client.get("/v1/status", headers=h.auth("notes"))
        (st,) = (await r.json())["peers"]
        assert st["state"] == "connecting" and st["generation"] == 7 and st["path"] == "tor"
        assert st["rtt_ms"] is None and st["last_reconnect"] is None
        assert set(st) == {"device_id", "name", "state", "generation", "path", "rtt_ms",
                           "bytes_sent", "bytes_received", "outbox_messages", "last_reconnect"}
        r = await h.client.get("/v1/whoami", headers=h.auth("notes"))
        me = await r.json()
        assert me["app"] == "notes" and me["prefix"] == "notes/"
        assert me["peers"] == [PHONE.device_id]

    run(tmp_path, body)


def test_send_is_accepted_after_commit_and_idempotent(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.backend.commit_delay = 0.05
        msg = {"peer": "phone", "channel": "notes/a", "text": "hello"}
        status, res = await post(h, "/v1/send", "notes", msg, key="k1")
        assert status == 202 and res["status"] == "accepted" and not res["replayed"]
        ch = h.backend.channels[(PHONE.device_id, "notes/a")]
        assert ch.sent() == [b"hello"]  # durable before the answer
        status, again = await post(h, "/v1/send", "notes", msg, key="k1")
        assert status == 200 and again["replayed"] and again["id"] == res["id"]
        assert ch.sent() == [b"hello"]
        status, err = await post(h, "/v1/send", "notes", dict(msg, text="other"), key="k1")
        assert status == 409 and err["error"]["code"] == "IDEMPOTENCY_CONFLICT"
        # the same key of another app is another key
        status, res2 = await post(h, "/v1/send", "sched",
                                  {"peer": "phone", "channel": "sched/x", "text": "hello"}, "k1")
        assert status == 202 and res2["id"] != res["id"]
        status, _ = await post(h, "/v1/send", "notes",
                               {"peer": "phone", "channel": "notes/a", "data": b64(b"\0\1")},
                               key="k2")
        assert status == 202 and ch.sent() == [b"hello", b"\0\1"]

    run(tmp_path, body)


@pytest.mark.parametrize(("body", "key", "status", "code"), [
    ({"peer": "phone", "channel": "notes/a", "text": "x"}, None, 400, "BAD_REQUEST"),
    ({"peer": "phone", "channel": "notes/a", "text": "x"}, "has space", 400, "BAD_REQUEST"),
    ({"peer": "phone", "channel": "sched/a", "text": "x"}, "k", 403, "SCOPE_CHANNEL"),
    ({"peer": "laptop", "channel": "notes/a", "text": "x"}, "k", 404, "PEER_UNKNOWN"),
    ({"peer": "nobody", "channel": "notes/a", "text": "x"}, "k", 404, "PEER_UNKNOWN"),
    ({"peer": "phone", "channel": "notes/a"}, "k", 400, "BAD_REQUEST"),
    ({"peer": "phone", "channel": "notes/a", "text": "x", "data": ""}, "k", 400, "BAD_REQUEST"),
    ({"peer": "phone", "channel": "notes/a", "data": "!!"}, "k", 400, "BAD_REQUEST"),
    ({"peer": "phone", "channel": "notes/ a", "text": "x"}, "k", 400, "BAD_REQUEST"),
    ({"peer": "phone", "channel": "notes/a", "text": "x", "extra": 1}, "k", 400, "BAD_REQUEST"),
    ([1, 2], "k", 400, "BAD_REQUEST"),
    # the documented order: key before peer, peer before channel scope
    ({"peer": "nobody", "channel": "sched/a", "text": "x"}, None, 400, "BAD_REQUEST"),
    ({"peer": "nobody", "channel": "sched/a", "text": "x"}, "k", 404, "PEER_UNKNOWN"),
])
def test_send_refusals(tmp_path: Path, body: Any, key: str | None, status: int,
                       code: str) -> None:
    async def check(h: Harness) -> None:
        got, res = await post(h, "/v1/send", "notes", body, key)
        assert (got, res["error"]["code"]) == (status, code)
        assert set(res["error"]) == {"code", "message"}
        assert not h.backend.channels or all(c.sent() == [] for c in h.backend.channels.values())

    run(tmp_path, check)


def test_send_size_limit_and_media_type(tmp_path: Path) -> None:
    from p4ref.api.server import Limits

    async def body(h: Harness) -> None:
        status, res = await post(h, "/v1/send", "notes",
                                 {"peer": "phone", "channel": "notes/a", "data": b64(b"x" * 1025)},
                                 "k")
        assert (status, res["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
        r = await h.client.post("/v1/send", data=b"x" * 100_000,
                                headers={**h.auth("notes"), "Idempotency-Key": "k",
                                         "Content-Type": "application/json"})
        assert r.status == 413 and (await r.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"
        r = await h.client.post("/v1/send", data=b"{}", headers=h.auth("notes"))
        assert (await r.json())["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        h.backend.outbox_full = True
        status, res = await post(h, "/v1/send", "notes",
                                 {"peer": "phone", "channel": "notes/a", "text": "x"}, "k")
        assert (status, res["error"]["code"]) == (429, "QUOTA_EXCEEDED")

    run(tmp_path, body, limits=Limits(max_message_bytes=1024))


def test_receive_confirm_and_isolation(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for i in range(3):
            h.backend.inject(PHONE.device_id, "notes/in", b"n%d" % i)
        h.backend.inject(PHONE.device_id, "sched/in", b"s0")
        h.backend.inject(LAPTOP.device_id, "sched/in", b"s1")
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 2000, "max": 10})
        # quick: the first message may come alone; wait for all three
        msgs = res["messages"]
        while len(msgs) < 3:
            _, more = await post(h, "/v1/receive", "notes", {"wait_ms": 2000})
            msgs += more["messages"]
        assert [base64.b64decode(m["data"]) for m in msgs] == [b"n0", b"n1", b"n2"]
        assert {m["channel"] for m in msgs} == {"notes/in"}
        assert {m["peer_name"] for m in msgs} == {"phone"}
        ids = [m["id"] for m in msgs]
        # the other app can neither confirm nor receive them
        _, res = await post(h, "/v1/confirm", "sched", {"ids": ids})
        assert res == {"confirmed": [], "unknown": ids}
        got: list[bytes] = []
        while len(got) < 2:
            _, res = await post(h, "/v1/receive", "sched", {"wait_ms": 2000})
            got += [base64.b64decode(m["data"]) for m in res["messages"]]
        assert sorted(got) == [b"s0", b"s1"]
        _, res = await post(h, "/v1/confirm", "notes", {"ids": [*ids[:2], "nope"]})
        assert res == {"confirmed": ids[:2], "unknown": ["nope"]}
        assert [c[2] for c in h.backend.confirmed] == ["m1", "m2"]
        _, res = await post(h, "/v1/confirm", "notes", {"ids": ids[:2]})
        assert res["unknown"] == ids[:2]

    run(tmp_path, body)


def test_lease_runs_out_and_the_same_id_comes_back(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.backend.inject(PHONE.device_id, "notes/x", b"once")
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 2000, "lease_ms": 1000})
        (m,) = res["messages"]
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 0})
        assert res["messages"] == []
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 3000})
        assert [x["id"] for x in res["messages"]] == [m["id"]]

    run(tmp_path, body)


def test_a_leased_item_holds_back_the_later_items_of_its_channel(tmp_path: Path) -> None:
    """docs/local-api.md §5.4: a reader that died holding item 1 (its lease still running) must
    not make the next reader get item 2 first: the channel's later items wait for the lease.
    Other channels are not held back."""

    async def body(h: Harness) -> None:
        h.backend.inject(PHONE.device_id, "notes/x", b"x1")
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 2000, "lease_ms": 1500})
        (first,) = res["messages"]  # this reader never confirms (it was killed)
        h.backend.inject(PHONE.device_id, "notes/x", b"x2")
        h.backend.inject(PHONE.device_id, "notes/y", b"y1")
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 500})
        assert [base64.b64decode(m["data"]) for m in res["messages"]] == [b"y1"]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 5000})
        assert loop.time() - t0 > 0.5  # waited for the lease, did not spin or skip ahead
        assert [m["id"] for m in res["messages"]][:1] == [first["id"]]
        assert [base64.b64decode(m["data"]) for m in res["messages"]] == [b"x1", b"x2"]

    run(tmp_path, body)


def test_ids_survive_a_restart(tmp_path: Path) -> None:
    """A message not confirmed comes back after a restart of p4 up, with the same id."""
    from p4ref.api.server import make_app

    async def body(h: Harness) -> None:
        h.backend.inject(PHONE.device_id, "notes/x", b"durable")
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 2000})
        first = res["messages"][0]["id"]
        await h.client.close()  # p4 up stops without the app confirming
        h.backend.restart()  # the link hands out what was not confirmed again
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(make_app(h.backend, h.tokens),
                                         host="127.0.0.1")) as c2:
            r = await c2.post("/v1/receive", json={"wait_ms": 2000}, headers=h.auth("notes"))
            assert [m["id"] for m in (await r.json())["messages"]] == [first]

    run(tmp_path, body)


def test_quota_applies_backpressure_to_the_peer(tmp_path: Path) -> None:
    """An app that does not confirm holds at most its quota; the rest waits in the link, and the
    peer (window 6) stops; another app's channel keeps flowing meanwhile."""

    async def body(h: Harness) -> None:
        peer = PHONE.device_id
        sender = asyncio.create_task(_send_all(h, peer, "notes/bulk", 20))
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 500})
        await asyncio.sleep(0.3)
        assert not sender.done()
        ch = h.backend.channels[(peer, "notes/bulk")]
        assert ch.unconfirmed() == 6  # the peer's window: it is blocked
        # the other app is not starved
        h.backend.inject(peer, "sched/x", b"other")
        _, other = await post(h, "/v1/receive", "sched", {"wait_ms": 2000})
        assert [base64.b64decode(m["data"]) for m in other["messages"]] == [b"other"]
        got = list(res["messages"])
        while len(got) < 20:
            if got:
                await post(h, "/v1/confirm", "notes", {"ids": [m["id"] for m in got[-4:]]})
            _, more = await post(h, "/v1/receive", "notes", {"wait_ms": 2000, "max": 4})
            got += more["messages"]
            assert len(more["messages"]) <= 4
        await post(h, "/v1/confirm", "notes", {"ids": [m["id"] for m in got]})
        await asyncio.wait_for(sender, 5)
        assert [base64.b64decode(m["data"]) for m in got] == [b"%d" % i for i in range(20)]

    run(tmp_path, body, quota_messages=4, window=6)


async def _send_all(h: Harness, peer: str, name: str, n: int) -> None:
    for i in range(n):
        await h.backend.peer_send(peer, name, b"%d" % i)


def test_close_and_peer_half_close(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        status, res = await post(h, "/v1/close", "notes", {"peer": "phone", "channel": "notes/c"})
        assert status == 200 and res["closed"]
        status, res = await post(h, "/v1/send", "notes",
                                 {"peer": "phone", "channel": "notes/c", "text": "late"}, "k")
        assert (status, res["error"]["code"]) == (409, "CHANNEL_CLOSED")
        ch = h.backend.channel(PHONE.device_id, "notes/d")
        ch.inject(b"last")
        ch.peer_close()
        got: list[dict[str, Any]] = []
        while len(got) < 2:
            _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 2000})
            got += res["messages"]
        assert [m["type"] for m in got] == ["message", "closed"]
        assert "data" not in got[1]
        _, res = await post(h, "/v1/confirm", "notes", {"ids": [m["id"] for m in got]})
        assert len(res["confirmed"]) == 2

    run(tmp_path, body)


def test_unknown_paths_and_methods_are_json_errors(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        r = await h.client.get("/v1/nothing", headers=h.auth("notes"))
        assert r.status == 404 and (await r.json())["error"]["code"] == "NOT_FOUND"
        r = await h.client.get("/v1/nothing")
        assert r.status == 401  # nothing about the API is told before the token
        r = await h.client.delete("/v1/peers", headers=h.auth("notes"))
        assert r.status == 405 and (await r.json())["error"]["code"] == "METHOD_NOT_ALLOWED"
        r = await h.client.get("/v1/stream", headers=h.auth("notes"))
        assert r.status == 426 and (await r.json())["error"]["code"] == "UPGRADE_REQUIRED"
        r = await h.client.post("/v1/receive", data=b"{", headers={
            **h.auth("notes"), "Content-Type": "application/json"})
        assert r.status == 400 and json.loads(await r.text())["error"]["code"] == "BAD_REQUEST"

    run(tmp_path, body)


def test_api_error_registry_matches_the_docs() -> None:
    """Every code of p4ref.api.errors is in docs/local-api.md's table and the OpenAPI enum."""
    import yaml

    from p4ref.api.errors import ApiErrorCode

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "local-api.md").read_text()
    spec = yaml.safe_load((root / "docs" / "openapi.yaml").read_text())
    enum = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"][
        "code"]["enum"]
    for code in ApiErrorCode:
        assert f"| `{code.value}` | {code.status} |" in doc, code
        assert code.value in enum, code


def test_a_peer_paired_or_forgotten_while_running(tmp_path: Path) -> None:
    from p4ref.api.backend import PeerInfo

    tablet = PeerInfo("TABLETC-CCCCCCC-CCCCCCC-CCCCCCC-CCCCCCC-CCCCCCC-CCCCCCC-CCCCCCC",
                      "tablet")

    async def body(h: Harness) -> None:
        _, res = await post(h, "/v1/receive", "sched", {})  # the subscription runs
        assert res == {"messages": []}
        h.backend.add_peer(tablet)
        await asyncio.sleep(0.1)
        h.backend.inject(tablet.device_id, "sched/new", b"hi")
        _, res = await post(h, "/v1/receive", "sched", {"wait_ms": 3000})
        assert [m["peer_name"] for m in res["messages"]] == ["tablet"]
        r = await h.client.get("/v1/peers", headers=h.auth("sched"))
        assert len((await r.json())["peers"]) == 3
        h.backend.remove_peer(tablet.device_id)
        r = await h.client.get("/v1/peers", headers=h.auth("sched"))
        assert len((await r.json())["peers"]) == 2
        status, err = await post(h, "/v1/send", "sched",
                                 {"peer": "tablet", "channel": "sched/x", "text": "x"}, "k")
        assert (status, err["error"]["code"]) == (404, "PEER_UNKNOWN")

    run(tmp_path, body)


def test_removed_app_hands_its_channels_to_the_new_owner(tmp_path: Path) -> None:
    """Removing an app closes its streams and gives its channels, unconfirmed messages
    included (same ids), to the app that owns the prefix next; a re-scoped app starts over."""
    from p4ref.api.server import CTX

    async def body(h: Harness) -> None:
        h.backend.inject(PHONE.device_id, "notes/x", b"one")
        h.backend.inject(PHONE.device_id, "notes/x", b"two")
        ws = await h.client.ws_connect("/v1/stream", headers=h.auth("notes"))
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        await ws.send_json({"type": "credit", "messages": 1})
        first = await ws.receive_json(timeout=5)
        await ws.send_json({"type": "confirm", "ids": [first["id"]]})
        assert (await ws.receive_json(timeout=5))["confirmed"] == [first["id"]]
        h.tokens.remove("notes")
        h.add_app("notes2", [PHONE.device_id], "notes/")
        await h.client.app[CTX].sweep()
        closed = await ws.receive(timeout=5)
        assert closed.data == 1008
        got: list[dict[str, Any]] = []
        while not got:
            _, res = await post(h, "/v1/receive", "notes2", {"wait_ms": 3000})
            got = res["messages"]
        assert [base64.b64decode(m["data"]) for m in got] == [b"two"]
        await ws.close()

    run(tmp_path, body)


def test_a_long_poll_abandoned_by_its_client_leases_nothing(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        poll = asyncio.create_task(h.client.post("/v1/receive", json={"wait_ms": 1500},
                                                 headers=h.auth("notes")))
        await asyncio.sleep(0.2)
        poll.cancel()  # the client goes away during the wait
        with contextlib.suppress(asyncio.CancelledError):
            await poll
        h.backend.inject(PHONE.device_id, "notes/late", b"late")
        await asyncio.sleep(1.6)  # the abandoned poll's wait ends now
        _, res = await post(h, "/v1/receive", "notes", {"wait_ms": 2000})
        assert [base64.b64decode(m["data"]) for m in res["messages"]] == [b"late"]

    run(tmp_path, body)
