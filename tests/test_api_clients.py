"""The example clients (examples/clients) driven against a local API on the FakeBackend, as an
app would run them: a separate process that finds the API through ``endpoint.json`` and
authenticates with its token from the environment. The fake peer echoes, so every client
sends and receives."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from p4ref.api.testing import PHONE, Harness

pytestmark = pytest.mark.timeout(120)

CLIENTS = Path(__file__).resolve().parent.parent / "examples" / "clients"


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is needed to run the example client", pytrace=False)
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_node_client(tmp_path: Path, transport: str) -> None:
    node = _need("node")

    async def main() -> None:
        async with Harness(tmp_path / "home", echo=True, unix=transport == "unix",
                           tcp=transport == "tcp") as h:
            env = {"P4_HOME": str(h.home), "P4_TOKEN": h.token["notes"]}
            rc, out, err = await _run([node, str(CLIENTS / "p4client.js"), "demo", "phone",
                                       "notes/js"], env)
            assert rc == 0, err
            steps = {s["step"]: s for s in map(json.loads, out.splitlines())}
            assert steps["whoami"]["app"] == "notes"
            assert steps["peers"]["peers"] == ["phone"]
            assert steps["status"]["states"] == [["phone", "connected", 1, "direct"]]
            assert steps["send"]["replayed"] and steps["send"]["same"]
            assert steps["receive"]["texts"] == ["hello over HTTP"]
            assert len(steps["confirm"]["confirmed"]) == 1
            assert steps["stream"] == {"step": "stream", "accepted": "accepted",
                                       "bytes": [0x70, 0x34, 0, 0xFF]}
            assert steps["stream-confirm"]["confirmed"] == 1
            assert steps["refused"]["code"] == "SCOPE_CHANNEL"
            assert "done" in steps
            ch = h.backend.channels[(PHONE.device_id, "notes/js")]
            assert ch.sent() == [b"hello over HTTP", b"p4\x00\xff"]
            assert ch.unconfirmed() == 0  # both echoes confirmed
            # the token never travels in a URL, and a wrong one is refused
            rc, _, err = await _run([node, str(CLIENTS / "p4client.js"), "demo", "phone",
                                     "notes/js"], {**env, "P4_TOKEN": "p4tok_wrong"})
            assert rc == 1 and "TOKEN_INVALID" in err

    asyncio.run(main())


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_shell_client(tmp_path: Path, transport: str) -> None:
    bash, _, _ = _need("bash"), _need("curl"), _need("jq")

    async def main() -> None:
        async with Harness(tmp_path / "home", echo=True, unix=transport == "unix",
                           tcp=transport == "tcp") as h:
            env = {"P4_HOME": str(h.home), "P4_TOKEN": h.token["notes"]}
            sh = [bash, str(CLIENTS / "p4client.sh")]
            rc, out, err = await _run([*sh, "demo", "phone", "notes/sh"], env)
            assert rc == 0, err
            lines = out.splitlines()
            assert lines[0] == "app: notes" and lines[1] == "peers: phone"
            assert lines[2] == "status: phone connected gen 1"
            assert lines[3].endswith("(retry with the same key: same id)")
            assert lines[4] == "received: hello from shell on notes/sh from phone"
            assert json.loads(lines[5].removeprefix("confirm: "))["unknown"] == []
            ch = h.backend.channels[(PHONE.device_id, "notes/sh")]
            assert ch.sent() == [b"hello from shell"] and ch.unconfirmed() == 0
            rc, _, err = await _run([*sh, "send", "phone", "sched/x", "hi"], env)
            assert rc == 1 and "SCOPE_CHANNEL" in err
            rc, _, err = await _run([*sh, "peers"], {**env, "P4_TOKEN": "p4tok_nope"})
            assert rc == 1 and "TOKEN_INVALID" in err

    asyncio.run(main())
