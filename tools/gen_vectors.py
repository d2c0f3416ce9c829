"""Write (or, with ``--check``, verify) every vector file under ``test-vectors/v1``.

Each module in ``tools/vectors/`` whose name does not start with ``_`` builds a layer's files
(``build() -> {relative path: envelope}``).  Output is a pure function of the code: no clock, no OS
randomness, so regeneration is byte-identical and CI diffs it (STYLE.md "Vectors").  The writer
puts every integer beyond +-(2^53 - 1) in the lossless form ``{"int": "<decimal>"}``.

    python tools/gen_vectors.py            # rewrite the tree
    python tools/gen_vectors.py --check    # exit 1 if any file differs, is missing or is extra

It also writes the per-layer counts between the ``vector-counts`` markers of spec/README.md, and
``--check`` verifies them.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import vectors  # noqa: E402
from tools.vectors._envelope import dump  # noqa: E402

OUT = ROOT / "test-vectors" / "v1"
SPEC_README = ROOT / "spec" / "README.md"
COUNTS_BEGIN = "<!-- vector-counts: written by tools/gen_vectors.py; do not edit by hand -->"
COUNTS_END = "<!-- /vector-counts -->"

#: The largest integer every JSON parser reads exactly (IEEE 754 double): 2^53 - 1.
MAX_SAFE_INT = 2**53 - 1


def lossless_ints(obj: Any) -> Any:
    """Every integer beyond +-(2^53 - 1) written as ``{"int": "<decimal>"}`` (conformance/README.md
    §3.1, RULES decision 5), so that no JSON parser rounds it; everything else unchanged."""
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return {"int": str(obj)} if abs(obj) > MAX_SAFE_INT else obj
    if isinstance(obj, dict):
        return {k: lossless_ints(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [lossless_ints(v) for v in obj]
    return obj


def build_all() -> dict[str, str]:
    """Every vector file's text, keyed by its path relative to ``test-vectors/v1``."""
    files: dict[str, str] = {}
    for mod in sorted(m.name for m in pkgutil.iter_modules(vectors.__path__)):
        if mod.startswith("_"):
            continue
        built = importlib.import_module(f"tools.vectors.{mod}").build()
        for rel, obj in built.items():
            if rel in files:
                raise SystemExit(f"{mod}: {rel} is built twice")
            files[rel] = dump(lossless_ints(obj))
    ids: dict[str, str] = {}
    import json

    for rel, text in files.items():
        doc = json.loads(text)
        for grp in doc["testGroups"]:
            for t in grp["tests"]:
                undeclared = set(t["flags"]) - set(doc["notes"])
                if undeclared:  # every flag explains itself in the file's notes (Wycheproof)
                    raise SystemExit(f"{rel}: {t['id']} uses flags not in notes: {undeclared}")
                if t["id"] in ids:
                    raise SystemExit(f"vector id {t['id']} in {rel} and {ids[t['id']]}")
                ids[t["id"]] = rel
    return files


def counts_table(files: dict[str, str]) -> str:
    """The per-layer vector counts of spec/README.md, as a Markdown table."""
    import json

    per: dict[str, list[int]] = {}
    for rel, text in sorted(files.items()):
        n = json.loads(text)["numberOfTests"]
        row = per.setdefault(rel.split("/", 1)[0], [0, 0])
        row[0] += 1
        row[1] += n
    lines = ["| Layer | Files | Vectors |", "|---|---:|---:|"]
    lines += [f"| {layer} | {f} | {n} |" for layer, (f, n) in per.items()]
    lines.append(f"| **total** | {sum(r[0] for r in per.values())} | "
                 f"{sum(r[1] for r in per.values())} |")
    return "\n".join(lines)


def with_counts(readme: str, files: dict[str, str]) -> str:
    """``readme`` with the text between the vector-count markers replaced (unchanged if the
    markers are absent)."""
    start, end = readme.find(COUNTS_BEGIN), readme.find(COUNTS_END)
    if start < 0 or end < start:
        return readme
    head = readme[: start + len(COUNTS_BEGIN)]
    return f"{head}\n{counts_table(files)}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="verify instead of writing")
    args = ap.parse_args(argv)
    files = build_all()
    existing = {str(p.relative_to(OUT)) for p in OUT.rglob("*.json")} if OUT.exists() else set()
    if args.check:
        bad = [rel for rel, text in files.items()
               if not (OUT / rel).exists() or (OUT / rel).read_text("utf-8") != text]
        extra = sorted(existing - set(files))
        for rel in bad:
            print(f"differs or missing: test-vectors/v1/{rel}")
        for rel in extra:
            print(f"not generated (stale): test-vectors/v1/{rel}")
        readme = SPEC_README.read_text("utf-8") if SPEC_README.exists() else ""
        stale_counts = with_counts(readme, files) != readme
        if stale_counts:
            print("differs: the vector counts in spec/README.md")
        if bad or extra or stale_counts:
            print("vectors are out of date: run python tools/gen_vectors.py")
            return 1
        total = sum(text.count('"tcId"') for text in files.values())
        print(f"vectors up to date: {len(files)} files, {total} tests")
        return 0
    for rel in sorted(existing - set(files)):
        (OUT / rel).unlink()
    for rel, text in files.items():
        path = OUT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    if SPEC_README.exists():
        readme = SPEC_README.read_text("utf-8")
        if with_counts(readme, files) != readme:
            SPEC_README.write_text(with_counts(readme, files), "utf-8")
    total = sum(text.count('"tcId"') for text in files.values())
    print(f"wrote {len(files)} files, {total} tests under test-vectors/v1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
