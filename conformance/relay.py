"""Two-party mode: the harness is the network between two machines (``machine.pair`` groups).

A ``machine.pair`` vector names a machine and two roles.  The runner creates one machine per role
— in adapter A and adapter B, which may be two different implementations (``--peer-adapter``) or
the same process — then plays a small discrete-event simulation on a virtual clock:

1. every ``script`` entry ``{role, now, in}`` is an input injected at time ``now``;
2. every ``{"send": hex}`` a machine outputs is delivered to the *other* role as
   ``{"recv": hex}`` at ``now + latencyMs`` (default 10), unless a relay fault (seeded RNG)
   drops it, duplicates it, or delays it by up to ``3 * latencyMs + 1`` ms so it can overtake;
3. when nothing is in flight and ``tick`` is given, both roles get ``{"tick": true}`` every
   ``tick.everyMs`` ms, at most ``tick.max`` times, until each role sits in a final state the
   vector names;
4. events (``{"event": ...}``) and errors (``{"error": CODE}``) are collected per role.

Connection-addressed machines (``{"send": hex, "conn": N}``, README §3.4) get a fault model that
respects what a connection is, a reliable ordered transport (README §5.2): frames of one
connection and direction are delivered in order; a dropped frame kills its connection (the rest
of its frames are lost and each role that opened it gets ``{"recv": "", "conn": N}``); a delay
reorders frames only across connections; a duplicate is a frame the transport repeats.

The final per-role state, events and errors are then checked against ``expect.value`` (see
conformance/README.md "Two-party vectors"), and so are its ``streams``: the values an event
carries must be a prefix of the listed values (all of them on a perfect network).  With faults
enabled, only vectors that declare ``underFaults`` are disturbed (the others run on a perfect
network), and any listed outcome is accepted — the check becomes a safety property: never two
different keys, never a message lost inside a stream, duplicated or reordered.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Any

from .jobs import FAIL, PASS, UNSUPPORTED, Call, Job, Verdict, json_equal, machine_new_call, short
from .vectors import Case

__all__ = ["Faults", "pair_job"]

Json = dict[str, Any]

DEFAULT_P = {"drop": 0.1, "dup": 0.1, "reorder": 0.25}


@dataclass(frozen=True)
class Faults:
    drop: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return bool(self.drop or self.dup or self.reorder)

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> Faults:
        """``"drop,dup,reorder"`` (default rates) or ``"drop=0.3,reorder=0.5"``."""
        rates: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, rate = part.partition("=")
            if name not in DEFAULT_P:
                raise ValueError(f"unknown relay fault {name!r} (drop, dup, reorder)")
            rates[name] = float(rate) if rate else DEFAULT_P[name]
            if not 0.0 <= rates[name] <= 1.0:
                raise ValueError(f"fault rate {part!r} not in [0, 1]")
        return cls(seed=seed, **rates)

    def describe(self) -> str:
        if not self.active:
            return "none"
        parts = [f"{k}={getattr(self, k)}" for k in DEFAULT_P if getattr(self, k)]
        return ",".join(parts) + f" seed={self.seed}"


def _subset_match(want: Json, got: Json) -> bool:
    return all(k in got and json_equal(got[k], v) for k, v in want.items())


def _role_matches(want: Json, state: str, events: list[Json], errors: list[str]) -> str | None:
    """None if the role's outcome satisfies ``want`` ({state?, events?, errors?}), else why not;
    an outcome without ``state`` accepts any state."""
    if "state" in want and state != want["state"]:
        return f"state {state}, expected {want.get('state')}"
    pos = 0
    for w in want.get("events", []):  # expected events: an ordered subsequence, key subset
        while pos < len(events) and not _subset_match(w, events[pos]):
            pos += 1
        if pos == len(events):
            return f"missing event {short(w)} (got {short(events)})"
        pos += 1
    for code in want.get("errors", []):
        if code not in errors:
            return f"missing error {code} (got {errors})"
    return None


def pair_job(case: Case, assign: dict[str, str], faults: Faults | None = None,
             variant: str = "") -> Job:
    """Run one ``machine.pair`` vector; ``assign`` maps each role to an adapter target."""
    p, inp = case.params, case.input
    value: Json = case.expect.get("value") or {}
    roles = [str(r) for r in p["roles"]]
    final: Json = value.get("final", {})
    alternatives: list[Json] = [final]
    use_faults = faults is not None and faults.active and bool(value.get("underFaults"))
    if use_faults:
        alternatives += list(value["underFaults"])
    configs: Json = p.get("config") or {}
    rngs: Json = inp.get("rng") or {}

    handles: dict[str, Any] = {}
    verdict: Verdict | None = None
    for role in roles:
        r = yield machine_new_call(assign[role], str(p["machine"]), role,
                                   dict(configs.get(role) or {}), list(rngs.get(role, [])))
        if r.get("status") == "unsupported":
            verdict = Verdict(UNSUPPORTED, f"machine.new unsupported ({role} on {assign[role]})")
            break
        if r.get("status") != "ok":
            verdict = Verdict(FAIL, f"machine.new({role}) failed: {r.get('error')}")
            break
        handles[role] = (r.get("value") or {}).get("handle")
    if verdict is None:
        verdict = yield from _simulate(case, roles, assign, handles, alternatives, value,
                                       faults if use_faults else None, variant)
    for role, h in handles.items():
        yield Call(assign[role], "machine.drop", {"handle": h}, {})
    return verdict


def _simulate(case: Case, roles: list[str], assign: dict[str, str], handles: dict[str, Any],
              alternatives: list[Json], value: Json, faults: Faults | None,
              variant: str) -> Job:
    inp = case.input
    latency = int(inp.get("latencyMs", 10))
    tick: Json = inp.get("tick") or {}
    max_deliveries = int(inp.get("maxDeliveries", 1000))
    rnd = random.Random(f"{faults.seed if faults else 0}:{case.id}:{variant}")
    peer = {roles[0]: roles[1], roles[1]: roles[0]}
    finals = {r: {str(alt[r]["state"]) for alt in alternatives if r in alt and "state" in alt[r]}
              for r in roles}
    any_state = {r: any(r in alt and "state" not in alt[r] for alt in alternatives)
                 for r in roles}
    # connection-addressed machines (README §3.4, §5.2)
    opened: dict[str, set[int]] = {r: set() for r in roles}  # conns each role opened
    dead: set[int] = set()  # killed connections: their later frames are lost
    eof_sent: set[tuple[str, int]] = set()
    last_at: dict[tuple[str, int], int] = {}  # (to role, conn) -> last delivery time (FIFO)

    queue: list[tuple[int, int, str, Json]] = []
    seq = 0
    for entry in inp.get("script", []):
        heapq.heappush(queue, (int(entry["now"]), seq, str(entry["role"]), dict(entry["in"])))
        seq += 1
    state = {r: "" for r in roles}
    events: dict[str, list[Json]] = {r: [] for r in roles}
    errors: dict[str, list[str]] = {r: [] for r in roles}
    steps = ticks = 0
    now = 0
    log: list[str] = []
    def kill(conn: int, at: int, skip: str | None = None) -> None:
        nonlocal seq
        if conn in dead:
            return
        dead.add(conn)
        log.append(f"t={at} conn {conn} killed")
        for r in roles:
            if r != skip and conn in opened[r] and (r, conn) not in eof_sent:
                eof_sent.add((r, conn))
                heapq.heappush(queue, (at + latency, seq, r, {"recv": "", "conn": conn}))
                seq += 1

    while True:
        if not queue:
            if tick and ticks < int(tick.get("max", 0)) and any(
                    state[r] not in finals[r] and not any_state[r] for r in roles):
                ticks += 1
                now += int(tick["everyMs"])
                for r in roles:
                    heapq.heappush(queue, (now, seq, r, {"tick": True}))
                    seq += 1
                continue
            break
        now, _, role, item = heapq.heappop(queue)
        conn = item.get("conn") if isinstance(item, dict) else None
        if isinstance(conn, int) and "recv" in item:
            if item["recv"] == "":  # a transport closed: the connection is gone for both roles
                eof_sent.add((role, conn))
                kill(conn, now, skip=role)
            elif conn in dead:
                continue  # lost with its connection
        steps += 1
        if steps > max_deliveries:
            return Verdict(FAIL, f"no quiescence after {max_deliveries} steps")
        resp = yield Call(assign[role], "machine.step", {"handle": handles[role]},
                          {"now": now, "in": item})
        if resp.get("status") != "ok":
            return Verdict(FAIL, f"{role}: machine.step error {resp.get('error')} at t={now} "
                                 f"on {short(item, 80)}")
        got = resp.get("value") or {}
        state[role] = str(got.get("state"))
        if isinstance(item, dict) and "cmd" in item and isinstance(conn, int):
            opened[role].add(conn)
        for out in got.get("out") or []:
            if "send" in out and isinstance(out.get("conn"), int):
                c = int(out["conn"])
                if c in dead:
                    continue
                if faults and rnd.random() < faults.drop:
                    log.append(f"t={now} drop {role}->{peer[role]} on conn {c}")
                    kill(c, now)
                    continue
                copies = 2 if faults and rnd.random() < faults.dup else 1
                at = now + latency
                if faults and rnd.random() < faults.reorder:
                    at += rnd.randint(0, 3 * latency + 1)
                key = (peer[role], c)
                at = max(at, last_at.get(key, 0))  # a connection is ordered (FIFO)
                last_at[key] = at
                for _ in range(copies):  # a duplicate: the transport repeats the frame
                    heapq.heappush(queue, (at, seq, peer[role], {"recv": out["send"], "conn": c}))
                    seq += 1
            elif "send" in out:
                if faults and rnd.random() < faults.drop:
                    log.append(f"t={now} drop {role}->{peer[role]}")
                    continue
                copies = 2 if faults and rnd.random() < faults.dup else 1
                for _ in range(copies):
                    delay = latency
                    if faults and rnd.random() < faults.reorder:
                        delay += rnd.randint(0, 3 * latency + 1)
                    heapq.heappush(queue, (now + delay, seq, peer[role], {"recv": out["send"]}))
                    seq += 1
            elif "event" in out:
                events[role].append(out)
            elif "error" in out:
                errors[role].append(str(out["error"]))

    reasons: list[str] = []
    for i, alt in enumerate(alternatives):
        why = [f"{r}: {w}" for r in roles if r in alt
               and (w := _role_matches(alt[r], state[r], events[r], errors[r]))]
        if not why:
            break
        reasons.append(("final" if i == 0 else f"underFaults[{i - 1}]") + ": " + "; ".join(why))
    else:
        return Verdict(FAIL, " | ".join(reasons) + (f" [{'; '.join(log)}]" if log else ""))
    for st in value.get("streams", []):
        got_vals = [e.get(st["field"]) for e in events.get(st["role"], [])
                    if e.get("event") == st["event"]]
        want_vals = list(st["values"])
        if not (len(got_vals) <= len(want_vals)
                and all(json_equal(g, w) for g, w in zip(got_vals, want_vals, strict=False))):
            return Verdict(FAIL, f"{st['role']}: {st['event']}.{st['field']} values "
                                 f"{short(got_vals)} are not a prefix of {short(want_vals)} "
                                 "(lost, duplicated or reordered)"
                           + (f" [{'; '.join(log)}]" if log else ""))
        if not faults and len(got_vals) != len(want_vals):
            return Verdict(FAIL, f"{st['role']}: {st['event']}.{st['field']}: "
                                 f"{len(got_vals)} of {len(want_vals)} values arrived")
    for ev_name, fld in value.get("equal", []):
        vals = []
        for r in roles:
            hits = [e for e in events[r] if e.get("event") == ev_name]
            if hits:
                vals.append(hits[-1].get(fld))
        if len(vals) == len(roles) and not all(json_equal(v, vals[0]) for v in vals):
            return Verdict(FAIL, f"{ev_name}.{fld} differs between roles: {short(vals)}")
        if len(vals) != len(roles) and not faults:
            return Verdict(FAIL, f"{ev_name} with {fld} not emitted by every role")
    return Verdict(PASS, "; ".join(log))
