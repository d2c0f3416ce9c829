"""What differs between Linux (and other POSIX systems), macOS and Windows, in one place.

Everything else in :mod:`p4ref` is written once for all three; a ``sys.platform`` test outside
this module is a bug. ``mypy --strict --platform win32`` / ``darwin`` / ``linux`` check it.

- :func:`default_home` — the profile directory (p4-02 §3.4): ``$P4_HOME``, else ``~/.p4`` on
  Linux and other POSIX systems, else the per-user application-data folder ``platformdirs``
  names on macOS and Windows.
- :data:`POSIX_MODES`, :func:`owned_by_user`, :func:`make_private` — owner and mode bits, which
  Windows does not have (there the profile's privacy is the per-user folder's ACL, p4-02 §3.4.5).
- :data:`OPEN_READ`, :data:`OPEN_LOCK` — ``os.open`` flags: no symlink following, no fd
  inheritance, never block on a FIFO, binary mode, as far as each platform has them.
- :func:`fsync_dir` — make a rename durable (POSIX; a no-op on Windows, which cannot open a
  directory with ``os.open``).
- :func:`replace` — ``os.replace``, retried briefly on Windows while a reader still has the
  target open (Windows refuses to rename over an open file; POSIX does not care).
- :func:`try_lock` / :func:`unlock` — an exclusive, non-blocking lock on an open file:
  ``flock(2)`` on POSIX, ``LockFileEx`` on byte 0 on Windows, both through ``filelock``.
- :func:`find_tor` — the ``tor`` executable where each platform's packages put it.
- :func:`on_stop_signals` — run a callback on SIGINT/SIGTERM in an asyncio loop, also where
  ``loop.add_signal_handler`` does not exist (Windows).
- :func:`name_os_thread` — give the calling thread its name in the operating system too
  (``prctl(PR_SET_NAME)`` on Linux, so ``top -H`` and ``/proc/<pid>/task/*/comm`` show it;
  Python does not), a no-op elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from filelock import lock_descriptor, unlock_descriptor
from platformdirs import user_data_dir

__all__ = [
    "OPEN_LOCK",
    "OPEN_READ",
    "POSIX_MODES",
    "default_home",
    "find_tor",
    "fsync_dir",
    "make_private",
    "name_os_thread",
    "on_stop_signals",
    "owned_by_user",
    "replace",
    "tor_candidates",
    "try_lock",
    "unlock",
]

APP_NAME = "p4"

if sys.platform == "win32":
    POSIX_MODES = False
    OPEN_READ = os.O_RDONLY | os.O_BINARY | os.O_NOINHERIT
    OPEN_LOCK = os.O_RDWR | os.O_CREAT | os.O_BINARY | os.O_NOINHERIT
else:
    POSIX_MODES = True
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; it does
    # nothing to a regular file, which is all a profile may contain (p4-02 §3.4) [IDN-29].
    OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    OPEN_LOCK = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def default_home(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """``$P4_HOME`` if set and non-empty, else the platform's default (p4-02 §3.4)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if value := env.get("P4_HOME"):
        return Path(value)
    legacy = Path.home() / ".p4"
    if platform in ("win32", "darwin"):
        # %LOCALAPPDATA%\p4 (not roaming: the seed stays on this machine), or
        # ~/Library/Application Support/p4.  A profile created before the move, in ~/.p4, keeps
        # being used while the new folder does not exist: moving a seed silently is worse than
        # an unusual path, and `p4 id` shows which folder is in use.
        modern = Path(user_data_dir(APP_NAME, appauthor=False, roaming=False))
        if not modern.exists() and (legacy / "identity.key").exists():
            return legacy
        return modern
    return legacy


def owned_by_user(st: os.stat_result) -> bool:
    """Whether the current user owns the file (always True where there are no POSIX owners)."""
    if sys.platform == "win32":
        return True
    return st.st_uid == os.getuid()


def make_private(fd: int) -> None:
    """Mode 0600 on an open file, before any secret is written [IDN-16] (no-op on Windows)."""
    if sys.platform != "win32":
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it survives a crash [IDN-23] (no-op on Windows)."""
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(src: Path | str, dst: Path | str, *, patience: float = 2.0) -> None:
    """``os.replace``; on Windows, retry for up to ``patience`` s on a sharing violation."""
    if sys.platform != "win32":
        os.replace(src, dst)
        return
    deadline = time.monotonic() + patience
    while True:
        try:
            os.replace(src, dst)
            return
        except PermissionError:  # a reader has dst open without FILE_SHARE_DELETE
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if another holder has it."""
    return lock_descriptor(fd, blocking=False)


def unlock(fd: int) -> None:
    unlock_descriptor(fd)


def tor_candidates(env: Mapping[str, str] | None = None, platform: str | None = None) -> list[str]:
    """Where each platform's packages put tor, after PATH: most likely first."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        bundle = ("Tor Browser", "Browser", "TorBrowser", "Tor", "tor.exe")
        roots = [
            (env.get("USERPROFILE"), ("Desktop", *bundle)),  # Tor Browser's default install
            (env.get("LOCALAPPDATA"), ("Programs", *bundle)),
            (env.get("ProgramFiles"), bundle),
            (env.get("ProgramFiles(x86)"), bundle),
            (env.get("ProgramFiles"), ("Tor", "tor.exe")),  # the Expert Bundle, unpacked
            (env.get("ProgramData"), ("chocolatey", "bin", "tor.exe")),
            (env.get("USERPROFILE"), ("scoop", "shims", "tor.exe")),
        ]
        return [os.path.join(root, *parts) for root, parts in roots if root]
    if platform == "darwin":
        app = "Contents/MacOS/Tor/tor"
        return [
            "/opt/homebrew/bin/tor",  # Homebrew, Apple silicon
            "/usr/local/bin/tor",  # Homebrew, Intel
            "/opt/local/bin/tor",  # MacPorts
            f"/Applications/Tor Browser.app/{app}",
            os.path.expanduser(f"~/Applications/Tor Browser.app/{app}"),
        ]
    return [
        "/usr/bin/tor",  # Debian, Ubuntu, Fedora, Arch
        "/usr/sbin/tor",
        "/usr/local/bin/tor",  # BSD ports, source installs
        "/usr/local/sbin/tor",
        "/run/current-system/sw/bin/tor",  # NixOS
        os.path.expanduser("~/.nix-profile/bin/tor"),
    ]


def find_tor() -> str | None:
    """The tor executable: PATH first (``tor`` / ``tor.exe``), then :func:`tor_candidates`."""
    found = shutil.which("tor")
    if found:
        return found
    for path in tor_candidates():
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def on_stop_signals(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
) -> Callable[[], None]:
    """Call ``callback`` in ``loop`` on SIGINT or SIGTERM; returns a function that undoes it.

    Uses ``loop.add_signal_handler`` where the loop has it (POSIX); on Windows (Proactor loop,
    NotImplementedError) falls back to :func:`signal.signal` with a thread-safe hand-off.
    Call from the main thread.
    """
    sigs = [signal.SIGINT, signal.SIGTERM]
    try:
        for sig in sigs:
            loop.add_signal_handler(sig, callback)
    except NotImplementedError:
        previous = {sig: signal.getsignal(sig) for sig in sigs}

        def handler(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(callback)

        for sig in sigs:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                if old is not None:
                    signal.signal(sig, old)

        return restore

    def remove() -> None:
        for sig in sigs:
            loop.remove_signal_handler(sig)

    return remove


def name_os_thread(name: str) -> None:
    """Name the calling thread for the operating system (Linux: at most 15 bytes), best
    effort: diagnostics only (bench/bench_send.py finds the SQLite writer thread by it)."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        return
