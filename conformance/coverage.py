"""Requirement coverage: which spec requirement tags ([FRM-12]) the vectors cite.

A tag is defined where it first appears in ``spec/*.md`` (files in name order, fenced code
ignored).  Its level is the strongest BCP 14 key word of the sentence it ends: MUST (MUST, MUST
NOT, REQUIRED, SHALL, SHALL NOT), SHOULD (SHOULD, SHOULD NOT, RECOMMENDED), MAY (MAY, OPTIONAL),
else "-".  The report lists every MUST tag no vector cites, and every tag a vector cites that the
spec does not define.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .vectors import Case

__all__ = ["Requirement", "coverage_markdown", "parse_spec"]

TAG_RE = re.compile(r"\[([A-Z][A-Z0-9]*-[0-9]+)\]")
LEVELS = (
    ("MUST", re.compile(r"\b(MUST|REQUIRED|SHALL)\b")),
    ("SHOULD", re.compile(r"\b(SHOULD|RECOMMENDED)\b")),
    ("MAY", re.compile(r"\b(MAY|OPTIONAL)\b")),
)
_SENTENCE_END = re.compile(r"[.!?;:](?=\s)|\|")


@dataclass
class Requirement:
    tag: str
    level: str
    doc: str
    line: int
    sentence: str
    vectors: list[str] = field(default_factory=list)


def _blocks(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, text) of each paragraph / list item / table row; code skipped."""
    buf: list[str] = []
    start = 0
    fenced = False

    def flush() -> Iterable[tuple[int, str]]:
        if buf:
            yield start, " ".join(s.strip() for s in buf)
            buf.clear()

    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("```") or s.startswith("~~~"):
            yield from flush()
            fenced = not fenced
            continue
        if fenced:
            continue
        if not s or s.startswith("|") or s.startswith("#") or re.match(r"([-*+]|\d+\.)\s", s):
            yield from flush()
            if s.startswith("|") or s.startswith("#"):
                yield n, s
                continue
            if not s:
                continue
        if not buf:
            start = n
        buf.append(s)
    yield from flush()


def _level(sentence: str) -> str:
    for name, rx in LEVELS:
        if rx.search(sentence):
            return name
    return "-"


def parse_spec(spec_dir: Path) -> dict[str, Requirement]:
    reqs: dict[str, Requirement] = {}
    for path in sorted(spec_dir.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for line_no, block in _blocks(text):
            prev_end = 0
            for m in TAG_RE.finditer(block):
                before = block[prev_end:m.start()].rstrip()
                # "... MUST x. [TAG]" and "... MUST x [TAG]." both end the sentence at the tag
                body = before[:-1] if before.endswith((".", "!", "?")) else before
                cut = 0
                for e in _SENTENCE_END.finditer(body):
                    cut = e.end()
                sentence = body[cut:].strip() or body.strip()
                sentence = re.sub(r"^([-*+]|\d+\.)\s+", "", sentence)
                tag = m.group(1)
                if tag not in reqs:
                    reqs[tag] = Requirement(tag, _level(sentence), path.name, line_no, sentence)
                prev_end = m.end()
    return reqs


def map_vectors(reqs: dict[str, Requirement], cases: Iterable[Case]) -> dict[str, list[str]]:
    """Attach citing vector ids to each requirement; returns undefined tag → citing ids."""
    unknown: dict[str, list[str]] = {}
    for c in cases:
        for tag in c.req:
            if tag in reqs:
                reqs[tag].vectors.append(c.id)
            else:
                unknown.setdefault(tag, []).append(c.id)
    return unknown


def _tag_key(tag: str) -> tuple[str, int]:
    prefix, _, n = tag.rpartition("-")
    return prefix, int(n) if n.isdigit() else 0


def coverage_markdown(spec_dir: Path, cases: list[Case],
                      outcomes: dict[str, str] | None = None) -> tuple[str, int]:
    """The coverage report and the number of MUST tags without a vector."""
    reqs = parse_spec(spec_dir)
    unknown = map_vectors(reqs, cases)
    musts = [r for r in reqs.values() if r.level == "MUST"]
    uncovered = sorted((r for r in musts if not r.vectors), key=lambda r: _tag_key(r.tag))
    covered = len(musts) - len(uncovered)
    pct = f"{100 * covered / len(musts):.0f}%" if musts else "n/a"
    out = ["## Requirement coverage", "",
           f"Spec `{spec_dir}`: {len(reqs)} tags, {len(musts)} MUST; "
           f"{covered}/{len(musts)} MUST tags cited by a vector ({pct}); "
           f"{len(cases)} vectors.", ""]
    out += [f"### MUST requirements with no vector ({len(uncovered)})", ""]
    if uncovered:
        out += ["| tag | where | sentence |", "|---|---|---|"]
        for r in uncovered:
            out.append(f"| {r.tag} | {r.doc}:{r.line} | {r.sentence[:200].replace('|', '/')} |")
    else:
        out.append("None.")
    if unknown:
        out += ["", f"### Tags cited by vectors but not defined in spec ({len(unknown)})", ""]
        for tag in sorted(unknown, key=_tag_key):
            ids = unknown[tag]
            out.append(f"- `{tag}`: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    out += ["", "### All tags", ""]
    head = "| tag | level | vectors |" + (" passing |" if outcomes is not None else "") + " where |"
    out += [head, "|---|---|---:|" + ("---:|" if outcomes is not None else "") + "---|"]
    for r in sorted(reqs.values(), key=lambda r: _tag_key(r.tag)):
        row = f"| {r.tag} | {r.level} | {len(r.vectors)} |"
        if outcomes is not None:
            ok = sum(1 for v in r.vectors if outcomes.get(v) in ("pass", "acceptable"))
            row += f" {ok} |"
        out.append(row + f" {r.doc}:{r.line} |")
    return "\n".join(out) + "\n", len(uncovered)
