"""``p4 demo``: everything P⁴ can do so far, end to end, on this machine only.

1. start the project's private Tor network on loopback (real ``tor`` processes);
2. create two device profiles on disk, "laptop" and "phone";
3. pair them with a short code over Tor: the laptop publishes the pairing onion derived from the
   code's nameplate, the phone dials it; both store the pair root key and show the same SAS;
4. each device publishes its per-pair, per-epoch onion (client auth for the other only); the phone
   dials the laptop's and they exchange a signed OFFER/ANSWER carrying real WebRTC SDPs;
5. the signed SDPs open a direct aiortc data channel (loopback), which carries a message;
6. everything is torn down, and the timings are printed.

Nothing leaves the machine: tor listens on 127.0.0.1 only, and WebRTC host candidates are pinned
to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from .errors import P4Error
from .io.pair_tor import accept_invitation, create_invitation
from .io.replay_store import REPLAY_FILE, ReplayStore
from .io.signal import PairService, dial_and_offer, peer_replay
from .io.store import Profile
from .io.tor import TorConfig, TorDriver
from .io.tornet import TorNet
from .io.webrtc import DirectChannel, accept_offer, complete_offer, host_addresses, make_offer
from .rendezvous import OfferReceived

__all__ = ["main"]


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


async def _scenario(net: TorNet, home: Path, timings: dict[str, float]) -> None:
    laptop = Profile.init(home / "laptop", os.urandom)
    phone = Profile.init(home / "phone", os.urandom)
    _say("profiles", f"laptop {laptop.identity.device_id}")
    _say("profiles", f"phone  {phone.identity.device_id}")

    tor_laptop = TorDriver(TorConfig.testnet(net.clients[0]))
    tor_phone = TorDriver(TorConfig.testnet(net.clients[1]))
    await tor_laptop.start()
    await tor_phone.start()
    try:
        # --- pairing over Tor with a short code (p4-02) ------------------------------------
        # the inviter stores the pair before its last message leaves (p4-02 PAIR-63)
        invite = await create_invitation(
            tor_laptop, laptop.identity.seed,
            on_paired=lambda r: laptop.add_peer("phone", r.peer_identity, r.pair_root_key, r.sas),
        )
        timings["publish pairing onion"] = invite.publish_seconds
        _say("pair", f"laptop: `p4 pair invite` shows the code  {invite.text}")
        _say("pair", f"        (pairing onion {invite.onion[:16]}… derived from the nameplate)")
        _say("pair", f"phone:  `p4 pair accept {invite.text}`")
        t0 = time.monotonic()
        mine, theirs = await asyncio.gather(
            invite.wait(timeout=120),
            accept_invitation(tor_phone, phone.identity.seed, invite.text, timeout=120),
        )
        timings["pairing over Tor (dial + PAKE + confirm)"] = time.monotonic() - t0
        phone.add_peer("laptop", theirs.peer_identity, theirs.pair_root_key, theirs.sas)
        same = mine.pair_root_key == theirs.pair_root_key
        _say("pair", f"paired: SAS laptop {mine.sas} / phone {theirs.sas}; "
                     f"same pair root key: {same}; stored in both profiles")

        # --- signed signalling through the pair's derived onions (p4-03) -------------------
        peer_of_laptop = laptop.peer("phone")
        service = PairService(tor_laptop, laptop.identity.seed, laptop.identity.public_key,
                              peer_of_laptop.identity_key, peer_of_laptop.pair_root_key,
                              store=ReplayStore(laptop.path / REPLAY_FILE))
        t0 = time.monotonic()
        addresses = await service.start()
        timings["publish derived rendezvous onion"] = time.monotonic() - t0
        _say("rendezvous", f"laptop publishes {addresses[0][:16]}… (client auth: phone only)")

        channels: dict[str, DirectChannel] = {}

        async def offer() -> tuple[str, bytes]:
            channels["phone"] = d = await make_offer()
            return d.pc.localDescription.sdp, d.local_fingerprint

        async def answer(ev: OfferReceived) -> tuple[str, bytes]:
            channels["laptop"] = d = await accept_offer(ev.sdp, ev.fingerprint)
            return d.pc.localDescription.sdp, d.local_fingerprint

        peer_of_phone = phone.peer("laptop")
        t0 = time.monotonic()
        try:
            got_laptop, got_phone = await asyncio.gather(
                service.answer_next(answer, timeout=120),
                dial_and_offer(tor_phone, phone.identity.seed, phone.identity.public_key,
                               peer_of_phone.identity_key, peer_of_phone.pair_root_key, offer,
                               timeout=120,
                               replay=peer_replay(phone.identity.public_key,
                                                  peer_of_phone.identity_key,
                                                  ReplayStore(phone.path / REPLAY_FILE))),
            )
        finally:
            await service.close()
        timings["signed HELLO+OFFER/ANSWER via onions"] = time.monotonic() - t0
        _say("rendezvous", f"phone dialed it: HELLO proofs, OFFER gen {got_laptop.generation}, "
                           f"ANSWER — signed, epoch {got_phone.epoch}")
        fp = got_laptop.peer_fingerprint.hex()[:16]
        _say("rendezvous", f"phone's signed DTLS fingerprint {fp}…")

        # --- the direct path ---------------------------------------------------------------
        t0 = time.monotonic()
        await complete_offer(channels["phone"], got_phone.peer_sdp, got_phone.peer_fingerprint)
        await asyncio.gather(channels["phone"].wait_open(), channels["laptop"].wait_open())
        timings["direct data channel open"] = time.monotonic() - t0
        t0 = time.monotonic()
        channels["phone"].send(b"hello from the phone, directly")
        msg = await channels["laptop"].recv()
        channels["laptop"].send(b"ack")
        await channels["phone"].recv()
        timings["direct round trip"] = time.monotonic() - t0
        _say("direct", f"laptop received {msg.decode()!r} over WebRTC; Tor carried only the "
                       "signalling")
        await asyncio.gather(*(c.close() for c in channels.values()))
    finally:
        await tor_laptop.close()
        await tor_phone.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="p4 demo", description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the profiles' directory")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="p4-demo-"))
    timings: dict[str, float] = {}
    net = TorNet()
    t_all = time.monotonic()
    try:
        _say("tor", "starting the private Tor network on 127.0.0.1 (authorities, relays, clients)")
        t0 = time.monotonic()
        net.start(timeout=180)
        timings["private Tor network up"] = time.monotonic() - t0
        _say("tor", f"up: {len(net.clients)} clients bootstrapped")
        with host_addresses(["127.0.0.1"]):
            asyncio.run(_scenario(net, home, timings))
    except P4Error as exc:
        print(f"p4 demo: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        net.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)
    _say("done", "private Tor network stopped; profiles " + ("kept in " + str(home)
                                                              if args.keep else "removed"))
    print("\ntimings")
    for name, seconds in timings.items():
        print(f"  {name:<44} {seconds * 1000:9.1f} ms")
    print(f"  {'whole demo':<44} {(time.monotonic() - t_all) * 1000:9.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
