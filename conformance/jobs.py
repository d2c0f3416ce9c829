"""What the runner does with one vector, written as a generator of adapter calls.

A job yields :class:`Call` objects and is sent back each response object (a dict); it returns a
:class:`Verdict`.  The same job runs under the subprocess driver (pipelined, with timeouts and
crash recovery) and under the in-process driver used by pytest, so both grade identically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import cbor2

from .vectors import Case

__all__ = [
    "PASS_OUTCOMES",
    "Call",
    "Job",
    "JobFactory",
    "Verdict",
    "codec_job",
    "error_frame_key",
    "grade_answer",
    "json_equal",
    "out_equal",
    "split_recv_item",
    "transcript_job",
]

Json = dict[str, Any]

# Outcomes (README "Outcomes").
PASS = "pass"
FAIL = "fail"
WRONG_ERROR = "wrong-error"
UNSUPPORTED = "unsupported"
TIMEOUT = "timeout"
CRASH = "crash"
XFAIL = "xfail"
XPASS = "xpass"
ACCEPTABLE = "acceptable"
OUTCOMES = (PASS, ACCEPTABLE, FAIL, WRONG_ERROR, UNSUPPORTED, TIMEOUT, CRASH, XFAIL, XPASS)
PASS_OUTCOMES = frozenset({PASS, ACCEPTABLE, XFAIL})
FAILING = frozenset({FAIL, WRONG_ERROR, TIMEOUT, CRASH, XPASS})


@dataclass(frozen=True)
class Call:
    target: str  # "A" (the adapter under test) or "B" (the peer adapter in two-party mode)
    op: str
    params: Json
    input: Json


@dataclass(frozen=True)
class Verdict:
    outcome: str
    detail: str = ""


Job = Generator[Call, Json, Verdict]
JobFactory = Callable[[], Job]


def json_equal(a: Any, b: Any) -> bool:
    """Exact JSON equality: ``true`` is not ``1``, ``1`` is not ``1.0``, key order is ignored."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


ERROR_TYPE = 0x01  # p4-01 §4.4.1


def error_frame_key(frame_hex: object) -> tuple[int, int] | None:
    """``(flags, code)`` of a well-formed ERROR frame, or None for any other frame.

    Well-formed (conformance/README.md §4.3): version 0x01, type 0x01 (ERROR), a length field
    equal to the number of body bytes, and a body that is a CBOR map whose key 1 (code) is an
    unsigned integer.  Its reason text (key 2) is free (p4-00 CNV-39) and never compared."""
    if not isinstance(frame_hex, str):
        return None
    try:
        data = bytes.fromhex(frame_hex)
    except ValueError:
        return None
    if len(data) < 5 or data[0] != 0x01 or data[1] != ERROR_TYPE \
            or int.from_bytes(data[3:5], "big") != len(data) - 5:
        return None
    try:
        body = cbor2.loads(data[5:])
    except Exception:
        return None
    code = body.get(1) if isinstance(body, dict) else None
    if type(code) is not int or code < 0:
        return None
    return data[2], code


SEND_KEYS = ({"send"}, {"send", "conn"})


def item_equal(want: Any, got: Any) -> bool:
    """One machine output item: exact JSON equality, except that an expected ``send`` of a
    well-formed ERROR frame matches any ``send`` of a well-formed ERROR frame with the same type,
    flags and code (RULES decision 2; conformance/README.md §4.3).  A connection-addressed
    ``{"send": hex, "conn": N}`` (README §3.4) must also name the same connection."""
    if isinstance(want, dict) and isinstance(got, dict) and want.keys() == got.keys() \
            and set(want) in SEND_KEYS:
        key = error_frame_key(want["send"])
        if key is not None:
            return error_frame_key(got["send"]) == key and json_equal(want.get("conn"),
                                                                        got.get("conn"))
    return json_equal(want, got)


def split_recv_item(item: Any) -> list[Any]:
    """``item`` as one-byte ``recv`` items when it is a ``recv`` of more than one byte (keeping
    its ``conn``, so each connection's byte stream is split on its own), else ``[item]``."""
    if isinstance(item, dict) and set(item) in ({"recv"}, {"recv", "conn"}) \
            and isinstance(item["recv"], str) and len(item["recv"]) > 2:
        data = item["recv"]
        extra = {"conn": item["conn"]} if "conn" in item else {}
        return [{"recv": data[k:k + 2], **extra} for k in range(0, len(data), 2)]
    return [item]


def out_equal(want: Any, got: Any) -> bool:
    """A step's ``out`` list: same length, and each item equal by :func:`item_equal`, in order."""
    if not isinstance(want, list) or not isinstance(got, list) or len(want) != len(got):
        return json_equal(want, got)
    return all(item_equal(w, g) for w, g in zip(want, got, strict=True))


def short(obj: Any, limit: int = 240) -> str:
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def grade_answer(case_result: str, expect: Json, resp: Json) -> Verdict:
    """Grade one codec/crypto answer against ``expect`` ({"value"} or {"error"})."""
    status = resp.get("status")
    if status == "unsupported":
        return Verdict(UNSUPPORTED)
    if status not in ("ok", "error"):
        return Verdict(FAIL, f"malformed response status {status!r}")
    acceptable = case_result == "acceptable"
    if "error" in expect:
        want = expect["error"]
        if status == "error":
            got = resp.get("error")
            if got == want:
                return Verdict(PASS)
            return Verdict(WRONG_ERROR, f"expected error {want}, got {got}"
                           + (f" ({resp['message']})" if resp.get("message") else ""))
        if acceptable:
            return Verdict(ACCEPTABLE, f"accepted (vector prefers {want})")
        return Verdict(FAIL, f"expected error {want}, got ok {short(resp.get('value'))}")
    if status == "error":
        if acceptable:
            return Verdict(ACCEPTABLE, f"rejected with {resp.get('error')}")
        msg = f" ({resp['message']})" if resp.get("message") else ""
        return Verdict(FAIL, f"expected ok, got error {resp.get('error')}{msg}")
    if json_equal(resp.get("value"), expect.get("value")):
        return Verdict(PASS)
    return Verdict(FAIL, f"value differs: expected {short(expect.get('value'))}, "
                         f"got {short(resp.get('value'))}")


def codec_job(case: Case, target: str = "A") -> Job:
    resp = yield Call(target, case.op, case.params, case.input)
    return grade_answer(case.result, case.expect, resp)


def _compare_step(i: int, want: Json, got: Json) -> str | None:
    if "out" in want and not out_equal(want["out"], got.get("out")):
        return f"step {i}: out differs: expected {short(want['out'])}, got {short(got.get('out'))}"
    if "state" in want and got.get("state") != want["state"]:
        return f"step {i}: state expected {want['state']}, got {got.get('state')}"
    return None


def machine_new_call(target: str, machine: str, role: str, config: Json, rng: list[str]) -> Call:
    return Call(target, "machine.new", {"machine": machine, "role": role, "config": config},
                {"rng": rng})


def transcript_job(case: Case, target: str = "A", *, split_recv: bool = False) -> Job:
    """``machine.transcript``: one machine, the vector's steps, out/state compared per step.

    A step whose expectation holds ``error`` (a step-level key, conformance/README.md §4.2) must
    be answered with an adapter-level error of that code: a command the machine refuses without
    failing.  With ``split_recv``, every ``recv`` of more than one byte is delivered one byte per
    ``machine.step`` at the same ``now``; the outputs of those steps, concatenated, must equal the
    step's expected ``out``, and the state after the last byte its ``state`` (README §3.4: the
    machine accepts every split of the stream; a ``recv`` with a ``conn`` is split within that
    connection's stream)."""
    p, inp, expect = case.params, case.input, case.expect
    resp = yield machine_new_call(target, str(p["machine"]), str(p["role"]),
                                  dict(p.get("config") or {}), list(inp.get("rng", [])))
    status = resp.get("status")
    if status == "unsupported":
        return Verdict(UNSUPPORTED, "machine.new unsupported")
    if status != "ok":
        if "error" in expect:
            return grade_answer(case.result, expect, resp)
        return Verdict(FAIL, f"machine.new failed: {resp.get('error')} {resp.get('message', '')}")
    if "error" in expect:
        yield Call(target, "machine.drop", {"handle": (resp.get("value") or {}).get("handle")}, {})
        return Verdict(FAIL, f"machine.new accepted; expected error {expect['error']}")
    value = resp.get("value") or {}
    handle = value.get("handle")
    steps = list(inp.get("steps", []))
    want_steps = (expect.get("value") or {}).get("steps")
    if not isinstance(want_steps, list):
        want_steps = steps  # the out/state of each step sit in the input
    verdict = Verdict(PASS)
    for i, step in enumerate(steps):
        want = want_steps[i] if i < len(want_steps) else {}
        item = step["in"]
        pieces = split_recv_item(item) if split_recv else [item]
        out: list[Any] = []
        got: Json = {}
        problem: str | None = None
        for piece in pieces:
            r = yield Call(target, "machine.step", {"handle": handle},
                           {"now": step["now"], "in": piece})
            if r.get("status") == "unsupported":
                return (yield from _drop(target, handle, Verdict(
                    UNSUPPORTED, f"machine.step unsupported at step {i}")))
            if "error" in want:
                if r.get("status") == "error" and r.get("error") == want["error"]:
                    continue
                problem = (f"step {i}: expected the step to be refused with {want['error']}, "
                           f"got {r.get('status')} {r.get('error') or short(r.get('value'))}")
                break
            if r.get("status") != "ok":
                problem = (f"step {i}: adapter error {r.get('error')} "
                           f"{r.get('message', '')}".rstrip())
                break
            got = r.get("value") or {}
            items = got.get("out")
            out += items if isinstance(items, list) else [items]
        if problem is None and "error" not in want:
            problem = _compare_step(i, want, {"out": out, "state": got.get("state")})
        if problem:
            if len(pieces) > 1:
                problem += f" (recv split into {len(pieces)} one-byte steps)"
            verdict = Verdict(FAIL, problem)
            break
    return (yield from _drop(target, handle, verdict))


def _drop(target: str, handle: Any, verdict: Verdict) -> Job:
    yield Call(target, "machine.drop", {"handle": handle}, {})
    return verdict
