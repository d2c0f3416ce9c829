"""Results and the reports written from them: console summary, JUnit XML, JSON, Markdown."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .jobs import FAILING, OUTCOMES, UNSUPPORTED

__all__ = ["Result", "RunInfo", "is_failure", "summarize", "write_json", "write_junit",
           "write_markdown"]


@dataclass
class Result:
    id: str
    file: str
    layer: str
    op: str
    outcome: str
    detail: str = ""
    result: str = "valid"
    req: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RunInfo:
    impl: str = ""
    version: str = ""
    peer: str = ""
    compliant: bool = True
    compliance_detail: str = ""
    vectors_dir: str = ""
    faults: str = "none"
    seconds: float = 0.0
    require_all: bool = False
    load_errors: list[str] = field(default_factory=list)


def is_failure(r: Result, require_all: bool = False) -> bool:
    return r.outcome in FAILING or (require_all and r.outcome == UNSUPPORTED)


def _counts(results: list[Result]) -> dict[str, dict[str, int]]:
    per: dict[str, Counter[str]] = {}
    for r in results:
        per.setdefault(r.layer, Counter())[r.outcome] += 1
    total: Counter[str] = Counter(r.outcome for r in results)
    out = {layer: {o: c[o] for o in OUTCOMES if c[o]} for layer, c in sorted(per.items())}
    out["TOTAL"] = {o: total[o] for o in OUTCOMES if total[o]}
    return out


def summarize(results: list[Result], info: RunInfo) -> str:
    """Console text: one line per layer, one total line, then every unexpected outcome."""
    lines = []
    for layer, c in _counts(results).items():
        n = sum(c.values())
        parts = ", ".join(f"{k} {v}" for k, v in c.items())
        lines.append(f"{layer:<12} {n:>5} vectors: {parts or '-'}")
    bad = [r for r in results if is_failure(r, info.require_all)]
    for r in bad[:200]:
        lines.append(f"  {r.outcome.upper():<12} {r.id} ({r.file}, {r.op}): {r.detail}")
    if len(bad) > 200:
        lines.append(f"  ... and {len(bad) - 200} more")
    if not info.compliant:
        lines.append(f"NON-COMPLIANT adapter: {info.compliance_detail}")
    for e in info.load_errors:
        lines.append(f"VECTOR ERROR {e}")
    return "\n".join(lines)


def write_json(path: Path, results: list[Result], info: RunInfo) -> None:
    doc: dict[str, Any] = {
        "run": asdict(info),
        "summary": _counts(results),
        "results": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_junit(path: Path, results: list[Result], info: RunInfo) -> None:
    root = ET.Element("testsuites", name="p4-conformance", time=f"{info.seconds:.3f}")
    by_layer: dict[str, list[Result]] = {}
    for r in results:
        by_layer.setdefault(r.layer, []).append(r)
    if not info.compliant:
        suite = ET.SubElement(root, "testsuite", name="adapter", tests="1", failures="1")
        case = ET.SubElement(suite, "testcase", classname="p4.adapter", name="unknown-op-probe")
        ET.SubElement(case, "failure", message="NON-COMPLIANT").text = info.compliance_detail
    for layer, rs in sorted(by_layer.items()):
        fails = sum(1 for r in rs if is_failure(r, info.require_all))
        skipped = sum(1 for r in rs if not is_failure(r, info.require_all)
                      and r.outcome in (UNSUPPORTED, "xfail"))
        suite = ET.SubElement(root, "testsuite", name=f"p4.{layer}", tests=str(len(rs)),
                              failures=str(fails), skipped=str(skipped),
                              time=f"{sum(r.seconds for r in rs):.3f}")
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=f"p4.{layer}.{r.op}", name=r.id,
                                 file=r.file, time=f"{r.seconds:.4f}")
            if is_failure(r, info.require_all):
                ET.SubElement(case, "failure", message=r.outcome, type=r.outcome).text = r.detail
            elif r.outcome in (UNSUPPORTED, "xfail"):
                ET.SubElement(case, "skipped", message=f"{r.outcome}: {r.detail}")
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown(results: list[Result], info: RunInfo, extra: str = "") -> str:
    counts = _counts(results)
    cols = [o for o in OUTCOMES if any(o in c for c in counts.values())]
    out = [f"# P4 conformance: {info.impl} {info.version}".rstrip(), ""]
    if info.peer:
        out.append(f"Peer adapter (two-party): {info.peer}  ")
    out.append(f"Vectors: `{info.vectors_dir}` — relay faults: {info.faults} — "
               f"{info.seconds:.2f} s")
    out.append("")
    verdict = "FAIL" if (not info.compliant or info.load_errors
                         or any(is_failure(r, info.require_all) for r in results)) else "PASS"
    out.append(f"**Result: {verdict}**" + ("" if info.compliant else
                                          f" — NON-COMPLIANT: {info.compliance_detail}"))
    out.append("")
    out.append("| layer | vectors | " + " | ".join(cols) + " |")
    out.append("|---|---:|" + "---:|" * len(cols))
    for layer, c in counts.items():
        name = f"**{layer}**" if layer == "TOTAL" else layer
        out.append(f"| {name} | {sum(c.values())} | "
                   + " | ".join(str(c.get(o, 0)) for o in cols) + " |")
    bad = [r for r in results if is_failure(r, info.require_all)
           or r.outcome in (UNSUPPORTED, "xfail")]
    if bad:
        out += ["", "## Not passing", "", "| vector | op | outcome | detail |", "|---|---|---|---|"]
        for r in bad:
            out.append(f"| `{r.id}` | {r.op} | {r.outcome} | {_md_escape(r.detail)[:300]} |")
    if info.load_errors:
        out += ["", "## Vector errors", ""] + [f"- {_md_escape(e)}" for e in info.load_errors]
    if extra:
        out += ["", extra]
    return "\n".join(out) + "\n"


def write_markdown(path: Path, results: list[Result], info: RunInfo, extra: str = "") -> None:
    path.write_text(markdown(results, info, extra), encoding="utf-8")
