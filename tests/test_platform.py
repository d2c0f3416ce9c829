"""The one module that knows about platforms: p4ref.io._platform (p4-02 §3.4, §3.4.5)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from platformdirs import user_data_dir

from p4ref.io import _platform

ROOT = Path(__file__).resolve().parent.parent


def test_store_imports_without_posix_modules() -> None:
    """Issue 10 §3: p4ref.io.store imported fcntl at module level, so p4ref could not be
    imported on Windows. With fcntl and termios unavailable, the store still imports."""
    code = (
        "import sys; sys.modules['fcntl'] = None; sys.modules['termios'] = None\n"
        "import p4ref.io.store, p4ref.identity, p4ref.cli\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()


def test_default_home_per_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """IDN-31: $P4_HOME first; ~/.p4 on Linux and other POSIX; the per-user data folder on
    macOS and Windows."""
    assert _platform.default_home({"P4_HOME": str(tmp_path)}, "win32") == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    for plat in ("linux", "freebsd14"):
        assert _platform.default_home({"P4_HOME": ""}, plat) == tmp_path / ".p4"
    for plat in ("win32", "darwin"):
        got = _platform.default_home({}, plat)
        assert got == Path(user_data_dir("p4", appauthor=False, roaming=False))
        assert got.name == "p4"


def test_default_home_keeps_a_legacy_profile(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    """A profile made in ~/.p4 before the macOS/Windows default moved keeps being used while the
    new folder does not exist; once the new folder exists, it wins."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    (tmp_path / ".p4").mkdir()
    for plat in ("win32", "darwin"):  # a ~/.p4 without a key is not a profile
        assert _platform.default_home({}, plat) != tmp_path / ".p4"
    (tmp_path / ".p4" / "identity.key").write_text("x")
    for plat in ("win32", "darwin"):
        assert _platform.default_home({}, plat) == tmp_path / ".p4"
    modern = Path(user_data_dir("p4", appauthor=False, roaming=False))
    modern.mkdir(parents=True)
    for plat in ("win32", "darwin"):
        assert _platform.default_home({}, plat) == modern


def test_tor_candidates_per_platform() -> None:
    env = {
        "USERPROFILE": r"C:\Users\ann",
        "LOCALAPPDATA": r"C:\Users\ann\AppData\Local",
        "ProgramFiles": r"C:\Program Files",
    }
    win = _platform.tor_candidates(env, "win32")
    assert all(c.endswith("tor.exe") for c in win)
    assert any("Tor Browser" in c and "Desktop" in c for c in win)
    assert not any("None" in c for c in win)  # unset variables are skipped, not formatted
    mac = _platform.tor_candidates({}, "darwin")
    assert "/opt/homebrew/bin/tor" in mac and "/usr/local/bin/tor" in mac
    assert any(c.endswith("Tor Browser.app/Contents/MacOS/Tor/tor") for c in mac)
    assert "/usr/sbin/tor" in _platform.tor_candidates({}, "linux")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX executable bits")
def test_find_tor_path_then_candidates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "tor"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert _platform.find_tor() == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    elsewhere = tmp_path / "opt" / "tor"
    elsewhere.parent.mkdir()
    elsewhere.write_text("#!/bin/sh\n")
    monkeypatch.setattr(_platform, "tor_candidates", lambda: [str(tmp_path / "no"), str(elsewhere)])
    assert _platform.find_tor() is None  # not executable
    elsewhere.chmod(0o755)
    assert _platform.find_tor() == str(elsewhere)


def test_lock_is_exclusive_across_descriptors(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    a = os.open(path, _platform.OPEN_LOCK, 0o600)
    b = os.open(path, _platform.OPEN_LOCK, 0o600)
    try:
        assert _platform.try_lock(a)
        assert not _platform.try_lock(b)
        _platform.unlock(a)
        assert _platform.try_lock(b)
        _platform.unlock(b)
    finally:
        os.close(a)
        os.close(b)


@pytest.mark.skipif(not _platform.POSIX_MODES, reason="no POSIX modes")
def test_make_private(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        _platform.make_private(fd)
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert _platform.owned_by_user(os.lstat(path))
    _platform.fsync_dir(tmp_path)


def test_replace(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"new")
    (tmp_path / "b").write_bytes(b"old")
    _platform.replace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"new" and not (tmp_path / "a").exists()


class _NoSignalLoop(asyncio.SelectorEventLoop):
    """A loop without add_signal_handler, like Windows' ProactorEventLoop."""

    def add_signal_handler(self, sig: int, callback: object, *args: object) -> None:
        raise NotImplementedError


@pytest.mark.parametrize("loop_cls", [asyncio.SelectorEventLoop, _NoSignalLoop])
def test_on_stop_signals(loop_cls: type[asyncio.AbstractEventLoop]) -> None:
    """SIGTERM reaches the callback inside the loop, with or without add_signal_handler."""
    loop = loop_cls()
    before = signal.getsignal(signal.SIGTERM)
    try:
        got = asyncio.Event()

        async def main() -> None:
            remove = _platform.on_stop_signals(asyncio.get_running_loop(), got.set)
            try:
                signal.raise_signal(signal.SIGTERM)
                await asyncio.wait_for(got.wait(), 5)
            finally:
                remove()

        loop.run_until_complete(main())
    finally:
        loop.close()
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.skipif(sys.platform != "linux", reason="thread names in /proc are Linux's")
def test_name_os_thread_names_the_calling_thread_only() -> None:
    """The session store's writer thread is named for the OS (bench_send finds it by it)."""
    got: list[str] = []

    def run() -> None:
        _platform.name_os_thread("p4-session-db-and-more")  # cut to 15 bytes
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            got.append(f.read().strip())
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert got == ["p4-session-db-a"]
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        assert f.read().strip() != "p4-session-db-a"
