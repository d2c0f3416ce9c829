"""A condition without a lock: :meth:`Changed.notify` is synchronous, so state changes made in
plain functions wake the coroutines waiting for a predicate over that state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Changed"]


class Changed:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` is true (re-checked after every notify); False if
        ``timeout`` seconds passed first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            try:
                if deadline is None:
                    await fut
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        return False
                    try:
                        await asyncio.wait_for(fut, left)
                    except TimeoutError:
                        return predicate()
            finally:
                self._waiters.discard(fut)
        return True
