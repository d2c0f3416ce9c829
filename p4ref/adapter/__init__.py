"""The reference conformance adapter: ``python -m p4ref.adapter`` (contract: conformance/README.md).

It speaks JSON Lines on stdin/stdout: first a hello line, then one response line per request
line.  The dispatch table is built from the layer modules of this package, listed in
:data:`LAYERS`:

- :mod:`.framing`: ``framing.decode``, ``framing.encode``, ``framing.stream``, ``cbor.decode``,
  ``cbor.encode``;
- :mod:`.identity`, :mod:`.pairing`, :mod:`.rendezvous`, :mod:`.session`, :mod:`.channels`:
  each one's ``vectors_ops()``;
- :mod:`.files`: the file-transfer ops and machine (p4-06);
- ``machine.new`` / ``machine.step`` / ``machine.drop`` for every layer module that declares
  ``MACHINE``, ``new`` and ``step``.

The layer packages (``p4ref/<layer>/``) know nothing of the adapter.  No input can crash the
adapter: a :class:`~p4ref.errors.P4Error` becomes ``{"status": "error", "error": <code name>}``,
anything else ``INTERNAL_ERROR`` with the traceback on stderr.

The adapter knows nothing of the harness either: the harness's self-test mutants wrap this
adapter from the outside (``python -m conformance.mutants NAME -- python -m p4ref.adapter``).
"""

from __future__ import annotations

import itertools
import json
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import IO, Any, TextIO

import p4ref
from p4ref.errors import P4Error

from . import channels as _channels
from . import files as _files
from . import framing as _framing
from . import identity as _identity
from . import pairing as _pairing
from . import rendezvous as _rendezvous
from . import session as _session
from ._jsonargs import MAX_SAFE_INT, int_value
from .framing import cbor_from_json

__all__ = [
    "LAYERS", "Adapter", "OpFn", "Unsupported", "cbor_from_json", "handle", "hello",
    "main", "serve", "to_json",
]

Json = dict[str, Any]
OpFn = Callable[[Json, Json], Any]

PROTOCOL_VERSION = 1


class Unsupported(Exception):
    """Raised by an op that exists but cannot serve this request (e.g. an unknown machine)."""


def _log(msg: str) -> None:
    print(f"p4ref.adapter: {msg}", file=sys.stderr, flush=True)


def to_json(value: Any) -> Any:
    """Make a hook's return value JSON: bytes become lowercase hex, tuples lists, and integers
    beyond +-(2^53 - 1) the lossless ``{"int": "<decimal>"}`` (conformance/README.md §3.1)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INT:
        return {"int": str(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a hex string")
    return bytes.fromhex(value)


#: Every layer module of the reference adapter, registered explicitly (no scanning).  Each has
#: ``vectors_ops()``; a module that also declares ``MACHINE``, ``new`` and ``step`` serves a
#: machine.
LAYERS: tuple[ModuleType, ...] = (_framing, _identity, _pairing, _rendezvous, _session,
                                   _channels, _files)


class Adapter:
    """The dispatch table and the live machine handles of one adapter process."""

    def __init__(self) -> None:
        self.ops: dict[str, OpFn] = {}
        self.machines: dict[str, Any] = {}
        self._handles: dict[str, tuple[Any, Any]] = {}
        self._next_handle = itertools.count(1)
        for hook in LAYERS:
            self.register_hook(hook)

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
        out = hook.step(obj, int_value(args["now"], "now"), dict(args["in"]))
        return {"out": to_json(out.get("out", [])), "state": str(out.get("state"))}

    def _machine_drop(self, params: Json, inp: Json) -> Json:
        self._handles.pop(str({**params, **inp}.get("handle")), None)
        return {}

    def hello(self) -> Json:
        msg: Json = {
            "p4adapter": PROTOCOL_VERSION,
            "impl": "p4ref",
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
        _DEFAULT = Adapter()
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
        serve(Adapter(), sys.stdin.buffer, proto)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
