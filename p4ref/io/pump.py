"""Run a sans-I/O P⁴ machine over an asyncio byte stream (STYLE.md "Machines").

The machines (pairing, rendezvous) take bytes and time in and give bytes, events and a timer
deadline out.  :func:`pump` is the whole I/O shell around one of them: it hands every event to
``on_event`` (plain or async) and then flushes what the machine wants sent, waits for either
incoming bytes or the machine's next deadline, feeds whichever came first, and so on until
``on_event`` returns ``True`` (done) or the machine has nothing left to wait for.  Time is the
caller's ``clock`` in integer milliseconds, so the same loop runs against wall time in a peer and
a fake clock in a test.

Two hooks serve a listener that runs one machine per incoming stream (the pairing inviter,
:mod:`p4ref.io.pair_tor`): ``before_feed`` is awaited with the bytes in hand before each
``receive_data`` (it may hold them back, or raise to drop the stream), and ``end_on_eof`` returns
quietly when the peer closed the stream and the machine, told so, has nothing more to say and
nothing but its own expiry to wait for — or when the machine says (``stream_closed``) that it
ignores the rest of this stream, e.g. after the peer's ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..errors import ErrorCode, P4Error

__all__ = ["Machine", "pump", "unix_ms"]

READ_CHUNK = 16384


class Machine(Protocol):
    """The h11-style surface every P⁴ machine offers."""

    def receive_data(self, data: bytes, now: int) -> None: ...
    def data_to_send(self) -> bytes: ...
    def next_event(self) -> object | None: ...
    def get_timer(self) -> int | None: ...
    def handle_timer(self, now: int) -> None: ...


def unix_ms() -> int:
    return time.time_ns() // 1_000_000


async def pump(
    machine: Machine,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    on_event: Callable[[object], bool | Awaitable[bool]],
    *,
    clock: Callable[[], int] = unix_ms,
    timeout: float = 120.0,
    before_feed: Callable[[], Awaitable[None]] | None = None,
    end_on_eof: bool = False,
) -> None:
    """Drive ``machine`` until ``on_event`` says done; raise ``P4Error(TIMEOUT)`` after ``timeout``.

    EOF is passed to the machine as an empty ``receive_data`` (h11 convention), so it can turn a
    lost stream into its own failure event; a machine that raises keeps its error (the caller
    decides what it means).
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    eof = False

    async def flush() -> None:
        out = machine.data_to_send()
        if out:
            writer.write(out)
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()

    async def feed(step: Callable[[int], None], now: int) -> None:
        """A machine that raises has queued its ERROR frame first (STYLE.md): send it."""
        try:
            step(now)
        except BaseException:
            await flush()
            raise

    while True:
        # Events first, then what the same step queued: an application may have to act on an
        # event before that output leaves (p4-02 [PAIR-63]: store the pair, then send PAIR_DONE;
        # if storing fails, the handler discards the output and raises).
        while (event := machine.next_event()) is not None:
            try:
                done = on_event(event)
                if inspect.isawaitable(done):
                    done = await done  # e.g. answering an offer needs aiortc's createAnswer
            except BaseException:
                await flush()  # the ERROR frame the machine queued with a failure event
                raise
            if done:
                await flush()  # e.g. a final DONE or ANSWER frame
                return
        await flush()  # what the event handlers queued (an OFFER after PeerAuthenticated …)
        deadline = machine.get_timer()
        if end_on_eof and (eof or getattr(machine, "stream_closed", False)):
            return
        if eof and deadline is None:
            raise P4Error(ErrorCode.PROTOCOL_VIOLATION, "stream closed before the exchange ended")
        wait = give_up - loop.time()
        if deadline is not None:
            wait = min(wait, max(0.0, (deadline - clock()) / 1000.0))
        if wait <= 0 and loop.time() >= give_up:
            raise P4Error(ErrorCode.TIMEOUT, f"no result within {timeout:.0f} s")
        if eof:
            await asyncio.sleep(wait)
            await feed(machine.handle_timer, clock())
            continue
        try:
            chunk = await asyncio.wait_for(reader.read(READ_CHUNK), max(wait, 0.0))
        except TimeoutError:
            if deadline is not None and clock() >= deadline:
                await feed(machine.handle_timer, clock())
            continue
        except (ConnectionError, OSError):
            chunk = b""
        if not chunk:
            eof = True
        if before_feed is not None:
            await before_feed()
        await feed(functools.partial(machine.receive_data, chunk), clock())
