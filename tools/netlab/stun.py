"""A minimal STUN Binding client (RFC 8489) for probing what each lab NAT maps a socket to."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

MAGIC = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
MAPPED_ADDRESS = 0x0001


def binding_request() -> tuple[bytes, bytes]:
    """A Binding request with no attributes, and its transaction id."""
    tid = os.urandom(12)
    return struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC) + tid, tid


def parse_mapped(resp: bytes, tid: bytes) -> tuple[str, int]:
    """The (XOR-)MAPPED-ADDRESS of a Binding success response for ``tid`` (ValueError if not)."""
    if len(resp) < 20:
        raise ValueError("short STUN message")
    mtype, length, magic = struct.unpack_from("!HHI", resp)
    if mtype != BINDING_SUCCESS or magic != MAGIC or resp[8:20] != tid:
        raise ValueError(f"not a Binding success for our transaction (type {mtype:#06x})")
    pos, end = 20, min(len(resp), 20 + length)
    fallback: tuple[str, int] | None = None
    while pos + 4 <= end:
        atype, alen = struct.unpack_from("!HH", resp, pos)
        val = resp[pos + 4 : pos + 4 + alen]
        if atype in (XOR_MAPPED_ADDRESS, MAPPED_ADDRESS) and len(val) >= 8 and val[1] == 1:
            port, raw = struct.unpack_from("!H4s", val, 2)
            if atype == XOR_MAPPED_ADDRESS:
                port ^= MAGIC >> 16
                raw = bytes(b ^ m for b, m in zip(raw, struct.pack("!I", MAGIC), strict=True))
                return str(ipaddress.IPv4Address(raw)), port
            fallback = (str(ipaddress.IPv4Address(raw)), port)
        pos += 4 + alen + (-alen % 4)
    if fallback is None:
        raise ValueError("no mapped address in the response")
    return fallback


def probe(sock: socket.socket, server: tuple[str, int], timeout: float = 1.0) -> tuple[str, int]:
    """Send a Binding request from ``sock`` to ``server``; return the mapped (address, port)."""
    sock.settimeout(timeout / 4)
    for _ in range(4):  # lab links are lossless unless impaired; a few retransmits for that case
        req, tid = binding_request()
        sock.sendto(req, server)
        try:
            while True:
                data, src = sock.recvfrom(2048)
                if src == server:
                    return parse_mapped(data, tid)
        except TimeoutError:
            continue
    raise TimeoutError(f"no STUN answer from {server[0]}:{server[1]}")
