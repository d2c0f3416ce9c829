"""A deliberately misbehaving adapter for the harness's tests; it serves only the toy layer.

``python -m conformance.selftest.fake_adapter [--ok-unknown] [--crash-on DATA] [--sleep-on DATA]
[--bad-hello] [--wrong-key]`` serves the toy layer (:mod:`conformance.selftest.toy`) and then
breaks the contract as asked:

- ``--ok-unknown``: answers ``ok`` to an unknown op (must be flagged NON-COMPLIANT);
- ``--crash-on DATA``: exits with status 3 on ``toy.echo`` whose ``input.data`` is DATA;
- ``--sleep-on DATA``: never answers that request (the runner must time out);
- ``--bad-hello``: the first line is not a hello;
- ``--wrong-key``: the toy machine of role ``b`` derives a different key (two-party must fail).

It is also a complete, minimal adapter written against conformance/README.md alone: a hello, a
dispatch table, machine handles, and every failure turned into a response.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from typing import IO, Any

from . import toy

Json = dict[str, Any]


class FakeAdapter:
    def __init__(self, *, ok_unknown: bool = False, crash_on: str | None = None,
                 sleep_on: str | None = None, wrong_key: bool = False) -> None:
        self.ok_unknown, self.crash_on, self.sleep_on = ok_unknown, crash_on, sleep_on
        self.wrong_key = wrong_key
        self.ops = {**toy.vectors_ops(), "machine.new": self._new, "machine.step": self._step,
                    "machine.drop": self._drop}
        self._handles: dict[str, tuple[str, toy.Toy]] = {}
        self._ids = itertools.count(1)

    def _new(self, params: Json, inp: Json) -> Json:
        if params.get("machine") != toy.MACHINE:
            raise LookupError("unsupported machine")
        role = str(params.get("role"))
        m = toy.new(role, dict(params.get("config") or {}),
                    [bytes.fromhex(x) for x in inp.get("rng", [])])
        handle = f"t{next(self._ids)}"
        self._handles[handle] = (role, m)
        return {"handle": handle}

    def _step(self, params: Json, inp: Json) -> Json:
        role, m = self._handles[str(params["handle"])]
        value = toy.step(m, int(inp["now"]), dict(inp["in"]))
        if self.wrong_key and role == "b":
            for item in value["out"]:
                if item.get("event") == "DONE":
                    item["key"] = "00" * 32
        return value

    def _drop(self, params: Json, inp: Json) -> Json:
        self._handles.pop(str(params.get("handle")), None)
        return {}

    def hello(self) -> Json:
        return {"p4adapter": 1, "impl": "fake", "version": "0", "ops": sorted(self.ops),
                "machines": [toy.MACHINE]}

    def handle(self, request: Json) -> Json:
        rid = request.get("id")
        op = request.get("op")
        params, inp = request.get("params") or {}, request.get("input") or {}
        if op == "toy.echo" and self.crash_on is not None and inp.get("data") == self.crash_on:
            print("fake adapter: crashing as asked", file=sys.stderr, flush=True)
            os._exit(3)
        if op == "toy.echo" and self.sleep_on is not None and inp.get("data") == self.sleep_on:
            time.sleep(3600)
        fn = self.ops.get(op) if isinstance(op, str) else None
        if fn is None:
            return {"id": rid, "status": "ok", "value": {}} if self.ok_unknown \
                else {"id": rid, "status": "unsupported"}
        try:
            return {"id": rid, "status": "ok", "value": fn(params, inp)}
        except toy.ToyError as exc:
            return {"id": rid, "status": "error", "error": exc.code, "message": str(exc)}
        except LookupError:
            return {"id": rid, "status": "unsupported"}
        except Exception as exc:
            return {"id": rid, "status": "error", "error": "INTERNAL_ERROR", "message": repr(exc)}


def serve(adapter: FakeAdapter, stdin: IO[bytes], out: IO[str]) -> None:
    def write(obj: Json) -> None:
        out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        out.flush()

    write(adapter.hello())
    for raw in stdin:
        if raw.strip():
            write(adapter.handle(json.loads(raw)))


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
    adapter = FakeAdapter(ok_unknown=args.ok_unknown, crash_on=args.crash_on,
                          sleep_on=args.sleep_on, wrong_key=args.wrong_key)
    with contextlib.suppress(BrokenPipeError):
        serve(adapter, sys.stdin.buffer, proto)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
