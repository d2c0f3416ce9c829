"""Cost of one signed rendezvous OFFER, against raw Ed25519 measured in the same run.

    python bench/bench_rendezvous.py [--seconds S] [--sdp-bytes N] [--quick]

One round = sign + encode (frame bytes) + decode (framing + schema) + verify, for an OFFER with
a realistic SDP (default 2 KiB, a typical aiortc offer with host/srflx candidates).  The
baseline is pynacl ``sign`` + ``verify`` over the same number of bytes: Ed25519 is the floor,
so the ratio shows what CBOR, schema checks and framing add.  Signalling happens once per
generation, so anything above a few hundred rounds per second is far from mattering; the
ratio is what to watch for regressions. ``--quick`` (or ``P4_BENCH_QUICK=1``): 0.2 s each, for CI.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from nacl.signing import SigningKey

from p4ref.framing import Path, decode_frame, encode_frame
from p4ref.rendezvous import Offer, decode_message, encode_message, sign_message, verify_message

SEED_A = bytes(range(32))
SEED_B = bytes(range(1, 33))


def _fields(cls: Any) -> set[str]:
    return {f.name for f in fields(cls)}


def _rate(fn: Callable[[], None], seconds: float) -> tuple[float, int]:
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--sdp-bytes", type=int, default=2048)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="a few iterations only, for CI (also: P4_BENCH_QUICK=1)")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 0.2

    key, peer = SigningKey(SEED_A), SigningKey(SEED_B)
    me, them = bytes(key.verify_key), bytes(peer.verify_key)
    sdp = ("a=candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host\r\n" * 64)[: args.sdp_bytes]
    # stream_nonce: rendezvous draft revision 2 binds every message to the recipient's HELLO
    # nonce on its stream [RDV-51]; built this way the bench runs before and after that change
    extra = {"stream_nonce": b"\x03" * 16} if "stream_nonce" in _fields(Offer) else {}
    offer = Offer(20416, b"\x01" * 16, 7, sdp, b"\x02" * 32, 12345, **extra)

    def p4_round() -> None:
        wire = encode_frame(encode_message(sign_message(offer, key, them)), Path.TOR)
        msg = decode_message(decode_frame(wire, Path.TOR))
        verify_message(msg, me, them)

    sample = encode_frame(encode_message(sign_message(offer, key, them)), Path.TOR)
    payload = bytes(len(sample))
    vk = key.verify_key

    def raw_round() -> None:
        sm = key.sign(payload)
        vk.verify(sm)

    raw_rate, raw_n = _rate(raw_round, args.seconds)
    p4_rate, p4_n = _rate(p4_round, args.seconds)
    print(f"OFFER frame: {len(sample)} bytes (SDP {len(sdp)} bytes)")
    print(f"raw Ed25519 sign+verify:           {raw_rate:10.0f} /s  ({raw_n} rounds)")
    print(f"P4 sign+encode+decode+verify OFFER: {p4_rate:10.0f} /s  ({p4_n} rounds)")
    print(f"ratio (P4 / raw): {p4_rate / raw_rate:.2f}  "
          f"overhead per OFFER: {(1 / p4_rate - 1 / raw_rate) * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
