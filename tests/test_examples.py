"""The example apps (examples/*.py) run for real, as a user runs them: separate processes that
find the local API through ``endpoint.json`` and authenticate with a token file.

Most tests use two local APIs on FakeBackends (``Pair``), one per "device", bridged in-process:
what one app sends is injected on the other side as coming from its peer, and the bridge can be
cut to play "offline". ``test_*_real`` runs them between two real ``p4 up`` over the private Tor
network (the fixtures of tests/test_peer.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from p4ref.api.testing import LAPTOP, PHONE, Harness
from tests.test_peer import P4, ROOT, Up, clean, p4, wait_connected
from tests.test_peer import peers as peers  # the two p4 up of the real tests (module scope)

pytestmark = pytest.mark.timeout(180)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APPS = {"clip": "clip/", "crdt": "crdt/", "logs": "logs/"}


class Pair:
    """Two local APIs ("laptop" talks to its peer "phone" and vice versa), bridged."""

    def __init__(self, tmp: Path) -> None:
        self.a = Harness(tmp / "laptop", unix=True)  # its peer PHONE is b
        self.b = Harness(tmp / "phone", unix=True)  # its peer LAPTOP is a
        self.online = True
        self._done: dict[tuple[str, str, str], int] = {}

    def token_file(self, side: Harness, app: str) -> str:
        path = side.home / f"{app}.token"
        path.write_text(side.token[app])
        return str(path)

    def _forward(self, src: Harness, peer: str, dst: Harness, as_peer: str) -> None:
        for (p, name), ch in list(src.backend.channels.items()):
            if p != peer:
                continue
            sent, k = ch.sent(), (str(src.home), p, name)
            for data in sent[self._done.get(k, 0):]:
                dst.backend.inject(as_peer, name, data)
            self._done[k] = len(sent)

    async def _bridge(self) -> None:
        while True:
            if self.online:
                self._forward(self.a, PHONE.device_id, self.b, LAPTOP.device_id)
                self._forward(self.b, LAPTOP.device_id, self.a, PHONE.device_id)
            await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Pair]:
        async with self.a, self.b:
            for h in (self.a, self.b):
                for app, prefix in APPS.items():
                    h.add_app(app, ["*"], prefix)
            task = asyncio.create_task(self._bridge())
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def run(*argv: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_for(check: Any, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.05)


def read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


async def start(*argv: str, ready: str | None = None) -> asyncio.subprocess.Process:
    """Start an example; with ``ready``, wait until it printed a line containing it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE if ready else
        asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    while ready is not None:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, f"exited before {ready!r}"
        if ready in line.decode():
            break
    return proc


async def stop(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.kill()
    _, err = await proc.communicate()
    return err.decode() if err else ""


# --------------------------------------------------------------------------- on FakeBackends


def test_clipboard(tmp_path: Path) -> None:
    async def main() -> None:
        async with Pair(tmp_path).running() as pair:
            ca, cb = tmp_path / "clip-a.txt", tmp_path / "clip-b.txt"
            ca.write_text("before")
            procs = [await start(str(EXAMPLES / "clipboard.py"), "--home", str(side.home),
                                 "--token-file", pair.token_file(side, "clip"),
                                 "--clipboard-file", str(cf), "--poll-ms", "100", peer,
                                 ready="sharing the clipboard")
                     for side, cf, peer in ((pair.a, ca, "phone"), (pair.b, cb, "laptop"))]
            try:
                await asyncio.sleep(0.5)  # what was there before is not sent
                assert read(cb) == ""
                ca.write_text("copied on the laptop ✓")
                await wait_for(lambda: read(cb) == "copied on the laptop ✓")
                cb.write_text("and back from the phone")
                await wait_for(lambda: read(ca) == "and back from the phone")
                pair.online = False  # the phone goes away; a copy waits in the outbox
                ca.write_text("while you were away")
                await asyncio.sleep(1)
                assert read(cb) == "and back from the phone"
                pair.online = True
                await wait_for(lambda: read(cb) == "while you were away")
            finally:
                errs = [await stop(p) for p in procs]
            assert all("Traceback" not in e for e in errs), errs
            # --once sends and exits; the receiver applies it when it next runs
            ca.write_text("once")
            rc, out, err = await run(str(EXAMPLES / "clipboard.py"), "--home", str(pair.a.home),
                                     "--token-file", pair.token_file(pair.a, "clip"),
                                     "--clipboard-file", str(ca), "--once", "phone")
            assert rc == 0 and "sent 4 characters to phone" in out, err
            rc, _, err = await run(str(EXAMPLES / "clipboard.py"), "--home", str(pair.a.home),
                                   "--token-file", pair.token_file(pair.a, "clip"),
                                   "--clipboard-file", str(ca), "--once", "nobody")
            assert rc == 1 and "PEER_UNKNOWN" in err

    asyncio.run(main())


def notes(side: Harness, pair: Pair, *args: str) -> tuple[str, ...]:
    return (str(EXAMPLES / "notes_crdt.py"), "--home", str(side.home), "--token-file",
            pair.token_file(side, "crdt"), *args)


def test_notes_crdt_converge_after_offline_edits(tmp_path: Path) -> None:
    async def main() -> None:
        async with Pair(tmp_path).running() as pair:
            a, b = pair.a, pair.b
            for text in ("buy milk", "call mum", "fix bike"):
                assert (await run(*notes(a, pair, "add", text)))[0] == 0
            # first sync: the phone gets the laptop's notes (both run sync at once)
            r1, r2 = await asyncio.gather(run(*notes(a, pair, "sync", "phone")),
                                          run(*notes(b, pair, "sync", "laptop")))
            assert r1[0] == 0 and r2[0] == 0, (r1, r2)
            assert "buy milk" in r2[1] and "fix bike" in r2[1]
            # offline: each side edits its own copy (no API involved)
            pair.online = False
            for args in (("add", "laptop: water plants"), ("del", "2")):
                assert (await run(*notes(a, pair, *args)))[0] == 0
            for args in (("add", "phone: book train"), ("del", "1")):
                assert (await run(*notes(b, pair, *args)))[0] == 0
            # the laptop syncs while the phone is away: its request waits (exit 2)
            rc, _, err = await run(*notes(a, pair, "sync", "phone", "--timeout", "1"))
            assert rc == 2 and "did not answer" in err
            pair.online = True
            r1, r2 = await asyncio.gather(run(*notes(a, pair, "sync", "phone")),
                                          run(*notes(b, pair, "sync", "laptop")))
            assert r1[0] == 0 and r2[0] == 0, (r1, r2)
            _, show_a, _ = await run(*notes(a, pair, "show"))
            _, show_b, _ = await run(*notes(b, pair, "show"))
            assert show_a == show_b, (show_a, show_b)
            lines = [x.split(None, 1)[1] for x in show_a.splitlines()]
            assert sorted(lines) == ["fix bike", "laptop: water plants", "phone: book train"]

    asyncio.run(main())


LOG_LINES = [f"line {i} {'x' * (i % 50)}" for i in range(3000)]  # 2000 first, 1000 later


def logstream(pair: Pair, side: Harness, *args: str) -> tuple[str, ...]:
    return (str(EXAMPLES / "logstream.py"), "--home", str(side.home),
            "--token-file", pair.token_file(side, "logs"), *args)


def test_logstream_nothing_lost_across_restarts(tmp_path: Path) -> None:
    async def main() -> None:
        async with Pair(tmp_path).running() as pair:
            a, b = pair.a, pair.b
            log, out = tmp_path / "app.log", tmp_path / "received.log"
            log.write_text("\n".join(LOG_LINES[:2000]) + "\n")
            want = LOG_LINES

            def cmd(side: Harness, *args: str) -> tuple[str, ...]:
                return logstream(pair, side, *args)

            recv = await start(*cmd(b, "recv", "--out", str(out)))
            rc, _, err = await run(*cmd(a, "send", "phone", str(log)))
            assert rc == 0, err
            await wait_for(lambda: len(read(out).splitlines()) > 0)
            await stop(recv)  # SIGKILL the receiver, maybe halfway
            # the sender crashed after a send was accepted but before it saved its offset:
            # it sends that range again with the same idempotency key (or a longer one)
            state = log.with_name("app.log.p4sent")
            sent = int(state.read_text())
            state.write_text(str(read(log).encode()[: sent // 2].rfind(b"\n") + 1))
            with open(log, "a") as f:
                f.write("\n".join(want[2000:]) + "\n")
            follow = await start(*cmd(a, "send", "phone", str(log), "--follow"))
            recv = await start(*cmd(b, "recv", "--out", str(out)))
            try:
                await wait_for(lambda: len(read(out).splitlines()) >= len(want), 30)
                await asyncio.sleep(0.5)
                assert read(out).splitlines() == want
                with open(log, "a") as f:
                    f.write("after a while\n")
                await wait_for(lambda: read(out).endswith("after a while\n"))
            finally:
                await stop(follow)
                await stop(recv)
            rc, _, err = await run(*cmd(a, "metrics", "phone", "--every", "0.1", "--count",
                                        "3"))
            assert rc == 0, err
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *cmd(b, "recv"), stdout=asyncio.subprocess.PIPE)
            assert proc.stdout is not None
            got = [json.loads((await proc.stdout.readline()).decode().split(": ", 1)[1])
                   for _ in range(3)]
            await stop(proc)
            assert all("load1" in g and "disk_free_mb" in g for g in got), got

    asyncio.run(main())


def test_logstream_receiver_killed_between_writing_and_recording(tmp_path: Path) -> None:
    """The worst moment for both sides at once, made certain: the receiver took the batch
    (leased to it for 5 s), wrote its lines to OUT and died before it recorded or confirmed
    them, while the sender, after its own crash, sent the second half of the batch again with
    the new lines. The restarted receiver cuts OUT back to what it had recorded, gets the batch
    again before the resend (the API holds the channel's later message back behind the lease),
    and every line is written once, in order."""

    async def main() -> None:
        async with Pair(tmp_path).running() as pair:
            a, b = pair.a, pair.b
            log, out = tmp_path / "app.log", tmp_path / "received.log"
            pos = out.with_name("received.log.pos")
            log.write_text("\n".join(LOG_LINES[:2000]) + "\n")
            want = LOG_LINES

            def cmd(side: Harness, *args: str) -> tuple[str, ...]:
                return logstream(pair, side, *args)

            recv = await start(*cmd(b, "recv", "--out", str(out)))
            await wait_for(pos.exists)  # it records OUT's length before it takes anything
            await stop(recv)
            assert json.loads(pos.read_text()) == {"pos": {}, "out_len": 0}
            rc, _, err = await run(*cmd(a, "send", "phone", str(log)))
            assert rc == 0, err
            # what the receiver did before it died: take the batch, write its lines
            assert b.session is not None
            r = await b.session.post("/v1/receive", headers=b.auth("logs"),
                                     json={"wait_ms": 10_000, "lease_ms": 5_000})
            (item,) = (await r.json())["messages"]
            batch = json.loads(base64.b64decode(item["data"]))
            assert batch["start"] == 0 and batch["lines"] == read(log)
            out.write_text(batch["lines"])
            # the sender's crash: it resends from the middle of the batch, now with more lines
            state = log.with_name("app.log.p4sent")
            state.write_text(str(read(log).encode()[: batch["end"] // 2].rfind(b"\n") + 1))
            with open(log, "a") as f:
                f.write("\n".join(want[2000:]) + "\n")
            rc, _, err = await run(*cmd(a, "send", "phone", str(log)))
            assert rc == 0, err
            recv = await start(*cmd(b, "recv", "--out", str(out)))
            try:
                await wait_for(lambda: len(read(out).splitlines()) >= len(want), 30)
                await asyncio.sleep(0.5)
                assert read(out).splitlines() == want
            finally:
                await stop(recv)

    asyncio.run(main())


def test_p4_clip_errors_without_p4_up(tmp_path: Path) -> None:
    from p4ref.io.store import Profile

    a = Profile.init(tmp_path / "a", os.urandom)
    b = Profile.init(tmp_path / "b", os.urandom)
    a.add_peer("bob", b.identity.public_key, os.urandom(32), "test")
    for peer, code in (("bob", "DAEMON_NOT_RUNNING"), ("bobb", "PEER_UNKNOWN")):
        r = p4(a.path, "clip", peer)
        assert r.returncode == 1 and r.stderr.strip().endswith(f"[{code}]"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (a.path / "api" / "clip.token").exists()  # no token made for nothing


# --------------------------------------------------------------------------- two real p4 up


def p4_ok(home: Path, *args: str) -> str:
    r = p4(home, *args)
    assert r.returncode == 0, r.stderr
    clean(r.stderr)
    return r.stdout


def test_real_examples(peers: tuple[Up, Up], tmp_path: Path) -> None:
    """The three examples between two ``p4 up`` over the private Tor network."""
    ua, ub = peers
    wait_connected(ua.home)
    wait_connected(ub.home)
    tok: dict[tuple[str, str], str] = {}
    for u, other in ((ua, "bob"), (ub, "alice")):
        for app in APPS:
            f = tok[(u.home.name, app)] = str(u.home / f"{app}.token")
            p4_ok(u.home, "api", "token", "add", app, "--peer", other, "--prefix", f"{app}/",
                  "--token-file", f)

    def ex(u: Up, app: str, script: str, *args: str) -> tuple[str, ...]:
        return (str(EXAMPLES / script), "--home", str(u.home), "--token-file",
                tok[(u.home.name, app)], *args)

    async def main() -> None:
        # notes: offline edits on both sides, then both sync and converge
        for u, text in ((ua, "alice: buy milk"), (ub, "bob: fix bike")):
            assert (await run(*ex(u, "crdt", "notes_crdt.py", "add", text)))[0] == 0
        r1, r2 = await asyncio.gather(run(*ex(ua, "crdt", "notes_crdt.py", "sync", "bob")),
                                      run(*ex(ub, "crdt", "notes_crdt.py", "sync", "alice")))
        assert r1[0] == 0 and r2[0] == 0, (r1, r2)
        shown = [(await run(*ex(u, "crdt", "notes_crdt.py", "show")))[1] for u in (ua, ub)]
        assert shown[0] == shown[1], shown
        assert "alice: buy milk" in shown[0] and "bob: fix bike" in shown[0]
        # logs: a file's lines arrive once each, in order
        log, out = tmp_path / "app.log", tmp_path / "got.log"
        want = [f"event {i}" for i in range(500)]
        log.write_text("\n".join(want) + "\n")
        recv = await start(*ex(ub, "logs", "logstream.py", "recv", "--out", str(out)))
        try:
            rc, _, err = await run(*ex(ua, "logs", "logstream.py", "send", "bob", str(log)))
            assert rc == 0, err
            await wait_for(lambda: len(read(out).splitlines()) >= len(want), 60)
            assert read(out).splitlines() == want
        finally:
            await stop(recv)
        # clipboard: one copy each way
        ca, cb = tmp_path / "clip-a", tmp_path / "clip-b"
        procs = [await start(*ex(u, "clip", "clipboard.py", "--clipboard-file", str(c),
                                 "--poll-ms", "200", other), ready="sharing the clipboard")
                 for u, c, other in ((ua, ca, "bob"), (ub, cb, "alice"))]
        try:
            ca.write_text("from alice")
            await wait_for(lambda: read(cb) == "from alice", 60)
            cb.write_text("from bob")
            await wait_for(lambda: read(ca) == "from bob", 60)
        finally:
            for p in procs:
                await stop(p)

    asyncio.run(main())


def test_real_p4_clip(peers: tuple[Up, Up], tmp_path: Path) -> None:
    """``p4 clip PEER`` and ``p4 clip --watch PEER`` between two ``p4 up``."""
    ua, ub = peers
    ca, cb = tmp_path / "clip-a", tmp_path / "clip-b"
    ca.write_text("hello from alice's clipboard")
    r = p4(ua.home, "clip", "bob", "--clipboard-file", str(ca), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == len("hello from alice's clipboard")
    empty = p4(ua.home, "clip", "bob", "--clipboard-file", str(tmp_path / "none"))
    assert empty.returncode == 1 and "[CLIPBOARD_EMPTY]" in empty.stderr, empty.stderr
    if not any(shutil.which(t) for t in ("xclip", "xsel", "wl-copy", "wl-paste")):
        r = p4(ua.home, "clip", "bob")  # no clipboard here: one line saying what to install
        assert r.returncode == 1 and r.stderr.strip().endswith("[NO_CLIPBOARD]"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "xclip" in r.stderr
    watch = subprocess.Popen([*P4, "--home", str(ub.home), "clip", "--watch", "alice",
                              "--clipboard-file", str(cb), "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())  # the line waiting since `p4 clip bob`
        assert first == {"received": 28, "peer": "alice"}, first
        assert read(cb) == "hello from alice's clipboard"
        cb.write_text("bob copied this")
        assert json.loads(watch.stdout.readline())["sent"] == len("bob copied this")
        end = time.monotonic() + 60
        alice = subprocess.Popen([*P4, "--home", str(ua.home), "clip", "--watch", "bob",
                                  "--clipboard-file", str(ca), "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=ROOT)
        try:
            while read(ca) != "bob copied this":
                assert time.monotonic() < end and alice.poll() is None
                time.sleep(0.1)
        finally:
            alice.terminate()
            _, err = alice.communicate(timeout=10)
            clean(err)
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=10)
        clean(err)
