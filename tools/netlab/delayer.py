"""Delay every packet of an NFQUEUE queue by a fixed time (this kernel has no ``tc netem``).

Run inside a lab namespace by :meth:`tools.netlab.lab.Lab.impair`; the iptables rules that feed
the queue use ``--queue-bypass``, so if this process dies packets pass undelayed, never dropped.
Verdicts are deferred: a packet is accepted ``--delay-ms`` after it arrived, in arrival order.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import select
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, required=True)
    args = ap.parse_args(argv)
    from netfilterqueue import NetfilterQueue

    delay = args.delay_ms / 1000.0
    pending: list[tuple[float, int, Any]] = []
    seq = itertools.count()

    def on_packet(pkt: Any) -> None:
        heapq.heappush(pending, (time.monotonic() + delay, next(seq), pkt))

    nfq = NetfilterQueue()
    nfq.bind(args.queue, on_packet, max_len=8192)
    fd = nfq.get_fd()
    try:
        while True:
            timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
            ready, _, _ = select.select([fd], [], [], timeout)
            if ready:
                nfq.run(block=False)
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                heapq.heappop(pending)[2].accept()
    except KeyboardInterrupt:
        return 0
    finally:
        nfq.unbind()


if __name__ == "__main__":
    raise SystemExit(main())
