"""Network-change detection: tells the session layer at once when the device's network changed.

P⁴ must not wait ~30 s for aiortc's consent freshness to notice a move (ARCHITECTURE decision 5b,
research/nat-lab.md "Network change"): the OS knows at once. This module turns the OS's signals
into one debounced value, :class:`NetworkChanged`, which feeds the session layer's
network-changed input.

Theory of operation
-------------------
- **Linux: netlink.** A pyroute2 ``AsyncIPRoute`` bound to the rtnetlink multicast groups for
  links, IPv4/IPv6 addresses and routes receives ``RTM_NEWLINK``/``RTM_NEWADDR``/
  ``RTM_DELADDR``/``RTM_NEWROUTE``/``RTM_DELROUTE`` as they happen. ``netns=`` watches another
  network namespace (the lab; a daemon in a container).
- **Elsewhere (macOS, Windows), or ``backend="poll"``:** the interface addresses (``ifaddr``,
  i.e. ``getifaddrs``/``GetAdaptersAddresses``) are read every ``poll_interval`` seconds and
  compared with the previous set. pyroute2 is imported only on the Linux path.
- **Debounce.** A move is a burst (link down, address gone, routes gone, new link, new address,
  new route). Every raw event restarts a quiet timer of ``debounce`` seconds (default 0.3); when
  it expires one :class:`NetworkChanged` is produced with the kinds of event seen (``reason``)
  and the addresses present *then*. So a consumer reacts once per move, ``debounce`` after the
  last step of it.
- **Addresses** exclude loopback and link-local ones (they are no path to a peer).
- **Nudging tor.** A tor that P⁴ launched keeps its dead OR connections until its own timeouts
  expire; :func:`nudge_tor` sets ``DisableNetwork`` to 1 and back to 0 so it drops them and
  builds new circuits at once (what Briar's Tor plugin does on a connectivity change). A system
  tor that P⁴ did not launch is not P⁴'s to reconfigure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "NetWatch",
    "NetworkChanged",
    "current_addresses",
    "nudge_tor",
    "nudge_tor_sync",
]

Backend = Literal["auto", "netlink", "poll"]


@dataclass(frozen=True, slots=True)
class NetworkChanged:
    """One debounced network change.

    ``reason``: the kinds of raw event in the burst, sorted and joined with ``+`` (``address``,
    ``route``, ``link`` from netlink; ``poll`` from the polling fallback). ``addresses``: the
    usable (non-loopback, non-link-local) interface addresses once the burst was over.
    ``at``: ``time.monotonic()`` when it was produced. ``lost`` / ``gained``: the usable
    addresses that went away / appeared since the previous report (or since the watch started).
    An address lost means a network the device was using is gone (a hard move, or the second
    half of a make-before-break one): its tor circuits are dead, so that is when a tor P⁴
    launched is nudged; a change that only gained addresses leaves the old paths working (the
    first half of a make-before-break move: re-signal over them, do not nudge)."""

    reason: str
    addresses: frozenset[str]
    at: float = 0.0
    lost: frozenset[str] = frozenset()
    gained: frozenset[str] = frozenset()


def _usable(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def current_addresses() -> frozenset[str]:
    """The usable addresses of this thread's network namespace, through ifaddr (any OS)."""
    import ifaddr

    out: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            if _usable(addr):
                out.add(addr)
    return frozenset(out)


_KINDS = {
    "RTM_NEWLINK": "link",
    "RTM_DELLINK": "link",
    "RTM_NEWADDR": "address",
    "RTM_DELADDR": "address",
    "RTM_NEWROUTE": "route",
    "RTM_DELROUTE": "route",
}


class NetWatch:
    """Watch for network changes; iterate (``async for change in watch``) or :meth:`run`.

    ``async with NetWatch() as watch:`` starts the backend and stops it on exit.

    - ``backend``: ``"auto"`` (netlink on Linux, polling elsewhere), ``"netlink"``, ``"poll"``.
    - ``debounce``: quiet period in seconds before a burst becomes one :class:`NetworkChanged`.
    - ``poll_interval``: seconds between address reads of the polling backend.
    - ``netns``: Linux only, the name of a network namespace to watch (netlink backend).
    - ``get_addresses``: how to read the current addresses (default :func:`current_addresses`;
      the netlink backend asks netlink instead when it is not given).
    """

    def __init__(
        self,
        *,
        backend: Backend = "auto",
        debounce: float = 0.3,
        poll_interval: float = 2.0,
        netns: str | None = None,
        get_addresses: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        if backend == "auto":
            backend = "netlink" if sys.platform == "linux" else "poll"
        if backend == "netlink" and sys.platform != "linux":
            raise ValueError("the netlink backend exists on Linux only; use backend='poll'")
        self.backend: Backend = backend
        self.debounce = debounce
        self.poll_interval = poll_interval
        self.netns = netns
        self._get_addresses = get_addresses
        self._queue: asyncio.Queue[NetworkChanged] = asyncio.Queue()
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._emit_tasks: set[asyncio.Task[None]] = set()
        self._closers: list[Callable[[], Any]] = []
        self._known: frozenset[str] | None = None  # the addresses of the previous report
        self.raw_events = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> NetWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.backend == "netlink":
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._netlink(ready))
            await ready
            self._known = await self._addresses()
        else:
            last = await self._addresses()
            self._known = last
            self._task = asyncio.create_task(self._poll(last))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [t for t in (self._task, *self._emit_tasks) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._task = None
        for closer in self._closers:
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()

    # ------------------------------------------------------------------ consumer API

    def __aiter__(self) -> AsyncIterator[NetworkChanged]:
        return self

    async def __anext__(self) -> NetworkChanged:
        return await self._queue.get()

    async def next(self, timeout: float | None = None) -> NetworkChanged:
        """The next change; ``TimeoutError`` after ``timeout`` seconds without one."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def run(self, callback: Callable[[NetworkChanged], Awaitable[None] | None]) -> None:
        """Call ``callback`` (sync or async) for every change until cancelled."""
        async for change in self:
            result = callback(change)
            if result is not None:
                await result

    # ------------------------------------------------------------------ debouncing

    def _kick(self, kind: str) -> None:
        self.raw_events += 1
        self._pending.add(kind)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.debounce, self._quiet)

    def _quiet(self) -> None:
        self._timer = None
        reason = "+".join(sorted(self._pending))
        self._pending.clear()
        t = asyncio.create_task(self._emit(reason))
        self._emit_tasks.add(t)
        t.add_done_callback(self._emit_tasks.discard)

    async def _emit(self, reason: str) -> None:
        addrs = await self._addresses()
        before = self._known if self._known is not None else addrs
        self._known = addrs
        self._queue.put_nowait(NetworkChanged(reason, addrs, time.monotonic(),
                                              before - addrs, addrs - before))

    async def _addresses(self) -> frozenset[str]:
        if self._get_addresses is not None:
            fn = self._get_addresses
            found = await asyncio.to_thread(lambda: list(fn()))
            return frozenset(a for a in found if _usable(a))
        if self.backend == "netlink" and sys.platform == "linux":
            return await self._netlink_addresses()
        return await asyncio.to_thread(current_addresses)

    # ------------------------------------------------------------------ backends

    async def _poll(self, last: frozenset[str]) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            now = await self._addresses()
            if now != last:
                last = now
                self._kick("poll")

    if sys.platform == "linux":

        async def _netlink(self, ready: asyncio.Future[None]) -> None:
            from pyroute2 import AsyncIPRoute
            from pyroute2.netlink.rtnl import (
                RTMGRP_IPV4_IFADDR,
                RTMGRP_IPV4_ROUTE,
                RTMGRP_IPV6_IFADDR,
                RTMGRP_IPV6_ROUTE,
                RTMGRP_LINK,
            )

            groups = (
                RTMGRP_LINK
                | RTMGRP_IPV4_IFADDR
                | RTMGRP_IPV6_IFADDR
                | RTMGRP_IPV4_ROUTE
                | RTMGRP_IPV6_ROUTE
            )
            kw: dict[str, Any] = {"netns": self.netns} if self.netns else {}
            try:
                ipr = AsyncIPRoute(**kw)
                self._closers.append(ipr.close)
                await ipr.bind(groups=groups)
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise
            ready.set_result(None)
            while True:
                async for msg in ipr.get():
                    kind = _KINDS.get(str(msg.get("event")))
                    if kind is not None:
                        self._kick(kind)

        async def _netlink_addresses(self) -> frozenset[str]:
            from pyroute2 import AsyncIPRoute

            kw: dict[str, Any] = {"netns": self.netns} if self.netns else {}
            async with AsyncIPRoute(**kw) as ipr:
                addrs = [a.get_attr("IFA_ADDRESS") async for a in await ipr.get_addr()]
            return frozenset(a for a in addrs if isinstance(a, str) and _usable(a))

    else:

        async def _netlink(self, ready: asyncio.Future[None]) -> None:
            raise RuntimeError("netlink exists on Linux only")

        async def _netlink_addresses(self) -> frozenset[str]:
            raise RuntimeError("netlink exists on Linux only")


# ---------------------------------------------------------------------- tor


def nudge_tor_sync(controller: Any) -> None:
    """Make a tor that P⁴ launched drop its connections now: ``SETCONF DisableNetwork=1``, then
    ``=0`` (``controller`` is an authenticated ``stem.control.Controller``)."""
    controller.set_conf("DisableNetwork", "1")
    controller.set_conf("DisableNetwork", "0")


async def nudge_tor(controller: Any) -> None:
    """:func:`nudge_tor_sync` in a worker thread (stem is synchronous)."""
    await asyncio.to_thread(nudge_tor_sync, controller)
