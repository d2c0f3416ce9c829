"""The one Markdown form of a machine's normative transition table (STYLE.md: transitions as
data, the spec's table generated from them; tools/spec_check.py compares the two)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["transition_markdown"]

_HEADER = ["| State | Input | Next state | Action |", "|---|---|---|---|"]


def transition_markdown(rows: Iterable[tuple[str, str, str, str]], *, code: bool = False,
                        final_newline: bool = True) -> str:
    """``rows`` of (state, input, next state, action) as the spec prints them; ``code`` puts the
    three names in backticks (p4-02's style)."""
    q = "`" if code else ""
    lines = [*_HEADER,
             *(f"| {q}{s}{q} | {q}{i}{q} | {q}{n}{q} | {a} |" for s, i, n, a in rows)]
    return "\n".join(lines) + ("\n" if final_newline else "")
