"""A fuzzer of our own for the local API's WebSocket stream (docs/local-api.md §5).

Seeded, bounded: it sends ``P4_API_WS_FUZZ_FRAMES`` frames (default 2500) over as many
connections as it takes, of three kinds — well-formed frames of every type with hostile field
values (wrong types, huge and negative numbers, other apps' channels and peers, ids it has seen,
other apps' ids), mutated JSON text (truncated, bit-flipped, deeply nested, non-JSON constants),
and now and then a binary frame — to the app "notes" (peer phone, prefix ``notes/``) while the
echoing FakeBackend turns its accepted sends into incoming messages. The oracle, after every frame:

- every server frame is a JSON object of a documented type; an ``error`` has a registered code
  and never INTERNAL_ERROR;
- the server closes a connection only after a fatal error frame (1008) or for size (1009), never
  with 1011; a ``ping`` is always answered, so the server is alive;
- the app only ever receives items of its own channels, and the backend never opens or confirms a
  channel outside ``notes/`` with the phone; app "sched"'s waiting messages stay untouched;
- the app's subscription never holds more than its quota (plus one message per channel being
  read, as documented).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from p4ref.api.errors import ApiErrorCode
from p4ref.api.server import CTX
from p4ref.api.testing import LAPTOP, PHONE, Harness

pytestmark = pytest.mark.timeout(300)

FRAMES = int(os.environ.get("P4_API_WS_FUZZ_FRAMES", "2500"))
SEED = int(os.environ.get("P4_API_WS_FUZZ_SEED", "1304"))
SERVER_TYPES = {"hello", "message", "closed", "accepted", "confirmed", "ok", "pong", "event",
                "error"}
CODES = {c.value for c in ApiErrorCode} - {"INTERNAL_ERROR"}
SECRET = "c2NoZWQtb25seQ=="  # base64 of b"sched-only"
TYPES = ["credit", "send", "confirm", "close", "events", "ping"]


class Fuzzer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids: list[str] = ["0" * 32, "m1", "out-1"]

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        pool: list[Any] = [
            None, True, False, 0, 1, -1, 2**31, 2**53, 2**64, -(2**63), 1.5, 1e308, "",
            "phone", "laptop", PHONE.device_id, LAPTOP.device_id, "notes/", "notes/a",
            "notes/" + "x" * 195, "notes/" + "x" * 300, "sched/secret", "sched/", "/",
            "notes/\u00e9",
            "notes/a b", "\x00", "\ud800", "p4tok_x", "AAEC", "!!", "=" * 8, "A" * 5000,
            r.choice(self.ids), r.choice(TYPES),
        ]
        if depth < 3 and r.random() < 0.15:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        if depth < 3 and r.random() < 0.1:
            return {r.choice(["type", "ref", "x", "ids"]): self.value(depth + 1)}
        return r.choice(pool)

    def good(self, kind: str) -> dict[str, Any]:
        r = self.rng
        f: dict[str, Any] = {"type": kind}
        if r.random() < 0.7:
            f["ref"] = r.choice([r.randrange(1000), f"r{r.randrange(1000)}"])
        if kind == "credit":
            f["messages"] = r.choice([1, 2, 5, 50])
        elif kind == "send":
            f.update(key=f"k{r.randrange(60)}", peer=r.choice(["phone", PHONE.device_id]),
                     channel=f"notes/{r.randrange(4)}")
            f["text" if r.random() < 0.5 else "data"] = r.choice(["hi", "AAEC", "aGVsbG8="])
        elif kind == "confirm":
            f["ids"] = r.sample(self.ids, min(len(self.ids), r.randrange(1, 4)))
        elif kind == "close":
            # mostly channels the sends do not use, so that sends keep being accepted
            f.update(peer="phone", channel=f"notes/{r.randrange(3 if r.random() < 0.05 else 4, 8)}")
        elif kind == "events":
            f["on"] = r.random() < 0.7
        return f

    def frame(self) -> str | bytes:
        r = self.rng
        roll = r.random()
        if roll < 0.6:
            f = self.good(r.choice(TYPES))
            if r.random() < 0.5:  # one hostile field
                f[r.choice([*f.keys(), "ids", "messages", "peer", "channel", "key", "extra"])] = (
                    self.value())
            return json.dumps(f)
        if roll < 0.8:
            f = {"type": r.choice([*TYPES, "nope", 1, None])}
            for _ in range(r.randrange(4)):
                f[r.choice(["ref", "key", "peer", "channel", "data", "text", "ids", "on",
                            "messages", "zz"])] = self.value()
            return json.dumps(f)
        text = json.dumps(self.good(r.choice(TYPES)))
        choice = r.randrange(7)
        if choice == 0:
            return text[: r.randrange(len(text))]
        if choice == 1:
            b = bytearray(text.encode())
            b[r.randrange(len(b))] ^= 1 << r.randrange(7)
            return b.decode("utf-8", "replace")
        if choice == 2:
            return "[" * 50_000 + "]" * 50_000
        if choice == 3:
            return r.choice(["NaN", "Infinity", '{"type": "credit", "messages": NaN}',
                             '{"type": "ping", "ref": 1e999}', "null", '"ping"', "{}"])
        if choice == 4:
            return text.replace('"type"', '"type", "type"', 1)
        if choice == 5 and r.random() < 0.1:
            return bytes(r.randrange(256) for _ in range(r.randrange(1, 40)))
        return " " * r.randrange(3) + text + "\n"


async def read_until_pong(ws: ClientWebSocketResponse, stats: dict[str, int],
                          fz: Fuzzer, ref: str) -> str | None:
    """Read what the server sent up to the pong answering ``ref``; returns the fatal error code
    (the connection is then closed) or None."""
    fatal: str | None = None
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            code = ws.close_code
            assert code in (1008, 1009), code
            assert code == 1009 or fatal is not None, "closed without a fatal error frame"
            stats["closed"] += 1
            return fatal or "SIZE"
        assert msg.type == WSMsgType.TEXT, msg
        obj = json.loads(msg.data)
        assert isinstance(obj, dict) and obj.get("type") in SERVER_TYPES, obj
        stats[obj["type"]] = stats.get(obj["type"], 0) + 1
        if obj["type"] == "error":
            assert obj["code"] in CODES, obj
            stats[obj["code"]] = stats.get(obj["code"], 0) + 1
            if obj["fatal"]:
                fatal = obj["code"]
        if obj["type"] in ("message", "closed"):
            assert obj["channel"].startswith("notes/") and obj["peer"] == PHONE.device_id
            assert SECRET not in msg.data
            fz.ids.append(obj["id"])
        if obj["type"] == "accepted":
            fz.ids.append(obj["id"])
        if obj == {"type": "pong", "ref": ref}:
            return None


def test_ws_fuzz(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    fz = Fuzzer(rng)
    stats: dict[str, int] = {"frames": 0, "connections": 0, "closed": 0}

    async def main() -> None:
        async with Harness(tmp_path / "home", echo=True, quota_messages=8) as h:
            for peer in (PHONE, LAPTOP):
                h.backend.inject(peer.device_id, "sched/secret", b"sched-only")
            ctx = h.client.app[CTX]
            ws: ClientWebSocketResponse | None = None
            while stats["frames"] < FRAMES:
                if ws is None or ws.closed:
                    ws = await h.client.ws_connect("/v1/stream", headers=h.auth("notes"))
                    assert (await ws.receive_json(timeout=5))["type"] == "hello"
                    stats["connections"] += 1
                frame = fz.frame()
                stats["frames"] += 1
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
                # alive? (and a point where the frame's direct answers have been read)
                ref = f"sync-{stats['frames']}"
                with contextlib.suppress(ConnectionResetError):
                    await ws.send_json({"type": "ping", "ref": ref})
                if await read_until_pong(ws, stats, fz, ref) is not None:
                    await ws.close()
                    continue
                # scope and quota invariants
                for (peer, name) in h.backend.channels:
                    assert name == "sched/secret" or (
                        name.startswith("notes/") and peer == PHONE.device_id), (peer, name)
                for peer, name, _ in h.backend.confirmed:
                    assert name.startswith("notes/") and peer == PHONE.device_id
                sub = ctx._subs.get("notes")
                if sub is not None:
                    # the quota, overshot by at most one message per channel being read
                    n, _ = sub.pending()
                    assert n <= 8 + sum(1 for _, name in h.backend.channels
                                        if name.startswith("notes/"))
            if ws is not None:
                await ws.close()
            secret = [c for (p, n), c in h.backend.channels.items() if n == "sched/secret"]
            assert all(c.unconfirmed() == 1 for c in secret)

    asyncio.run(main())
    print(f"\nws fuzz: {stats}")
    assert stats["frames"] == FRAMES and stats.get("error", 0) > 0 and stats.get("message", 0) > 0
