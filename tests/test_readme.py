"""The README's two set-up commands stay the ones CI and users run."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    return re.findall(r"```sh\n(.*?)\n```", text, re.S)


def test_readme_has_exactly_two_commands() -> None:
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert all(c.startswith("sh tools/bootstrap.sh && ") for c in cmds)


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = _readme_commands()[1]
    ci_lines = [
        line for line in (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
        if line and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert ci_lines == [test_cmd]


def test_readme_python_api_example_matches_the_api() -> None:
    """The README's asyncio example compiles, its imports resolve, and every method it calls
    exists on the objects it uses (a renamed API breaks this test, not a newcomer's first try)."""
    import ast
    import importlib
    import inspect

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    tree = ast.parse(blocks[0])
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            mod = importlib.import_module(node.module)
            for alias in node.names:
                names[alias.asname or alias.name] = getattr(mod, alias.name)
    from p4ref.link import Channel, ChannelMessage

    called = {n.func.attr for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    owners = [names["Link"], names["TorDriver"], Channel, ChannelMessage, asyncio]
    for attr in called - {"run"}:
        assert any(hasattr(o, attr) for o in owners), attr
    assert inspect.iscoroutinefunction(names["Link"].open_channel)  # type: ignore[attr-defined]
