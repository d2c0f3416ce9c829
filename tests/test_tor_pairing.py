"""Pairing over the private Tor network (issue 3 + issue 4): two profiles on disk, two tor
clients, the inviter's pairing onion derived from the invitation alone."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.pair_tor import accept_invitation, create_invitation
from p4ref.io.store import Profile
from p4ref.io.tor import TorConfig, TorDriver
from p4ref.pairing import parse_code
from p4ref.pairing._invite import EVEN_WORDS


async def _drivers(tornet: Any) -> tuple[TorDriver, TorDriver]:
    da = TorDriver(TorConfig.testnet(tornet.clients[0]))
    db = TorDriver(TorConfig.testnet(tornet.clients[1]))
    await da.start()
    await db.start()
    return da, db


def _profiles(tmp_path: Path) -> tuple[Profile, Profile]:
    return (Profile.init(tmp_path / "laptop", os.urandom),
            Profile.init(tmp_path / "phone", os.urandom))


@pytest.mark.parametrize("uri", [False, True], ids=["short-code", "uri"])
def test_two_profiles_pair_over_tor(tornet: Any, tmp_path: Path, uri: bool) -> None:
    laptop, phone = _profiles(tmp_path)

    async def scenario() -> None:
        da, db = await _drivers(tornet)
        try:
            invite = await create_invitation(da, laptop.identity.seed, uri=uri)
            assert invite.text.startswith("p4:pair?") == uri
            mine, theirs = await asyncio.gather(
                invite.wait(timeout=120),
                accept_invitation(db, phone.identity.seed, invite.text, timeout=120),
            )
            assert mine.pair_root_key == theirs.pair_root_key
            assert mine.sas == theirs.sas
            assert mine.peer_identity == phone.identity.public_key
            assert theirs.peer_identity == laptop.identity.public_key
            laptop.add_peer("phone", mine.peer_identity, mine.pair_root_key, mine.sas)
            phone.add_peer("laptop", theirs.peer_identity, theirs.pair_root_key, theirs.sas)
        finally:
            await da.close()
            await db.close()

    asyncio.run(asyncio.wait_for(scenario(), 240))
    # What landed on disk survives a reopen and agrees on both sides.
    a = Profile.open(laptop.path).peer("phone")
    b = Profile.open(phone.path).peer("laptop")
    assert a.pair_root_key == b.pair_root_key and a.sas == b.sas
    assert a.identity_key == phone.identity.public_key
    assert b.identity_key == laptop.identity.public_key


def test_wrong_code_fails_closed_on_both_sides_over_tor(tornet: Any, tmp_path: Path) -> None:
    laptop, phone = _profiles(tmp_path)

    async def scenario() -> tuple[BaseException | Any, BaseException | Any]:
        da, db = await _drivers(tornet)
        try:
            invite = await create_invitation(da, laptop.identity.seed)
            code = parse_code(invite.text)
            other = next(w for w in EVEN_WORDS if w != code.words[1])
            typo = f"{code.nameplate}-{code.words[0]}-{other}"  # same nameplate, wrong word
            return tuple(await asyncio.gather(  # type: ignore[return-value]
                invite.wait(timeout=120),
                accept_invitation(db, phone.identity.seed, typo, timeout=120),
                return_exceptions=True,
            ))
        finally:
            await da.close()
            await db.close()

    inviter, accepter = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert isinstance(inviter, P4Error) and isinstance(accepter, P4Error)
    assert ErrorCode.PAIR_CONFIRM_FAILED in (inviter.code, accepter.code)
    # Nothing was stored on either side.
    assert Profile.open(laptop.path).peers() == []
    assert Profile.open(phone.path).peers() == []
