"""How clients find the running local API: ``<home>/api/endpoint.json`` (no aiohttp here, so
the command line can read it cheaply)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from p4ref.io.store import read_private_file

__all__ = ["ENDPOINT_FILE", "ENDPOINT_FORMAT", "Endpoint", "read_endpoint"]

ENDPOINT_FILE = "endpoint.json"
ENDPOINT_FORMAT = "p4-api-endpoint"


@dataclass(frozen=True, slots=True)
class Endpoint:
    transport: Literal["unix", "tcp"]
    path: str | None = None  # unix
    host: str | None = None  # tcp
    port: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": ENDPOINT_FORMAT, "version": 1,
                             "transport": self.transport}
        if self.transport == "unix":
            d["path"] = self.path
        else:
            d.update(host=self.host, port=self.port)
        return d


def read_endpoint(home: Path) -> Endpoint | None:
    """Where the running ``p4 up`` of ``home`` listens (None if it is not running)."""
    data = read_private_file(home / "api" / ENDPOINT_FILE)
    if not data:
        return None
    d = json.loads(data)
    if d.get("transport") == "unix":
        return Endpoint("unix", path=str(d["path"]))
    return Endpoint("tcp", host=str(d["host"]), port=int(d["port"]))
