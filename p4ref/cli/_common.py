"""Small pieces every ``p4`` command shares: the profile path, argument types, progress lines."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from ..io.store import default_home

__all__ = ["MAX_TIMEOUT_S", "home", "say", "seconds", "tor_spec"]

#: Longest wait any ``--timeout`` accepts (a day; burnt short codes are remembered that long).
MAX_TIMEOUT_S = 24 * 3600.0

_TOR_SPEC = re.compile(r"system(:[0-9]{1,5})?|launch|testnet:.+")


def home(args: argparse.Namespace) -> Path:
    """The profile directory: ``--home``, else ``$P4_HOME``, else the platform default."""
    h: str | None = getattr(args, "home", None)
    return Path(h).expanduser() if h else default_home()


def say(text: str) -> None:
    """A progress line ("publishing…"), on stderr so stdout keeps only results."""
    print(f"p4: {text}", file=sys.stderr, flush=True)


def seconds(text: str) -> float:
    """argparse type of ``--timeout``: a number of seconds, > 0 and at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a timeout is a number of seconds above 0")
    if value > MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_TIMEOUT_S:.0f} s (a day)")
    return value


def tor_spec(text: str) -> str:
    """argparse type of ``--tor``: ``system[:PORT]``, ``launch`` or ``testnet:DIR[:N]``
    (checked for form only; whether tor is there is found out when it is used)."""
    if not _TOR_SPEC.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected system, system:PORT, launch or testnet:DIR[:N]")
    if text.startswith("system:") and not 1 <= int(text[7:]) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 1 to 65535")
    if text.startswith("testnet:"):
        _, _, index = text[8:].rpartition(":")
        if ":" in text[8:] and not index.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r}: N in testnet:DIR:N is a number")
    return text
