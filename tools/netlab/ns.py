"""Namespace primitives: enter a named network namespace in a worker thread, run a command there.

Linux lets one *thread* switch its network namespace (``setns(fd, CLONE_NEWNET)``), and a socket
keeps the namespace it was created in. So :func:`run_in` runs a function in a short-lived thread
that entered the namespace first: a socket made there (or a netlink socket, or ``getifaddrs``)
belongs to the lab, while the calling process and every other thread stay in the root namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["argv", "netns_path", "popen", "run", "run_in", "spawn"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _setns(name: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(netns_path(name), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(name: str, fn: Callable[[], T]) -> T:
    """Call ``fn()`` in a new thread that first entered namespace ``name``; return its result."""
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            _setns(name)
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    t = threading.Thread(target=worker, name=f"netns-{name}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    result: T = box["value"]
    return result


def argv(name: str, *cmd: str) -> list[str]:
    """The argv that runs ``cmd`` inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *cmd]


def run(name: str, *cmd: str, stdin: str | None = None) -> str:
    """Run ``cmd`` inside ``name``, wait, raise on failure (with its stderr); return stdout."""
    p = subprocess.run(argv(name, *cmd), input=stdin, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {name} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def popen(name: str, cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    """Start ``cmd`` inside ``name`` (``ip netns exec`` execs it, so the pid is the command's)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("start_new_session", True)
    return subprocess.Popen(argv(name, *cmd), **kw)


async def spawn(name: str, *cmd: str, **kw: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec`` of ``cmd`` inside namespace ``name``."""
    return await asyncio.create_subprocess_exec(*argv(name, *cmd), **kw)
