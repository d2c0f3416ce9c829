"""Frames over an asyncio byte stream (the ``tor`` path of p4-01 §3): the thin I/O shell the pairing
and rendezvous machines run in.

The stream knows nothing of any layer: it writes encoded frames, and reassembles incoming ones
with :class:`~p4ref.framing.FrameReader` (which discards ignorable frames).  Timeouts and EOF become
:class:`~p4ref.errors.P4Error` with ``TIMEOUT`` / ``PROTOCOL_VIOLATION`` so a driver has one error
type to handle.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..errors import ErrorCode, P4Error
from ..framing import Frame, FrameReader, FrameType, Path, encode_frame, error_body

__all__ = ["FramedStream"]

#: Largest read from the socket at a time; keeps the reader's buffer bounded (p4-01 §5.2).
READ_CHUNK = 16384


class FramedStream:
    """One frame stream over ``(reader, writer)``; ``bytes_in``/``bytes_out`` count the wire."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path = Path.TOR
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = FrameReader(path)
        self.path = path
        self.bytes_in = 0
        self.bytes_out = 0

    async def send_bytes(self, wire: bytes) -> None:
        """Write already-encoded frames (what a sans-I/O machine returns) and drain."""
        if not wire:
            return
        self._writer.write(wire)
        self.bytes_out += len(wire)
        await self._writer.drain()

    async def send(self, frame: Frame) -> None:
        await self.send_bytes(encode_frame(frame, self.path))

    async def send_error(self, code: ErrorCode, reason: str) -> None:
        """Best effort: tell the peer why we stop; a dead stream is not an error here."""
        with contextlib.suppress(OSError, ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(
                self.send(Frame(FrameType.ERROR, 0, error_body(code, reason))), 5.0
            )

    async def recv(self, timeout: float | None) -> Frame:
        """The next frame, or :class:`P4Error` (``TIMEOUT``, EOF, or the frame's decode error)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            frame = self._frames.next_frame()
            if frame is not None:
                return frame
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                chunk = await asyncio.wait_for(self._reader.read(READ_CHUNK), remaining)
            except TimeoutError:
                raise P4Error(ErrorCode.TIMEOUT, f"no frame within {timeout} s") from None
            except (ConnectionError, OSError) as exc:
                raise P4Error(ErrorCode.PROTOCOL_VIOLATION, f"stream broke: {exc}") from None
            if not chunk:
                raise P4Error(ErrorCode.PROTOCOL_VIOLATION, "peer closed the stream")
            self.bytes_in += len(chunk)
            self._frames.feed(chunk)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)
