"""The reference adapter's dispatch, in-process (p4ref/adapter/, conformance/README.md)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.mutants import MUTANTS
from conformance.selftest import toy
from p4ref.adapter import LAYERS, Adapter, cbor_from_json, handle, hello, serve
from p4ref.errors import ErrorCode, P4Error

ROOT = Path(__file__).resolve().parent.parent
PING = "010200000ba1014800010203040506" + "07"


def req(op: str, params: dict[str, Any] | None = None, inp: dict[str, Any] | None = None,
        rid: int = 1) -> dict[str, Any]:
    return {"id": rid, "op": op, "params": params or {}, "input": inp or {}}


def test_hello_shape() -> None:
    h = hello()
    assert h["p4adapter"] == 1 and h["impl"] == "p4ref" and isinstance(h["version"], str)
    assert {"framing.decode", "framing.encode", "framing.stream", "cbor.decode"} <= set(h["ops"])
    assert h["ops"] == sorted(h["ops"])


def test_unknown_op_is_unsupported() -> None:
    assert handle(req("no.such_op", rid=7)) == {"id": 7, "status": "unsupported"}
    assert handle({"id": 8})["status"] == "unsupported"


def test_framing_decode_ok_and_error() -> None:
    r = handle(req("framing.decode", {"path": "datachannel"}, {"frame": PING}))
    assert r == {"id": 1, "status": "ok", "value": {"type": 2, "flags": 0,
                                                      "body": PING[10:], "ignorable": False}}
    r = handle(req("framing.decode", {"path": "datachannel"}, {"frame": "0102"}))
    assert r["status"] == "error" and r["error"] == "FRAME_TRUNCATED"


def test_framing_encode_stream_cbor() -> None:
    r = handle(req("framing.encode", {"path": "tor"},
                   {"type": 2, "flags": 0, "body": PING[10:]}))
    assert r["value"] == {"frame": PING}
    r = handle(req("framing.stream", {"path": "tor"}, {"chunks": [PING[:6], PING[6:] + "01"]}))
    assert r["value"] == {"frames": [{"type": 2, "flags": 0, "body": PING[10:]}], "pending": 1}
    r = handle(req("cbor.decode", {}, {"cbor": "a10120"}))
    assert r["value"] == {"map": [[{"int": "1"}, {"int": "-1"}]]}
    r = handle(req("cbor.decode", {}, {"cbor": "a1180100"}))
    assert r["error"] == "CBOR_NON_MINIMAL"
    items = [{"bytes": "00"}, {"text": "é"}, {"null": True}, {"bool": False}]
    form = {"map": [[{"int": "1"}, {"array": items}]]}
    r = handle(req("cbor.encode", {}, {"value": form}))
    assert r["status"] == "ok"
    assert handle(req("cbor.decode", {}, {"cbor": r["value"]["cbor"]}))["value"] == form
    assert cbor_from_json({"int": "-5"}) == -5


@pytest.mark.parametrize("bad", [
    req("framing.decode", {"path": "datachannel"}, {}),            # missing input.frame
    req("framing.decode", {"path": "carrier-pigeon"}, {"frame": PING}),
    req("framing.decode", {"path": "tor"}, {"frame": "zz"}),
    req("framing.encode", {"path": "tor"}, {"type": "x", "body": ""}),
    req("cbor.encode", {}, {"value": {"float": 1.5}}),
])
def test_bad_requests_answer_internal_error(bad: dict[str, Any],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    r = handle(bad)
    assert r["status"] == "error" and r["error"] == "INTERNAL_ERROR" and r["id"] == 1
    assert "raised" in capsys.readouterr().err  # the traceback goes to stderr


def test_non_object_request() -> None:
    r = Adapter().handle([1, 2])
    assert r["status"] == "error" and r["id"] is None


class _ToyHook:
    """The harness's toy layer as a reference-adapter layer module (its errors as P4Errors)."""

    MACHINE = toy.MACHINE
    step = staticmethod(toy.step)
    vectors_ops = staticmethod(toy.vectors_ops)

    @staticmethod
    def new(role: str, config: dict[str, Any], rng: list[bytes]) -> toy.Toy:
        try:
            return toy.new(role, config, rng)
        except toy.ToyError as exc:
            raise P4Error(ErrorCode[exc.code], str(exc)) from None


def test_machine_ops_with_a_registered_hook() -> None:
    a = Adapter()
    a.register_hook(_ToyHook)
    assert {"machine.new", "machine.step", "machine.drop", "toy.echo"} <= set(a.hello()["ops"])
    assert "toy" in a.hello()["machines"]
    r = a.handle(req("machine.new", {"machine": "toy", "role": "a", "config": {}},
                     {"rng": ["aa" * 8]}))
    h = r["value"]["handle"]
    r = a.handle(req("machine.step", {"handle": h}, {"now": 0, "in": {"cmd": "start"}}))
    assert r["value"] == {"out": [{"send": "01" + "aa" * 8}], "state": "WAIT"}
    assert a.handle(req("machine.drop", {"handle": h}))["status"] == "ok"
    r = a.handle(req("machine.step", {"handle": h}, {"now": 1, "in": {"tick": True}}))
    assert r["error"] == "INTERNAL_ERROR"  # dropped handle
    r = a.handle(req("machine.new", {"machine": "warp-drive", "role": "a"}, {"rng": []}))
    assert r["status"] == "unsupported"
    r = a.handle(req("machine.new", {"machine": "toy", "role": "z"}, {"rng": []}))
    assert r["error"] == "MESSAGE_INVALID"


def test_every_layer_is_registered_and_layer_folders_hold_no_adapter_glue() -> None:
    # The reference adapter lives in p4ref/adapter/ and lists its layer modules explicitly; a layer
    # folder (p4ref/<layer>/) holds the layer and nothing else.
    registered = {m.__name__.rsplit(".", 1)[1] for m in LAYERS}
    # a layer: a p4ref package with a vector folder (STYLE.md "Layout")
    layers = {p.name for p in (ROOT / "test-vectors" / "v1").iterdir()
              if p.is_dir() and (ROOT / "p4ref" / p.name / "__init__.py").exists()}
    assert {"framing", "identity", "pairing", "rendezvous"} <= layers
    assert layers <= registered, layers - registered
    for layer in layers:
        assert not (ROOT / "p4ref" / layer / "_adapter.py").exists(), layer
        assert (ROOT / "p4ref" / "adapter" / f"{layer}.py").exists(), layer
    assert not (ROOT / "p4ref" / "_jsonargs.py").exists()
    assert not (ROOT / "p4ref" / "adapter.py").exists()
    ops = set(hello()["ops"])
    assert {"framing.decode", "cbor.encode", "identity.verify", "pairing.parse_code",
            "rendezvous.derive", "machine.new", "machine.step", "machine.drop"} <= ops
    assert {"pairing", "rendezvous", "session", "channels"} <= set(hello()["machines"])


def test_mutant_wraps_only_its_ops() -> None:
    m = MUTANTS["skip-length-check"].wrap(handle)
    r = m(req("framing.decode", {"path": "datachannel"}, {"frame": PING + "00"}))
    assert r["status"] == "ok" and r["value"]["body"] == PING[10:]
    assert handle(req("framing.decode", {"path": "datachannel"},
                      {"frame": PING + "00"}))["error"] == "FRAME_TRAILING_BYTES"
    r = m(req("framing.decode", {"path": "datachannel"}, {"frame": "0102"}))
    assert r["error"] == "FRAME_TRUNCATED"  # not one of its codes
    r = m(req("cbor.decode", {}, {"cbor": "a1180100"}))
    assert r["error"] == "CBOR_NON_MINIMAL"  # not one of its ops' codes
    lenient = MUTANTS["accept-noncanonical-cbor"].wrap(handle)
    r = lenient(req("cbor.decode", {}, {"cbor": "a1180100"}))
    assert r == {"id": 1, "status": "ok", "value": {"map": [[{"int": "1"}, {"int": "0"}]]}}
    assert set(MUTANTS) >= {"skip-length-check", "accept-noncanonical-cbor", "ignore-unknown-type"}


def test_mutant_proxy_process_rewrites_answers() -> None:
    lines = [json.dumps(req("framing.decode", {"path": "tor"}, {"frame": PING + "00"}, rid=5)),
             json.dumps(req("no.such_op", rid=6))]
    proc = subprocess.run(
        [sys.executable, "-m", "conformance.mutants", "skip-length-check", "--",
         sys.executable, "-m", "p4ref.adapter"], cwd=ROOT, capture_output=True, timeout=60,
        input="\n".join(lines) + "\n", text=True, check=True)
    out = [json.loads(x) for x in proc.stdout.splitlines()]
    assert out[0]["p4adapter"] == 1 and out[0]["impl"] == "p4ref+mutant:skip-length-check"
    assert out[1]["id"] == 5 and out[1]["status"] == "ok" and out[1]["value"]["body"] == PING[10:]
    assert out[2] == {"id": 6, "status": "unsupported"}
    assert len(out) == 3


def test_serve_loop() -> None:
    lines = [json.dumps(req("no.op", rid=1)), "", "not json",
             json.dumps(req("framing.decode", {"path": "tor"}, {"frame": PING}, rid=2))]
    stdin = io.BytesIO(("\n".join(lines) + "\n").encode())
    out = io.StringIO()
    serve(Adapter(), stdin, out)
    msgs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert msgs[0]["p4adapter"] == 1
    assert msgs[1] == {"id": 1, "status": "unsupported"}
    assert msgs[2]["status"] == "error" and msgs[2]["id"] is None
    assert msgs[3]["id"] == 2 and msgs[3]["status"] == "ok"
    assert len(msgs) == 4


def test_subprocess_adapter_speaks_json_lines() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "p4ref.adapter"], cwd=ROOT, capture_output=True, timeout=60,
        input=json.dumps(req("framing.decode", {"path": "tor"}, {"frame": PING})) + "\n",
        text=True, check=True)
    lines = proc.stdout.splitlines()
    assert json.loads(lines[0])["p4adapter"] == 1
    assert json.loads(lines[1])["status"] == "ok"
    assert len(lines) == 2


def test_reference_serves_only_what_the_contract_text_defines() -> None:
    # Every op and machine of the reference is defined in conformance/README.md or in a layer
    # spec's "Test-vector interface" section (read the way tools/vector_lint.py reads them).
    from tools.vector_lint import read_contract

    contract = read_contract(ROOT / "spec", ROOT / "conformance" / "README.md")
    h = hello()
    assert set(h["ops"]) - set(contract.ops) == set()
    assert set(h["machines"]) - set(contract.machines) == set()
    assert {"framing.decode", "machine.step", "identity.verify"} <= set(contract.ops)
