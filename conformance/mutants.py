"""Deliberately broken builds of the reference adapter: the harness's own self-test.

Each :class:`Mutant` wraps the reference adapter's op table (``P4_ADAPTER_MUTANT=<name> python -m
p4ref.adapter``) to re-introduce one classic bug, and declares which vectors must catch it
(:attr:`Mutant.must_fail`).  ``tests/test_conformance.py`` runs every mutant and requires that it
fails *exactly* those vectors — at least one — and passes all others (the web-platform-tests
"expected-fail" idea: a harness that cannot see a known bug is itself broken).

Every mutant here is an "error suppression": when the real op rejects the input with one of the
listed registry codes, the mutant answers ``ok`` with a best-effort value instead.  Because the
reference passes every vector, such a mutant fails exactly the vectors of those ops whose expected
error is one of those codes; that is what ``must_fail`` states.  Only mutants that some vector can
catch belong here (no session-layer ``replay-wrong-seq`` until session vectors exist).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from p4ref.errors import P4Error

__all__ = ["MUTANTS", "Mutant"]

Json = dict[str, Any]
OpFn = Callable[[Json, Json], Any]
Fallback = Callable[[Json, Json, P4Error], Any]


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    ops: tuple[str, ...]  # op names, or prefixes ending in "." (e.g. "identity.")
    errors: frozenset[str]  # registry codes the bug swallows
    fallback: Fallback  # the value answered instead of the error
    flags: tuple[str, ...] = ()  # the vector flags these failures usually carry (documentation)
    #: for mutants that are not error suppressions: a custom op wrapper and failure predicate
    wrapper: Callable[[OpFn], OpFn] | None = None
    predicate: Callable[[str, Json, Json], bool] | None = None

    def covers_op(self, op: str) -> bool:
        return any(op == o or (o.endswith(".") and op.startswith(o)) for o in self.ops)

    def must_fail(self, op: str, expect: Json, inp: Json | None = None) -> bool:
        """Whether a vector (group ``op``, test ``expect`` and ``input``) must fail."""
        if self.predicate is not None:
            return self.predicate(op, expect, inp or {})
        return self.covers_op(op) and expect.get("error") in self.errors

    def wrap(self, ops: dict[str, OpFn]) -> dict[str, OpFn]:
        out = dict(ops)
        for name, fn in ops.items():
            if self.covers_op(name):
                out[name] = self._wrap_one(fn)
        return out

    def _wrap_one(self, fn: OpFn) -> OpFn:
        if self.wrapper is not None:
            return self.wrapper(fn)

        def wrapped(params: Json, inp: Json) -> Any:
            try:
                return fn(params, inp)
            except P4Error as exc:
                if exc.code.name not in self.errors:
                    raise
                try:
                    return self.fallback(params, inp, exc)
                except Exception:
                    return {}

        return wrapped


def _frame_fields(params: Json, inp: Json, exc: P4Error) -> Json:
    """framing.decode without the check: read the header and take what the length says."""
    data = bytes.fromhex(inp["frame"])
    length = int.from_bytes(data[3:5], "big")
    return {"type": data[1], "flags": data[2], "body": data[5 : 5 + length].hex(),
            "ignorable": False}


def _frame_bytes(params: Json, inp: Json, exc: P4Error) -> Json:
    """framing.encode without the check: emit the header and body as given."""
    body = bytes.fromhex(inp["body"])
    head = bytes([1, int(inp["type"]) & 0xFF, int(inp.get("flags", 0)) & 0xFF])
    return {"frame": (head + (len(body) & 0xFFFF).to_bytes(2, "big") + body).hex()}


def _lenient_cbor(params: Json, inp: Json, exc: P4Error) -> Any:
    """cbor.decode with a permissive decoder (cbor2 accepts non-minimal and unsorted input)."""
    import cbor2

    from p4ref.framing import cbor_json

    return cbor_json(cbor2.loads(bytes.fromhex(inp["cbor"])))


def _by_op(**table: Fallback) -> Fallback:
    def pick(params: Json, inp: Json, exc: P4Error) -> Any:
        if "frame" in inp:
            return table["decode"](params, inp, exc)
        if "body" in inp and "type" in inp:
            return table["encode"](params, inp, exc)
        return table["cbor"](params, inp, exc)

    return pick


def _valid(params: Json, inp: Json, exc: P4Error) -> Json:
    return {"valid": True}


_FRAMING = _by_op(decode=_frame_fields, encode=_frame_bytes, cbor=_lenient_cbor)


def _strip_errors(fn: OpFn) -> OpFn:
    """machine.step that drops ``{"error": CODE}`` items: the machine still fails, silently."""

    def wrapped(params: Json, inp: Json) -> Any:
        value = fn(params, inp)
        if isinstance(value, dict) and isinstance(value.get("out"), list):
            value = {**value, "out": [o for o in value["out"] if "error" not in o]}
        return value

    return wrapped


def _reports_errors(op: str, expect: Json, inp: Json) -> bool:
    """A transcript with an expected ``{"error"}`` output, or a pair vector whose perfect-network
    outcome lists ``errors`` for a role."""
    value = expect.get("value") or {}
    if op == "machine.transcript":
        steps = value.get("steps")
        if not isinstance(steps, list):
            steps = inp.get("steps", [])
        return any("error" in o for s in steps for o in s.get("out", []))
    if op == "machine.pair":
        return any(r.get("errors") for r in (value.get("final") or {}).values())
    return False


def _m(name: str, description: str, ops: Collection[str], errors: Collection[str],
       fallback: Fallback, flags: Collection[str]) -> Mutant:
    return Mutant(name, description, tuple(ops), frozenset(errors), fallback, tuple(flags))


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        _m("skip-length-check",
           "framing.decode ignores bytes after the frame and the 16384-byte limit; "
           "framing.encode emits oversize frames",
           ("framing.decode", "framing.encode"), ("FRAME_TRAILING_BYTES", "FRAME_TOO_LARGE"),
           _FRAMING, ("TRAILING", "OVERLENGTH")),
        _m("accept-noncanonical-cbor",
           "non-minimal integers and unsorted map keys are accepted (cbor.decode, frame bodies) "
           "and emitted (framing.encode)",
           ("cbor.decode", "framing.decode", "framing.encode"),
           ("CBOR_NON_MINIMAL", "CBOR_UNSORTED_KEYS"), _FRAMING,
           ("NON_MINIMAL", "NON_CANONICAL")),
        _m("ignore-unknown-type",
           "an unassigned type outside the ignorable range is accepted instead of rejected",
           ("framing.decode", "framing.encode"), ("FRAME_UNKNOWN_TYPE",), _FRAMING,
           ("UNKNOWN_TYPE",)),
        _m("accept-bad-signature",
           "signature checks in the identity, pairing and rendezvous codec ops always succeed",
           ("identity.", "pairing.", "rendezvous."), ("SIGNATURE_INVALID", "RDV_BAD_SIGNATURE"),
           _valid, ("SIGNATURE",)),
        Mutant("swallow-machine-errors",
               "machine.step drops {\"error\": CODE} outputs (the failure is never reported)",
               ("machine.step",), frozenset(), _valid, (), wrapper=_strip_errors,
               predicate=_reports_errors),
    )
}
