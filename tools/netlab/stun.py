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


ALLOCATE = 0x0003
ALLOCATE_SUCCESS = 0x0103
ALLOCATE_ERROR = 0x0113
ATTR_USERNAME, ATTR_REALM, ATTR_NONCE = 0x0006, 0x0014, 0x0015
ATTR_ERROR_CODE, ATTR_MESSAGE_INTEGRITY = 0x0009, 0x0008
ATTR_REQUESTED_TRANSPORT, ATTR_XOR_RELAYED_ADDRESS = 0x0019, 0x0016


def _attr(atype: int, value: bytes) -> bytes:
    return struct.pack("!HH", atype, len(value)) + value + b"\0" * (-len(value) % 4)


def _attrs(msg: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos, end = 20, 20 + struct.unpack_from("!H", msg, 2)[0]
    while pos + 4 <= min(end, len(msg)):
        atype, alen = struct.unpack_from("!HH", msg, pos)
        out.setdefault(atype, msg[pos + 4 : pos + 4 + alen])
        pos += 4 + alen + (-alen % 4)
    return out


def _xor_addr(val: bytes) -> tuple[str, int]:
    port, raw = struct.unpack_from("!H4s", val, 2)
    raw = bytes(b ^ m for b, m in zip(raw, struct.pack("!I", MAGIC), strict=True))
    return str(ipaddress.IPv4Address(raw)), port ^ (MAGIC >> 16)


def turn_allocate(
    sock: socket.socket, server: tuple[str, int], user: str, password: str, timeout: float = 2.0
) -> tuple[int, tuple[str, int] | None]:
    """A TURN Allocate (RFC 8656) with long-term credentials: the first, unauthenticated
    request must get 401 with REALM and NONCE; the second, signed with
    MD5(user:realm:password), a relayed address. Returns (first error code, relayed address)."""
    import hashlib
    import hmac

    sock.settimeout(timeout)
    transport = _attr(ATTR_REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))

    def ask(attrs: bytes, key: bytes | None) -> bytes:
        tid = os.urandom(12)
        if key is not None:  # MESSAGE-INTEGRITY covers the header with its length including it
            head = struct.pack("!HHI", ALLOCATE, len(attrs) + 24, MAGIC) + tid
            mac = hmac.new(key, head + attrs, hashlib.sha1).digest()
            attrs += _attr(ATTR_MESSAGE_INTEGRITY, mac)
        sock.sendto(struct.pack("!HHI", ALLOCATE, len(attrs), MAGIC) + tid + attrs, server)
        while True:
            data, src = sock.recvfrom(2048)
            if src == server and data[8:20] == tid:
                return data

    first = _attrs(resp := ask(transport, None))
    err = first.get(ATTR_ERROR_CODE, b"\0\0\0\0")
    code = (err[2] & 7) * 100 + err[3]
    if struct.unpack_from("!H", resp)[0] != ALLOCATE_ERROR or code != 401:
        return code, None
    realm, nonce = first[ATTR_REALM], first[ATTR_NONCE]
    key = hashlib.md5(f"{user}:{realm.decode()}:{password}".encode()).digest()
    signed = (
        transport
        + _attr(ATTR_USERNAME, user.encode())
        + _attr(ATTR_REALM, realm)
        + _attr(ATTR_NONCE, nonce)
    )
    second = ask(signed, key)
    if struct.unpack_from("!H", second)[0] != ALLOCATE_SUCCESS:
        return code, None
    return code, _xor_addr(_attrs(second)[ATTR_XOR_RELAYED_ADDRESS])
