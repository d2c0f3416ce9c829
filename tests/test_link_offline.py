"""The link's ``offline`` status while it keeps trying (p4-04 SES-8, §11.3), in one process
without Tor: a dial-only link whose every dial fails reports ``reconnecting`` first, then
``offline`` once the signaller has given up for now (``machine.give_up``), and keeps dialing
with backoff in the background."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.tor import TorDriver
from p4ref.link import Link, LinkConfig, LinkEvent
from p4ref.link._signalling import OFFLINE_AFTER_FAILURES


class UnreachableTor:
    """Every onion is unreachable (the device has no network, or the peer's tor is down)."""

    def __init__(self) -> None:
        self.dials = 0

    async def add_client_auth(self, *args: Any) -> None:
        return None

    async def open_stream(self, *args: Any, **kw: Any) -> Any:
        self.dials += 1
        raise P4Error(ErrorCode.TIMEOUT, "onion unreachable")


def test_offline_while_signalling_has_given_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        seed = os.urandom(32)
        peer = bytes(SigningKey(os.urandom(32)).verify_key)
        tor = UnreachableTor()
        seen: list[str] = []

        def on_event(ev: LinkEvent) -> None:
            if ev.kind == "status" and ev.status is not None:
                seen.append(ev.status)
        link = Link(identity_seed=seed, peer_pub=peer, pair_root_key=os.urandom(32),
                    home=tmp_path, tor=cast(TorDriver, tor), on_event=on_event,
                    config=LinkConfig(dial_only=True, host_addresses=("127.0.0.1",),
                                      synchronous="NORMAL"))
        await link.start()
        try:
            assert link.status == "reconnecting"
            for _ in range(300):
                if link.status == "offline":
                    break
                await asyncio.sleep(0.05)
            assert link.status == "offline", (seen, tor.dials)
            assert seen[:2] == ["reconnecting", "offline"]
            assert link.signaller.failures >= OFFLINE_AFTER_FAILURES
            assert link.machine.status == "offline"
            dials = tor.dials
            for _ in range(300):  # still trying, with backoff
                if tor.dials > dials:
                    break
                await asyncio.sleep(0.05)
            assert tor.dials > dials and link.status == "offline"
        finally:
            await link.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
