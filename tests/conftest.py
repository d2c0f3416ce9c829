"""Shared pytest fixtures.

``tornet`` (session scope): the private Tor network of ``p4ref.io.tornet``, started once per test
session and stopped at its end. Tests that use it are marked ``tor`` (added automatically below,
so ``-m "not tor"`` deselects them). If tor is missing the fixture fails with install steps —
it never skips. ``P4_TORNET_KEEP=1`` keeps the network's directory (logs, torrcs) for debugging.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``tornet`` fixture with ``tor``."""
    for item in items:
        if "tornet" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.tor)
