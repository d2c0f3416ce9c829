"""Framing codec cost per MiB, against a hand-written ``struct`` baseline measured in the same run.

    python bench/bench_framing.py [--rounds N]

Target (issue 2): encode+decode of 16 KiB DATA frames costs ≤ 3 ms of CPU per MiB, so framing is
never the bottleneck next to aiortc's ≈ 50–60 ms/MiB (research/webrtc-lab.md).  Small control
frames are reported too; their cost is dominated by CBOR validation, per frame not per byte.
Machines here are noisy, so the numbers that matter are the ratios to the baseline.
"""

from __future__ import annotations

import argparse
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


def per_mib(fn: Callable[[], object], frame_len: int, rounds: int) -> float:
    """CPU milliseconds per MiB of frames, best of ``rounds`` repetitions."""
    frames = max(1, MIB // frame_len)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(frames):
            fn()
        best = min(best, time.process_time() - t0)
    return best * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)

    data = Frame(FrameType.DATA, 0, bytes(range(256)) * (MAX_BODY_SIZE // 256)
                 + bytes(MAX_BODY_SIZE % 256))
    ping = Frame(FrameType.PING, 0, ping_body(b"\x00" * 8))
    dc = Path.DATACHANNEL
    print(f"{'workload':<34}{'ms/MiB':>10}{'× baseline':>12}")
    for label, frame in (("16 KiB DATA", data), ("PING (16 B, CBOR body)", ping)):
        size = 5 + len(frame.body)
        wire = encode_frame(frame, dc)
        base = per_mib(lambda f=frame, w=wire: (baseline_encode(f.type, f.flags, f.body),
                                                baseline_decode(w)), size, args.rounds)
        ours = per_mib(lambda f=frame, w=wire: (encode_frame(f, dc), decode_frame(w, dc)),
                       size, args.rounds)
        interp = per_mib(lambda f=frame: interpreted_round(f), size, max(2, args.rounds // 2))
        print(f"{label + ': struct baseline':<34}{base:>10.3f}{1.0:>12.1f}")
        print(f"{label + ': p4ref (compiled hdr)':<34}{ours:>10.3f}{ours / base:>12.1f}")
        print(f"{label + ': construct interpreted':<34}{interp:>10.3f}{interp / base:>12.1f}")
    print("target: p4ref 16 KiB DATA ≤ 3 ms/MiB (aiortc itself ≈ 50–60 ms/MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
