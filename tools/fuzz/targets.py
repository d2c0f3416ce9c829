"""Fuzz targets: every decoder, text parser and machine input path of the reference implementation.

A target is a function ``(data: bytes) -> None`` that feeds ``data`` to one entry point and
raises :class:`Finding` when the implementation misbehaves.  "Misbehaves" means what the brief
promises never happens: bad input must end in a typed error with a registry code (a
:class:`~p4ref.errors.P4Error`, or an adapter ``error`` answer naming a registry code), never in
another exception, a hang or corrupted state.

Most targets go through the reference adapter's request interface (conformance/README.md), the
same contract the vectors use: it is stable while the layers' Python APIs move, and an
``INTERNAL_ERROR`` answer is exactly "an exception that was not a typed error".  Seeds come from
``test-vectors/`` (every input the vectors give the same op), so the fuzzer starts from inputs
that reach deep into each decoder.  The profile-store target calls the store directly, on files
in a temporary directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "test-vectors" / "v1"

Json = dict[str, Any]


class Finding(Exception):
    """The implementation did something bad input must never make it do."""


class _OutOfRandom(Exception):
    """The adapter ran out of the transcript's random values: the end of this input, not a bug
    (a fuzzed continuation may draw more, or other sizes, than the recorded transcript did)."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]] = field(default=lambda: [])


def _handle(request: Json) -> Json:
    from p4ref.adapter import handle

    answer = handle(request)
    message = str(answer.get("message", ""))
    if answer.get("error") == "INTERNAL_ERROR" and message.startswith(("transcript rng",
                                                                       "rng value has")):
        raise _OutOfRandom(message)
    if answer.get("status") == "error" and answer.get("error") == "INTERNAL_ERROR":
        raise Finding(f"{request.get('op')}: {answer.get('message')}")
    if answer.get("status") == "unsupported":
        raise Finding(f"{request.get('op')}: the adapter no longer supports this op")
    return answer


def _vector_tests(op: str) -> Iterator[tuple[Json, Json]]:
    """(group params, test input) of every vector whose group op is ``op``."""
    for path in sorted(VECTORS.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for group in doc.get("testGroups", []):
            if group.get("op") != op:
                continue
            for test in group.get("tests", []):
                yield dict(group.get("params") or {}), dict(test.get("input") or {})


def _unlossless(value: Any) -> Any:
    """Undo the vectors' lossless integer form (``{"int": "…"}``) for seeds and configs."""
    if isinstance(value, dict):
        if set(value) == {"int"} and isinstance(value["int"], str):
            return int(value["int"])
        return {k: _unlossless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unlossless(v) for v in value]
    return value


# --- codec and parser ops: one field of the request comes from the fuzzer -----------------------


def _op_target(name: str, op: str, key: str, *, text: bool = False) -> Target:
    """Fuzz ``input[key]`` of ``op`` (hex of the data, or the data as lossy UTF-8 text).

    The other input fields and the group params come from the op's vectors: the data's first byte
    picks which vector's (params, input) is the base, so e.g. both framing paths are fuzzed.
    """
    bases: list[tuple[Json, Json]] = []
    for params, inp in _vector_tests(op):
        base = (params, {k: v for k, v in _unlossless(inp).items() if k != key})
        if base not in bases:
            bases.append(base)
    bases = bases[:32] or [({}, {})]

    def run(data: bytes) -> None:
        params, inp = bases[data[0] % len(bases)] if data else bases[0]
        body = data[1:]
        value: str = body.decode("utf-8", "replace") if text else body.hex()
        _handle({"id": 1, "op": op, "params": params, "input": {**inp, key: value}})

    def seeds() -> list[bytes]:
        out: list[bytes] = []
        for params, inp in _vector_tests(op):
            v = inp.get(key)
            if not isinstance(v, str):
                continue
            try:
                raw = v.encode("utf-8") if text else bytes.fromhex(v)
            except ValueError:
                continue
            rest = {k: x for k, x in _unlossless(inp).items() if k != key}
            index = bases.index((params, rest)) if (params, rest) in bases else 0
            out.append(bytes([index]) + raw)
        return out

    return Target(name, run, seeds)


def _text_target(name: str, parse: Callable[[], Callable[[str], object]],
                 seeds: Callable[[], list[bytes]]) -> Target:
    """A text parser called directly: only a P4Error may come out of it."""

    def run(data: bytes) -> None:
        from p4ref.errors import P4Error

        try:
            parse()(data.decode("utf-8", "replace"))
        except P4Error:
            pass
        except Exception as exc:
            raise Finding(f"{name}: {type(exc).__name__}: {exc}") from exc

    return Target(name, run, seeds)


def _onion_parser() -> Callable[[str], object]:
    from p4ref.rendezvous import _onion

    return _onion.parse_onion_address


def _onion_seeds() -> list[bytes]:
    from p4ref.rendezvous import _onion

    pub = bytes(range(32))
    addr = _onion.onion_address(pub) if hasattr(_onion, "onion_address") else "a" * 56
    return [addr.encode(), (addr + ".onion").encode(), b"a" * 50 + b"=" * 6]


# --- machine input paths --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Transcript:
    params: Json
    rng: list[str]
    steps: list[Json]


def _transcripts(machine: str, role: str) -> list[_Transcript]:
    out = []
    for params, inp in _vector_tests("machine.transcript"):
        if params.get("machine") == machine and params.get("role") == role:
            out.append(_Transcript(_unlossless(params), list(inp.get("rng", [])),
                                   _unlossless(list(inp.get("steps", [])))))
    return out


def _machine_target(name: str, machine: str, role: str) -> Target:
    """Replay a prefix of a vector transcript, then feed the fuzz data as received bytes.

    Data layout: byte 0 picks the transcript, byte 1 how many of its steps run first, byte 2 the
    chunk size the rest is split into (so frame boundaries fall anywhere; 255: one read of
    everything, whatever its size), byte 3's low bit
    whether end of stream follows.  The machine must answer every step without INTERNAL_ERROR (as
    an answer or as an ``error`` output: that code means "a bug of mine", never "bad input"), and
    once it reports an error it must stay in that state.
    """
    cache: list[_Transcript] = []

    def run(data: bytes) -> None:
        if not cache:
            cache.extend(_transcripts(machine, role))
        if not cache or len(data) < 4:
            return
        tx = cache[data[0] % len(cache)]
        prefix = tx.steps[: data[1] % (len(tx.steps) + 1)]
        payload = data[4:]
        chunk = (1 + data[2] % 64 if data[2] < 192 else
                 1 << 16 if data[2] < 255 else max(1, len(payload)))
        new = _handle({"id": 1, "op": "machine.new",
                       "params": {k: tx.params[k] for k in ("machine", "role", "config")},
                       # the fuzzed continuation may draw more than the transcript did: the
                       # same values again (same sizes, in the same order) keep it going
                       "input": {"rng": tx.rng * 8}})
        if new.get("status") != "ok":
            return  # a vector that checks machine.new refuses its config: nothing to step
        handle = new["value"]["handle"]
        now = 0
        try:
            failed_state: str | None = None
            for step in prefix:
                now = int(step["now"])
                _handle({"id": 2, "op": "machine.step", "params": {"handle": handle},
                         "input": {"now": now, "in": step["in"]}})
            inputs: list[Json] = [{"recv": payload[i:i + chunk].hex()}
                                  for i in range(0, len(payload), chunk)]
            if data[3] & 1:
                inputs.append({"recv": ""})
            inputs.append({"tick": True})
            for i, item in enumerate(inputs):
                ans = _handle({"id": 3, "op": "machine.step", "params": {"handle": handle},
                               "input": {"now": now + i, "in": item}})
                if ans.get("status") != "ok":
                    continue  # a refused input is a typed answer; the machine lives on
                value = ans["value"]
                if failed_state is not None and value["state"] != failed_state:
                    raise Finding(f"{machine}/{role} left its failed state {failed_state} "
                                  f"for {value['state']}")
                errors = [o["error"] for o in value["out"] if "error" in o]
                if "INTERNAL_ERROR" in errors:
                    raise Finding(f"{machine}/{role} failed with INTERNAL_ERROR in "
                                  f"{value['state']} on {item}"[:300])
                if errors:
                    failed_state = value["state"]
        except _OutOfRandom:
            pass
        finally:
            _handle({"id": 4, "op": "machine.drop", "params": {"handle": handle}, "input": {}})

    def seeds() -> list[bytes]:
        out = []
        for i, tx in enumerate(_transcripts(machine, role)[:16]):
            received = b"".join(bytes.fromhex(s["in"]["recv"]) for s in tx.steps
                                if isinstance(s.get("in"), dict) and s["in"].get("recv"))
            out.append(bytes([i, 1, 200, 0]) + received)
            # one read of more than 64 KiB: valid frames, then a large PADDING frame's worth
            out.append(bytes([i, 1, 255, 0]) + received + bytes(70_000))
        return out

    return Target(name, run, seeds)


# --- profile store ----------------------------------------------------------------------------


def _store_target(filename: str) -> Target:
    """Profile.open on a profile whose ``filename`` holds the fuzz data."""

    def run(data: bytes) -> None:
        from p4ref.errors import P4Error
        from p4ref.io.store import Profile

        with tempfile.TemporaryDirectory(prefix="p4fuzz-") as tmp:
            home = Path(tmp) / "profile"
            Profile.init(home, lambda n: bytes(range(n)))
            target = home / filename
            target.unlink(missing_ok=True)
            target.write_bytes(data)
            os.chmod(target, 0o600)
            try:
                Profile.open(home).peers()
            except P4Error:
                pass
            except Exception as exc:
                raise Finding(f"Profile.open with a fuzzed {filename}: "
                              f"{type(exc).__name__}: {exc}") from exc
            if target.read_bytes() != data:
                raise Finding(f"Profile.open rewrote a corrupt {filename}")

    def seeds() -> list[bytes]:
        return [b"", b"{}", b"[" * 5000, b'{"version": 1, "peers": []}',
                b'{"version": ' + b"9" * 5000 + b"}"]

    return Target(f"store.{filename}", run, seeds)


def all_targets() -> dict[str, Target]:
    targets = [
        _op_target("framing.decode", "framing.decode", "frame"),
        _op_target("cbor.decode", "cbor.decode", "cbor"),
        _op_target("identity.device_id", "identity.device_id_decode", "text", text=True),
        _op_target("pairing.decode", "pairing.decode", "frame"),
        _op_target("pairing.parse_code", "pairing.parse_code", "code", text=True),
        _op_target("pairing.parse_uri", "pairing.parse_uri", "uri", text=True),
        _op_target("pairing.open_identity", "pairing.open_identity", "ciphertext"),
        _op_target("rendezvous.decode", "rendezvous.decode", "frame"),
        _op_target("rendezvous.verify", "rendezvous.verify", "frame"),
        _text_target("rendezvous.onion_address", _onion_parser, _onion_seeds),
        _op_target("session.decode", "session.decode", "frame"),
        _op_target("session.verify_hello", "session.verify_hello", "frame"),
        _op_target("session.verify_auth", "session.verify_auth", "frame"),
        _machine_target("machine.pairing.inviter", "pairing", "inviter"),
        _machine_target("machine.pairing.accepter", "pairing", "accepter"),
        _machine_target("machine.rendezvous.dialer", "rendezvous", "dialer"),
        _machine_target("machine.rendezvous.acceptor", "rendezvous", "acceptor"),
        _op_target("channels.decode_item", "channels.decode_item", "item"),
        _machine_target("machine.channels.low", "channels", "low"),
        _machine_target("machine.channels.high", "channels", "high"),
        _store_target("peers.json"),
        _store_target("identity.key"),
    ]
    return {t.name: t for t in targets}
