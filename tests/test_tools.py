"""The project's own checkers can fail: spec_check catches a registry or tag that drifted, and
gen_vectors --check catches a hand-edited, missing or stale vector file (STYLE.md "Vectors")."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tools import gen_vectors, spec_check

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "spec", tmp_path / "spec")
    return tmp_path / "spec"


def test_spec_and_code_agree_today() -> None:
    assert spec_check.run(ROOT / "spec").errors == []


def test_a_changed_flag_mask_in_the_frame_registry_is_caught(spec_copy: Path) -> None:
    doc = spec_copy / "p4-01-framing-v1.md"
    text = doc.read_text("utf-8")
    row = "| 0x40 | DATA | binary | 0x01 | datachannel | p4-05 |"
    assert row in text
    doc.write_text(text.replace(row, row.replace("0x01 |", "0x03 |")), "utf-8")
    errors = spec_check.run(spec_copy).errors
    assert any("0x40" in e and "DATA" in e for e in errors), errors


def test_an_error_code_missing_from_the_specs_is_caught(spec_copy: Path) -> None:
    doc = spec_copy / "p4-00-conventions.md"
    lines = [ln for ln in doc.read_text("utf-8").splitlines(keepends=True)
             if "| FRAME_TOO_LARGE |" not in ln]
    doc.write_text("".join(lines), "utf-8")
    errors = spec_check.run(spec_copy).errors
    assert any("FRAME_TOO_LARGE" in e and "in no spec" in e for e in errors), errors


def test_a_tag_defined_twice_is_caught(spec_copy: Path) -> None:
    """CNV-2: a requirement tag is unique across spec/."""
    doc = spec_copy / "p4-01-framing-v1.md"
    doc.write_text(doc.read_text("utf-8") + "\nAn encoder MUST do it twice. [FRM-7]\n", "utf-8")
    errors = spec_check.run(spec_copy).errors
    assert any("FRM-7" in e and "defined twice" in e for e in errors), errors


def test_vectors_cite_only_existing_tags(spec_copy: Path) -> None:
    """CNV-4: every tag a vector cites exists; removing one a vector cites is an error."""
    doc = spec_copy / "p4-01-framing-v1.md"
    doc.write_text(doc.read_text("utf-8").replace("[FRM-19]", ""), "utf-8")
    errors = spec_check.run(spec_copy).errors
    assert any("cites unknown tag FRM-19" in e for e in errors), errors[:3]


def test_regeneration_check_catches_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """CNV-45 and the "never hand-edited" rule: --check fails on any difference."""
    out = tmp_path / "v1"
    shutil.copytree(ROOT / "test-vectors" / "v1", out)
    monkeypatch.setattr(gen_vectors, "OUT", out)
    assert gen_vectors.main(["--check"]) == 0
    target = out / "framing" / "decode.json"
    target.write_text(target.read_text("utf-8").replace('"valid"', '"acceptable"', 1), "utf-8")
    assert gen_vectors.main(["--check"]) == 1
    assert "framing/decode.json" in capsys.readouterr().out
    (out / "framing" / "stray.json").write_text("{}", "utf-8")
    assert gen_vectors.main([]) == 0  # rewriting restores the tree and removes stale files
    assert not (out / "framing" / "stray.json").exists()
    assert gen_vectors.main(["--check"]) == 0


def test_a_stale_revision_in_the_spec_index_is_caught(spec_copy: Path) -> None:
    """spec/README.md's document table follows each document's front matter."""
    doc = spec_copy / "p4-05-channels-v1.md"
    text = doc.read_text("utf-8")
    rev = re.search(r"^revision: (\d+)$", text, re.M)
    assert rev is not None
    doc.write_text(text.replace(rev.group(0), f"revision: {int(rev.group(1)) + 1}", 1), "utf-8")
    errors = spec_check.run(spec_copy).errors
    assert any("p4-05-channels-v1.md" in e and "README.md" in e for e in errors), errors
