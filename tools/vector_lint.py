"""Vector lint: every vector uses only what the contract text defines (issue 9, CI step).

    python tools/vector_lint.py [--vectors DIR] [--spec DIR] [--readme FILE] [--pending FILE]
    python tools/vector_lint.py --defined        # print what the text defines, then lint

The contract is ``conformance/README.md`` (generic) plus each layer spec's section titled
"Test-vector interface" (layer-specific), written in the table format of conformance/README.md
§3.5.  The lint reads those tables (fenced code is ignored) and checks every vector file under
``test-vectors/v1``:

- **defined**: every op (with each params / input / ok-value key and expected error code), machine,
  role, config key, command (with each argument), event (with each field), state, input-item and
  output-item kind that a vector uses is defined in a table; every registry name a vector expects
  is in an ``error-codes`` registry table of ``spec/*.md``;
- **complete and typed**: an exactly compared value (an op's ok value, an event in a transcript's
  ``out``) carries every field the table does not mark ``(optional)``/``(free)``, and every
  field's JSON type fits the table's type (inputs only in tests that expect success);
- **lossless**: every integer of magnitude above 2^53 - 1 is written ``{"int": "<decimal>"}``, and
  every ``{"int": …}`` holds a canonical decimal (conformance/README.md §3.1);
- **connections**: the ``conn`` of a ``recv`` or ``send`` item (conformance/README.md §3.4) is an
  int, and a vector's ``recv`` / ``send`` items all carry it or none does;
- **free text**: no expected event carries ``reason`` or ``message``, or a field the spec marks
  ``(free)``: the spec leaves that text to the implementation, so no vector may compare it.

Undefined items are printed one per line as a stable key (``machine pairing command start``).
``conformance/lint-pending.txt`` may list such keys (one per line, ``#`` comments) that are known to
be missing while a spec section is being written: they are reported as pending and do not fail the
run, but an entry that is no longer needed fails it, so the list can only shrink.  Lossless and
free-text problems cannot be allow-listed.  Exit status: 0 clean, 1 problems, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.spec_check import registry_tables  # noqa: E402

Json = dict[str, Any]
MAX_SAFE_INT = 2**53 - 1
SECTION_TITLE = "test-vector interface"
#: group ops the runner itself expands (conformance/README.md §4.2, §5); not adapter ops
GROUP_OPS = ("machine.transcript", "machine.pair")
FREE_EVENT_FIELDS = ("reason", "message")
KINDS = ("op", "machine", "config key", "command", "event", "state", "input item", "output item")
MACHINE_KINDS = ("config key", "command", "event", "state")

_FIELD = re.compile(r"`([A-Za-z_][A-Za-z0-9_.\-]*)`\s*:")
_TICK = re.compile(r"`([^`]+)`")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]*)$")
_TYPE = re.compile(r"\s*([\[{]|[A-Za-z][A-Za-z0-9_]*)")
_HEX = re.compile(r"^([0-9a-f]{2})*$")


def type_problem(kind: str, value: Any) -> str | None:
    """Why ``value`` is not of the table type ``kind`` (conformance/README.md §3.5), or None.
    Types the lint does not know are not checked; ``T|null`` (a cell's "T or null") also
    accepts JSON null."""
    if kind.endswith("|null"):
        if value is None:
            return None
        kind = kind[: -len("|null")]
    big = isinstance(value, dict) and set(value) == {"int"} and isinstance(value["int"], str)
    ok = {
        "hex": isinstance(value, str) and bool(_HEX.match(value)),
        "int": type(value) is int or big,
        "uint64": (type(value) is int and value >= 0) or big,
        "int64": type(value) is int or big,
        "uint": (type(value) is int and value >= 0) or big,
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "code": isinstance(value, str) and bool(_CODE.match(value) or re.fullmatch(
            r"0x[0-9a-f]{4}", value)),
        "[": isinstance(value, list),
        "{": isinstance(value, dict),
    }.get(kind)
    if ok is None or ok:
        return None
    return f"{json.dumps(value)[:60]} is not {kind if kind not in '[{' else 'a list/object'}"


# --- reading the contract text ------------------------------------------------------------------


@dataclass
class Table:
    source: str  # "spec/p4-01-framing-v1.md §12" or "conformance/README.md"
    header: list[str]
    rows: list[list[str]]

    @property
    def kind(self) -> str:
        return self.header[0].strip().strip("`").lower() if self.header else ""

    def cell(self, row: list[str], column: str) -> str | None:
        """The cell of ``row`` under the header that starts with ``column`` (case-insensitive)."""
        for i, h in enumerate(self.header):
            if h.strip().lower().startswith(column) and i < len(row):
                return row[i]
        return None


def _split_row(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", body)]


def _is_separator(line: str) -> bool:
    cells = _split_row(line)
    return bool(cells) and all(re.fullmatch(r":?-{3,}:?", c) for c in cells)


def tables(text: str, source: str) -> list[Table]:
    """Every pipe table of a Markdown text outside fenced code."""
    out: list[Table] = []
    lines = text.splitlines()
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            i += 1
            continue
        if fence is None and stripped.startswith("|") and i + 1 < len(lines) \
                and _is_separator(lines[i + 1]):
            header = _split_row(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            out.append(Table(source, header, rows))
            continue
        i += 1
    return out


def interface_sections(text: str) -> Iterator[tuple[str, str]]:
    """``(title, body)`` of every section titled "Test-vector interface" (subsections included),
    headings inside fenced code ignored."""
    lines = text.splitlines()
    fence: str | None = None
    heads: list[tuple[int, int, str]] = []  # (line index, level, title)
    for idx, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        m = _HEADING.match(line) if fence is None else None
        if m:
            heads.append((idx, len(m.group(1)), m.group(2)))
    for n, (idx, level, title) in enumerate(heads):
        bare = re.sub(r"^[0-9A-Z]+(\.[0-9]+)*\.?\s+", "", title).strip().lower()
        if bare != SECTION_TITLE:
            continue
        end = len(lines)
        for idx2, level2, _ in heads[n + 1:]:
            if level2 <= level:
                end = idx2
                break
        yield title, "\n".join(lines[idx + 1:end])


def name_of(cell: str) -> str | None:
    m = _TICK.search(cell)
    return m.group(1).strip() if m else None


@dataclass(frozen=True)
class Fields:
    names: set[str]
    free: set[str]  # marked (free)
    optional: set[str]  # marked (optional)
    types: dict[str, str] = field(default_factory=dict)  # name -> first type word

    @property
    def required(self) -> set[str]:
        return self.names - self.free - self.optional


def fields_of(cell: str | None) -> Fields | None:
    """The fields of a field-list cell; None when the cell lists no field (an unchecked ok
    value); no fields for ``—`` or an empty cell."""
    if cell is None:
        return Fields(set(), set(), set())
    matches = list(_FIELD.finditer(cell))
    if not matches:
        return None if cell.strip() not in ("", "—", "-", "–") else Fields(set(), set(), set())
    names, free, optional = set(), set(), set()
    types: dict[str, str] = {}
    for k, m in enumerate(matches):
        seg = cell[m.end():matches[k + 1].start() if k + 1 < len(matches) else len(cell)]
        names.add(m.group(1))
        if "(free)" in seg:
            free.add(m.group(1))
        if "(optional" in seg:
            optional.add(m.group(1))
        t = _TYPE.match(seg)
        if t:
            types[m.group(1)] = t.group(1).lower() + ("|null" if " or null" in seg else "")
    return Fields(names, free, optional, types)


@dataclass
class OpDef:
    source: str
    params: set[str] | None
    input: set[str] | None
    value: set[str] | None
    errors: set[str]
    free: set[str] = field(default_factory=set)  # ok-value fields marked (free)
    required: set[str] = field(default_factory=set)  # ok-value fields neither free nor optional
    types: dict[str, dict[str, str]] = field(default_factory=dict)  # part -> field -> type


@dataclass
class MachineDef:
    source: str
    roles: set[str] = field(default_factory=set)
    config: set[str] = field(default_factory=set)
    commands: dict[str, set[str]] = field(default_factory=dict)
    events: dict[str, set[str]] = field(default_factory=dict)
    free: dict[str, set[str]] = field(default_factory=dict)  # event -> free fields
    required: dict[str, set[str]] = field(default_factory=dict)  # event -> required fields
    types: dict[str, dict[str, str]] = field(default_factory=dict)  # "cmd X"/"event X"/"config"
    states: set[str] = field(default_factory=set)


@dataclass
class Contract:
    ops: dict[str, OpDef] = field(default_factory=dict)
    machines: dict[str, MachineDef] = field(default_factory=dict)
    input_items: set[str] = field(default_factory=set)
    output_items: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)  # malformed or conflicting tables

    def describe(self) -> str:
        out = [f"input items: {sorted(self.input_items)}",
               f"output items: {sorted(self.output_items)}"]
        for name, op in sorted(self.ops.items()):
            out.append(f"op {name} ({op.source}): params {_show(op.params)} "
                       f"input {_show(op.input)} value {_show(op.value)} "
                       f"errors {sorted(op.errors)}")
        for name, m in sorted(self.machines.items()):
            out.append(f"machine {name} ({m.source}): roles {sorted(m.roles)} config "
                       f"{sorted(m.config)} states {sorted(m.states)}")
            out += [f"  command {c}: {sorted(a)}" for c, a in sorted(m.commands.items())]
            out += [f"  event {e}: {sorted(f)}" for e, f in sorted(m.events.items())]
        out.append(f"registry codes: {len(self.codes)}")
        return "\n".join(out)


def _show(s: set[str] | None) -> str:
    return "(unchecked)" if s is None else str(sorted(s))


def _add_op(c: Contract, t: Table, row: list[str]) -> None:
    name = name_of(row[0])
    if not name:
        return
    errors = {tok for tok in _TICK.findall(t.cell(row, "errors") or "") if _CODE.match(tok)}
    parts = [fields_of(t.cell(row, col)) for col in ("params", "input", "ok value")]
    params, inp, value = (None if p is None else p.names for p in parts)
    if name in c.ops:
        c.problems.append(f"op {name} is defined twice ({c.ops[name].source}, {t.source})")
    out = parts[2]
    c.ops[name] = OpDef(t.source, params if params is not None else set(),
                        inp if inp is not None else set(), value, errors,
                        out.free if out is not None else set(),
                        out.required if out is not None else set(),
                        {part: p.types for part, p in zip(("params", "input", "value"), parts,
                                                          strict=True) if p is not None})


def _scope(t: Table, row: list[str], section_machines: set[str], c: Contract) -> set[str]:
    cell = t.cell(row, "machine")
    if cell is not None:
        return set(_TICK.findall(cell))
    if not section_machines:
        c.problems.append(f"{t.source}: a {t.kind} table without a machine column in a section "
                          f"that defines no machine")
    return section_machines


def _read_section(c: Contract, section: list[Table]) -> None:
    mine: set[str] = set()
    for t in section:
        if t.kind == "machine":
            for row in t.rows:
                name = name_of(row[0])
                if name:
                    m = c.machines.setdefault(name, MachineDef(t.source))
                    m.roles |= set(_TICK.findall(t.cell(row, "roles") or ""))
                    mine.add(name)
    for t in section:
        if t.kind == "op":
            for row in t.rows:
                _add_op(c, t, row)
        elif t.kind in MACHINE_KINDS:
            for row in t.rows:
                name = name_of(row[0])
                if not name:
                    continue
                for mname in _scope(t, row, mine, c):
                    m = c.machines.setdefault(mname, MachineDef(t.source))
                    if t.kind == "config key":
                        m.config.add(name)
                        ty = _TYPE.match(t.cell(row, "type") or "")
                        if ty:
                            m.types.setdefault("config", {})[name] = ty.group(1).lower()
                    elif t.kind == "state":
                        m.states.add(name)
                    elif t.kind == "command":
                        f = fields_of(t.cell(row, "args"))
                        m.commands[name] = f.names if f else set()
                        m.types[f"cmd {name}"] = f.types if f else {}
                    else:
                        f = fields_of(t.cell(row, "fields"))
                        m.events[name] = f.names if f else set()
                        m.free[name] = f.free if f else set()
                        m.required[name] = f.required if f else set()
                        m.types[f"event {name}"] = f.types if f else {}


def read_contract(spec_dir: Path, readme: Path) -> Contract:
    c = Contract()
    text = readme.read_text(encoding="utf-8")
    rel = _rel(readme)
    generic = [t for t in tables(text, rel) if t.kind in ("op", "input item", "output item")]
    for t in generic:
        for row in t.rows:
            name = name_of(row[0])
            if not name:
                continue
            if t.kind == "op":
                _add_op(c, t, row)
            elif t.kind == "input item":
                c.input_items.add(name)
            else:
                c.output_items.add(name)
    for path in sorted(spec_dir.glob("*.md")):
        doc = path.read_text(encoding="utf-8")
        for title, body in interface_sections(doc):
            src = f"{_rel(path)} \"{title}\""
            _read_section(c, [t for t in tables(body, src) if t.kind in KINDS])
        for name, rows in registry_tables(doc).items():
            if name == "error-codes":
                c.codes |= {r[1] for r in rows if len(r) > 1 and _CODE.match(r[1])}
    for name, op in sorted(c.ops.items()):  # a typo in an errors cell would hide a wrong vector
        for code in sorted(op.errors - c.codes):
            c.problems.append(f"op {name} ({op.source}) lists {code}, which no error-codes "
                              "registry table defines")
    return c


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


# --- checking the vectors -----------------------------------------------------------------------


@dataclass
class Findings:
    undefined: dict[str, list[str]] = field(default_factory=dict)  # key -> vector ids
    errors: list[str] = field(default_factory=list)  # not allow-listable

    def need(self, ok: bool, key: str, vid: str) -> None:
        if not ok:
            ids = self.undefined.setdefault(key, [])
            if vid not in ids:
                ids.append(vid)


def _walk_ints(obj: Any, where: str, out: list[str]) -> None:
    if isinstance(obj, bool):
        return
    if isinstance(obj, int):
        if abs(obj) > MAX_SAFE_INT:
            out.append(f"{where}: integer {obj} beyond 2^53-1 must be {{\"int\": \"{obj}\"}}")
    elif isinstance(obj, float):
        out.append(f"{where}: non-integer number {obj!r} (vectors carry no floats)")
    elif isinstance(obj, dict):
        text = obj.get("int") if set(obj) == {"int"} else None
        if isinstance(text, str) and (not _DECIMAL.match(text) or text == "-0"):
            out.append(f"{where}: {{\"int\": {obj['int']!r}}} is not a canonical decimal")
        for k, v in obj.items():
            _walk_ints(v, f"{where}.{k}", out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _walk_ints(v, f"{where}[{i}]", out)


class Linter:
    def __init__(self, contract: Contract) -> None:
        self.c = contract
        self.f = Findings()
        self._conn_use: dict[str, bool] = {}  # vector id -> whether its recv/send carry conn

    def typed(self, types: dict[str, str], obj: Json, what: str, vid: str) -> None:
        for k, v in obj.items():
            problem = type_problem(types[k], v) if k in types else None
            if problem:
                self.f.errors.append(f"{vid}: {what} {k}: {problem} (the spec's type)")

    def code(self, code: Any, vid: str) -> None:
        self.f.need(isinstance(code, str) and code in self.c.codes, f"error code {code}", vid)

    def machine(self, name: Any, vid: str) -> MachineDef | None:
        m = self.c.machines.get(str(name))
        self.f.need(m is not None, f"machine {name}", vid)
        return m

    def role(self, m: MachineDef | None, mname: str, role: Any, vid: str) -> None:
        if m is not None:
            self.f.need(role in m.roles, f"machine {mname} role {role}", vid)

    def config(self, m: MachineDef | None, mname: str, config: Any, vid: str,
               valid: bool = True) -> None:
        if m is not None and isinstance(config, dict) and valid:
            # an invalid config may carry an undefined key or a wrong type on purpose: the
            # vector checks that machine.new refuses it
            for k in config:
                self.f.need(k in m.config, f"machine {mname} config {k}", vid)
            self.typed(m.types.get("config", {}), config, f"machine {mname} config", vid)

    def in_item(self, m: MachineDef | None, mname: str, item: Any, vid: str,
                valid: bool = True) -> None:
        if not isinstance(item, dict):
            self.f.errors.append(f"{vid}: input item {item!r} is not an object")
            return
        kinds = [k for k in item if k in self.c.input_items] or list(item)[:1]
        for k in kinds:
            self.f.need(k in self.c.input_items, f"input item {k}", vid)
        self.conn(item, "recv", vid)
        if "cmd" in item and m is not None:
            cmd = item["cmd"]
            self.f.need(cmd in m.commands, f"machine {mname} command {cmd}", vid)
            for a in set(item) - {"cmd"}:
                self.f.need(a in m.commands.get(cmd, set()),
                            f"machine {mname} command {cmd} arg {a}", vid)
            if valid:
                self.typed(m.types.get(f"cmd {cmd}", {}),
                           {k: v for k, v in item.items() if k != "cmd"},
                           f"command {cmd} arg", vid)

    def conn(self, item: Json, carrier: str, vid: str) -> None:
        """The connection-addressed items of conformance/README.md §3.4: the ``conn`` of a
        ``recv`` (input) or ``send`` (output) item is an int in 0 .. 2^53 - 1, and within one
        vector every ``recv`` / ``send`` item carries it or none does."""
        if carrier not in item:
            return  # a command argument or an event field named conn is the layer's business
        has = "conn" in item
        if has:
            c = item["conn"]
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= MAX_SAFE_INT:
                self.f.errors.append(f"{vid}: conn {c!r} is not an int in 0 .. 2^53-1")
        seen = self._conn_use.setdefault(vid, has)
        if seen != has:
            self.f.errors.append(f"{vid}: some recv/send items carry conn and others do not "
                                 "(conformance/README.md §3.4)")
            self._conn_use[vid] = has

    def event(self, m: MachineDef | None, mname: str, item: Json, vid: str,
              exact: bool = False) -> None:
        name = item.get("event")
        fields = set(item) - {"event"}
        for f in fields & set(FREE_EVENT_FIELDS):
            self.f.errors.append(f"{vid}: expected event {name} carries free text {f!r} "
                                 "(conformance/README.md §3.3: never compared)")
        if m is None:
            return
        self.f.need(name in m.events, f"machine {mname} event {name}", vid)
        for f in fields:
            self.f.need(f in m.events.get(str(name), set()),
                        f"machine {mname} event {name} field {f}", vid)
            if f in m.free.get(str(name), set()):
                self.f.errors.append(f"{vid}: expected event {name} carries {f!r}, which the "
                                     "spec marks (free)")
        self.typed(m.types.get(f"event {name}", {}),
                   {k: v for k, v in item.items() if k != "event"}, f"event {name} field", vid)
        if exact:  # a transcript's out is compared exactly: a port emits every required field
            for f in m.required.get(str(name), set()) - fields:
                self.f.need(False, f"machine {mname} event {name} field {f} is required but "
                                   "missing", vid)

    def out_item(self, m: MachineDef | None, mname: str, item: Any, vid: str) -> None:
        if not isinstance(item, dict) or len([k for k in item if k in self.c.output_items]) > 1:
            self.f.errors.append(f"{vid}: output item {item!r} is not one output item")
            return
        kind = next((k for k in item if k in self.c.output_items), next(iter(item), "?"))
        self.f.need(kind in self.c.output_items, f"output item {kind}", vid)
        self.conn(item, "send", vid)
        if kind == "event":
            self.event(m, mname, item, vid, exact=True)
        elif kind == "error" and not re.fullmatch(r"0x[0-9a-f]{4}", str(item["error"])):
            self.code(item["error"], vid)  # (a peer's unregistered code is written 0xhhhh)

    def state(self, m: MachineDef | None, mname: str, state: Any, vid: str) -> None:
        if m is None or state == "":
            return
        if state in m.states or not isinstance(state, str):
            self.f.need(state in m.states, f"machine {mname} state {state}", vid)
            return
        # a composite state (conformance/README.md §3.5): space-separated names, each possibly
        # prefixed by a connection id and a colon, e.g. "connected 1:END_SENT 2:OPEN"
        for token in state.split(" "):
            name = re.sub(r"^[0-9]+:", "", token)
            self.f.need(name in m.states, f"machine {mname} state {name}", vid)

    def outcome(self, m: MachineDef | None, mname: str, per_role: Any, vid: str) -> None:
        if not isinstance(per_role, dict):
            return
        for role, o in per_role.items():
            self.role(m, mname, role, vid)
            if not isinstance(o, dict):
                continue
            if "state" in o:
                self.state(m, mname, o["state"], vid)
            for e in o.get("events", []):
                if isinstance(e, dict):
                    self.event(m, mname, e, vid)
            for code in o.get("errors", []):
                self.code(code, vid)

    def test(self, op: str, params: Json, t: Json) -> None:
        vid = str(t.get("id"))
        inp, expect = t.get("input") or {}, t.get("expect") or {}
        ints: list[str] = []
        _walk_ints(inp, f"{vid}: input", ints)
        _walk_ints(expect, f"{vid}: expect", ints)
        self.f.errors += ints
        if op == "machine.transcript":
            mname = str(params.get("machine"))
            m = self.machine(mname, vid)
            self.role(m, mname, params.get("role"), vid)
            self.config(m, mname, params.get("config"), vid, valid="error" not in expect)
            if "error" in expect:
                self.code(expect["error"], vid)
            steps = inp.get("steps", [])
            want = (expect.get("value") or {}).get("steps")
            for i, s in enumerate(steps):
                w = want[i] if isinstance(want, list) and i < len(want) else s
                self.in_item(m, mname, s.get("in"), vid, valid="error" not in w)
                if "error" in w:  # a refused command (conformance/README.md §4.2)
                    self.code(w["error"], vid)
                for o in w.get("out", []):
                    self.out_item(m, mname, o, vid)
                if "state" in w:
                    self.state(m, mname, w["state"], vid)
        elif op == "machine.pair":
            mname = str(params.get("machine"))
            m = self.machine(mname, vid)
            for r in params.get("roles", []):
                self.role(m, mname, r, vid)
            for cfg in (params.get("config") or {}).values():
                self.config(m, mname, cfg, vid)
            for s in inp.get("script", []):
                self.role(m, mname, s.get("role"), vid)
                self.in_item(m, mname, s.get("in"), vid)
            value = expect.get("value") or {}
            self.outcome(m, mname, value.get("final"), vid)
            for alt in value.get("underFaults", []):
                self.outcome(m, mname, alt, vid)
            for st in value.get("streams", []):
                if m is not None and isinstance(st, dict):
                    self.role(m, mname, st.get("role"), vid)
                    self.f.need(st.get("field") in m.events.get(str(st.get("event")), set()),
                                f"machine {mname} event {st.get('event')} field "
                                f"{st.get('field')}", vid)
            for pair in value.get("equal", []):
                if m is not None and isinstance(pair, list) and len(pair) == 2:
                    self.f.need(pair[1] in m.events.get(str(pair[0]), set()),
                                f"machine {mname} event {pair[0]} field {pair[1]}", vid)
        else:
            d = self.c.ops.get(op)
            self.f.need(d is not None, f"op {op}", vid)
            if d is None:
                return
            for part, keys, allowed in (("params", params, d.params), ("input", inp, d.input)):
                for k in keys:
                    self.f.need(allowed is None or k in allowed, f"op {op} {part} {k}", vid)
                if t.get("result") == "valid":  # invalid inputs may be ill-typed on purpose
                    self.typed(d.types.get(part, {}), keys, f"op {op} {part}", vid)
            value = expect.get("value")
            if isinstance(value, dict):
                self.typed(d.types.get("value", {}), value, f"op {op} value", vid)
            if d.value is not None and isinstance(value, dict):
                for k in value:
                    self.f.need(k in d.value, f"op {op} value {k}", vid)
                    if k in d.free:
                        self.f.errors.append(f"{vid}: expected value of {op} carries {k!r}, "
                                             "which the spec marks (free)")
                for k in d.required - set(value):  # compared exactly: a port emits them all
                    self.f.need(False, f"op {op} value {k} is required but missing", vid)
            if "error" in expect:
                self.f.need(expect["error"] in d.errors, f"op {op} error {expect['error']}", vid)
                self.code(expect["error"], vid)

    def file(self, path: Path) -> None:
        rel = _rel(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.f.errors.append(f"{rel}: cannot read: {exc}")
            return
        for g in doc.get("testGroups", []):
            op, params = str(g.get("op")), g.get("params") or {}
            ints: list[str] = []
            _walk_ints(params, f"{rel}: group {op} params", ints)
            self.f.errors += ints
            for t in g.get("tests", []):
                self.test(op, params, t)


def read_pending(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    keys = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            keys.append(line)
    return keys


def lint(vectors: Path, spec: Path, readme: Path, pending_file: Path | None
         ) -> tuple[list[str], list[str], list[str]]:
    """``(failures, pending, notes)``: failures make the run fail; pending are allow-listed
    undefined items still in use; notes are informative."""
    contract = read_contract(spec, readme)
    linter = Linter(contract)
    files = sorted(vectors.rglob("*.json"))
    for path in files:
        linter.file(path)
    pending = read_pending(pending_file)
    failures = [f"contract: {p}" for p in contract.problems]
    failures += linter.f.errors
    still: list[str] = []
    for key, ids in sorted(linter.f.undefined.items()):
        shown = ", ".join(ids[:3]) + (f" (+{len(ids) - 3} more)" if len(ids) > 3 else "")
        if key in pending:
            still.append(f"{key}    [{shown}]")
        else:
            failures.append(f"undefined: {key}    [used by {shown}]")
    for key in pending:
        if key not in linter.f.undefined:
            failures.append(f"stale allow-list entry (now defined or unused, remove it): {key}")
    notes = [f"{len(files)} vector files, {len(contract.ops)} ops and {len(contract.machines)} "
             f"machines defined"]
    return failures, still, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=Path, default=ROOT / "test-vectors" / "v1")
    ap.add_argument("--spec", type=Path, default=ROOT / "spec")
    ap.add_argument("--readme", type=Path, default=ROOT / "conformance" / "README.md")
    ap.add_argument("--pending", type=Path, default=ROOT / "conformance" / "lint-pending.txt")
    ap.add_argument("--defined", action="store_true", help="print what the text defines")
    a = ap.parse_args(argv)
    if not a.vectors.is_dir():
        print(f"vector_lint: no vector directory {a.vectors}", file=sys.stderr)
        return 2
    if a.defined:
        print(read_contract(a.spec, a.readme).describe())
    failures, pending, notes = lint(a.vectors, a.spec, a.readme, a.pending)
    for line in pending:
        print(f"pending (conformance/lint-pending.txt): {line}")
    for line in failures:
        print(line)
    for line in notes:
        print(f"vector_lint: {line}")
    if failures:
        print(f"vector_lint: {len(failures)} problem(s)")
        return 1
    print(f"vector_lint: ok ({len(pending)} pending)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
