"""P⁴'s NAT and mobility lab: network namespaces, NATs, coturn, moves, Tor inside (README.md)."""

from __future__ import annotations

from .lab import (
    NAT_TYPES,
    STUN_ALT_IP,
    STUN_IP,
    STUN_PORT,
    TURN_PASSWORD,
    TURN_REALM,
    TURN_USER,
    Lab,
    LabError,
    NatType,
    check_prerequisites,
    list_labs,
    sweep,
)

__all__ = [
    "NAT_TYPES",
    "STUN_ALT_IP",
    "STUN_IP",
    "STUN_PORT",
    "TURN_PASSWORD",
    "TURN_REALM",
    "TURN_USER",
    "Lab",
    "LabError",
    "NatType",
    "check_prerequisites",
    "list_labs",
    "sweep",
]
