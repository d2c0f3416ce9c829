"""A deliberately misbehaving adapter for the harness's tests.

``python -m conformance.selftest.fake_adapter [--ok-unknown] [--crash-on DATA] [--sleep-on DATA]
[--bad-hello] [--wrong-key]`` serves the reference ops plus the toy layer
(:mod:`conformance.selftest.toy`) and then breaks the contract as asked:

- ``--ok-unknown``: answers ``ok`` to an unknown op (must be flagged NON-COMPLIANT);
- ``--crash-on DATA``: exits with status 3 on ``toy.echo`` whose ``input.data`` is DATA;
- ``--sleep-on DATA``: never answers that request (the runner must time out);
- ``--bad-hello``: the first line is not a hello;
- ``--wrong-key``: the toy machine of role ``b`` derives a different key (two-party must fail).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any

from p4ref.adapter import Adapter, serve

from . import toy

Json = dict[str, Any]


class FakeAdapter(Adapter):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.register_hook(toy)
        self.b_handles: set[str] = set()

    def hello(self) -> Json:
        h = super().hello()
        h["impl"] = "fake"
        return h

    def handle(self, request: Any) -> Json:
        a = self.args
        op = request.get("op") if isinstance(request, dict) else None
        data = (request.get("input") or {}).get("data") if isinstance(request, dict) else None
        if op == "toy.echo" and a.crash_on is not None and data == a.crash_on:
            print("fake adapter: crashing as asked", file=sys.stderr, flush=True)
            os._exit(3)
        if op == "toy.echo" and a.sleep_on is not None and data == a.sleep_on:
            time.sleep(3600)
        if a.ok_unknown and op not in self.ops:
            return {"id": request.get("id"), "status": "ok", "value": {}}
        resp = super().handle(request)
        if a.wrong_key and resp.get("status") == "ok":
            if op == "machine.new" and request["params"].get("role") == "b":
                self.b_handles.add(resp["value"]["handle"])
            if op == "machine.step" and request["params"]["handle"] in self.b_handles:
                for item in resp["value"]["out"]:
                    if item.get("event") == "DONE":
                        item["key"] = "00" * 32
        return resp


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ok-unknown", action="store_true")
    p.add_argument("--crash-on")
    p.add_argument("--sleep-on")
    p.add_argument("--bad-hello", action="store_true")
    p.add_argument("--wrong-key", action="store_true")
    args = p.parse_args()
    proto = open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.stderr
    if args.bad_hello:
        proto.write("hello there\n")
        proto.flush()
    with contextlib.suppress(BrokenPipeError):
        serve(FakeAdapter(args), sys.stdin.buffer, proto)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
