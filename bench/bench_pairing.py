"""Cost of one pairing, against an Ed25519 sign+verify baseline measured in the same run.

    python bench/bench_pairing.py [--rounds N] [--quick]

Measured, all in-process and with the pure machines (no Tor, no sockets):

- ``pairing``: one complete pairing, both roles (inviter and accepter), from ``start`` to both
  ``Paired`` events — 4 SPAKE2 scalar multiplications per side, key schedule, 2 Ed25519 signs and
  2 verifies, 2 AEAD seals/opens, the frame codec and the state machines;
- ``pake``: SPAKE2 alone for both sides (w, both elements, both K, transcript, key schedule);
- ``w``: the password-to-scalar derivation alone;
- baseline ``ed25519``: one Ed25519 sign plus one verify of a 64-byte message (libsodium).

Machines here are noisy, so the numbers that matter are the ratios to the baseline.
``--quick`` (or ``P4_BENCH_QUICK=1``): 5 rounds, for CI.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from collections.abc import Callable

from nacl.signing import SigningKey

from p4ref.pairing import Invitation, Paired, PairingMachine, Role
from p4ref.pairing import _crypto as C

CODE = "7-guitarist-revenge"
SEED_A, SEED_I = hashlib.sha256(b"accepter").digest(), hashlib.sha256(b"inviter").digest()


def one_pairing(n: int) -> None:
    inv = Invitation.from_code(CODE, expires_at=10**12)
    # each role draws its 64-byte scalar, then a 32-byte identity nonce
    a = PairingMachine(Role.ACCEPTER, inv, SEED_A,
                       [hashlib.sha512(b"x%d" % n).digest(), hashlib.sha256(b"x%d" % n).digest()])
    i = PairingMachine(Role.INVITER, inv, SEED_I,
                       [hashlib.sha512(b"y%d" % n).digest(), hashlib.sha256(b"y%d" % n).digest()])
    i.start(0)
    data = a.start(0)
    while data:
        i.receive_data(data, 1)
        back = i.data_to_send()
        if not back:
            break
        a.receive_data(back, 1)
        data = a.data_to_send()
    ea, ei = a.next_event(), i.next_event()
    assert isinstance(ea, Paired) and isinstance(ei, Paired)
    assert ea.pair_root_key == ei.pair_root_key


def pake_only(n: int) -> None:
    w = C.derive_w(CODE.encode(), "7")
    x = C.draw_scalar(hashlib.sha512(b"x%d" % n).digest())
    y = C.draw_scalar(hashlib.sha512(b"y%d" % n).digest())
    pa = C.spake2_element(C.Role.ACCEPTER, w, x)
    pb = C.spake2_element(C.Role.INVITER, w, y)
    ka = C.spake2_shared(C.Role.ACCEPTER, w, x, pb)
    kb = C.spake2_shared(C.Role.INVITER, w, y, pa)
    ida, idb = C.spake2_ids("7")
    assert C.key_schedule(C.transcript(ida, idb, pa, pb, ka, w)).ke == C.key_schedule(
        C.transcript(ida, idb, pa, pb, kb, w)
    ).ke


def derive_w(n: int) -> None:
    C.derive_w(CODE.encode(), "7")


_SK = SigningKey(SEED_A)
_VK = _SK.verify_key
_MSG = bytes(64)


def ed25519(n: int) -> None:
    _VK.verify(_SK.sign(_MSG))


def measure(fn: Callable[[int], None], rounds: int) -> float:
    """Median seconds per call over ``rounds`` calls, after a warm-up."""
    for n in range(min(20, rounds)):
        fn(n)
    samples = []
    for n in range(rounds):
        t0 = time.perf_counter()
        fn(n)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="a few iterations only, for CI (also: P4_BENCH_QUICK=1)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = 5
    base = measure(ed25519, args.rounds * 3)
    rows = [
        ("ed25519 sign+verify (baseline)", base),
        ("w = HKDF + reduce", measure(derive_w, args.rounds * 3)),
        ("SPAKE2, both sides", measure(pake_only, args.rounds)),
        ("full pairing, both roles", measure(one_pairing, args.rounds)),
    ]
    print(f"{'operation':34} {'median':>10} {'× baseline':>11}")
    for name, sec in rows:
        print(f"{name:34} {sec * 1e3:8.3f} ms {sec / base:10.1f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
