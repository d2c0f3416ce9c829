"""Drive jobs against adapter processes (pipelined) or an in-process handler.

Subprocess driver: one long-lived process per target ("A", and "B" in two-party mode).  Up to
``window`` jobs are in flight at once, each with at most one outstanding request, so requests are
pipelined without reordering any one job's calls.  A reader thread per process feeds one queue.

- Timeout: when a target has requests outstanding and has answered nothing for ``timeout``
  seconds, its oldest outstanding request is blamed: that job is a ``timeout``, the process is
  killed and restarted, and every other job that had touched it is re-queued from scratch.
- Crash: EOF on stdout (the process died) blames the oldest outstanding request the same way
  (``crash``); a job re-queued more than :data:`MAX_REQUEUE` times becomes a ``crash`` too.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from .jobs import CRASH, TIMEOUT, Call, Job, JobFactory, Verdict

__all__ = ["AdapterError", "AdapterProcess", "Hello", "run_inprocess", "run_jobs"]

Json = dict[str, Any]
MAX_REQUEUE = 3
STDERR_TAIL = 40


class AdapterError(Exception):
    """The adapter could not be started or broke the hello contract."""


@dataclass(frozen=True)
class Hello:
    impl: str
    version: str
    ops: tuple[str, ...]
    raw: Json


def check_hello(line: str | None) -> Hello:
    if line is None:
        raise AdapterError("adapter exited before its hello line")
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        raise AdapterError(f"hello line is not JSON: {line[:200]!r}") from None
    if not isinstance(msg, dict) or msg.get("p4adapter") != 1:
        raise AdapterError(f"first line is not a p4adapter 1 hello: {line[:200]!r}")
    ops = msg.get("ops")
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        raise AdapterError("hello.ops must be a list of op names")
    if not isinstance(msg.get("impl"), str) or not isinstance(msg.get("version"), str):
        raise AdapterError("hello.impl and hello.version must be strings")
    return Hello(msg["impl"], msg["version"], tuple(ops), msg)


# Messages on the shared queue: (target, generation, line-or-None-for-EOF)
Msg = tuple[str, int, str | None]


class AdapterProcess:
    """One adapter subprocess speaking JSON Lines; restartable."""

    def __init__(self, target: str, argv: list[str], events: queue.Queue[Msg] | None = None,
                 cwd: str | None = None, env: dict[str, str] | None = None,
                 echo_stderr: bool = False) -> None:
        self.target = target
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.events: queue.Queue[Msg] = events if events is not None else queue.Queue()
        self.echo_stderr = echo_stderr
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.next_id = 0
        self.restarts = 0
        self._stderr_thread: threading.Thread | None = None

    def start(self) -> None:
        self.generation += 1
        self.stderr_tail.clear()
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self.cwd, env=env,
            )
        except OSError as exc:
            raise AdapterError(f"cannot start {self.argv!r}: {exc}") from None
        gen = self.generation
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read_stdout, args=(self.proc.stdout, gen),
                         daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._read_stderr, args=(self.proc.stderr,),
                                               daemon=True)
        self._stderr_thread.start()

    def _read_stdout(self, stream: IO[bytes], gen: int) -> None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: closed by kill()
            for raw in stream:
                self.events.put((self.target, gen, raw.decode("utf-8", "replace")))
        self.events.put((self.target, gen, None))

    def _read_stderr(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.stderr_tail.append(line)
                if self.echo_stderr:
                    print(f"[{self.target}] {line}", file=sys.stderr, flush=True)

    def send(self, obj: Json) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            # a lone surrogate (a vector about one, e.g. fil-name-lone-surrogate) has no UTF-8
            # form: it goes as its \uXXXX escape, everything else as UTF-8
            line = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}",
                          json.dumps(obj, ensure_ascii=False))
            self.proc.stdin.write((line + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reader thread reports the EOF

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                if s is not None:
                    s.close()

    def exit_info(self) -> str:
        code = None
        if self.proc is not None:
            with contextlib.suppress(Exception):
                code = self.proc.wait(timeout=2)
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1)  # let the last stderr lines arrive
        tail = " | ".join(list(self.stderr_tail)[-5:])
        return f"exit code {code}" + (f"; stderr: {tail[-600:]}" if tail else "")


@dataclass
class _Active:
    index: int
    job: Job
    touched: set[str] = field(default_factory=set)
    pending: tuple[str, int] | None = None  # (target, request id)
    sent_at: float = 0.0


class _Session:
    """Shared state of one run over several adapter processes."""

    def __init__(self, procs: dict[str, AdapterProcess], events: queue.Queue[Msg],
                 timeout: float, startup_timeout: float) -> None:
        self.procs = procs
        self.events = events
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.backlog: deque[Msg] = deque()
        self.last_activity: dict[str, float] = {t: time.monotonic() for t in procs}
        self.hellos: dict[str, Hello] = {}

    def get(self, timeout: float | None) -> Msg | None:
        if self.backlog:
            return self.backlog.popleft()
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def start(self, target: str) -> Hello:
        """(Re)start ``target`` and wait for its hello; other targets' lines are kept."""
        proc = self.procs[target]
        proc.start()
        deadline = time.monotonic() + self.startup_timeout
        stash: list[Msg] = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    proc.kill()
                    raise AdapterError(f"no hello from {target} within {self.startup_timeout}s")
                try:
                    msg = self.events.get(timeout=left)
                except queue.Empty:
                    continue
                t, gen, line = msg
                if t != target:
                    stash.append(msg)
                    continue
                if gen != proc.generation:
                    continue
                if line is None:
                    raise AdapterError(f"{target} exited before its hello ({proc.exit_info()})")
                hello = check_hello(line)
                self.hellos[target] = hello
                self.last_activity[target] = time.monotonic()
                return hello
        finally:
            self.backlog.extend(stash)

    def request(self, target: str, op: str, params: Json, inp: Json) -> tuple[str, int]:
        proc = self.procs[target]
        proc.next_id += 1
        rid = proc.next_id
        proc.send({"id": rid, "op": op, "params": params, "input": inp})
        return target, rid


def probe_unknown_op(session: _Session, target: str, op: str) -> Json | None:
    """Send one request synchronously (the startup probe); None on timeout or EOF."""
    tgt, rid = session.request(target, op, {}, {})
    deadline = time.monotonic() + session.timeout
    stash: list[Msg] = []
    try:
        while (left := deadline - time.monotonic()) > 0:
            msg = session.get(left)
            if msg is None:
                continue
            t, gen, line = msg
            if t != tgt or gen != session.procs[t].generation:
                stash.append(msg)
                continue
            if line is None:
                stash.append(msg)  # the main loop grades the crash
                return None
            try:
                resp = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(resp, dict) and resp.get("id") == rid:
                return resp
        return None
    finally:
        session.backlog.extend(stash)


def run_jobs(factories: list[JobFactory], procs: dict[str, AdapterProcess],
             *, timeout: float = 5.0, startup_timeout: float = 30.0, window: int = 32,
             probe: Callable[[_Session, str], None] | None = None,
             on_result: Callable[[int, Verdict, float], None] | None = None,
             ) -> tuple[list[Verdict], list[float], dict[str, Hello]]:
    """Run every job; returns verdicts and durations (seconds) in job order, and the hellos."""
    events: queue.Queue[Msg] = queue.Queue()
    for p in procs.values():
        p.events = events
    session = _Session(procs, events, timeout, startup_timeout)
    verdicts: list[Verdict | None] = [None] * len(factories)
    durations = [0.0] * len(factories)
    started = [0.0] * len(factories)
    requeues = [0] * len(factories)
    todo: deque[int] = deque(range(len(factories)))
    active: dict[int, _Active] = {}
    by_request: dict[tuple[str, int], _Active] = {}
    dead: set[str] = set()

    try:
        for t in procs:
            session.start(t)
            if probe is not None:
                probe(session, t)

        def finish(a: _Active, v: Verdict) -> None:
            verdicts[a.index] = v
            durations[a.index] = time.monotonic() - started[a.index]
            active.pop(a.index, None)
            if a.pending is not None:
                by_request.pop(a.pending, None)
            if on_result is not None:
                on_result(a.index, v, durations[a.index])

        def advance(a: _Active, resp: Json | None) -> None:
            try:
                call: Call = a.job.send(resp) if resp is not None else next(a.job)
            except StopIteration as stop:
                a.pending = None
                finish(a, stop.value)
                return
            except Exception as exc:  # a bug in the vector or the job: grade, don't abort
                a.pending = None
                finish(a, Verdict("fail", f"harness could not run this vector: {exc!r}"))
                return
            if call.target in dead or call.target not in procs:
                a.pending = None
                finish(a, Verdict(CRASH, f"adapter {call.target} is not running"))
                return
            a.touched.add(call.target)
            key = session.request(call.target, call.op, call.params, call.input)
            a.pending = key
            a.sent_at = time.monotonic()
            by_request[key] = a

        def blame(target: str, outcome: str, why: str) -> None:
            """Oldest request on ``target`` gets ``outcome``; restart; re-queue the others."""
            proc = procs[target]
            info = proc.exit_info() if outcome == CRASH else f"no answer within {timeout}s"
            proc.kill()
            on_target = [a for a in active.values()
                         if a.pending is not None and a.pending[0] == target]
            culprit = min(on_target, key=lambda a: a.pending[1] if a.pending else 0,
                          default=None)
            if culprit is not None:
                culprit.job.close()
                finish(culprit, Verdict(outcome, f"{why}: {info}"))
            for a in [a for a in active.values() if target in a.touched]:
                a.job.close()
                active.pop(a.index)
                if a.pending is not None:
                    by_request.pop(a.pending, None)
                requeues[a.index] += 1
                if requeues[a.index] > MAX_REQUEUE:
                    verdicts[a.index] = Verdict(CRASH, "adapter kept dying while in flight")
                    if on_result is not None:
                        on_result(a.index, verdicts[a.index] or Verdict(CRASH), 0.0)
                else:
                    todo.appendleft(a.index)
            proc.restarts += 1
            try:
                session.start(target)
                if probe is not None:
                    probe(session, target)
            except AdapterError as exc:
                dead.add(target)
                print(f"p4-conformance: cannot restart adapter {target}: {exc}", flush=True)

        while todo or active:
            while todo and len(active) < window:
                i = todo.popleft()
                if verdicts[i] is not None:
                    continue
                a = _Active(i, factories[i]())
                active[i] = a
                started[i] = time.monotonic()
                advance(a, None)
            if not active:
                continue
            now = time.monotonic()
            wait = 0.5
            for t in procs:
                pend = [a.sent_at for a in active.values() if a.pending and a.pending[0] == t]
                if pend:
                    due = max(min(pend), session.last_activity[t]) + timeout
                    wait = min(wait, due - now)
            msg = session.get(max(wait, 0.0))
            if msg is None:
                now = time.monotonic()
                for t in procs:
                    pend = [a.sent_at for a in active.values() if a.pending and a.pending[0] == t]
                    if pend and now >= max(min(pend), session.last_activity[t]) + timeout:
                        blame(t, TIMEOUT, "timed out")
                continue
            t, gen, line = msg
            if t not in procs or gen != procs[t].generation:
                continue
            if line is None:
                if any(t in a.touched for a in active.values()) or todo:
                    blame(t, CRASH, "adapter died")
                else:
                    dead.add(t)
                continue
            session.last_activity[t] = time.monotonic()
            try:
                resp = json.loads(line)
            except json.JSONDecodeError:
                print(f"p4-conformance: [{t}] non-JSON line on stdout: {line[:200]!r}", flush=True)
                continue
            if not isinstance(resp, dict):
                continue
            rid = resp.get("id")
            waiting = by_request.pop((t, rid), None) if isinstance(rid, int) else None
            if waiting is None:
                continue
            waiting.pending = None
            advance(waiting, resp)
    finally:
        for p in procs.values():
            p.kill()
    out = [v if v is not None else Verdict(CRASH, "not run") for v in verdicts]
    return out, durations, session.hellos


def run_inprocess(factories: list[JobFactory], handler: Callable[[Json], Json]
                  ) -> tuple[list[Verdict], list[float]]:
    """Run every job synchronously through ``handler`` (``p4ref.adapter.handle``)."""
    verdicts: list[Verdict] = []
    durations: list[float] = []
    rid = 0
    for factory in factories:
        t0 = time.monotonic()
        job = factory()
        try:
            call = next(job)
            while True:
                rid += 1
                req = {"id": rid, "op": call.op, "params": call.params, "input": call.input}
                resp = json.loads(json.dumps(handler(req)))  # exactly what a pipe would carry
                call = job.send(resp)
        except StopIteration as stop:
            verdicts.append(stop.value)
        except Exception as exc:
            verdicts.append(Verdict("fail", f"harness could not run this vector: {exc!r}"))
        durations.append(time.monotonic() - t0)
    return verdicts, durations
