"""The Wycheproof-style envelope every P⁴ vector file shares (STYLE.md, p4-00 §9).

Builders make tests with :func:`test`, groups with :func:`group` and files with :func:`envelope`;
:func:`dump` is the one serialisation, so regeneration is byte-identical.
"""

from __future__ import annotations

import json
from typing import Any

SCHEMA = "p4-vectors-v1.schema.json"
GENERATOR = {"name": "tools/gen_vectors.py", "version": "1"}

Json = dict[str, Any]


def test(
    ident: str,
    comment: str,
    req: list[str],
    inp: Json,
    *,
    valid: bool = True,
    value: Any = None,
    error: str | None = None,
    flags: list[str] | None = None,
    acceptable: bool = False,
) -> Json:
    """One test case; ``tcId`` is assigned by :func:`envelope` in file order."""
    if (error is None) == (not valid):
        raise ValueError(f"{ident}: an invalid test needs an error, a valid one none")
    result = "acceptable" if acceptable else ("valid" if valid else "invalid")
    expect: Json = {"error": error} if error is not None else {"value": value}
    return {
        "tcId": 0,
        "id": ident,
        "comment": comment,
        "req": req,
        "flags": flags or [],
        "input": inp,
        "result": result,
        "expect": expect,
    }


def group(op: str, tests: list[Json], params: Json | None = None) -> Json:
    return {"op": op, "params": params or {}, "tests": tests}


def envelope(
    layer: str, spec: str, revision: int, notes: dict[str, Json], groups: list[Json]
) -> Json:
    """A whole vector file; numbers the tests 1..N in order."""
    n = 0
    for g in groups:
        for t in g["tests"]:
            n += 1
            t["tcId"] = n
    return {
        "schema": SCHEMA,
        "layer": layer,
        "spec": spec,
        "specRevision": revision,
        "generator": GENERATOR,
        "numberOfTests": n,
        "notes": notes,
        "testGroups": groups,
    }


def dump(obj: Json) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
