"""Idempotency keys of the local API's sends, kept across restarts (``<home>/api/sends.db``).

The link's channels have no idempotency keys of their own, but every channel has a durable
byte offset (:attr:`p4ref.link.Channel.offset`: what this side has written, committed with the
outbox rows). So a send is recorded here *before* it is written, with the channel offset it will
start at and its bytes (``pending``); after the write is durable the record becomes ``done`` and
its bytes are dropped. After a crash, a pending record is resolved against the channel's offset
before the channel carries anything else (:meth:`LinkChannel.recover
<p4ref.api.linkbackend.LinkChannel.recover>`): fully written → done; partly written → the rest
is written (hence the bytes); not written → the record is dropped and the app's retry sends it.
Sends on one channel are serialised, so a message occupies exactly ``[start, start + length)``.

Records are kept :data:`KEEP_SECONDS` (a week): a retry within that time is recognised.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["KEEP_SECONDS", "SendRecord", "SendStore"]

KEEP_SECONDS = 7 * 24 * 3600
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    key TEXT PRIMARY KEY,      -- "<app>/<idempotency key>"
    peer TEXT NOT NULL,        -- device ID
    channel TEXT NOT NULL,
    digest BLOB NOT NULL,      -- SHA-256 of the message
    start INTEGER NOT NULL,    -- channel offset of its first byte
    length INTEGER NOT NULL,
    data BLOB,                 -- the message while pending, NULL once done
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sends_pending ON sends (peer, channel) WHERE data IS NOT NULL;
"""


@dataclass(frozen=True, slots=True)
class SendRecord:
    key: str
    peer: str
    channel: str
    digest: bytes
    start: int
    length: int
    data: bytes | None  # None once done

    @property
    def done(self) -> bool:
        return self.data is None


class SendStore:
    """The records, on SQLite (WAL, ``synchronous=FULL``), used from one asyncio loop; every
    call runs in one worker thread, in call order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="p4-api-sends")
        self._db: sqlite3.Connection | None = None

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        db.execute("DELETE FROM sends WHERE data IS NULL AND created < ?",
                   (time.time() - KEEP_SECONDS,))
        self._db = db

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        await self._call(self._open)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._call(close)
        self._pool.shutdown(wait=True)

    def _x(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._db is not None, "SendStore.open() first"
        return list(self._db.execute(sql, args))

    @staticmethod
    def _record(row: tuple[Any, ...]) -> SendRecord:
        key, peer, channel, digest, start, length, data = row
        return SendRecord(key, peer, channel, bytes(digest), int(start), int(length),
                          None if data is None else bytes(data))

    async def get(self, key: str) -> SendRecord | None:
        rows = await self._call(self._x, "SELECT key, peer, channel, digest, start, length, data"
                                " FROM sends WHERE key = ?", (key,))
        return self._record(rows[0]) if rows else None

    async def pending(self, peer: str, channel: str) -> list[SendRecord]:
        rows = await self._call(self._x, "SELECT key, peer, channel, digest, start, length, data"
                                " FROM sends WHERE peer = ? AND channel = ? AND data IS NOT NULL"
                                " ORDER BY start", (peer, channel))
        return [self._record(r) for r in rows]

    async def put_pending(self, key: str, peer: str, channel: str, digest: bytes, start: int,
                          data: bytes) -> None:
        await self._call(self._x, "INSERT INTO sends VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, peer, channel, digest, start, len(data), data, time.time()))

    async def mark_done(self, key: str) -> None:
        await self._call(self._x, "UPDATE sends SET data = NULL WHERE key = ?", (key,))

    async def delete(self, key: str) -> None:
        await self._call(self._x, "DELETE FROM sends WHERE key = ?", (key,))
