"""The link's send queue (p4ref.link._link DC_QUEUE_LIMIT): SES_MSG frames wait in the link
while aiortc has DC_QUEUE_LIMIT queued; SES_ACK / PING / PONG / SES_SIGNAL overtake them;
SES_END keeps its place; everything held goes out, in order, as aiortc drains."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

from p4ref.framing import FrameType
from p4ref.io.tor import TorDriver
from p4ref.link import Link
from p4ref.link._link import DC_QUEUE_LIMIT, _Gen


class FakeGen:
    state = "open"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.backlog = 0

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    async def below(self, limit: int) -> None:
        while self.backlog >= limit:
            await asyncio.sleep(0.005)


def frame(t: FrameType, body: bytes) -> bytes:
    """A frame's bytes as far as the link looks: the type is the second header byte."""
    return bytes([1, int(t), 0]) + len(body).to_bytes(2, "big") + body


def test_control_frames_overtake_held_messages(tmp_path: Path) -> None:
    async def scenario() -> None:
        link = Link(identity_seed=os.urandom(32), peer_pub=os.urandom(32),
                    pair_root_key=os.urandom(32), home=tmp_path, tor=cast(TorDriver, None))
        g = FakeGen()
        rec = _Gen(1, True, 0)
        link._gens[1] = rec
        gen: Any = g
        m1 = frame(FrameType.SES_MSG, b"\x00" * 20 + b"one")
        link._send_frame(rec, gen, m1)
        assert g.sent == [m1]
        g.backlog = DC_QUEUE_LIMIT  # aiortc is full: messages are held
        m2 = frame(FrameType.SES_MSG, b"\x00" * 20 + b"two")
        end = frame(FrameType.SES_END, b"end")
        ping = frame(FrameType.PING, b"12345678")
        ack = frame(FrameType.SES_ACK, b"\x00" * 8)
        for f in (m2, end, ping, ack):
            link._send_frame(rec, gen, f)
        assert g.sent == [m1, ping, ack]  # control overtakes; SES_END stays behind m2
        assert list(rec.held) == [m2, end] and rec.pump is not None
        g.backlog = 0
        for _ in range(100):
            if not rec.held:
                break
            await asyncio.sleep(0.01)
        assert g.sent == [m1, ping, ack, m2, end] and rec.held_bytes == 0
        assert link.bytes_sent == sum(map(len, g.sent))

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_the_timer_is_rearmed_only_for_an_earlier_deadline(tmp_path: Path) -> None:
    """``Link._arm_timer``: a deadline that moves later (liveness, with every frame) keeps the
    armed timer (it fires early, harmlessly, and re-arms); an earlier one re-arms at once."""
    class Machine:
        def __init__(self) -> None:
            self.deadline: int | None = None
            self.fired: list[int] = []

        def get_timer(self) -> int | None:
            return self.deadline

        def handle_timer(self, now: int) -> None:
            self.fired.append(now)

    async def scenario() -> None:
        link = Link(identity_seed=os.urandom(32), peer_pub=os.urandom(32),
                    pair_root_key=os.urandom(32), home=tmp_path, tor=cast(TorDriver, None))
        m = Machine()
        link.machine = cast(Any, m)
        link._started = True
        now = link._now()
        m.deadline = now + 50
        link._arm_timer()
        first = link._timer
        assert first is not None and link._timer_at == now + 50
        m.deadline = now + 5_000  # later: kept
        link._arm_timer()
        assert link._timer is first and link._timer_at == now + 50
        m.deadline = now + 20  # earlier: re-armed
        link._arm_timer()
        assert link._timer is not first and link._timer_at == now + 20
        assert first.cancelled()
        m.deadline = now + 5_000
        link._process = lambda: link._arm_timer()  # type: ignore[method-assign]
        await asyncio.sleep(0.1)  # fired early (at +20): nothing due in the machine, re-armed
        assert m.fired and link._timer_at == now + 5_000
        if link._timer is not None:
            link._timer.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))
