"""The local API's backend in ``p4 up``: :class:`PeerBackend`.

The adapter from the API's :class:`~p4ref.api.backend.Backend` protocol to the real links is
:class:`p4ref.api.linkbackend.LinkBackend` (idempotency keys, per-message confirm, routing of
incoming channels by prefix, peers added and removed at run time).  ``p4 up`` only adds the
daemon's view of the names (as the profile had them when the daemon last read it), so a status
request does not re-read the profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..api.backend import PeerInfo
from ..api.linkbackend import LinkBackend

__all__ = ["PeerBackend"]


class PeerBackend(LinkBackend):
    """:class:`LinkBackend` with the daemon's peer names (module docstring)."""

    def __init__(self, home: Path, links: Mapping[str, Any], names: Mapping[str, str]) -> None:
        super().__init__(home, links)
        self._names = names

    def peers(self) -> Sequence[PeerInfo]:
        return [PeerInfo(d, self._names.get(d, "")) for d in self._links]
