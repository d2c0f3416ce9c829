"""Framing codec cost per MiB, against a hand-written ``struct`` baseline measured in the same run.

    python bench/bench_framing.py [--rounds N] [--quick]

Target (issue 2): encode+decode of 16 KiB DATA frames costs ≤ 3 ms of CPU per MiB, so framing is
never the bottleneck next to aiortc's ≈ 50–60 ms/MiB (research/webrtc-lab.md).  Small control
frames are reported too; their cost is dominated by CBOR validation, per frame not per byte.
Machines here are noisy, so the numbers that matter are the ratios to the baseline.
``--quick`` (or ``P4_BENCH_QUICK=1``): one round over 1/16 MiB, for CI.
"""

from __future__ import annotations

import argparse
import functools
import os
import struct
import time
from collections.abc import Callable

from construct import Int8ub, Int16ub, Struct

from p4ref.framing import (
    FRAME,
    MAX_BODY_SIZE,
    Frame,
    FrameType,
    Path,
    decode_frame,
    encode_frame,
    ping_body,
)

MIB = 1 << 20
_HDR = struct.Struct(">BBBH")
_INTERPRETED_HEADER = Struct("version" / Int8ub, "type" / Int8ub, "flags" / Int8ub,
                             "length" / Int16ub)


def baseline_encode(ftype: int, flags: int, body: bytes) -> bytes:
    return _HDR.pack(1, ftype, flags, len(body)) + body


def baseline_decode(data: bytes) -> tuple[int, int, bytes]:
    version, ftype, flags, length = _HDR.unpack_from(data)
    if version != 1 or len(data) != 5 + length:
        raise ValueError("bad frame")
    return ftype, flags, data[5:]


def interpreted_round(frame: Frame) -> None:
    wire = FRAME.build({"version": 1, "type": frame.type, "flags": frame.flags,
                        "body": frame.body})
    h = _INTERPRETED_HEADER.parse(wire[:5])
    _ = wire[5 : 5 + h.length]


def _baseline_round(frame: Frame, wire: bytes) -> None:
    baseline_encode(frame.type, frame.flags, frame.body)
    baseline_decode(wire)


def _p4_round(frame: Frame, wire: bytes) -> None:
    encode_frame(frame, Path.DATACHANNEL)
    decode_frame(wire, Path.DATACHANNEL)


def per_mib(fn: Callable[[], object], frame_len: int, rounds: int, share: float = 1.0) -> float:
    """CPU milliseconds per MiB of frames, best of ``rounds`` repetitions over ``share`` MiB."""
    frames = max(1, int(MIB * share) // frame_len)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(frames):
            fn()
        best = min(best, time.process_time() - t0)
    return best * 1000.0 * MIB / (frames * frame_len)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="a few iterations only, for CI (also: P4_BENCH_QUICK=1)")
    args = ap.parse_args(argv)
    rounds, share = (1, 1 / 16) if args.quick else (args.rounds, 1.0)

    data = Frame(FrameType.DATA, 0, bytes(range(256)) * (MAX_BODY_SIZE // 256)
                 + bytes(MAX_BODY_SIZE % 256))
    ping = Frame(FrameType.PING, 0, ping_body(b"\x00" * 8))
    dc = Path.DATACHANNEL
    print(f"{'workload':<34}{'ms/MiB':>10}{'× baseline':>12}")
    for label, frame in (("16 KiB DATA", data), ("PING (16 B, CBOR body)", ping)):
        size = 5 + len(frame.body)
        wire = encode_frame(frame, dc)
        base = per_mib(functools.partial(_baseline_round, frame, wire), size, rounds, share)
        ours = per_mib(functools.partial(_p4_round, frame, wire), size, rounds, share)
        interp = per_mib(functools.partial(interpreted_round, frame), size,
                         1 if args.quick else max(2, rounds // 2), share)
        print(f"{label + ': struct baseline':<34}{base:>10.3f}{1.0:>12.1f}")
        print(f"{label + ': p4ref (struct hdr)':<34}{ours:>10.3f}{ours / base:>12.1f}")
        print(f"{label + ': construct interpreted':<34}{interp:>10.3f}{interp / base:>12.1f}")
    print("target: p4ref 16 KiB DATA ≤ 3 ms/MiB (aiortc itself ≈ 50–60 ms/MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
