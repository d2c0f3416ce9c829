"""Session vectors (p4-04 §13): frame decoding, the SES_HELLO checks in order, the SES_AUTH
transcript signature; the forwarding attack, wrong fingerprints and replayed handshakes; and the
session machine's transcripts and two-party vectors (built in :mod:`._session_machine`).

Every frame comes from the reference machine with fixed randomness (the worked example of §17),
then is changed one field at a time; expected values come from the reference adapter ops.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nacl.signing import SigningKey

from p4ref.adapter import to_json
from p4ref.adapter.session import run_op
from p4ref.framing import (
    Frame,
    FrameType,
    Path,
    decode_cbor_map,
    encode_cbor,
    encode_frame,
    ping_body,
)
from p4ref.session import SessionMachine
from p4ref.session import _codec as codec

from ._envelope import Json, envelope, group, test
from ._session_machine import pairs, transcripts

SPEC, REVISION = "p4-04-session-v1", 11
# the identity keys of p4-03 §14.1 (LOW first) and a third device M paired with both
SEED_L = bytes.fromhex("be11679ffa71852399ff796774d64b70343ede5ade5241f572f49b46701d65b5")
SEED_H = bytes.fromhex("0d63dc515f47c8e7d62d34a113710b43ef69b8f1f8a0b4480854e0577aa14911")
SEED_M = bytes(range(7, 39))
PUB_L, PUB_H, PUB_M = (bytes(SigningKey(s).verify_key) for s in (SEED_L, SEED_H, SEED_M))
FP_L = bytes.fromhex("5ef3ebaaba988fd49975b99c200a4eba6f12d1b965ef4da4a3020a8be3583997")
FP_H = bytes(range(0x20, 0x40))
DC = Path.DATACHANNEL

NOTES: dict[str, Json] = {
    "WRONG_PEER": {"bugType": "AUTH_BYPASS",
                   "description": "A HELLO that names identity keys other than this pair's."},
    "FORWARDING": {"bugType": "AUTH_BYPASS",
                   "description": "A peer paired with both ends forwarded their signalling, "
                                  "so two devices meet that each believe they talk to it."},
    "FINGERPRINT": {"bugType": "AUTH_BYPASS",
                    "description": "Channel bindings (DTLS fingerprints) that differ from the "
                                   "receiver's view: a relayed handshake."},
    "REPLAY": {"bugType": "REPLAY",
               "description": "A handshake message recorded on another connection."},
    "BAD_SIGNATURE": {"bugType": "AUTH_BYPASS", "description": "SES_AUTH does not verify."},
    "ORDER": {"bugType": "EDGE_CASE", "description": "Several rules broken: the check order."},
    "SCHEMA": {"bugType": "MISSING_CHECK", "description": "Missing, unknown or mistyped key."},
    "NON_CANONICAL": {"bugType": "MALLEABILITY",
                      "description": "A body that is not deterministic CBOR."},
    "FRAMING": {"bugType": "MISSING_CHECK", "description": "The frame itself is invalid."},
    "OVERSIZE": {"bugType": "EDGE_CASE", "description": "A body above its limit."},
    "SPLIT": {"bugType": "EDGE_CASE",
              "description": "Frames split across recv steps at arbitrary byte positions."},
    "STATE": {"bugType": "MISSING_CHECK",
              "description": "A frame the transition table does not allow in this state."},
    "TIMER": {"bugType": "EDGE_CASE", "description": "A timer just before and at its deadline."},
    "DUPLICATE": {"bugType": "EDGE_CASE", "description": "A sequence number already delivered."},
    "GAP": {"bugType": "MISSING_CHECK",
            "description": "A sequence number above the next one on an ordered connection."},
    "ACK": {"bugType": "EDGE_CASE",
            "description": "Cumulative acknowledgements: stale, repeated, coalesced, invalid."},
    "WINDOW": {"bugType": "EDGE_CASE", "description": "The in-flight window stalls the sender."},
    "QUOTA": {"bugType": "MISSING_CHECK", "description": "The outbox quota is reached."},
    "INTERLEAVING": {"bugType": "EDGE_CASE",
                     "description": "Frames of two connections (generations) interleaved: "
                                    "make-before-break."},
    "REPLAY_GAP": {"bugType": "EDGE_CASE",
                   "description": "Resumption from the position the peer announced."},
    "PATH": {"bugType": "EDGE_CASE",
             "description": "Which connection is active: data channel, onion stream, failover."},
    "STATUS": {"bugType": "EDGE_CASE", "description": "The session status the application sees."},
    "SIGNAL": {"bugType": "EDGE_CASE", "description": "RV_OFFER / RV_ANSWER carried in-band."},
    "REFUSED": {"bugType": "MISSING_CHECK",
                "description": "A command the machine refuses without changing."},
    "CONFIG": {"bugType": "MISSING_CHECK", "description": "machine.new refuses the config."},
    "INCARNATION": {"bugType": "EDGE_CASE",
                    "description": "A restored backup, a lost state or a copied profile (§9)."},
    "FAULTS": {"bugType": "EDGE_CASE",
               "description": "Two machines through a relay that kills, delays and replays "
                              "connections."},
}


def _rng(start: int) -> Callable[[int], bytes]:
    ctr = itertools.count()
    return lambda n: bytes((start + next(ctr)) % 256 for _ in range(n))


def _hellos(generation: int = 1, path: Path = DC) -> tuple[bytes, bytes]:
    """(LOW's, HIGH's) SES_HELLO frames of one connection, as in spec §17."""
    low = SessionMachine(SEED_L, PUB_H, rng=_rng(0x10 + generation - 1))
    high = SessionMachine(SEED_H, PUB_L, rng=_rng(0x80 + generation - 1))
    low.open(generation, generation, path, FP_L, FP_H, 0)
    high.open(generation, generation, path, FP_H, FP_L, 0)
    return low.data_to_send()[0][1], high.data_to_send()[0][1]


def _hello_with(frame: bytes, **changes: Any) -> bytes:
    h = codec.decode_hello(Frame(frame[1], 0, frame[5:]))
    return encode_frame(codec.encode_hello(replace(h, **changes)), DC)


def _raw(ftype: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([1, ftype, flags]) + len(body).to_bytes(2, "big") + body


def _case(op: str, ident: str, comment: str, req: list[str], inp: Json,
          flags: list[str] | None = None) -> Json:
    got = run_op(op, {}, inp)
    if "error" in got:
        return test(ident, comment, req, inp, valid=False, error=got["error"], flags=flags)
    return test(ident, comment, req, inp, value=to_json(got["value"]), flags=flags)


def _verify_hello_tests() -> list[Json]:
    hl, _ = _hellos()
    # HIGH's view of connection 1
    base = {"my_pub": PUB_H.hex(), "peer_pub": PUB_L.hex(), "generation": 1,
            "path": "datachannel", "binding_local": FP_H.hex(), "binding_remote": FP_L.hex()}
    op = "session.verify_hello"

    def c(ident: str, comment: str, req: list[str], frame: bytes, flags: list[str] | None = None,
          **over: Any) -> Json:
        return _case(op, f"ses-hello-{ident}", comment, req,
                     {**base, **over, "frame": frame.hex()}, flags)

    hl2, _ = _hellos(2)
    return [
        c("valid", "LOW's HELLO of spec §17 as HIGH receives it", ["SES-16", "SES-17", "SES-23"],
          hl),
        c("tor-valid", "a HELLO on the onion stream: generation 0", ["SES-2", "SES-23"],
          _hello_with(hl, generation=0), generation=0, path="tor"),
        c("wrong-sender", "sender_pub is not the paired peer", ["SES-23"],
          _hello_with(hl, sender_pub=PUB_M), ["WRONG_PEER"]),
        c("wrong-recipient", "recipient_pub is not this peer", ["SES-23"],
          _hello_with(hl, recipient_pub=PUB_M), ["WRONG_PEER"]),
        c("forwarding-attack", "B (HIGH), paired with M, receives A's (LOW's) HELLO naming M: "
          "M forwarded A's and B's signalling and their DTLS fingerprints (§7.4)",
          ["SES-23", "SES-3"], _hello_with(hl, recipient_pub=PUB_M), ["FORWARDING"],
          peer_pub=PUB_M.hex()),
        c("wrong-generation", "generation 1's HELLO replayed on generation 2", ["SES-23"],
          hl, ["REPLAY"], generation=2),
        c("old-generation", "a HELLO of generation 2 on generation 1", ["SES-23"], hl2,
          ["REPLAY"]),
        c("binding-sender", "binding_sender is not the certificate HIGH saw", ["SES-1", "SES-23"],
          _hello_with(hl, binding_sender=b"\x66" * 32), ["FINGERPRINT"]),
        c("binding-receiver", "binding_receiver is not HIGH's own certificate",
          ["SES-1", "SES-23"], _hello_with(hl, binding_receiver=b"\x66" * 32), ["FINGERPRINT"]),
        c("bindings-swapped", "both bindings present but swapped", ["SES-23"],
          _hello_with(hl, binding_sender=FP_H, binding_receiver=FP_L), ["FINGERPRINT"]),
        c("order-peer-first", "wrong peer, generation and binding: the peer is checked first",
          ["SES-23"], _hello_with(hl, sender_pub=PUB_M, generation=5,
                                  binding_sender=b"\x01" * 32), ["ORDER", "WRONG_PEER"]),
        c("order-generation-before-binding", "wrong generation and binding",
          ["SES-23"], _hello_with(hl, generation=5, binding_sender=b"\x01" * 32),
          ["ORDER", "REPLAY"]),
        c("short-nonce", "a 15-byte nonce", ["SES-16"],
          _raw(FrameType.SES_HELLO, _reencode(hl, 1, b"\x00" * 15)), ["SCHEMA"]),
        c("unknown-key", "key 12 is not in the schema", ["SES-16"],
          _raw(FrameType.SES_HELLO, _reencode(hl, 12, 0)), ["SCHEMA"]),
        c("missing-key", "no key 11 (tx)", ["SES-16"],
          _raw(FrameType.SES_HELLO, _reencode(hl, 11, None)), ["SCHEMA"]),
        c("order-schema-before-peer", "a schema error and a wrong peer", ["SES-23"],
          _raw(FrameType.SES_HELLO, _reencode(_hello_with(hl, sender_pub=PUB_M), 12, 0)),
          ["ORDER", "SCHEMA"]),
        c("not-a-hello", "an SES_AUTH where the HELLO is checked", ["SES-23"],
          encode_frame(codec.encode_auth(b"\x00" * 64), DC), ["FRAMING"]),
        c("truncated", "a HELLO cut short", ["SES-23"], hl[:40], ["FRAMING"]),
    ]


def _reencode(frame: bytes, key: int, value: Any) -> bytes:
    body = dict(decode_cbor_map(frame[5:]))
    if value is None:
        body.pop(key)
    else:
        body[key] = value
    return encode_cbor(dict(sorted(body.items())))


def _auth_tests() -> tuple[list[Json], list[Json]]:
    hl, hh = _hellos()
    hl2, hh2 = _hellos(2)
    sign = [
        _case("session.sign_auth", "ses-auth-sign-low", "LOW's SES_AUTH of spec §17",
              ["SES-21", "SES-22"], {"identity_seed": SEED_L.hex(), "peer_pub": PUB_H.hex(),
                                     "hello_mine": hl.hex(), "hello_peer": hh.hex()}),
        _case("session.sign_auth", "ses-auth-sign-high", "HIGH's SES_AUTH of spec §17: the "
              "transcript still puts LOW's HELLO first", ["SES-21", "SES-22"],
              {"identity_seed": SEED_H.hex(), "peer_pub": PUB_L.hex(),
               "hello_mine": hh.hex(), "hello_peer": hl.hex()}),
    ]
    auth_l = bytes.fromhex(run_op("session.sign_auth", {}, {
        "identity_seed": SEED_L.hex(), "peer_pub": PUB_H.hex(),
        "hello_mine": hl.hex(), "hello_peer": hh.hex()})["value"]["frame"])
    key_m = SigningKey(SEED_M)
    by_m = codec.sign_auth(key_m, PUB_L, PUB_H, hl[5:], hh[5:])
    swapped = codec.sign_auth(SigningKey(SEED_L), PUB_L, PUB_H, hh[5:], hl[5:])
    base = {"my_pub": PUB_H.hex(), "peer_pub": PUB_L.hex(), "hello_mine": hh.hex(),
            "hello_peer": hl.hex()}

    def v(ident: str, comment: str, frame: bytes, flags: list[str] | None = None,
          req: tuple[str, ...] = (), **over: Any) -> Json:
        return _case("session.verify_auth", f"ses-auth-{ident}", comment,
                     ["SES-21", "SES-23", *req], {**base, **over, "frame": frame.hex()}, flags)

    not_a_key = bytes.fromhex("ed" + "ff" * 30 + "7f")  # y = p: not a valid identity key
    empty_hello = _raw(FrameType.SES_HELLO, b"\xa0")
    sign += [
        _case("session.sign_auth", "ses-auth-sign-no-schema", "HELLO frames whose bodies break "
              "§6.2 (an empty map): sign_auth checks framing and type only and signs them",
              ["SES-67"], {"identity_seed": SEED_L.hex(), "peer_pub": PUB_H.hex(),
                           "hello_mine": empty_hello.hex(), "hello_peer": hh.hex()},
              ["SCHEMA"]),
        _case("session.sign_auth", "ses-auth-sign-peer-not-a-key", "a 32-byte peer_pub that is "
              "not a valid identity key (y = p): only length and distinctness are checked",
              ["SES-67"], {"identity_seed": SEED_L.hex(), "peer_pub": not_a_key.hex(),
                           "hello_mine": hl.hex(), "hello_peer": hh.hex()}),
    ]
    verify = [
        v("order-frame-first", "an AUTH body that breaks §6.3 and a truncated hello_mine: the "
          "frame is checked first", _raw(FrameType.SES_AUTH, b"\xa0"), ["ORDER"],
          ("SES-68",), hello_mine="01"),
        v("peer-not-a-key", "a 32-byte peer_pub that is not a valid identity key: the "
          "signature check fails (SES_BAD_SIGNATURE)", auth_l, ["BAD_SIGNATURE"],
          ("SES-68",), peer_pub=not_a_key.hex()),
        v("valid", "HIGH verifies LOW's SES_AUTH", auth_l),
        v("replayed", "generation 1's SES_AUTH replayed on generation 2: HIGH's new nonce is "
          "not in it", auth_l, ["REPLAY"], hello_mine=hh2.hex(), hello_peer=hl2.hex()),
        v("replayed-hello-too", "generation 1's HELLO and AUTH replayed together against "
          "HIGH's fresh HELLO", auth_l, ["REPLAY"], hello_mine=hh2.hex()),
        v("wrong-identity", "signed by M's key, not LOW's", encode_frame(
            codec.encode_auth(by_m), DC), ["BAD_SIGNATURE"]),
        v("wrong-order", "LOW signed with the HELLO bodies in the wrong order",
          encode_frame(codec.encode_auth(swapped), DC), ["BAD_SIGNATURE"]),
        v("bit-flip", "one signature bit flipped", auth_l[:-1] + bytes([auth_l[-1] ^ 1]),
          ["BAD_SIGNATURE"]),
        v("short-signature", "a 63-byte signature", _raw(
            FrameType.SES_AUTH, encode_cbor({1: b"\x00" * 63})), ["SCHEMA"]),
    ]
    return sign, verify


def _decode_tests() -> list[Json]:
    hl, _ = _hellos()
    inner = bytes.fromhex("0121000001a0")

    def d(ident: str, comment: str, req: list[str], frame: bytes, flags: list[str] | None = None,
          path: str = "datachannel") -> Json:
        return _case("session.decode", f"ses-decode-{ident}", comment, req,
                     {"frame": frame.hex(), "path": path}, flags)

    return [
        d("hello", "SES_HELLO of spec §17", ["SES-16"], hl),
        d("auth", "SES_AUTH", ["SES-16"], encode_frame(codec.encode_auth(b"\x01" * 64), DC)),
        d("msg", "SES_MSG seq 1, payload 'hello'", ["SES-19"],
          encode_frame(codec.encode_msg(1, b"hello"), DC)),
        d("msg-empty", "SES_MSG with an empty payload", ["SES-19"],
          encode_frame(codec.encode_msg(2, b""), DC)),
        d("msg-max", "SES_MSG with a 16371-byte payload", ["SES-19"],
          encode_frame(codec.encode_msg(2**64 - 1, bytes(codec.MAX_PAYLOAD)), DC)),
        d("msg-tor", "SES_MSG on the onion stream", ["SES-10"],
          encode_frame(codec.encode_msg(3, b"x"), Path.TOR), path="tor"),
        d("ack", "SES_ACK 1", ["SES-19"], encode_frame(codec.encode_ack(1), DC)),
        d("end", "SES_END last 5", ["SES-16"], encode_frame(codec.encode_end(5), DC)),
        d("signal", "SES_SIGNAL carrying an RV_OFFER frame", ["SES-12", "SES-19"],
          encode_frame(codec.encode_signal(inner), DC)),
        d("msg-short", "SES_MSG body of 7 bytes", ["SES-19"], _raw(FrameType.SES_MSG, bytes(7)),
          ["SCHEMA"]),
        d("msg-seq-zero", "SES_MSG seq 0", ["SES-19"], _raw(FrameType.SES_MSG, bytes(8)),
          ["SCHEMA"]),
        d("msg-too-large", "SES_MSG body of 16380 bytes", ["SES-19"],
          _raw(FrameType.SES_MSG, bytes(16380)), ["OVERSIZE"]),
        d("msg-flags", "SES_MSG with flag 0x01", ["SES-19"],
          _raw(FrameType.SES_MSG, bytes(7) + b"\x01", 0x01), ["FRAMING"]),
        d("ack-long", "SES_ACK body of 9 bytes", ["SES-19"], _raw(FrameType.SES_ACK, bytes(9)),
          ["SCHEMA"]),
        d("end-extra-key", "SES_END with key 2", ["SES-16"],
          _raw(FrameType.SES_END, encode_cbor({1: 1, 2: 0})), ["SCHEMA"]),
        d("end-non-canonical", "SES_END with last written 18 05", ["SES-16"],
          _raw(FrameType.SES_END, bytes.fromhex("a1011805")), ["NON_CANONICAL"]),
        d("signal-hello", "SES_SIGNAL carrying an RV_HELLO", ["SES-19"],
          _raw(FrameType.SES_SIGNAL, bytes.fromhex("0120000001a0")), ["SCHEMA"]),
        d("signal-length", "SES_SIGNAL whose inner Length does not match", ["SES-19"],
          _raw(FrameType.SES_SIGNAL, bytes.fromhex("0121000002a0")), ["SCHEMA"]),
        d("signal-on-tor", "SES_SIGNAL decoded on the tor path: the op decodes it (SES-14 is "
          "the machine's rule)", ["SES-69"], encode_frame(codec.encode_signal(inner), DC),
          path="tor"),
        d("ping", "a PING is not a session frame", ["SES-16"],
          encode_frame(Frame(FrameType.PING, 0, ping_body(bytes(8))), DC), ["FRAMING"]),
        d("type-0x30", "0x30 is unassigned", ["SES-16"], _raw(0x30, b""), ["FRAMING"]),
    ]


def build() -> dict[str, Json]:
    sign, verify = _auth_tests()
    return {
        "session/frames.json": envelope("session", SPEC, REVISION, NOTES, [
            group("session.decode", _decode_tests()),
        ]),
        "session/handshake.json": envelope("session", SPEC, REVISION, NOTES, [
            group("session.verify_hello", _verify_hello_tests()),
            group("session.sign_auth", sign),
            group("session.verify_auth", verify),
        ]),
        "session/transcripts.json": envelope("session", SPEC, REVISION, NOTES, transcripts()),
        "session/pairs.json": envelope("session", SPEC, REVISION, NOTES, pairs()),
    }


__all__ = ["build"]
