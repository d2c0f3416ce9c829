"""The local API's WebSocket stream (docs/local-api.md): credit both ways, ordering, confirm,
events, leases released on disconnect, errors that keep or end the connection."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from p4ref.api.backend import LinkEvent
from p4ref.api.testing import LAPTOP, PHONE, Harness

pytestmark = pytest.mark.timeout(60)


def run(tmp_path: Path, body: Callable[[Harness], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with Harness(tmp_path / "home", **kw) as h:
            await body(h)

    asyncio.run(main())


async def connect(h: Harness, app: str) -> tuple[ClientWebSocketResponse, dict[str, Any]]:
    ws = await h.client.ws_connect("/v1/stream", headers=h.auth(app))
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello"
    return ws, hello


async def recv(ws: ClientWebSocketResponse, timeout: float = 5) -> dict[str, Any]:
    frame: dict[str, Any] = await ws.receive_json(timeout=timeout)
    return frame


async def nothing(ws: ClientWebSocketResponse, timeout: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive_json(timeout=timeout)


def test_hello_and_message_credit(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        ws, hello = await connect(h, "notes")
        assert hello["protocol"] == 1 and hello["app"] == "notes"
        assert hello["send_window"] >= 1 and hello["max_credit"] >= 1
        for i in range(3):
            h.backend.inject(PHONE.device_id, "notes/in", b"m%d" % i)
        await nothing(ws)  # no credit, nothing sent
        await ws.send_json({"type": "credit", "messages": 2})
        m0, m1 = await recv(ws), await recv(ws)
        assert [base64.b64decode(m["data"]) for m in (m0, m1)] == [b"m0", b"m1"]
        assert m0["type"] == "message" and m0["peer"] == PHONE.device_id
        assert m0["peer_name"] == "phone" and m0["channel"] == "notes/in"
        await nothing(ws)  # credit used up
        await ws.send_json({"type": "confirm", "ref": 7, "ids": [m0["id"], "bogus"]})
        assert await recv(ws) == {"type": "confirmed", "ref": 7, "confirmed": [m0["id"]],
                                  "unknown": ["bogus"]}
        await ws.send_json({"type": "credit", "messages": 5})
        m2 = await recv(ws)
        assert base64.b64decode(m2["data"]) == b"m2"
        await ws.close()

    run(tmp_path, body)


def test_unconfirmed_messages_go_to_the_next_connection(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.backend.inject(PHONE.device_id, "notes/in", b"x")
        a, _ = await connect(h, "notes")
        await a.send_json({"type": "credit", "messages": 1})
        got = await recv(a)
        b, _ = await connect(h, "notes")
        await b.send_json({"type": "credit", "messages": 1})
        await nothing(b)  # leased to a
        await a.close()
        again = await recv(b)
        assert again["id"] == got["id"]
        await b.send_json({"type": "confirm", "ids": [again["id"]]})
        assert (await recv(b))["confirmed"] == [got["id"]]
        await b.close()

    run(tmp_path, body)


def test_a_connection_holding_an_item_holds_back_its_channel(tmp_path: Path) -> None:
    """The holder reads ahead on its channel; another connection gets only other channels
    until the holder goes, then the held item first (docs/local-api.md §5.4)."""

    async def body(h: Harness) -> None:
        h.backend.inject(PHONE.device_id, "notes/x", b"x1")
        a, _ = await connect(h, "notes")
        await a.send_json({"type": "credit", "messages": 1})
        assert base64.b64decode((await recv(a))["data"]) == b"x1"
        h.backend.inject(PHONE.device_id, "notes/x", b"x2")
        h.backend.inject(PHONE.device_id, "notes/y", b"y1")
        b, _ = await connect(h, "notes")
        await b.send_json({"type": "credit", "messages": 5})
        assert base64.b64decode((await recv(b))["data"]) == b"y1"
        await nothing(b)  # x2 waits behind x1, leased to a
        await a.send_json({"type": "credit", "messages": 1})
        assert base64.b64decode((await recv(a))["data"]) == b"x2"  # the holder reads ahead
        await a.close()
        got = [base64.b64decode((await recv(b))["data"]) for _ in range(2)]
        assert got == [b"x1", b"x2"]
        await b.close()

    run(tmp_path, body)


def test_send_answers_in_order_after_commit(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.backend.commit_delay = 0.02
        ws, _hello = await connect(h, "notes")
        for i in range(5):
            await ws.send_json({"type": "send", "ref": f"r{i}", "key": f"k{i}", "peer": "phone",
                                "channel": "notes/out", "text": f"t{i}"})
        answers = [await recv(ws) for _ in range(5)]
        assert [a["ref"] for a in answers] == [f"r{i}" for i in range(5)]
        assert all(a["type"] == "accepted" and not a["replayed"] for a in answers)
        ch = h.backend.channels[(PHONE.device_id, "notes/out")]
        assert ch.sent() == [b"t%d" % i for i in range(5)]
        await ws.send_json({"type": "send", "ref": "again", "key": "k0", "peer": "phone",
                            "channel": "notes/out", "text": "t0"})
        a = await recv(ws)
        assert a["replayed"] and a["id"] == answers[0]["id"]
        # errors carry the ref and the connection goes on
        await ws.send_json({"type": "send", "ref": "bad", "key": "k9", "peer": "phone",
                            "channel": "sched/x", "text": "t"})
        err = await recv(ws)
        assert err == {"type": "error", "ref": "bad", "code": "SCOPE_CHANNEL",
                       "message": err["message"], "fatal": False}
        await ws.send_json({"type": "close", "ref": "c", "peer": "phone",
                            "channel": "notes/out"})
        assert await recv(ws) == {"type": "ok", "ref": "c"}
        await ws.send_json({"type": "send", "ref": "late", "key": "k10", "peer": "phone",
                            "channel": "notes/out", "text": "t"})
        assert (await recv(ws))["code"] == "CHANNEL_CLOSED"
        await ws.send_json({"type": "ping", "ref": 1})
        assert await recv(ws) == {"type": "pong", "ref": 1}
        await ws.close()

    run(tmp_path, body)


def test_send_window_is_enforced(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        h.backend.commit_delay = 1.0  # every send stays in flight
        ws, hello = await connect(h, "notes")
        window = hello["send_window"]
        for i in range(window + 1):
            await ws.send_json({"type": "send", "key": f"k{i}", "peer": "phone",
                                "channel": "notes/out", "text": "x"})
        err = await recv(ws)
        assert err["code"] == "SEND_WINDOW_EXCEEDED" and err["fatal"]
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE and msg.data == 1008

    run(tmp_path, body)


def test_events_are_scoped(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        ws, _ = await connect(h, "notes")
        await ws.send_json({"type": "events", "ref": "e", "on": True})
        assert await recv(ws) == {"type": "ok", "ref": "e"}
        h.backend.emit(LinkEvent(LAPTOP.device_id, "state", {"state": "offline"}))
        h.backend.emit(LinkEvent(PHONE.device_id, "state",
                                 {"state": "connected", "generation": 3, "path": "direct",
                                  "reason": "network change"}))
        ev = await recv(ws)
        assert ev == {"type": "event", "kind": "state", "peer": PHONE.device_id,
                      "peer_name": "phone", "state": "connected", "generation": 3,
                      "path": "direct", "reason": "network change"}
        await nothing(ws)
        await ws.send_json({"type": "events", "on": False})
        assert await recv(ws) == {"type": "ok"}
        h.backend.emit(LinkEvent(PHONE.device_id, "state", {"state": "offline"}))
        await nothing(ws)
        await ws.close()

    run(tmp_path, body)


def test_peer_half_close_and_bad_frames(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        ws, _ = await connect(h, "sched")
        ch = h.backend.channel(LAPTOP.device_id, "sched/log")
        ch.inject(b"line")
        ch.peer_close()
        await ws.send_json({"type": "credit", "messages": 10})
        m, c = await recv(ws), await recv(ws)
        assert (m["type"], c["type"]) == ("message", "closed")
        assert c["channel"] == "sched/log" and "data" not in c
        for bad, code in [("not json", "BAD_REQUEST"), ("[1]", "BAD_REQUEST"),
                          ('{"type": "nope"}', "BAD_REQUEST"),
                          ('{"type": "credit", "messages": 0}', "BAD_REQUEST"),
                          ('{"type": "credit", "messages": 99999}', "BAD_REQUEST"),
                          ('{"type": "ping", "ids": []}', "BAD_REQUEST"),
                          ('{"type": "ping", "ref": true}', "BAD_REQUEST"),
                          ('{"type": "confirm", "ids": "x"}', "BAD_REQUEST"),
                          ('{"type": "send", "peer": "phone", "channel": "sched/a"}',
                           "BAD_REQUEST")]:
            await ws.send_str(bad)
            err = await recv(ws)
            assert (err["type"], err["code"], err["fatal"]) == ("error", code, False), bad
        await ws.send_bytes(b"\x00")
        err = await recv(ws)
        assert err["fatal"] and err["code"] == "BAD_REQUEST"
        assert (await ws.receive(timeout=5)).type == WSMsgType.CLOSE

    run(tmp_path, body)


def test_echo_round_trip(tmp_path: Path) -> None:
    """What the client examples do: send, get the peer's echo, confirm."""

    async def body(h: Harness) -> None:
        ws, _ = await connect(h, "notes")
        await ws.send_json({"type": "credit", "messages": 4})
        await ws.send_json({"type": "send", "ref": 1, "key": "a", "peer": PHONE.device_id,
                            "channel": "notes/echo", "data": base64.b64encode(b"\xff").decode()})
        frames = [await recv(ws), await recv(ws)]
        kinds = sorted(f["type"] for f in frames)
        assert kinds == ["accepted", "message"]
        msg = next(f for f in frames if f["type"] == "message")
        assert base64.b64decode(msg["data"]) == b"\xff"
        await ws.close()

    run(tmp_path, body, echo=True)
