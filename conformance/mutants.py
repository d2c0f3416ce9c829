"""Deliberately broken adapters: the harness's own self-test (conformance/README.md §8).

A :class:`Mutant` wraps *any* adapter from the harness's side, through the adapter contract only:
it sees each request and the real adapter's response, and rewrites the response to re-introduce one
classic bug.  It declares which vectors must catch that bug (:meth:`Mutant.must_fail`);
``tests/test_conformance.py`` runs every mutant over the reference adapter and requires that it
fails *exactly* those vectors, at least one, and passes all others (the web-platform-tests
"expected-fail" idea: a harness that cannot see a known bug is itself broken).

Two ways to run one:

- in-process: ``Mutant.wrap(handle)`` turns a ``handle(request) -> response`` callable into the
  broken one;
- as a process: ``python -m conformance.mutants NAME -- COMMAND...`` is a JSON-Lines proxy that
  starts the adapter ``COMMAND``, forwards every request to it and rewrites its responses, e.g.
  ``p4-conformance --adapter "python -m conformance.mutants skip-length-check -- python -m
  p4ref.adapter"``.

Most mutants are "error suppressions": when the real adapter rejects a request of one of the
mutant's ops with one of the listed registry codes, the mutant answers ``ok`` with a best-effort
value computed from the request alone.  Against an adapter that passes every vector, such a
mutant fails exactly the vectors of those ops whose expected error is one of those codes.  Only
mutants that some vector can catch belong here.  This module never imports an implementation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import IO, Any

import cbor2

from .jobs import error_frame_key

__all__ = ["MUTANTS", "Handler", "Mutant", "cbor_json", "main"]

Json = dict[str, Any]
#: The in-process adapter contract: one request object in, one response object out.
Handler = Callable[[Json], Json]
#: An error suppression's replacement value: ``(op, params, input) -> value``.
Fallback = Callable[[str, Json, Json], Any]


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    ops: tuple[str, ...]  # op names, prefixes ending in "." (e.g. "identity."), or "*" (all)
    errors: frozenset[str]  # registry codes the bug swallows
    fallback: Fallback  # the value answered instead of the error
    flags: tuple[str, ...] = ()  # the vector flags these failures usually carry (documentation)
    #: for mutants that are not error suppressions: a response rewriter and a failure predicate
    rewrite: Callable[[Json, Json], Json] | None = None
    predicate: Callable[[str, Json, Json], bool] | None = None

    def covers_op(self, op: object) -> bool:
        return isinstance(op, str) and any(
            o in ("*", op) or (o.endswith(".") and op.startswith(o)) for o in self.ops)

    def must_fail(self, op: str, expect: Json, inp: Json | None = None) -> bool:
        """Whether a vector (group ``op``, test ``expect`` and ``input``) must fail."""
        if self.predicate is not None:
            return self.predicate(op, expect, inp or {})
        return self.covers_op(op) and expect.get("error") in self.errors

    def apply(self, request: Json, response: Json) -> Json:
        """The response the broken adapter gives to ``request`` where the real one gave
        ``response``."""
        op = request.get("op")
        if not self.covers_op(op) or not isinstance(response, dict):
            return response
        if self.rewrite is not None:
            return self.rewrite(request, response)
        if response.get("status") != "error" or response.get("error") not in self.errors:
            return response
        try:
            value = self.fallback(str(op), dict(request.get("params") or {}),
                                  dict(request.get("input") or {}))
        except Exception:
            value = {}
        return {"id": response.get("id"), "status": "ok", "value": value}

    def wrap(self, handler: Handler) -> Handler:
        """The in-process mutant of ``handler``."""

        def wrapped(request: Json) -> Json:
            return self.apply(request, handler(request))

        return wrapped


# --- error-suppression fallbacks: computed from the request only -------------------------------


def cbor_json(value: Any) -> Any:
    """The CBOR JSON form (conformance/README.md §3.1) of a value decoded by ``cbor2``; map
    entries stay in encoded order."""
    if isinstance(value, bool):
        return {"bool": value}
    if value is None:
        return {"null": True}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, list | tuple):
        return {"array": [cbor_json(v) for v in value]}
    if isinstance(value, dict):
        return {"map": [[cbor_json(k), cbor_json(v)] for k, v in value.items()]}
    raise TypeError(f"no CBOR JSON form for {type(value).__name__}")


def _frame_fields(inp: Json) -> Json:
    """framing.decode without the check: read the header and take what the length says."""
    data = bytes.fromhex(inp["frame"])
    length = int.from_bytes(data[3:5], "big")
    return {"type": data[1], "flags": data[2], "body": data[5 : 5 + length].hex(),
            "ignorable": False}


def _frame_bytes(inp: Json) -> Json:
    """framing.encode without the check: emit the header and body as given."""
    body = bytes.fromhex(inp["body"])
    head = bytes([1, int(inp["type"]) & 0xFF, int(inp.get("flags", 0)) & 0xFF])
    return {"frame": (head + (len(body) & 0xFFFF).to_bytes(2, "big") + body).hex()}


def _lenient_cbor(inp: Json) -> Any:
    """cbor.decode with a permissive decoder (cbor2 accepts non-minimal and unsorted input)."""
    return cbor_json(cbor2.loads(bytes.fromhex(inp["cbor"])))


def _framing(op: str, params: Json, inp: Json) -> Any:
    if op == "framing.decode":
        return _frame_fields(inp)
    if op == "framing.encode":
        return _frame_bytes(inp)
    return _lenient_cbor(inp)


def _valid(op: str, params: Json, inp: Json) -> Json:
    return {"valid": True}


def _strip_errors(request: Json, response: Json) -> Json:
    """machine.step that drops ``{"error": CODE}`` items: the machine still fails, silently."""
    value = response.get("value")
    if response.get("status") == "ok" and isinstance(value, dict) \
            and isinstance(value.get("out"), list):
        out = [o for o in value["out"] if not (isinstance(o, dict) and "error" in o)]
        return {**response, "value": {**value, "out": out}}
    return response


def whole_frames(data_hex: str) -> bool:
    """Whether ``data_hex`` is a concatenation of complete frames (by their Length fields)."""
    data = bytes.fromhex(data_hex)
    pos = 0
    while pos < len(data):
        if len(data) - pos < 5:
            return False
        pos += 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
    return pos == len(data)


def _split_recv(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("recv"), str) \
        and not whole_frames(item["recv"])


def _refuse_partial(request: Json, response: Json) -> Json:
    """machine.step that refuses a ``recv`` that does not hold whole frames, as a port that assumes
    one complete frame per read would."""
    if _split_recv((request.get("input") or {}).get("in")):
        return {"id": response.get("id"), "status": "error", "error": "FRAME_TRUNCATED",
                "message": "whole frames only"}
    return response


def _feeds_partial(op: str, expect: Json, inp: Json) -> bool:
    """A transcript that feeds part of a frame in some ``recv`` step."""
    return op == "machine.transcript" and any(_split_recv(s.get("in"))
                                              for s in inp.get("steps", []))


MAX_SAFE_INT = 2**53 - 1


def _big(form: Any) -> bool:
    return (isinstance(form, dict) and set(form) == {"int"} and isinstance(form["int"], str)
            and form["int"].lstrip("-").isdigit() and abs(int(form["int"])) > MAX_SAFE_INT)


def _bare_ints(value: Any) -> Any:
    """Every lossless ``{"int": "N"}`` beyond 2^53 - 1 written as a bare JSON number."""
    if _big(value):
        return int(value["int"])
    if isinstance(value, dict):
        return {k: _bare_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bare_ints(v) for v in value]
    return value


def _write_bare(request: Json, response: Json) -> Json:
    """Answers with big integers as bare numbers, as a naive JSON encoder writes them."""
    if response.get("status") == "ok":
        return {**response, "value": _bare_ints(response.get("value"))}
    return response


def _has_big(value: Any) -> bool:
    if _big(value):
        return True
    if isinstance(value, dict):
        return any(_has_big(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_big(v) for v in value)
    return False


def _expects_big(op: str, expect: Json, inp: Json) -> bool:
    """An expected answer that holds an integer beyond 2^53 - 1 (in the input's step outputs too,
    where a transcript keeps them)."""
    steps_out = [s.get("out") for s in inp.get("steps", [])] if op == "machine.transcript" else []
    return _has_big(expect.get("value")) or _has_big(steps_out)


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


# --- session (p4-04) -------------------------------------------------------------------------


SES_MSG_TYPE = 0x33
BINDING_CODE, BINDING_NAME = 0x0403, "SES_BINDING_MISMATCH"
_SWITCH_EVENTS = ("CONNECTION_CLOSED", "CONNECTION_FAILED")


def _frame_type(item: Any) -> int | None:
    if isinstance(item, dict) and isinstance(item.get("send"), str) and len(item["send"]) >= 4:
        try:
            return int(item["send"][2:4], 16)
        except ValueError:
            return None
    return None


def _resumes(out: list[Any]) -> bool:
    """A step in which a session peer resumes its stream on a connection (README §3.4 items):
    a connection became active, or one closed or failed (failover), and SES_MSG frames follow."""
    switched = any(isinstance(o, dict) and (
        (o.get("event") == "CONNECTION_OPEN" and o.get("active") is True)
        or o.get("event") in _SWITCH_EVENTS) for o in out)
    return switched and any(_frame_type(o) == SES_MSG_TYPE for o in out)


def _replay_late(request: Json, response: Json) -> Json:
    """machine.step that resumes one message late: in a step where the stream resumes on a
    connection, the first SES_MSG is never sent (the replay starts at rx_peer + 2)."""
    value = response.get("value")
    if response.get("status") != "ok" or not isinstance(value, dict) \
            or not isinstance(value.get("out"), list) or not _resumes(value["out"]):
        return response
    out = list(value["out"])
    out.pop(next(i for i, o in enumerate(out) if _frame_type(o) == SES_MSG_TYPE))
    return {**response, "value": {**value, "out": out}}


def _expected_steps(expect: Json, inp: Json) -> list[Json]:
    steps = (expect.get("value") or {}).get("steps")
    return steps if isinstance(steps, list) else list(inp.get("steps", []))


def _pair_switches(inp: Json) -> bool:
    """A pair script that opens a later generation or closes a connection: a resumption."""
    return any(isinstance(e.get("in"), dict) and (
        (e["in"].get("cmd") == "open" and not isinstance(e["in"].get("generation", 0), int))
        or (e["in"].get("cmd") == "open" and e["in"].get("generation", 0) >= 2)
        or e["in"].get("recv") == "") for e in inp.get("script", []))


def _catches_late_replay(op: str, expect: Json, inp: Json) -> bool:
    if op == "machine.transcript":
        return any(_resumes(s.get("out", [])) for s in _expected_steps(expect, inp))
    if op == "machine.pair":
        return bool((expect.get("value") or {}).get("streams")) and _pair_switches(inp)
    return False


def _binding_failure(o: Any) -> bool:
    return isinstance(o, dict) and o.get("event") == "CONNECTION_FAILED" \
        and o.get("code") == BINDING_NAME and o.get("by_peer") is False


def _skip_binding(request: Json, response: Json) -> Json:
    """session.verify_hello and the session machine accept a HELLO whose channel bindings differ
    from the receiver's view (check 6 of p4-04 §7.3 skipped)."""
    if request.get("op") == "session.verify_hello":
        if response.get("status") == "error" and response.get("error") == BINDING_NAME:
            return {"id": response.get("id"), "status": "ok", "value": {}}
        return response
    value = response.get("value")
    if response.get("status") != "ok" or not isinstance(value, dict) \
            or not isinstance(value.get("out"), list):
        return response
    out = value["out"]
    failed = [o for o in out if _binding_failure(o)]
    if not failed:
        return response
    conns = {o.get("conn") for o in failed}
    errors_left = len(failed)
    kept: list[Any] = []
    for o in out:
        if _binding_failure(o):
            continue
        key = error_frame_key(o.get("send")) if isinstance(o, dict) else None
        if key is not None and key[1] == BINDING_CODE and o.get("conn") in conns:
            continue
        if isinstance(o, dict) and o.get("error") == BINDING_NAME and errors_left:
            errors_left -= 1
            continue
        kept.append(o)
    return {**response, "value": {**value, "out": kept}}


def _catches_binding_skip(op: str, expect: Json, inp: Json) -> bool:
    if op == "session.verify_hello":
        return expect.get("error") == BINDING_NAME
    if op == "machine.transcript":
        return any(_binding_failure(o) for s in _expected_steps(expect, inp)
                   for o in s.get("out", []))
    if op == "machine.pair":
        final = (expect.get("value") or {}).get("final") or {}
        return any(BINDING_NAME in (r.get("errors") or []) for r in final.values())
    return False


def _item_type(item: Any) -> int | None:
    """The channel item type (p4-05 §5.1) of a ``send`` output (without ``conn``) that is the
    SES_MSG frame carrying one item (p4-05 §13.2: Seq (64), then the item), else None."""
    data = item.get("send") if isinstance(item, dict) and "conn" not in item else None
    if not isinstance(data, str) or len(data) < 28:
        return None
    try:
        raw = bytes.fromhex(data)
    except ValueError:
        return None
    ok = raw[:3] == b"\x01\x33\x00" and int.from_bytes(raw[3:5], "big") == len(raw) - 5
    return raw[13] if ok else None


_CREDIT_ITEM, _RESET_ITEM, _FLOW_CONTROL = 0x03, 0x05, 0x0504


def _credit_outputs(out: list[Any]) -> list[Any]:
    """What a channel layer without credit flow control would not output: CREDIT items and
    CREDIT_GRANTED; and, in a step that resets a channel for CHAN_FLOW_CONTROL, that RESET and
    its CHANNEL_RESET."""
    def flow_reset(o: Any) -> bool:
        return isinstance(o, dict) and o.get("event") == "CHANNEL_RESET" \
            and o.get("code") == _FLOW_CONTROL and o.get("by_peer") is False

    flow = any(flow_reset(o) for o in out)
    drop: list[Any] = []
    for o in out:
        if not isinstance(o, dict):
            continue
        kind = _item_type(o)
        if kind == _CREDIT_ITEM or o.get("event") == "CREDIT_GRANTED" or flow_reset(o) \
                or (flow and kind == _RESET_ITEM):
            drop.append(o)
    return drop


def _ignore_credit(request: Json, response: Json) -> Json:
    """machine.step of a channel layer that ignores credit (p4-05 §7.2, §7.3): a write beyond the
    credit is accepted, DATA beyond the limit is delivered, no CREDIT is sent or reported."""
    if response.get("status") == "error" and response.get("error") == "CHAN_CREDIT_EXCEEDED":
        return {"id": response.get("id"), "status": "ok", "value": {"out": [], "state": ""}}
    value = response.get("value")
    if response.get("status") == "ok" and isinstance(value, dict) \
            and isinstance(value.get("out"), list):
        drop = _credit_outputs(value["out"])
        if drop:
            out = [o for o in value["out"] if not any(o is d for d in drop)]
            return {**response, "value": {**value, "out": out}}
    return response


def _uses_credit(op: str, expect: Json, inp: Json) -> bool:
    """A transcript in which some step refuses a write for credit, resets a channel for flow
    control, sends a CREDIT item or reports CREDIT_GRANTED; a pair vector in which a role must
    report CREDIT_GRANTED."""
    if op == "machine.pair":
        final = (expect.get("value") or {}).get("final") or {}
        return any(e.get("event") == "CREDIT_GRANTED" for r in final.values()
                   if isinstance(r, dict) for e in r.get("events", []) if isinstance(e, dict))
    if op != "machine.transcript":
        return False
    steps = (expect.get("value") or {}).get("steps")
    if not isinstance(steps, list):
        steps = inp.get("steps", [])
    return any(s.get("error") == "CHAN_CREDIT_EXCEEDED" or _credit_outputs(s.get("out", []))
               for s in steps if isinstance(s, dict))


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
           _framing, ("TRAILING", "OVERLENGTH")),
        _m("accept-noncanonical-cbor",
           "non-minimal integers and unsorted map keys are accepted (cbor.decode, frame bodies) "
           "and emitted (framing.encode)",
           ("cbor.decode", "framing.decode", "framing.encode"),
           ("CBOR_NON_MINIMAL", "CBOR_UNSORTED_KEYS"), _framing,
           ("NON_MINIMAL", "NON_CANONICAL")),
        _m("ignore-unknown-type",
           "an unassigned type outside the ignorable range is accepted instead of rejected",
           ("framing.decode", "framing.encode"), ("FRAME_UNKNOWN_TYPE",), _framing,
           ("UNKNOWN_TYPE",)),
        _m("accept-bad-signature",
           "signature checks in the identity, pairing, rendezvous and session codec ops always "
           "succeed",
           ("identity.", "pairing.", "rendezvous.", "session."),
           ("SIGNATURE_INVALID", "RDV_BAD_SIGNATURE", "SES_BAD_SIGNATURE"),
           _valid, ("SIGNATURE",)),
        Mutant("swallow-machine-errors",
               "machine.step drops {\"error\": CODE} outputs (the failure is never reported)",
               ("machine.step",), frozenset(), _valid, (), rewrite=_strip_errors,
               predicate=_reports_errors),
        Mutant("bare-big-ints",
               "answers integers beyond 2^53 - 1 as bare JSON numbers instead of "
               "{\"int\": \"N\"} (README §3.1)",
               ("*",), frozenset(), _valid, (), rewrite=_write_bare, predicate=_expects_big),
        Mutant("ignore-credit",
               "channels without credit flow control: writes beyond the credit accepted, DATA "
               "beyond the limit delivered, no CREDIT sent or reported (p4-05 §7)",
               ("machine.step",), frozenset(), _valid, ("CREDIT",), rewrite=_ignore_credit,
               predicate=_uses_credit),
        Mutant("whole-frames-only",
               "machine.step refuses a recv that is not a sequence of whole frames (one frame "
               "per read assumed; README §3.4 says any split)",
               ("machine.step",), frozenset(), _valid, (), rewrite=_refuse_partial,
               predicate=_feeds_partial),
        Mutant("replay-from-wrong-seq",
               "a session peer resumes its stream one message late on a new or failed-over "
               "connection (from rx_peer + 2, p4-04 SES-31)",
               ("machine.step",), frozenset(), _valid, ("REPLAY_GAP", "INTERLEAVING"),
               rewrite=_replay_late, predicate=_catches_late_replay),
        Mutant("skip-fingerprint-binding",
               "a session peer accepts a SES_HELLO whose channel bindings (DTLS fingerprints) "
               "differ from its own view (p4-04 §7.3 check 6 skipped)",
               ("session.verify_hello", "machine.step"), frozenset(), _valid, ("FINGERPRINT",),
               rewrite=_skip_binding, predicate=_catches_binding_skip),
    )
}


# --- the JSON-Lines proxy ------------------------------------------------------------------------


def _write(out: IO[bytes], obj: Any) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    out.flush()


def proxy(mutant: Mutant, command: list[str], stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Start ``command`` (an adapter), relay its hello (``impl`` gets ``+mutant:NAME``), then
    forward each request line and write back the mutant's rewrite of the answer.  Returns the
    adapter's exit status once either side reaches end of stream."""
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    try:
        hello_line = child.stdout.readline()
        if not hello_line:
            return child.wait() or 1
        try:
            hello = json.loads(hello_line)
        except ValueError:
            hello = None
        if isinstance(hello, dict) and "p4adapter" in hello:
            hello["impl"] = f"{hello.get('impl', '?')}+mutant:{mutant.name}"
            _write(stdout, hello)
        else:
            stdout.write(hello_line)
            stdout.flush()
        for raw in stdin:
            line = raw.strip()
            if not line:
                continue
            try:
                request = json.loads(line)
            except ValueError:
                request = None
            child.stdin.write(line + b"\n")
            child.stdin.flush()
            while True:  # the adapter's answer (stray non-JSON lines are passed through)
                answer = child.stdout.readline()
                if not answer:
                    return child.wait() or 1
                try:
                    response = json.loads(answer)
                except ValueError:
                    stdout.write(answer)
                    stdout.flush()
                    continue
                break
            if isinstance(request, dict) and isinstance(response, dict):
                response = mutant.apply(request, response)
            _write(stdout, response)
        child.stdin.close()
        return child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m conformance.mutants NAME -- ADAPTER COMMAND...\nmutants: "
              + ", ".join(sorted(MUTANTS)), file=sys.stderr)
        return 2
    name, command = args[0], args[2:]
    if name not in MUTANTS:
        print(f"unknown mutant {name!r}; known: {', '.join(sorted(MUTANTS))}", file=sys.stderr)
        return 2
    try:
        return proxy(MUTANTS[name], command, sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
