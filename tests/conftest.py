"""Shared pytest fixtures.

``tornet`` (session scope): the private Tor network of ``p4ref.io.tornet``, started once per test
session and stopped at its end. Tests that use it are marked ``tor`` (added automatically below,
so ``-m "not tor"`` deselects them). If tor is missing the fixture fails with install steps —
it never skips. ``P4_TORNET_KEEP=1`` keeps the network's directory (logs, torrcs) for debugging.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from p4ref.io.tornet import TorNet, TorNetError


@pytest.fixture(scope="session")
def tornet() -> Iterator[TorNet]:
    net = TorNet(keep_dir=os.environ.get("P4_TORNET_KEEP") == "1")
    try:
        net.start(timeout=180)
    except TorNetError as exc:
        pytest.fail(
            f"the private Tor network did not start: {exc}\n"
            "Install tor first (Debian/Ubuntu: `sudo apt-get install -y tor`; it provides `tor` "
            "and `tor-gencert`), or deselect these tests with `-m 'not tor'`.",
            pytrace=False,
        )
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture(scope="session")
def netlab() -> Iterator[Any]:
    """One NAT and mobility lab (tools/netlab) for the whole run. Needs root, ``ip netns`` and
    coturn: under ``CI=true`` a missing prerequisite fails the test; elsewhere it skips with
    the reason. Stale labs of dead runs are swept first."""
    from tools.netlab import Lab, LabError, check_prerequisites, sweep

    reason = check_prerequisites()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network lab prerequisite missing under CI=true: {reason}", pytrace=False)
        pytest.skip(f"network lab unavailable: {reason}")
    sweep()
    lab = Lab()
    try:
        lab.up()
    except LabError as exc:
        pytest.fail(f"the network lab did not build: {exc}", pytrace=False)
    try:
        yield lab
    finally:
        lab.down()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``tornet`` fixture with ``tor``."""
    for item in items:
        if "tornet" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.tor)
