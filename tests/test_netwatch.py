"""Network-change detection (p4ref/io/netwatch.py), in a lab namespace: a move is seen within the
debounce period + 200 ms by netlink, a change in another namespace is not seen, the polling
fallback sees the same move, and the tor nudge is DisableNetwork 1 then 0."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest

from p4ref.io.netwatch import NetWatch, NetworkChanged, _usable, current_addresses, nudge_tor

DEBOUNCE = 0.3


def test_usable_addresses_exclude_loopback_and_link_local() -> None:
    assert _usable("192.168.1.2") and _usable("10.64.0.2") and _usable("2001:db8::1")
    assert not _usable("127.0.0.1") and not _usable("::1")
    assert not _usable("fe80::1%eth0") and not _usable("169.254.3.4") and not _usable("junk")


def test_current_addresses_runs_here() -> None:
    assert all(_usable(a) for a in current_addresses())


def test_nudge_sets_disable_network_off_and_on() -> None:
    calls: list[tuple[str, str]] = []

    class FakeController:
        def set_conf(self, key: str, value: str) -> None:
            calls.append((key, value))

    asyncio.run(nudge_tor(FakeController()))
    assert calls == [("DisableNetwork", "1"), ("DisableNetwork", "0")]


def test_debounce_merges_a_burst_into_one_change() -> None:
    """Poll backend with a scripted address source: three changes 100 ms apart are one event."""
    script = iter([{"10.0.0.1"}, {"10.0.0.2"}, {"10.0.0.3"}, {"10.0.0.4"}])
    state = {"addrs": {"10.0.0.1"}}

    async def go() -> list[NetworkChanged]:
        async with NetWatch(
            backend="poll", poll_interval=0.05, debounce=0.25, get_addresses=lambda: state["addrs"]
        ) as w:
            next(script)
            for addrs in script:
                state["addrs"] = addrs
                await asyncio.sleep(0.1)
            first = await w.next(2)
            with pytest.raises(TimeoutError):
                await w.next(0.5)
            return [first]

    (change,) = asyncio.run(go())
    assert change.reason == "poll" and change.addresses == frozenset({"10.0.0.4"})
    assert change.lost == {"10.0.0.1"} and change.gained == {"10.0.0.4"}


@pytest.mark.skipif(sys.platform != "linux", reason="netlink and the lab are Linux-only")
def test_netlink_sees_a_move_and_nothing_from_another_namespace(netlab: Any) -> None:
    async def go() -> tuple[NetworkChanged, float, float]:
        async with NetWatch(netns=netlab.ns("a"), debounce=DEBOUNCE) as w:
            start = time.monotonic()
            await asyncio.to_thread(netlab.move, "b", "cell")  # another device: not ours
            with pytest.raises(TimeoutError):
                await w.next(DEBOUNCE + 0.5)
            start = time.monotonic()
            await asyncio.to_thread(netlab.move, "a", "cell")
            moved = time.monotonic()
            change = await w.next(5)
            return change, moved - start, change.at - moved

    try:
        change, move_s, latency = asyncio.run(go())
    finally:
        netlab.move("a", "wlan")
        netlab.move("b", "wlan")
    print(
        f"\nnetlink: {change.reason} {sorted(change.addresses)}; move took {move_s * 1000:.0f} ms, "
        f"event {latency * 1000:.0f} ms after it (debounce {DEBOUNCE * 1000:.0f} ms)"
    )
    assert change.addresses == frozenset({netlab.homes["a"].cell_ip})
    assert change.lost == {netlab.homes["a"].wlan_ip} and change.gained == change.addresses
    assert "address" in change.reason and "route" in change.reason
    assert latency <= DEBOUNCE + 0.2


@pytest.mark.skipif(sys.platform != "linux", reason="netlink and the lab are Linux-only")
def test_make_before_break_is_two_changes_gained_then_lost(netlab: Any) -> None:
    """With both interfaces up for a while, the first change only gains an address (the old
    paths still work: no tor nudge), the second loses the old one (nudge now)."""
    h = netlab.homes["a"]

    async def go() -> tuple[NetworkChanged, NetworkChanged]:
        async with NetWatch(netns=netlab.ns("a"), debounce=DEBOUNCE) as w:
            await asyncio.to_thread(netlab.move, "a", "cell", make_before_break=True,
                                    overlap=DEBOUNCE + 0.7)
            return await w.next(5), await w.next(5)

    try:
        up, down = asyncio.run(go())
    finally:
        netlab.move("a", "wlan")
    assert up.gained == {h.cell_ip} and not up.lost, up
    assert up.addresses == {h.cell_ip, h.wlan_ip}
    assert down.lost == {h.wlan_ip} and not down.gained, down


@pytest.mark.skipif(sys.platform != "linux", reason="the lab is Linux-only")
def test_polling_fallback_sees_the_same_move(netlab: Any) -> None:
    interval = 0.5

    async def go() -> tuple[NetworkChanged, float]:
        async with NetWatch(
            backend="poll",
            poll_interval=interval,
            debounce=DEBOUNCE,
            get_addresses=lambda: netlab.run_in("a", current_addresses),
        ) as w:
            await asyncio.to_thread(netlab.move, "a", "cell", make_before_break=True)
            moved = time.monotonic()
            change = await w.next(5)
            return change, change.at - moved

    try:
        change, latency = asyncio.run(go())
    finally:
        netlab.move("a", "wlan")
    print(
        f"\npoll: {sorted(change.addresses)} {latency * 1000:.0f} ms after the move "
        f"(interval {interval * 1000:.0f} ms + debounce {DEBOUNCE * 1000:.0f} ms)"
    )
    assert change.reason == "poll"
    assert change.addresses == frozenset({netlab.homes["a"].cell_ip})
    assert change.lost == {netlab.homes["a"].wlan_ip}
    assert latency <= interval + DEBOUNCE + 0.3
