"""A toy layer for the harness's own tests (and a worked example for port authors).

It has the shape of a layer module of the reference adapter (``p4ref/adapter/<layer>.py``): a
codec op ``toy.echo``, and a two-role machine ``toy``: role ``a`` sends ``01 || rng_a`` on
``{"cmd": "start"}``; role ``b`` answers ``02 || rng_b``; each side then emits
``{"event": "DONE", "key": sha256(rng_a || rng_b)}`` and enters ``DONE``.  A side still waiting
after ``config.patience`` ticks (default 3) emits ``{"error": "TIMEOUT"}`` and enters ``FAILED``.
Duplicates are ignored.  A rejected request, and a ``start`` the machine refuses (role ``b``, or
a second one), raise :class:`ToyError` with the registry name.

:func:`build_tree` writes a small vector tree for this layer (codec, transcript, pair vectors,
plus ``toy.crash`` / ``toy.sleep`` vectors that the fake adapter misbehaves on).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MACHINE", "ToyError", "build_tree", "new", "step", "vectors_ops"]

Json = dict[str, Any]
MACHINE = "toy"


class ToyError(Exception):
    """A rejected toy request; ``code`` is the registry name the adapter answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Toy:
    role: str
    rng: list[bytes]
    patience: int
    state: str = "IDLE"
    mine: bytes = b""
    theirs: bytes = b""
    ticks: int = 0
    sent: list[str] = field(default_factory=list)


def new(role: str, config: Json, rng: list[bytes]) -> Toy:
    if role not in ("a", "b"):
        raise ToyError("MESSAGE_INVALID", f"unknown role {role!r}")
    return Toy(role, list(rng), int(config.get("patience", 3)),
               "IDLE" if role == "a" else "WAIT")


def _key(m: Toy) -> str:
    a, b = (m.mine, m.theirs) if m.role == "a" else (m.theirs, m.mine)
    return hashlib.sha256(a + b).hexdigest()


def step(m: Toy, now_ms: int, inp: Json) -> Json:
    out: list[Json] = []
    if inp.get("cmd") == "start":
        if m.role != "a" or m.state != "IDLE":  # refused; the machine stays as it is
            raise ToyError("UNEXPECTED_MESSAGE", f"start in {m.state}")
        m.mine = m.rng.pop(0)
        out.append({"send": (b"\x01" + m.mine).hex()})
        m.state = "WAIT"
    elif "recv" in inp and m.state == "WAIT":
        data = bytes.fromhex(inp["recv"])
        want = 0x01 if m.role == "b" else 0x02
        if not data or data[0] != want:
            out.append({"error": "UNEXPECTED_MESSAGE"})
            m.state = "FAILED"
        else:
            m.theirs = data[1:]
            if m.role == "b":
                m.mine = m.rng.pop(0)
                out.append({"send": (b"\x02" + m.mine).hex()})
            out.append({"event": "DONE", "key": _key(m)})
            m.state = "DONE"
    elif inp.get("tick") and m.state == "WAIT":
        m.ticks += 1
        if m.ticks >= m.patience:
            out.append({"error": "TIMEOUT"})
            m.state = "FAILED"
    return {"out": out, "state": m.state}


def _echo(params: Json, inp: Json) -> Json:
    if "fail" in inp:
        raise ToyError(str(inp["fail"]), "asked to fail")
    return {"echo": inp.get("data")}


def vectors_ops() -> dict[str, Callable[[Json, Json], Any]]:
    return {"toy.echo": _echo}


# --- the toy vector tree ----------------------------------------------------------------------

RNG_A, RNG_B = "aa" * 8, "bb" * 8
KEY = hashlib.sha256(bytes.fromhex(RNG_A + RNG_B)).hexdigest()


def _t(ident: str, inp: Json, *, value: Any = None, error: str | None = None,
       req: list[str] | None = None, flags: list[str] | None = None) -> Json:
    return {"tcId": 0, "id": ident, "comment": ident, "req": req or ["TOY-1"],
            "flags": flags or [], "input": inp, "result": "invalid" if error else "valid",
            "expect": {"error": error} if error else {"value": value}}


def _env(groups: list[Json]) -> Json:
    n = 0
    for g in groups:
        for t in g["tests"]:
            n += 1
            t["tcId"] = n
    return {"schema": "p4-vectors-v1.schema.json", "layer": "toy", "spec": "p4-99-toy",
            "specRevision": 1, "generator": {"name": "conformance/selftest/toy.py",
                                             "version": "1"},
            "numberOfTests": n, "notes": {"BAD": {"bugType": "BASIC", "description": "bad"}},
            "testGroups": groups}


def tree(*, misbehave: bool = False) -> dict[str, Json]:
    """The toy vector files (relative path → envelope).  With ``misbehave``, add the vectors the
    fake adapter crashes / hangs on."""
    echo = [
        _t("toy-echo-1", {"data": "x"}, value={"echo": "x"}),
        _t("toy-echo-2", {"data": [1, True]}, value={"echo": [1, True]}),
        _t("toy-echo-err", {"fail": "MESSAGE_INVALID"}, error="MESSAGE_INVALID", flags=["BAD"]),
    ]
    if misbehave:
        echo += [_t("toy-echo-crash", {"data": "crash"}, value={"echo": "crash"}),
                 _t("toy-echo-sleep", {"data": "sleep"}, value={"echo": "sleep"}),
                 _t("toy-echo-after", {"data": "after"}, value={"echo": "after"})]
    transcript = [_t("toy-transcript-a", {
        "rng": [RNG_A],
        "steps": [
            {"now": 0, "in": {"cmd": "start"}, "out": [{"send": "01" + RNG_A}], "state": "WAIT"},
            {"now": 10, "in": {"recv": "02" + RNG_B},
             "out": [{"event": "DONE", "key": KEY}], "state": "DONE"},
        ]}, value={}),
        _t("toy-transcript-refused", {
            "rng": [RNG_A],
            "steps": [
                {"now": 0, "in": {"cmd": "start"}, "out": [{"send": "01" + RNG_A}],
                 "state": "WAIT"},
                {"now": 1, "in": {"cmd": "start"}, "error": "UNEXPECTED_MESSAGE"},
                {"now": 10, "in": {"recv": "02" + RNG_B},
                 "out": [{"event": "DONE", "key": KEY}], "state": "DONE"},
            ]}, value={})]
    pair_ok = _t("toy-pair-ok", {
        "rng": {"a": [RNG_A], "b": [RNG_B]},
        "script": [{"role": "a", "now": 0, "in": {"cmd": "start"}}],
        "latencyMs": 10, "tick": {"everyMs": 1000, "max": 5},
    }, value={
        "final": {"a": {"state": "DONE", "events": [{"event": "DONE", "key": KEY}]},
                  "b": {"state": "DONE", "events": [{"event": "DONE"}]}},
        "equal": [["DONE", "key"]],
        "underFaults": [{"a": {"state": "FAILED", "errors": ["TIMEOUT"]},
                         "b": {"state": "FAILED"}},
                        {"a": {"state": "FAILED"}, "b": {"state": "DONE"}}],
    })
    pair_timeout = _t("toy-pair-nobody-starts", {
        "rng": {"a": [RNG_A], "b": [RNG_B]}, "script": [
            {"role": "b", "now": 0, "in": {"tick": True}}],
        "tick": {"everyMs": 1000, "max": 5},
    }, value={"final": {"a": {"state": "IDLE"}, "b": {"state": "FAILED", "errors": ["TIMEOUT"]}}})
    return {
        "toy/echo.json": _env([{"op": "toy.echo", "params": {}, "tests": echo}]),
        "toy/transcript.json": _env([{"op": "machine.transcript",
                                      "params": {"machine": "toy", "role": "a", "config": {}},
                                      "tests": transcript}]),
        "toy/pair.json": _env([{"op": "machine.pair",
                                "params": {"machine": "toy", "roles": ["a", "b"],
                                           "config": {"a": {}, "b": {}}},
                                "tests": [pair_ok, pair_timeout]}]),
    }


def build_tree(root: Path, *, misbehave: bool = False) -> Path:
    """Write the toy tree to ``root/v1`` (schema copied to ``root/schema``); return ``root/v1``."""
    schema = Path(__file__).resolve().parents[2] / "test-vectors" / "schema"
    (root / "schema").mkdir(parents=True, exist_ok=True)
    for f in schema.glob("*.json"):
        (root / "schema" / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    for rel, doc in tree(misbehave=misbehave).items():
        p = root / "v1" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return root / "v1"
