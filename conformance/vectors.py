"""Load and lint a vector tree (test-vectors/v1/<layer>/<op>.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Case",
    "LoadReport",
    "default_schema",
    "default_vectors_dir",
    "load_tree",
]

Json = dict[str, Any]

SCHEMA_NAME = "p4-vectors-v1.schema.json"


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    return [here, Path.cwd()]


def default_vectors_dir() -> Path:
    """``<repo>/test-vectors/v1``, found next to the package, else under the working directory."""
    for base in _candidates():
        p = base / "test-vectors" / "v1"
        if p.is_dir():
            return p
    return Path.cwd() / "test-vectors" / "v1"


def default_schema(vectors_dir: Path | None = None) -> Path:
    """The envelope schema: ``<vectors>/../schema/``, else next to the package / cwd."""
    tries: list[Path] = []
    if vectors_dir is not None:
        tries.append(vectors_dir.resolve().parent / "schema" / SCHEMA_NAME)
    tries += [b / "test-vectors" / "schema" / SCHEMA_NAME for b in _candidates()]
    for p in tries:
        if p.is_file():
            return p
    return tries[0]


@dataclass(frozen=True)
class Case:
    """One test of one group of one file, flattened."""

    id: str
    file: str  # relative to the vector root
    layer: str
    op: str
    params: Json
    test: Json

    @property
    def req(self) -> list[str]:
        return list(self.test.get("req", []))

    @property
    def flags(self) -> list[str]:
        return list(self.test.get("flags", []))

    @property
    def input(self) -> Json:
        inp: Json = self.test.get("input", {})
        return inp

    @property
    def expect(self) -> Json:
        exp: Json = self.test.get("expect", {})
        return exp

    @property
    def result(self) -> str:
        return str(self.test.get("result", "valid"))


@dataclass
class LoadReport:
    cases: list[Case] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the file (or the tree) is not usable
    warnings: list[str] = field(default_factory=list)


def _validator(schema_path: Path) -> Any:
    import jsonschema  # type: ignore[import-untyped]

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def load_tree(root: Path, schema_path: Path | None = None, *, validate: bool = True) -> LoadReport:
    """Read every ``*.json`` under ``root`` (sorted), check it, and flatten it into cases.

    A file that fails the schema or the lint (numberOfTests, unique tcId/id) contributes no cases
    and an error; undefined flags are warnings.
    """
    rep = LoadReport()
    if not root.is_dir():
        rep.errors.append(f"{root}: vector directory not found")
        return rep
    validator = None
    if validate:
        sp = schema_path or default_schema(root)
        try:
            validator = _validator(sp)
        except (OSError, ValueError) as exc:
            rep.errors.append(f"{sp}: cannot load schema: {exc}")
            return rep
    seen_ids: dict[str, str] = {}
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            rep.errors.append(f"{rel}: not JSON: {exc}")
            continue
        if validator is not None:
            errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            if errs:
                for e in errs[:5]:
                    where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                    rep.errors.append(f"{rel}: schema: at {where}: {e.message[:300]}")
                continue
        problems: list[str] = []
        tcids: set[int] = set()
        count = 0
        file_cases: list[Case] = []
        notes = doc.get("notes", {})
        for g in doc.get("testGroups", []):
            for t in g.get("tests", []):
                count += 1
                tid, tc = t.get("id"), t.get("tcId")
                if tc in tcids:
                    problems.append(f"{rel}: duplicate tcId {tc}")
                tcids.add(tc)
                if tid in seen_ids:
                    problems.append(f"{rel}: id {tid!r} already used in {seen_ids[tid]}")
                seen_ids[tid] = rel
                for fl in t.get("flags", []):
                    if fl not in notes:
                        rep.warnings.append(f"{rel}: {tid}: flag {fl!r} not defined in notes")
                file_cases.append(Case(str(tid), rel, str(doc.get("layer", "?")),
                                       str(g.get("op")), dict(g.get("params") or {}), t))
        if doc.get("numberOfTests") != count:
            problems.append(f"{rel}: numberOfTests is {doc.get('numberOfTests')}, file has {count}")
        if problems:
            rep.errors.extend(problems)
            continue
        rep.files.append(rel)
        rep.cases.extend(file_cases)
    return rep
