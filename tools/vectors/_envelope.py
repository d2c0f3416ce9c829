"""The Wycheproof-style envelope every P⁴ vector file shares (STYLE.md, p4-00 §9).

Builders make tests with :func:`test`, groups with :func:`group` and files with :func:`envelope`;
:func:`dump` is the one serialisation, so regeneration is byte-identical.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA = "p4-vectors-v1.schema.json"
SPEC_DIR = Path(__file__).resolve().parents[2] / "spec"
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


@cache
def spec_revision(spec: str) -> int:
    """The ``revision:`` of ``spec/<spec>.md``'s front matter: the ``specRevision`` of every vector
    file built from that spec (RULES decision 8)."""
    text = (SPEC_DIR / f"{spec}.md").read_text(encoding="utf-8")
    parts = text.split("---", 2) if text.startswith("---") else []
    m = re.search(r"^revision:\s*(\d+)\s*$", parts[1] if len(parts) == 3 else "", re.M)
    if m is None:
        raise ValueError(f"spec/{spec}.md has no revision in its front matter")
    return int(m.group(1))


def envelope(
    layer: str, spec: str, revision: int, notes: dict[str, Json], groups: list[Json]
) -> Json:
    """A whole vector file; numbers the tests 1..N in order.  ``revision`` must be the spec's
    front-matter revision (:func:`spec_revision`): a builder that lags behind its spec fails."""
    if revision != spec_revision(spec):
        raise ValueError(f"{layer}: vectors of {spec} say revision {revision}, but "
                         f"spec/{spec}.md is revision {spec_revision(spec)}")
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
    """Pretty JSON, UTF-8 as is; a lone surrogate (only a vector about one holds it) is written
    as its ``\\uXXXX`` escape, since it has no UTF-8 form."""
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)
