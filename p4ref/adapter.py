"""The reference conformance adapter: ``python -m p4ref.adapter`` (contract: conformance/README.md).

It speaks JSON Lines on stdin/stdout: first a hello line, then one response line per request
line.  The dispatch table is built from whatever layers exist:

- ``framing.decode``, ``framing.encode``, ``framing.stream``, ``cbor.decode``, ``cbor.encode`` from
  :mod:`p4ref.framing`;
- every op of ``p4ref.<layer>._adapter.vectors_ops()``;
- ``machine.new`` / ``machine.step`` / ``machine.drop`` for every ``p4ref.<layer>._adapter`` that
  declares ``MACHINE``, ``new`` and ``step``.

A layer that is missing or fails to import simply contributes no ops (the import error goes to
stderr), so a request for one of its ops answers ``unsupported``.  No input can crash the adapter:
a :class:`~p4ref.errors.P4Error` becomes ``{"status": "error", "error": <code name>}``, anything
else ``INTERNAL_ERROR`` with the traceback on stderr.

Self-test mutants (deliberately broken builds, ``conformance/mutants.py``) are enabled with the
environment variable ``P4_ADAPTER_MUTANT=<name>``; they wrap ops here and never touch p4ref code.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable
from typing import IO, Any, TextIO

import p4ref
from p4ref.errors import P4Error

__all__ = ["MUTANT_ENV", "Adapter", "OpFn", "Unsupported", "handle", "hello", "main"]

Json = dict[str, Any]
OpFn = Callable[[Json, Json], Any]

MUTANT_ENV = "P4_ADAPTER_MUTANT"
PROTOCOL_VERSION = 1


class Unsupported(Exception):
    """Raised by an op that exists but cannot serve this request (e.g. an unknown machine)."""


def _log(msg: str) -> None:
    print(f"p4ref.adapter: {msg}", file=sys.stderr, flush=True)


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a hex string")
    return bytes.fromhex(value)


def to_json(value: Any) -> Any:
    """Make a hook's return value JSON: bytes become lowercase hex, tuples lists."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


# --- framing ops ------------------------------------------------------------------------------


def framing_ops() -> dict[str, OpFn]:
    """The L0 codec ops, or nothing when :mod:`p4ref.framing` is absent."""
    try:
        from p4ref import framing as fr
    except ImportError as exc:
        _log(f"framing layer unavailable: {exc}")
        return {}

    def decode(params: Json, inp: Json) -> Json:
        f = fr.decode_frame(_hex(inp["frame"], "input.frame"), fr.Path(params["path"]))
        return {"type": f.type, "flags": f.flags, "body": f.body.hex(), "ignorable": f.ignorable}

    def encode(params: Json, inp: Json) -> Json:
        frame = fr.Frame(int(inp["type"]), int(inp.get("flags", 0)), _hex(inp["body"], "body"))
        return {"frame": fr.encode_frame(frame, fr.Path(params["path"])).hex()}

    def stream(params: Json, inp: Json) -> Json:
        reader = fr.FrameReader(fr.Path(params.get("path", "tor")))
        frames: list[Json] = []
        for chunk in inp["chunks"]:
            reader.feed(_hex(chunk, "input.chunks[]"))
            while (f := reader.next_frame()) is not None:
                frames.append({"type": f.type, "flags": f.flags, "body": f.body.hex()})
        return {"frames": frames, "pending": reader.pending}

    def cbor_decode(params: Json, inp: Json) -> Any:
        data = _hex(inp["cbor"], "input.cbor")
        value = fr.decode_cbor_map(data) if params.get("map") else fr.decode_cbor(data)
        return fr.cbor_json(value)  # the response value *is* the JSON form

    def cbor_encode(params: Json, inp: Json) -> Json:  # input.value: a CBOR JSON form
        return {"cbor": fr.encode_cbor(cbor_from_json(inp["value"])).hex()}

    return {
        "framing.decode": decode,
        "framing.encode": encode,
        "framing.stream": stream,
        "cbor.decode": cbor_decode,
        "cbor.encode": cbor_encode,
    }


def cbor_from_json(form: Any) -> Any:
    """Inverse of :func:`p4ref.framing.cbor_json` (the JSON form of conformance/README.md)."""
    if not isinstance(form, dict) or len(form) != 1:
        raise TypeError(f"not a CBOR JSON form: {form!r}")
    ((kind, v),) = form.items()
    if kind == "int":
        return int(v)
    if kind == "bytes":
        return _hex(v, "bytes")
    if kind == "text":
        return str(v)
    if kind == "bool":
        return bool(v)
    if kind == "null":
        return None
    if kind == "array":
        return [cbor_from_json(x) for x in v]
    if kind == "map":
        return {cbor_from_json(k): cbor_from_json(x) for k, x in v}
    raise TypeError(f"unknown CBOR JSON kind {kind!r}")


# --- layer hooks ------------------------------------------------------------------------------


def layer_hooks() -> list[Any]:
    """Import ``p4ref.<layer>._adapter`` for every subpackage that has one."""
    hooks: list[Any] = []
    for info in sorted(pkgutil.iter_modules(p4ref.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        name = f"p4ref.{info.name}._adapter"
        try:
            hooks.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                _log(f"{name} failed to import: {exc!r}")
        except Exception as exc:
            _log(f"{name} failed to import: {exc!r}")
    return hooks


class Adapter:
    """The dispatch table and the live machine handles of one adapter process."""

    def __init__(self, mutant: str | None = None) -> None:
        self.ops: dict[str, OpFn] = framing_ops()
        self.machines: dict[str, Any] = {}
        self._handles: dict[str, tuple[Any, Any]] = {}
        self._next_handle = itertools.count(1)
        for hook in layer_hooks():
            self.register_hook(hook)
        self.mutant = mutant or None
        if self.mutant:
            from conformance.mutants import MUTANTS  # the self-test defects live with the harness

            if self.mutant not in MUTANTS:
                raise SystemExit(f"unknown {MUTANT_ENV} {self.mutant!r}; known: {sorted(MUTANTS)}")
            self.ops = MUTANTS[self.mutant].wrap(self.ops)

    def register_hook(self, hook: Any) -> None:
        """Add a layer hook's ``vectors_ops()`` and, if it declares ``MACHINE``, its machine."""
        vops = getattr(hook, "vectors_ops", None)
        if callable(vops):
            try:
                self.ops.update(vops())
            except Exception as exc:
                _log(f"{getattr(hook, '__name__', hook)}.vectors_ops() failed: {exc!r}")
        machine = getattr(hook, "MACHINE", None)
        if isinstance(machine, str) and callable(getattr(hook, "new", None)):
            self.machines[machine] = hook
            self.ops["machine.new"] = self._machine_new
            self.ops["machine.step"] = self._machine_step
            self.ops["machine.drop"] = self._machine_drop

    # machine ops: params carry the group's fields, input the test's; both are accepted.
    def _machine_new(self, params: Json, inp: Json) -> Json:
        args = {**params, **inp}
        hook = self.machines.get(str(args.get("machine")))
        if hook is None:
            raise Unsupported(f"no machine {args.get('machine')!r}")
        rng = [_hex(x, "rng[]") for x in args.get("rng", [])]
        obj = hook.new(str(args["role"]), dict(args.get("config") or {}), rng)
        handle = f"m{next(self._next_handle)}"
        self._handles[handle] = (hook, obj)
        return {"handle": handle}

    def _machine_step(self, params: Json, inp: Json) -> Json:
        args = {**params, **inp}
        hook, obj = self._handles[str(args["handle"])]
        out = hook.step(obj, int(args["now"]), dict(args["in"]))
        return {"out": to_json(out.get("out", [])), "state": str(out.get("state"))}

    def _machine_drop(self, params: Json, inp: Json) -> Json:
        self._handles.pop(str({**params, **inp}.get("handle")), None)
        return {}

    def hello(self) -> Json:
        msg: Json = {
            "p4adapter": PROTOCOL_VERSION,
            "impl": "p4ref" + (f"+mutant:{self.mutant}" if self.mutant else ""),
            "version": p4ref.__version__,
            "ops": sorted(self.ops),
        }
        if self.machines:
            msg["machines"] = sorted(self.machines)
        return msg

    def handle(self, request: Any) -> Json:
        """Answer one request object; never raises."""
        rid = request.get("id") if isinstance(request, dict) else None
        if not isinstance(request, dict):
            return {"id": rid, "status": "error", "error": "INTERNAL_ERROR",
                    "message": "request is not a JSON object"}
        op = request.get("op")
        fn = self.ops.get(op) if isinstance(op, str) else None
        if fn is None:
            return {"id": rid, "status": "unsupported"}
        params = request.get("params") or {}
        inp = request.get("input") or {}
        try:
            value = fn(params, inp)
        except P4Error as exc:
            name = getattr(exc.code, "name", str(exc.code))
            return {"id": rid, "status": "error", "error": name, "message": exc.message}
        except Unsupported:
            return {"id": rid, "status": "unsupported"}
        except Exception as exc:
            _log(f"request {rid} ({op}) raised:\n{traceback.format_exc()}")
            return {"id": rid, "status": "error", "error": "INTERNAL_ERROR",
                    "message": f"{type(exc).__name__}: {exc}"}
        return {"id": rid, "status": "ok", "value": to_json(value)}


_DEFAULT: Adapter | None = None


def _default() -> Adapter:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Adapter(os.environ.get(MUTANT_ENV))
    return _DEFAULT


def handle(request: Json) -> Json:
    """In-process entry (tests/test_vectors.py): answer one request with the shared adapter."""
    return _default().handle(request)


def hello() -> Json:
    return _default().hello()


def serve(adapter: Adapter, stdin: IO[bytes], stdout: TextIO) -> None:
    """The JSON Lines loop: hello, then one response per request line, flushed each time."""

    def write(obj: Json) -> None:
        stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        stdout.flush()

    write(adapter.hello())
    for raw in stdin:
        line = raw.strip()
        if not line:
            continue
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            _log(f"unparseable request line: {exc}")
            write({"id": None, "status": "error", "error": "INTERNAL_ERROR",
                   "message": "request line is not JSON"})
            continue
        write(adapter.handle(request))


def main(argv: list[str] | None = None) -> int:
    del argv
    proto = open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.stderr  # a stray print() in any layer must not corrupt the protocol stream
    try:
        serve(Adapter(os.environ.get(MUTANT_ENV)), sys.stdin.buffer, proto)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
