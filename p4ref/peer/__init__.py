"""The reference peer, ``p4 up`` (ARCHITECTURE decision 11; issue 13).

- :mod:`.daemon` — :class:`Daemon`: daemon lock, Tor, one link per paired peer, network changes,
  the local API, stop on SIGTERM/SIGINT with nothing lost
- :mod:`.backend` — :class:`PeerBackend`: the local API's backend over the links
- :mod:`.files` — :class:`FileService`: ``p4 send`` transfers (p4-06 over a channel, resumed
  after an interruption) and the inbox
- :mod:`.routes` — the CLI's own endpoints on the local API (``p4-cli`` token only)

The command line (``p4 up``, ``p4 status``, ``p4 send`` …) is in :mod:`p4ref.cli`; it talks to a
running daemon only through the local API.
"""

from __future__ import annotations

from .daemon import CLI_APP, CLI_PREFIX, Daemon, DaemonOptions

__all__ = ["CLI_APP", "CLI_PREFIX", "Daemon", "DaemonOptions"]
