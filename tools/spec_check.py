"""Spec ↔ code ↔ vectors consistency check (STYLE.md "Specs", p4-00 §8).

Fails (exit 1) when:
- a ``frame-types`` registry table in ``spec/*.md`` differs from ``p4ref.framing.REGISTRY``
  (code, name, body kind, flag mask, paths, owner), in either direction;
- an ``error-codes`` registry table differs from ``p4ref.errors.ErrorCode``, in either direction;
- a requirement tag is defined twice, or a vector cites a tag no spec defines;
- a spec doc lacks its front matter (title, layer, version, revision, status, date, depends-on);
- the document table of ``spec/README.md`` lists a document's wire version, revision or status
  other than its front matter says (or misses a document).

Reports (never fails): MUST-level tags that no vector and no test cites.

A registry table is the pipe table right after a line ``<!-- registry: NAME -->``; its first
column is the code in hex, its second the name.  A requirement tag is defined by its bracketed
form ``[FRM-12]``; prose may refer to it bare (``FRM-12``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from p4ref.errors import ErrorCode  # noqa: E402
from p4ref.framing import REGISTRY  # noqa: E402

TAG_DEF = re.compile(r"\[([A-Z]{3,4}-\d+)\]")
TAG_ANY = re.compile(r"\b([A-Z]{3,4}-\d+)\b")
MUST = re.compile(r"\b(MUST|MUST NOT|REQUIRED|SHALL|SHALL NOT)\b")
FRONT_KEYS = ("title", "layer", "version", "revision", "status", "date", "depends-on")


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    uncovered: list[tuple[str, str]] = field(default_factory=list)
    tags: dict[str, tuple[str, str]] = field(default_factory=dict)  # tag -> (doc, sentence)

    def fail(self, msg: str) -> None:
        self.errors.append(msg)


def registry_tables(text: str) -> dict[str, list[list[str]]]:
    """Rows (cells, stripped) of every registry table in one Markdown document."""
    out: dict[str, list[list[str]]] = defaultdict(list)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*<!--\s*registry:\s*([\w-]+)\s*-->", line)
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        header_seen = False
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            cells = [c.strip() for c in lines[j].strip().strip("|").split("|")]
            j += 1
            if not header_seen:
                header_seen = True
                continue
            if set("".join(cells)) <= set("-: "):
                continue  # the |---| separator
            out[m.group(1)].append(cells)
    return out


def _code(cell: str) -> int | None:
    cell = cell.strip("` ")
    return int(cell, 16) if re.fullmatch(r"0x[0-9A-Fa-f]+", cell) else None


def check_frame_types(rows: list[tuple[str, list[str]]], rep: Report) -> None:
    seen: dict[int, str] = {}
    for doc, cells in rows:
        code = _code(cells[0])
        if code is None or len(cells) < 6:
            rep.fail(f"{doc}: frame-types row is malformed: {cells}")
            continue
        name, body, flags, paths, owner = (c.strip("` ") for c in cells[1:6])
        if code in seen and seen[code] != name:
            rep.fail(f"{doc}: frame type 0x{code:02x} is both {seen[code]} and {name}")
        seen[code] = name
        info = next((i for t, i in REGISTRY.items() if int(t) == code), None)
        ftype = next((t for t in REGISTRY if int(t) == code), None)
        if info is None or ftype is None:
            rep.fail(f"{doc}: frame type 0x{code:02x} {name} is not in p4ref.framing.REGISTRY")
            continue
        want = (ftype.name, info.body.value, f"0x{info.flags:02x}",
                ", ".join(sorted(p.value for p in info.paths)), info.owner)
        got = (name, body, flags.lower(), ", ".join(sorted(p.strip() for p in paths.split(","))),
               owner)
        if got != want:
            rep.fail(f"{doc}: frame type 0x{code:02x}: spec says {got}, code says {want}")
    for ftype in REGISTRY:
        if int(ftype) not in seen:
            rep.fail(f"frame type 0x{int(ftype):02x} {ftype.name} is in the code, in no spec table")


def check_error_codes(rows: list[tuple[str, list[str]]], rep: Report) -> None:
    seen: dict[int, str] = {}
    for doc, cells in rows:
        code = _code(cells[0])
        if code is None or len(cells) < 2:
            rep.fail(f"{doc}: error-codes row is malformed: {cells}")
            continue
        name = cells[1].strip("` ")
        if code in seen and seen[code] != name:
            rep.fail(f"{doc}: error code 0x{code:04x} is both {seen[code]} and {name}")
        seen[code] = name
        try:
            member = ErrorCode(code)
        except ValueError:
            rep.fail(f"{doc}: error code 0x{code:04x} {name} is not in p4ref.errors.ErrorCode")
            continue
        if member.name != name:
            rep.fail(f"{doc}: error code 0x{code:04x} is {name} in the spec, {member.name} in code")
    for member in ErrorCode:
        if int(member) not in seen:
            rep.fail(f"error code 0x{int(member):04x} {member.name} is in the code, in no spec")


def front_matter(doc: str, text: str, rep: Report) -> dict[str, str]:
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not m:
        rep.fail(f"{doc}: no front matter")
        return {}
    fields = {k.strip(): v.strip() for k, v in
              (line.split(":", 1) for line in m.group(1).splitlines() if ":" in line)}
    for key in FRONT_KEYS:
        if key not in fields:
            rep.fail(f"{doc}: front matter lacks '{key}'")
    return fields


def check_index(index: str, fronts: dict[str, dict[str, str]], rep: Report) -> None:
    """spec/README.md's table: ``| [name](file) | layer | version | revision | status |``."""
    listed: set[str] = set()
    for m in re.finditer(r"^\| \[[^\]]+\]\(([^)]+\.md)\) \|[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|",
                         index, re.M):
        doc, cells = m.group(1), [c.strip() for c in m.groups()[1:]]
        listed.add(doc)
        front = fronts.get(doc)
        if front is None:
            rep.fail(f"README.md lists {doc}, which is not a spec document here")
            continue
        want = [front.get("version", "?"), front.get("revision", "?"), front.get("status", "?")]
        if cells != want:
            rep.fail(f"README.md lists {doc} as version/revision/status {'/'.join(cells)}, "
                     f"its front matter says {'/'.join(want)}")
    for doc in sorted(set(fronts) - listed):
        rep.fail(f"README.md's document table does not list {doc}")


def collect_tags(doc: str, text: str, rep: Report) -> None:
    for para in re.split(r"\n\s*\n", text):
        # A tag closes its sentence: "… MUST x. [FRM-3] Next …" splits after the tag.
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z`(])|(?<=\])\s+", para):
            for tag in dict.fromkeys(TAG_DEF.findall(sentence)):
                if tag in rep.tags:
                    rep.fail(f"{doc}: tag [{tag}] is defined twice (also in {rep.tags[tag][0]})")
                    continue
                rep.tags[tag] = (doc, " ".join(sentence.split()))


def cited_by_vectors(rep: Report) -> dict[str, list[str]]:
    cites: dict[str, list[str]] = defaultdict(list)
    for file in sorted((ROOT / "test-vectors" / "v1").rglob("*.json")):
        doc = json.loads(file.read_text("utf-8"))
        for grp in doc.get("testGroups", []):
            for t in grp.get("tests", []):
                for tag in t.get("req", []):
                    cites[tag].append(t["id"])
                    if tag not in rep.tags:
                        rep.fail(f"{file.relative_to(ROOT)}: {t['id']} cites unknown tag {tag}")
    return cites


def cited_by_tests() -> set[str]:
    found: set[str] = set()
    for file in (ROOT / "tests").rglob("*.py"):
        found.update(TAG_ANY.findall(file.read_text("utf-8")))
    return found


def run(spec_dir: Path) -> Report:
    rep = Report()
    tables: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    fronts: dict[str, dict[str, str]] = {}
    for path in sorted(spec_dir.glob("*.md")):
        text = path.read_text("utf-8")
        doc = path.name
        if re.match(r"p4-\d\d-", doc):
            fronts[doc] = front_matter(doc, text, rep)
        collect_tags(doc, text, rep)
        for name, rows in registry_tables(text).items():
            tables[name].extend((doc, r) for r in rows)
    if (spec_dir / "README.md").exists():
        check_index((spec_dir / "README.md").read_text("utf-8"), fronts, rep)
    check_frame_types(tables.get("frame-types", []), rep)
    check_error_codes(tables.get("error-codes", []), rep)
    vec = cited_by_vectors(rep)
    tst = cited_by_tests()
    for tag, (doc, sentence) in sorted(rep.tags.items(), key=lambda kv: _tag_key(kv[0])):
        if MUST.search(sentence) and tag not in vec and tag not in tst:
            rep.uncovered.append((tag, doc))
    return rep


def _tag_key(tag: str) -> tuple[str, int]:
    prefix, num = tag.rsplit("-", 1)
    return prefix, int(num)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "spec")
    ap.add_argument("--quiet", action="store_true", help="do not list uncovered MUST tags")
    args = ap.parse_args(argv)
    rep = run(args.spec)
    musts = sum(1 for _, (_, s) in rep.tags.items() if MUST.search(s))
    print(f"spec_check: {len(rep.tags)} requirement tags ({musts} MUST-level), "
          f"{len(rep.uncovered)} MUST tags cited by no vector or test")
    if rep.uncovered and not args.quiet:
        print("  uncovered: " + ", ".join(t for t, _ in rep.uncovered))
    for err in rep.errors:
        print(f"ERROR: {err}")
    return 1 if rep.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
