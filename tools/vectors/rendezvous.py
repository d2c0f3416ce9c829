"""Rendezvous vectors (spec/p4-03-rendezvous-v1.md): derivation, signed messages, verification
failures and machine transcripts for both roles.

All randomness is fixed: identity seeds, pair root keys and nonces are SHA-256 of labelled
strings.  Expected values come from the reference (``p4ref.adapter.rendezvous``); the derive
cases are additionally checked against an independent HKDF written out here (RFC 5869).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, cast

from nacl.signing import SigningKey

from p4ref.adapter import rendezvous as adapter
from p4ref.errors import P4Error
from p4ref.framing import Frame, FrameType, Path, encode_cbor, encode_frame, ping_body
from p4ref.rendezvous import _codec as codec

from ._envelope import Json, envelope, group, test

SPEC, REV = "p4-03-rendezvous-v1", 7
NOW = 1_764_000_000_000  # 2025-11-24T16:00:00Z, epoch 20416
EPOCH = 20416
DAY_MS = 86_400_000

T = {
    "keys": "RDV-2",
    "same": "RDV-3",
    "roles": "RDV-5",
    "epoch": "RDV-7",
    "window": "RDV-8",
    "hkdf": "RDV-9",
    "info": "RDV-10",
    "onion": "RDV-11",
    "auth": "RDV-12",
    "types": "RDV-15",
    "schema": "RDV-16",
    "sdp": "RDV-18",
    "fp": "RDV-19",
    "ts": "RDV-20",
    "echo": "RDV-21",
    "bye": "RDV-22",
    "siginput": "RDV-23",
    "sig": "RDV-24",
    "peer": "RDV-26",
    "order": "RDV-25",
    "replay": "RDV-27",
    "gen": "RDV-30",
    "answer": "RDV-31",
    "glare": "RDV-34",
    "resignal": "RDV-40",
    "ping": "RDV-41",
    "table": "RDV-42",
    "error": "RDV-43",
    "timers": "RDV-48",
    "closed": "RDV-46",
    "leader": "RDV-6",
    "publish": "RDV-13",
    "nonce": "RDV-17",
    "record": "RDV-29",
    "localgen": "RDV-32",
    "nosdp": "RDV-33",
    "glareaction": "RDV-35",
    "crossed": "RDV-36",
    "terminal": "RDV-44",
    "recverror": "RDV-45",
    "noerrorreply": "CNV-36",
    "cachesize": "RDV-28",
    "eof": "RDV-47",
    "bound": "RDV-51",
    "mark": "RDV-52",
    "split": "RDV-53",
    "errorbyte": "RDV-54",
    "authepoch": "RDV-55",
    "onionparse": "RDV-56",
    "truncated": "FRM-36",
    "config": "RDV-58", "signasgiven": "RDV-71", "verifykey": "RDV-72", "peerkey": "RDV-73",
    "cmdorder": "RDV-74", "otherlayer": "RDV-75", "acceptorstart": "RDV-76",
    "hellogen": "RDV-59",
    "adopt": "RDV-60",
    "peerreset": "RDV-61",
    "copy": "RDV-69",
}

NOTES: dict[str, Json] = {
    "BAD_SIGNATURE": {"bugType": "AUTH_BYPASS", "description": "Signature does not verify."},
    "REPLAY": {"bugType": "REPLAY", "description": "Nonce already accepted in this epoch."},
    "WRONG_EPOCH": {"bugType": "MISSING_CHECK", "description": "Epoch outside prev/cur/next."},
    "STALE_GENERATION": {"bugType": "MISSING_CHECK", "description": "Generation not new."},
    "UNKNOWN_PEER": {"bugType": "AUTH_BYPASS", "description": "HELLO names another key."},
    "NON_CANONICAL": {"bugType": "MALLEABILITY",
                      "description": "A frame body that is not deterministic CBOR."},
    "OVERSIZE": {"bugType": "EDGE_CASE", "description": "Field or frame above its limit."},
    "SCHEMA": {"bugType": "MISSING_CHECK", "description": "Missing, unknown or mistyped key."},
    "CONFIG": {"bugType": "MISSING_CHECK",
               "description": "machine.new with a config p4-03 §14.2 refuses (RDV-58)."},
    "OUT_OF_ORDER": {"bugType": "STATE_MACHINE", "description": "Message not allowed now."},
    "GLARE": {"bugType": "EDGE_CASE", "description": "Both peers offered at once."},
    "TIMEOUT": {"bugType": "EDGE_CASE", "description": "A timer expires."},
    "BOUNDARY": {"bugType": "EDGE_CASE", "description": "Exactly at a limit: accepted."},
    "NON_ASCII": {"bugType": "CAN_OF_WORMS",
                  "description": "Non-ASCII text that Unicode case folding maps to ASCII."},
    "SPLIT": {"bugType": "EDGE_CASE",
              "description": "Frames split across or packed into one recv step."},
    "RESTORED": {"bugType": "EDGE_CASE",
                 "description": "A peer restored from a backup or copied: its generation went "
                                "backwards or its incarnation changed (RDV-60, RDV-61)."},
}


def _h(label: str) -> bytes:
    return hashlib.sha256(b"p4 vector rendezvous " + label.encode()).digest()


def _pub(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


_IDS = sorted(((_h("identity 1"), _pub(_h("identity 1"))),
               (_h("identity 2"), _pub(_h("identity 2")))), key=lambda t: t[1])
(SEED_LOW, PUB_LOW), (SEED_HIGH, PUB_HIGH) = _IDS
SEED_C = _h("identity stranger")
PUB_C = _pub(SEED_C)
ROOT = _h("pair root key")
FP_LOW, FP_HIGH = _h("dtls fingerprint low"), _h("dtls fingerprint high")


def _rng(label: str, n: int = 12) -> list[bytes]:
    return [_h(f"rng {label} {i}")[:16] for i in range(n)]


def _sign_raw(seed: bytes, recipient: bytes, ftype: FrameType, body: dict[int, Any]) -> bytes:
    """A frame signed over any body map, bypassing the encoder's checks (for invalid cases)."""
    key = SigningKey(seed)
    unsigned = encode_cbor({k: v for k, v in body.items() if k != codec.KEY_SIG})
    sig = key.sign(codec.signature_input(ftype, unsigned, bytes(key.verify_key), recipient))
    full = dict(body)
    full[codec.KEY_SIG] = sig.signature
    return encode_frame(Frame(ftype, 0, encode_cbor(full)), Path.TOR)


def _run(op: str, inp: Json) -> Json:
    return adapter.run_op(op, {}, inp)


def _case(op: str, ident: str, comment: str, tags: list[str], inp: Json, *,
          error: str | None = None, flags: list[str] | None = None) -> Json:
    got = _run(op, inp)
    want_err = got.get("error")
    if want_err != error:
        raise AssertionError(f"{ident}: reference says {got}, builder expects {error}")
    reqs = [T[t] for t in tags]
    if error is not None:
        return test(ident, comment, reqs, inp, valid=False, error=error, flags=flags)
    return test(ident, comment, reqs, inp, value=got["value"], flags=flags)


# ----------------------------------------------------------------------------- derivation


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def _derive_cases() -> list[Json]:
    c: list[Json] = []
    for ident, comment, root, me, peer, epoch in [
        ("rdv-derive-low", "LOW peer's view, epoch 20416", ROOT, PUB_LOW, PUB_HIGH, EPOCH),
        ("rdv-derive-high", "HIGH peer's view of the same pair: mirrored", ROOT, PUB_HIGH,
         PUB_LOW, EPOCH),
        ("rdv-derive-next-epoch", "next epoch: every output changes", ROOT, PUB_LOW, PUB_HIGH,
         EPOCH + 1),
        ("rdv-derive-epoch-0", "epoch 0", ROOT, PUB_LOW, PUB_HIGH, 0),
        ("rdv-derive-other-root", "another pair root key, same identities", _h("other root"),
         PUB_LOW, PUB_HIGH, EPOCH),
    ]:
        inp = {"pair_root_key": root.hex(), "my_pub": me.hex(), "peer_pub": peer.hex(),
               "epoch": epoch}
        tags = ["roles", "hkdf", "info", "onion", "auth", "publish"]
        case = _case("rendezvous.derive", ident, comment,
                     tags + (["epoch"] if epoch != EPOCH else []), inp)
        # independent check of the HKDF inputs (§5.3)
        low, high = sorted((me, peer))
        role = "low" if me == low else "high"
        info = b"P4-RDV-v1\x00onion-seed\x00" + role.encode() + b"\x00" + epoch.to_bytes(8, "big")
        assert case["expect"]["value"]["my_onion_seed"] == _hkdf(root, low + high, info).hex()
        c.append(case)
    for ident, comment, root, me, peer in [
        ("rdv-derive-same-identity", "both identity keys equal", ROOT, PUB_LOW, PUB_LOW),
        ("rdv-derive-short-root", "pair root key of 31 bytes", ROOT[:31], PUB_LOW, PUB_HIGH),
        ("rdv-derive-short-pub", "identity key of 31 bytes", ROOT, PUB_LOW[:31], PUB_HIGH),
    ]:
        inp = {"pair_root_key": root.hex(), "my_pub": me.hex(), "peer_pub": peer.hex(),
               "epoch": EPOCH}
        c.append(_case("rendezvous.derive", ident, comment,
                       ["same" if me == peer else "keys"], inp, error="RDV_KEY_INVALID"))
    return c


# ----------------------------------------------------------------------------- messages

_NONCE = _h("message nonce")[:16]
_STREAM = _h("recipient hello nonce")[:16]  # the recipient's HELLO nonce on the stream
INC_LOW, INC_HIGH = _h("incarnation low")[:16], _h("incarnation high")[:16]
NOT_A_KEY = bytes.fromhex("ed" + "ff" * 30 + "7f")  # y = p: 32 bytes, not a valid identity key
_MSGS: list[tuple[str, str, Json]] = [
    ("rdv-sign-hello", "dialer HELLO (no echo), generation 0",
     {"type": "RV_HELLO", "epoch": EPOCH, "nonce": _NONCE.hex(), "timestamp_ms": NOW,
      "sender_pub": PUB_LOW.hex(), "recipient_pub": PUB_HIGH.hex(), "generation": 0,
      "incarnation": INC_LOW.hex()}),
    ("rdv-sign-hello-reply", "HELLO echoing the peer's nonce, generation 7",
     {"type": "RV_HELLO", "epoch": EPOCH, "nonce": _h("n2")[:16].hex(), "timestamp_ms": NOW + 1,
      "sender_pub": PUB_LOW.hex(), "recipient_pub": PUB_HIGH.hex(), "echo": _NONCE.hex(),
      "generation": 7, "incarnation": INC_LOW.hex()}),
    ("rdv-sign-hello-u64", "HELLO with generation 2^64-1",
     {"type": "RV_HELLO", "epoch": EPOCH, "nonce": _h("n5")[:16].hex(), "timestamp_ms": NOW,
      "sender_pub": PUB_LOW.hex(), "recipient_pub": PUB_HIGH.hex(), "generation": 2**64 - 1,
      "incarnation": INC_LOW.hex()}),
    ("rdv-sign-offer", "OFFER, generation 1",
     {"type": "RV_OFFER", "epoch": EPOCH, "nonce": _NONCE.hex(), "generation": 1,
      "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n", "fingerprint": FP_LOW.hex(),
      "last_rx": 41, "stream_nonce": _STREAM.hex()}),
    ("rdv-sign-offer-worked-example", "the OFFER of p4-03 §15.2",
     {"type": "RV_OFFER", "epoch": EPOCH, "nonce": _NONCE.hex(), "generation": 1,
      "sdp": "v=0\r\n", "fingerprint": FP_LOW.hex(), "last_rx": 41,
      "stream_nonce": _STREAM.hex()}),
    ("rdv-sign-offer-u64", "OFFER with generation and last_rx at 2^64-1",
     {"type": "RV_OFFER", "epoch": EPOCH, "nonce": _NONCE.hex(), "generation": 2**64 - 1,
      "sdp": "v=0", "fingerprint": FP_LOW.hex(), "last_rx": 2**64 - 1,
      "stream_nonce": _STREAM.hex()}),
    ("rdv-sign-answer", "ANSWER to the OFFER above",
     {"type": "RV_ANSWER", "epoch": EPOCH, "nonce": _h("n3")[:16].hex(), "generation": 1,
      "sdp": "v=0\r\n", "fingerprint": FP_HIGH.hex(), "last_rx": 0,
      "offer_nonce": _NONCE.hex(), "stream_nonce": _STREAM.hex()}),
    ("rdv-sign-bye", "BYE, reason NO_ERROR",
     {"type": "RV_BYE", "epoch": EPOCH, "nonce": _NONCE.hex(), "reason": 0,
      "stream_nonce": _STREAM.hex()}),
    ("rdv-sign-bye-duplicate", "BYE, reason RDV_DUPLICATE_STREAM (0x0307)",
     {"type": "RV_BYE", "epoch": EPOCH, "nonce": _h("n4")[:16].hex(), "reason": 0x0307,
      "stream_nonce": _STREAM.hex()}),
]


def _msg(ident: str) -> Json:
    return next(m for i, _, m in _MSGS if i == ident)


def _signed(msg: Json) -> bytes:
    inp = {"identity_seed": SEED_LOW.hex(), "recipient_pub": PUB_HIGH.hex(), "message": msg}
    return bytes.fromhex(_run("rendezvous.sign", inp)["value"]["frame"])


def _sign_cases() -> list[Json]:
    c = []
    for ident, comment, msg in _MSGS:
        inp = {"identity_seed": SEED_LOW.hex(), "recipient_pub": PUB_HIGH.hex(), "message": msg}
        tags = ["types", "schema", "siginput", "sig"] + (["echo"] if "echo" in msg else [])
        tags += ["bound"] if "stream_nonce" in msg else []
        tags += ["hellogen"] if "incarnation" in msg else []
        c.append(_case("rendezvous.sign", ident, comment, tags, inp))
    for field in ("generation", "incarnation"):
        partial = {k: v for k, v in _msg("rdv-sign-hello").items() if k != field}
        c.append(_case("rendezvous.sign", f"rdv-sign-hello-without-{field}",
                       f"a HELLO without {field} (a revision-2 HELLO)", ["schema", "hellogen"],
                       {"identity_seed": SEED_LOW.hex(), "recipient_pub": PUB_HIGH.hex(),
                        "message": partial}, error="MESSAGE_INVALID", flags=["SCHEMA"]))
    odd = dict(_msg("rdv-sign-hello"), sender_pub="11" * 32)
    c.append(_case("rendezvous.sign", "rdv-sign-hello-keys-as-given", "a HELLO whose sender_pub "
                   "is not the seed's key: signed as given, not refused (the receiver's RDV-26 "
                   "catches it)", ["signasgiven", "siginput"],
                   {"identity_seed": SEED_LOW.hex(), "recipient_pub": PUB_HIGH.hex(),
                    "message": odd}))
    bad = dict(_msg("rdv-sign-offer"), sdp="x" * (codec.MAX_SDP_BYTES + 1))
    c.append(_case("rendezvous.sign", "rdv-sign-sdp-oversize", "sender refuses SDP > 8192 bytes",
                   ["sdp"], {"identity_seed": SEED_LOW.hex(), "recipient_pub": PUB_HIGH.hex(),
                             "message": bad}, error="MESSAGE_INVALID", flags=["OVERSIZE"]))
    return c


def _decode_cases() -> list[Json]:
    c: list[Json] = []
    for ident, comment, msg in _MSGS:
        c.append(_case("rendezvous.decode", ident.replace("sign", "decode"), comment,
                       ["types", "schema"], {"frame": _signed(msg).hex()}))
    offer: dict[int, Any] = {1: EPOCH, 2: _NONCE, 3: 1, 4: "v=0", 5: FP_LOW, 6: 0, 8: _STREAM}

    def raw(body: dict[int, Any], ftype: FrameType = FrameType.RV_OFFER) -> str:
        return _sign_raw(SEED_LOW, PUB_HIGH, ftype, body).hex()

    sdp_max = dict(offer)
    sdp_max[4] = "é" * (codec.MAX_SDP_BYTES // 2)
    c.append(_case("rendezvous.decode", "rdv-decode-sdp-8192", "SDP of exactly 8192 bytes",
                   ["sdp"], {"frame": raw(sdp_max)}, flags=["BOUNDARY"]))
    invalid: list[tuple[str, str, list[str], dict[int, Any], str, str]] = []
    mutations: list[tuple[str, str, list[str], dict[int, Any], str]] = [
        ("rdv-decode-sdp-8193", "SDP of 8193 bytes", ["sdp"],
         {4: "x" * (codec.MAX_SDP_BYTES + 1)}, "OVERSIZE"),
        ("rdv-decode-sdp-empty", "empty SDP", ["sdp"], {4: ""}, "SCHEMA"),
        ("rdv-decode-unknown-key", "unknown key 9", ["schema"], {9: 0}, "SCHEMA"),
        ("rdv-decode-fp-31", "fingerprint of 31 bytes", ["fp"], {5: FP_LOW[:31]}, "SCHEMA"),
        ("rdv-decode-nonce-15", "nonce of 15 bytes", ["schema"], {2: _NONCE[:15]}, "SCHEMA"),
        ("rdv-decode-gen-negative", "generation -1", ["schema"], {3: -1}, "SCHEMA"),
        ("rdv-decode-gen-bool", "generation true", ["schema"], {3: True}, "SCHEMA"),
        ("rdv-decode-sdp-bytes", "SDP as a byte string", ["schema"], {4: b"v=0"}, "SCHEMA"),
    ]
    for ident, comment, tags, mutate, flag in mutations:
        body = dict(offer)
        body.update(mutate)
        invalid.append((ident, comment, tags, body, "MESSAGE_INVALID", flag))
    missing = dict(offer)
    del missing[6]
    invalid.append(("rdv-decode-missing-key", "last_rx missing", ["schema"], missing,
                    "MESSAGE_INVALID", "SCHEMA"))
    unbound = dict(offer)
    del unbound[8]
    invalid.append(("rdv-decode-offer-without-stream-nonce",
                    "OFFER without key 8 (a revision-1 OFFER)", ["schema", "bound"], unbound,
                    "MESSAGE_INVALID", "SCHEMA"))
    for ident, comment, tags, body, err, flag in invalid:
        c.append(_case("rendezvous.decode", ident, comment, tags, {"frame": raw(body)},
                       error=err, flags=[flag]))
    nosig = encode_frame(Frame(FrameType.RV_BYE, 0, encode_cbor({1: EPOCH, 2: _NONCE, 3: 0,
                                                                 8: _STREAM})), Path.TOR)
    c.append(_case("rendezvous.decode", "rdv-decode-no-signature", "BYE without key 15",
                   ["schema"], {"frame": nosig.hex()}, error="MESSAGE_INVALID",
                   flags=["SCHEMA"]))
    hello_ts = {1: EPOCH, 2: _NONCE, 3: NOW + DAY_MS, 4: PUB_LOW, 5: PUB_HIGH, 7: 0, 8: INC_LOW}
    c.append(_case("rendezvous.decode", "rdv-decode-hello-ts-epoch",
                   "HELLO timestamp in the next epoch", ["ts"],
                   {"frame": raw(hello_ts, FrameType.RV_HELLO)}, error="MESSAGE_INVALID",
                   flags=["SCHEMA"]))
    hello: dict[int, Any] = {1: EPOCH, 2: _NONCE, 3: NOW, 4: PUB_LOW, 5: PUB_HIGH, 7: 3,
                             8: INC_LOW}
    hello_cases: list[tuple[str, str, dict[int, Any], int | None]] = [
        ("rdv-decode-hello-incarnation-15", "HELLO incarnation of 15 bytes", {8: INC_LOW[:15]},
         None),
        ("rdv-decode-hello-incarnation-17", "HELLO incarnation of 17 bytes",
         {8: INC_LOW + b"\x00"}, None),
        ("rdv-decode-hello-generation-negative", "HELLO generation -1", {7: -1}, None),
        ("rdv-decode-hello-without-generation", "HELLO without key 7 (a revision-2 HELLO)", {},
         7),
        ("rdv-decode-hello-without-incarnation", "HELLO without key 8", {}, 8),
    ]
    for ident, comment, mutate, drop in hello_cases:
        body = dict(hello)
        body.update(mutate)
        if drop is not None:
            del body[drop]
        c.append(_case("rendezvous.decode", ident, comment, ["schema", "hellogen"],
                       {"frame": raw(body, FrameType.RV_HELLO)}, error="MESSAGE_INVALID",
                       flags=["SCHEMA"]))
    big = bytes([1, 0x21, 0, 0x40, 0x00]) + b"\x00" * 16384
    c.append(_case("rendezvous.decode", "rdv-decode-frame-too-large",
                   "declared body 16384 > 16379", ["types"], {"frame": big.hex()},
                   error="FRAME_TOO_LARGE", flags=["OVERSIZE"]))
    flagged = bytearray(_signed(_msg("rdv-sign-bye")))
    flagged[2] = 0x01
    c.append(_case("rendezvous.decode", "rdv-decode-flags", "BYE with flag bit 0 set",
                   ["types"], {"frame": bytes(flagged).hex()}, error="FRAME_BAD_FLAGS"))
    return c


def _verify_cases() -> list[Json]:
    c: list[Json] = []
    base = {"sender_pub": PUB_LOW.hex(), "recipient_pub": PUB_HIGH.hex(), "now": NOW}
    hello, offer = _signed(_msg("rdv-sign-hello")), _signed(_msg("rdv-sign-offer"))
    for ident, comment, frame in [
        ("rdv-verify-hello", "valid HELLO", hello),
        ("rdv-verify-offer", "valid OFFER", offer),
        ("rdv-verify-bye", "valid BYE", _signed(_msg("rdv-sign-bye"))),
    ]:
        c.append(_case("rendezvous.verify", ident, comment, ["sig", "window"],
                       dict(base, frame=frame.hex())))
    c.append(_case("rendezvous.verify", "rdv-verify-prev-epoch", "receiver one epoch later",
                   ["window"], dict(base, frame=offer.hex(), now=NOW + DAY_MS)))
    bad_sig = bytearray(offer)
    bad_sig[-1] ^= 0x01
    c.append(_case("rendezvous.verify", "rdv-verify-bad-signature", "last signature byte flipped",
                   ["sig"], dict(base, frame=bytes(bad_sig).hex()), error="RDV_BAD_SIGNATURE",
                   flags=["BAD_SIGNATURE"]))
    c.append(_case("rendezvous.verify", "rdv-verify-wrong-recipient",
                   "signed for this sender but another recipient", ["siginput", "sig"],
                   dict(base, frame=offer.hex(), recipient_pub=PUB_C.hex()),
                   error="RDV_BAD_SIGNATURE", flags=["BAD_SIGNATURE"]))
    c.append(_case("rendezvous.verify", "rdv-verify-wrong-sender",
                   "verified against another sender key", ["sig"],
                   dict(base, frame=offer.hex(), sender_pub=PUB_C.hex()),
                   error="RDV_BAD_SIGNATURE", flags=["BAD_SIGNATURE"]))
    c.append(_case("rendezvous.verify", "rdv-verify-replay", "nonce already in the cache",
                   ["replay"], dict(base, frame=offer.hex(),
                                    seen=[{"epoch": EPOCH, "nonce": _NONCE.hex()}]),
                   error="RDV_REPLAY", flags=["REPLAY"]))
    c.append(_case("rendezvous.verify", "rdv-verify-replay-other-epoch",
                   "same nonce seen in another epoch: not a replay", ["replay"],
                   dict(base, frame=offer.hex(),
                        seen=[{"epoch": EPOCH - 1, "nonce": _NONCE.hex()}])))
    for ident, comment, now in [
        ("rdv-verify-epoch-too-old", "receiver two epochs later", NOW + 2 * DAY_MS),
        ("rdv-verify-epoch-too-new", "receiver two epochs earlier", NOW - 2 * DAY_MS),
    ]:
        c.append(_case("rendezvous.verify", ident, comment, ["window"],
                       dict(base, frame=offer.hex(), now=now), error="RDV_WRONG_EPOCH",
                       flags=["WRONG_EPOCH"]))
    c.append(_case("rendezvous.verify", "rdv-verify-generation-equal",
                   "OFFER generation equal to the current one", ["gen"],
                   dict(base, frame=offer.hex(), last_generation=1), error="RDV_STALE_GENERATION",
                   flags=["STALE_GENERATION"]))
    c.append(_case("rendezvous.verify", "rdv-verify-generation-lower",
                   "OFFER generation below the current one", ["gen"],
                   dict(base, frame=offer.hex(), last_generation=7),
                   error="RDV_STALE_GENERATION",
                   flags=["STALE_GENERATION"]))
    c.append(_case("rendezvous.verify", "rdv-verify-generation-new",
                   "OFFER generation one above the current one", ["gen"],
                   dict(base, frame=offer.hex(), last_generation=0)))
    answer = _signed(_msg("rdv-sign-answer"))
    c.append(_case("rendezvous.verify", "rdv-verify-answer-at-last-generation",
                   "ANSWER whose generation equals last_generation (the OFFER it answers raised "
                   "G to it): accepted; an ANSWER must not be below G, it may equal it",
                   ["answer", "gen"], dict(base, frame=answer.hex(), last_generation=1)))
    c.append(_case("rendezvous.verify", "rdv-verify-answer-below-last-generation",
                   "ANSWER for generation 1 with last_generation 2: RDV_STALE_GENERATION",
                   ["answer", "gen"], dict(base, frame=answer.hex(), last_generation=2),
                   error="RDV_STALE_GENERATION", flags=["STALE_GENERATION"]))
    c.append(_case("rendezvous.verify", "rdv-verify-generation-after-u64-mark",
                   "receiver mark 2^64-1: no OFFER can be new (lossless integers)",
                   ["gen", "mark"],
                   dict(base, frame=_signed(_msg("rdv-sign-offer-u64")).hex(),
                        last_generation=2**64 - 1),
                   error="RDV_STALE_GENERATION", flags=["STALE_GENERATION", "BOUNDARY"]))
    c.append(_case("rendezvous.verify", "rdv-verify-bound-to-this-stream",
                   "OFFER naming the receiver's HELLO nonce", ["bound"],
                   dict(base, frame=offer.hex(), hello_nonce=_STREAM.hex())))
    c.append(_case("rendezvous.verify", "rdv-verify-bound-to-another-stream",
                   "OFFER naming another HELLO nonce: recorded on another stream", ["bound"],
                   dict(base, frame=offer.hex(), hello_nonce=_h("other stream")[:16].hex()),
                   error="RDV_REPLAY", flags=["REPLAY"]))
    c.append(_case("rendezvous.verify", "rdv-verify-order-replay-before-generation",
                   "unbound and stale: the binding (step 7) is checked before the generation",
                   ["order", "bound"],
                   dict(base, frame=offer.hex(), hello_nonce=_h("other stream")[:16].hex(),
                        last_generation=5),
                   error="RDV_REPLAY", flags=["REPLAY"]))
    stranger = _sign_raw(SEED_C, PUB_HIGH, FrameType.RV_HELLO,
                         {1: EPOCH, 2: _NONCE, 3: NOW, 4: PUB_C, 5: PUB_HIGH, 7: 0,
                          8: INC_LOW})
    c.append(_case("rendezvous.verify", "rdv-verify-unknown-peer",
                   "HELLO from a key this endpoint is not paired with", ["peer"],
                   dict(base, frame=stranger.hex()), error="RDV_UNKNOWN_PEER",
                   flags=["UNKNOWN_PEER"]))
    c.append(_case("rendezvous.verify", "rdv-verify-sender-not-a-key", "a 32-byte sender_pub "
                   "that is not a valid identity key (y = p): the signature check fails",
                   ["verifykey", "sig"], dict(base, frame=offer.hex(), sender_pub=NOT_A_KEY.hex()),
                   error="RDV_BAD_SIGNATURE", flags=["BAD_SIGNATURE"]))
    c.append(_case("rendezvous.verify", "rdv-verify-order-epoch-before-signature",
                   "wrong epoch and bad signature: the epoch is checked first", ["order"],
                   dict(base, frame=bytes(bad_sig).hex(), now=NOW + 2 * DAY_MS),
                   error="RDV_WRONG_EPOCH", flags=["WRONG_EPOCH"]))
    return c


# ----------------------------------------------------------------------------- transcripts


class _Rec:
    """One machine driven through the adapter; its steps become a transcript test."""

    def __init__(self, role: str, seed: bytes, peer: bytes, rng_label: str,
                 last_generation: int = 0, **extra: Any) -> None:
        self.role = role
        self.config: Json = {"identity_seed": seed.hex(), "peer_pub": peer.hex()}
        if last_generation:
            self.config["last_generation"] = last_generation
        self.config.update(extra)
        self.rng = _rng(rng_label)
        self.m = adapter.new(role, self.config, list(self.rng))
        self.steps: list[Json] = []
        self.outs: list[Json] = []

    def step(self, now: int, inp: Json) -> bytes:
        """One step; a refused command is recorded as a step-level ``{"error": CODE}``
        (conformance/README.md §4.2): the machine is unchanged."""
        try:
            out = adapter.step(self.m, now, inp)
        except P4Error as exc:
            out = {"error": exc.code.name}
        self.steps.append({"now": now, "in": inp})
        self.outs.append(out)
        return b"".join(bytes.fromhex(o["send"]) for o in out.get("out", []) if "send" in o)

    def recv(self, now: int, data: bytes) -> bytes:
        return self.step(now, {"recv": data.hex()})

    @property
    def stream_nonce(self) -> bytes:
        """This machine's HELLO nonce: what the peer's OFFER/ANSWER/BYE must name [RDV-51]."""
        nonce = self.m.hello_nonce
        assert nonce is not None
        return nonce

    def case(self, ident: str, comment: str, tags: list[str],
             flags: list[str] | None = None) -> Json:
        used = len(self.rng) - cast(Any, self.m)._rng.left
        inp = {"rng": [r.hex() for r in self.rng[:used]], "steps": self.steps}
        return test(ident, comment, [T[t] for t in tags], inp,
                    value={"steps": self.outs}, flags=flags)

    def params(self) -> Json:
        return {"machine": "rendezvous", "role": self.role, "config": self.config}


def _pair(low_dials: bool, label: str, last_generation: int = 0) -> tuple[_Rec, _Rec]:
    if low_dials:
        return (_Rec("dialer", SEED_LOW, PUB_HIGH, label + " d", last_generation),
                _Rec("acceptor", SEED_HIGH, PUB_LOW, label + " a", last_generation))
    return (_Rec("dialer", SEED_HIGH, PUB_LOW, label + " d", last_generation),
            _Rec("acceptor", SEED_LOW, PUB_HIGH, label + " a", last_generation))


def _hello(d: _Rec, a: _Rec, t: int = NOW) -> None:
    """The three HELLOs (§6.3): both READY afterwards."""
    a.step(t, {"cmd": "start"})
    echo = a.recv(t + 100, d.step(t, {"cmd": "start"}))
    a.recv(t + 300, d.recv(t + 200, echo))


def _offer(gen: int, fp: bytes, sdp: str = "v=0 offer", last_rx: int = 0) -> Json:
    return {"cmd": "send_offer", "sdp": sdp, "fingerprint": fp.hex(), "generation": gen,
            "last_rx": last_rx}


def _answer(fp: bytes, sdp: str = "v=0 answer", last_rx: int = 0) -> Json:
    return {"cmd": "send_answer", "sdp": sdp, "fingerprint": fp.hex(), "last_rx": last_rx}


def _bye(reason: str = "NO_ERROR") -> Json:
    return {"cmd": "send_bye", "reason": reason}


def _low_offer(to: _Rec, nonce_label: str, gen: int, over: dict[int, Any] | None = None
               ) -> bytes:
    """An OFFER signed by LOW for the HIGH acceptor ``to``, bound to its stream."""
    body: dict[int, Any] = {1: EPOCH, 2: _h(nonce_label)[:16], 3: gen, 4: "v=0", 5: FP_LOW,
                            6: 0, 8: to.stream_nonce}
    body.update(over or {})
    return _sign_raw(SEED_LOW, PUB_HIGH, FrameType.RV_OFFER, body)


def _transcripts() -> list[Json]:
    groups: dict[str, tuple[Json, list[Json]]] = {}

    def add(rec: _Rec, ident: str, comment: str, tags: list[str],
            flags: list[str] | None = None) -> None:
        key = repr(rec.params())
        groups.setdefault(key, (rec.params(), []))[1].append(rec.case(ident, comment, tags, flags))

    for low_dials in (True, False):
        who = "low-dials" if low_dials else "high-dials"
        # happy path with re-signalling on the same stream, then BYE.  The dialer's third HELLO
        # and its OFFER reach the acceptor in one recv step (any split is allowed).
        d, a = _pair(low_dials, f"happy {who}")
        a.step(NOW, {"cmd": "start"})
        echo = a.recv(NOW + 100, d.step(NOW, {"cmd": "start"}))
        confirm = d.recv(NOW + 200, echo)
        offer = d.step(NOW + 300, _offer(1, FP_LOW, last_rx=3))
        a.recv(NOW + 400, confirm + offer)
        ans = a.step(NOW + 500, _answer(FP_HIGH, last_rx=4))
        d.recv(NOW + 600, ans)
        o2 = a.step(NOW + 700, _offer(2, FP_HIGH, "v=0 g2", 9))
        d.recv(NOW + 800, o2)
        a.recv(NOW + 1000, d.step(NOW + 900, _answer(FP_LOW, "v=0 a2", 10)))
        d.recv(NOW + 1200, a.step(NOW + 1100, _bye()))
        add(d, f"rdv-tx-happy-{who}-dialer",
            "three HELLOs, OFFER/ANSWER g1, peer re-offers g2, BYE",
            ["echo", "bound", "authepoch", "gen", "resignal", "closed", "table"])
        add(a, f"rdv-tx-happy-{who}-acceptor",
            "three HELLOs (the third with the OFFER in one recv), OFFER/ANSWER g1, re-offer g2, "
            "BYE", ["echo", "bound", "authepoch", "gen", "resignal", "closed", "table", "split"],
            ["SPLIT"])
        # glare: both offer generation 1; LOW (leader) wins
        d, a = _pair(low_dials, f"glare {who}")
        _hello(d, a)
        od = d.step(NOW + 400, _offer(1, FP_LOW if low_dials else FP_HIGH, "v=0 from dialer"))
        oa = a.step(NOW + 400, _offer(1, FP_HIGH if low_dials else FP_LOW, "v=0 from acceptor"))
        rd, ra = d.recv(NOW + 500, oa), a.recv(NOW + 500, od)
        assert not rd and not ra
        follower, leader = (a, d) if low_dials else (d, a)
        leader.recv(NOW + 700, follower.step(NOW + 600, _answer(FP_HIGH)))
        add(d, f"rdv-tx-glare-{who}-dialer", "both OFFER g1; the LOW peer's OFFER wins",
            ["leader", "glare", "glareaction"], ["GLARE"])
        add(a, f"rdv-tx-glare-{who}-acceptor", "both OFFER g1; the LOW peer's OFFER wins",
            ["leader", "glare", "glareaction"], ["GLARE"])

    # RDV-35: the ignored losing OFFER passed checks (1)-(7), so its nonce is in the replay cache
    d, a = _pair(True, "glare nonce recorded")
    _hello(d, a)
    d.step(NOW + 400, _offer(1, FP_LOW, "v=0 from dialer"))
    oa = a.step(NOW + 400, _offer(1, FP_HIGH, "v=0 from acceptor"))
    d.recv(NOW + 500, oa)
    lost_nonce = bytes.fromhex(adapter.run_op("rendezvous.decode", {}, {"frame": oa.hex()})
                               ["value"]["message"]["nonce"])
    d.recv(NOW + 600, _sign_raw(SEED_HIGH, PUB_LOW, FrameType.RV_OFFER,
                                {1: EPOCH, 2: lost_nonce, 3: 2, 4: "v=0 again", 5: FP_HIGH,
                                 6: 0, 8: d.stream_nonce}))
    add(d, "rdv-tx-glare-ignored-nonce-recorded", "LOW wins glare and ignores HIGH's OFFER g1; "
        "an OFFER g2 reusing that OFFER's nonce (another body) is RDV_REPLAY: the ignored "
        "OFFER's nonce was recorded", ["glareaction", "replay"], ["GLARE", "REPLAY"])

    # byte-at-a-time and split deliveries give the same outputs (decision 3, RDV-53)
    d, a = _pair(True, "split")
    a.step(NOW, {"cmd": "start"})
    hello = d.step(NOW, {"cmd": "start"})
    a.recv(NOW + 100, hello[:1])
    a.recv(NOW + 101, hello[1:5])
    a.recv(NOW + 102, hello[5:-1])
    a.recv(NOW + 103, hello[-1:])
    add(a, "rdv-tx-split-hello", "the dialer HELLO in four recv steps (1, 4, rest-1, 1 bytes): "
        "the echo HELLO comes with the last byte", ["split", "echo"], ["SPLIT"])

    # the PEER_AUTHENTICATED epoch is the one the peer's echoing HELLO names (its clock)
    d, a = _pair(True, "epoch report")
    a.step(NOW + DAY_MS, {"cmd": "start"})
    echo = a.recv(NOW + DAY_MS + 100, d.step(NOW, {"cmd": "start"}))
    a.recv(NOW + DAY_MS + 300, d.recv(NOW + 200, echo))
    add(d, "rdv-tx-authenticated-epoch-peer-clock",
        "the acceptor's clock is one epoch ahead: the dialer reports epoch 20417, the "
        "acceptor's HELLO epoch", ["authepoch", "window"])
    add(a, "rdv-tx-authenticated-epoch-dialer-clock",
        "the dialer's clock is one epoch behind: the acceptor reports epoch 20416, the epoch "
        "of the dialer's echoing (third) HELLO", ["authepoch", "window"])

    # timers
    d, _ = _pair(True, "timeout")
    d.step(NOW, {"cmd": "start"})
    d.step(NOW + 29_999, {"tick": True})
    d.step(NOW + 30_000, {"tick": True})
    add(d, "rdv-tx-hello-timeout", "no HELLO reply within 30 s", ["timers", "error"],
        ["TIMEOUT"])
    d, a = _pair(True, "echo timeout")
    a.step(NOW, {"cmd": "start"})
    a.recv(NOW + 100, d.step(NOW, {"cmd": "start"}))
    a.step(NOW + 30_000, {"tick": True})
    add(a, "rdv-tx-hello-echo-timeout", "a dialer HELLO (or a replay of one) but no third HELLO "
        "within 30 s of start: HELLO_ECHOED times out, nothing was reported",
        ["timers", "echo", "error"], ["TIMEOUT", "REPLAY"])
    d, a = _pair(True, "answer timeout")
    _hello(d, a)
    d.step(NOW + 400, _offer(1, FP_LOW))
    d.step(NOW + 30_400, {"tick": True})
    add(d, "rdv-tx-answer-timeout", "no ANSWER within 30 s", ["timers", "error"], ["TIMEOUT"])

    # acceptor-side rejections (LOW dials; the HIGH acceptor is recorded)
    d, a = _pair(True, "replay")
    _hello(d, a)
    offer = d.step(NOW + 400, _offer(1, FP_LOW))
    a.recv(NOW + 500, offer)
    d.recv(NOW + 700, a.step(NOW + 600, _answer(FP_HIGH)))
    a.recv(NOW + 800, offer)
    add(a, "rdv-tx-copy-of-offer-dropped", "the same OFFER (bytes) again after the ANSWER: a "
        "copy that raced on another path, dropped silently; still ANSWERED",
        ["copy", "replay", "record"], ["REPLAY"])
    d, a = _pair(True, "replay other body")
    _hello(d, a)
    offer = d.step(NOW + 400, _offer(1, FP_LOW))
    a.recv(NOW + 500, offer)
    d.recv(NOW + 700, a.step(NOW + 600, _answer(FP_HIGH)))
    nonce = bytes.fromhex(adapter.run_op("rendezvous.decode", {}, {"frame": offer.hex()})
                          ["value"]["message"]["nonce"])
    a.recv(NOW + 800, _low_offer(a, "unused", 2, {2: nonce}))
    add(a, "rdv-tx-replay-offer", "another OFFER (generation 2) under the nonce of the "
        "accepted one: RDV_REPLAY", ["replay", "record", "copy", "error"], ["REPLAY"])
    d, a = _pair(False, "copy of answer")
    _hello(d, a)
    offer = d.step(NOW + 400, _offer(1, FP_HIGH))
    a.recv(NOW + 500, offer)
    ans = a.step(NOW + 600, _answer(FP_LOW))
    d.recv(NOW + 700, ans)
    d.recv(NOW + 800, ans)
    add(d, "rdv-tx-copy-of-answer-dropped", "the ANSWER twice (the second, e.g. in-band, after "
        "ANSWERED): dropped silently, no UNEXPECTED_MESSAGE", ["copy"], ["REPLAY"])

    # replay after a restart (issue 8 §1.4): a recorded dialer HELLO and third HELLO replayed
    # to a new acceptor machine: the old echo is not the new acceptor nonce
    d, a = _pair(True, "recorded")
    a.step(NOW, {"cmd": "start"})
    hello = d.step(NOW, {"cmd": "start"})
    confirm = d.recv(NOW + 200, a.recv(NOW + 100, hello))
    _, restarted = _pair(True, "restarted")
    restarted.step(NOW + 60_000, {"cmd": "start"})
    restarted.recv(NOW + 60_100, hello)
    restarted.recv(NOW + 60_200, confirm)
    add(restarted, "rdv-tx-replayed-hellos-after-restart",
        "a restarted acceptor (empty cache) gets a recorded dialer HELLO, answers it with a "
        "fresh nonce, then the recorded third HELLO, which echoes the old nonce: RDV_REPLAY",
        ["echo", "replay", "error"], ["REPLAY"])
    # ... and an OFFER recorded on another stream, on a live one
    d, a = _pair(True, "other stream")
    _hello(d, a)
    d2, a2 = _pair(True, "live stream")
    _hello(d2, a2)
    a2.recv(NOW + 500, d.step(NOW + 400, _offer(1, FP_LOW)))
    add(a2, "rdv-tx-offer-from-another-stream",
        "a correctly signed OFFER bound to another stream's HELLO nonce: RDV_REPLAY",
        ["bound", "error"], ["REPLAY"])
    # the persisted mark refuses the generation already answered before the restart
    d, a = _pair(True, "mark", last_generation=1)
    _hello(d, a)
    a.recv(NOW + 500, _low_offer(a, "after restart", 1))
    add(a, "rdv-tx-offer-at-persisted-mark",
        "last_generation 1 (the persisted mark), a fresh bound OFFER of generation 1",
        ["mark", "gen", "error"], ["STALE_GENERATION", "REPLAY"])

    d, a = _pair(True, "stale")
    _hello(d, a)
    a.recv(NOW + 500, d.step(NOW + 400, _offer(1, FP_LOW)))
    a.step(NOW + 600, _answer(FP_HIGH))
    a.recv(NOW + 700, _low_offer(a, "fresh", 1))
    add(a, "rdv-tx-stale-generation", "a fresh OFFER for the answered generation 1",
        ["gen", "error"], ["STALE_GENERATION"])

    d, a = _pair(True, "configured generation", last_generation=5)
    _hello(d, a)
    a.recv(NOW + 500, _low_offer(a, "g4", 4))
    add(a, "rdv-tx-below-configured-generation", "last_generation 5, OFFER for 4",
        ["gen", "mark", "error"], ["STALE_GENERATION"])

    _, a = _pair(True, "early offer")
    a.step(NOW, {"cmd": "start"})
    a.recv(NOW + 100, _sign_raw(SEED_LOW, PUB_HIGH, FrameType.RV_OFFER,
                                {1: EPOCH, 2: _h("early")[:16], 3: 1, 4: "v=0", 5: FP_LOW,
                                 6: 0, 8: _h("no hello yet")[:16]}))
    add(a, "rdv-tx-offer-before-hello", "OFFER before any HELLO", ["table", "nosdp", "error"],
        ["OUT_OF_ORDER"])

    d, a = _pair(True, "offer before third hello")
    a.step(NOW, {"cmd": "start"})
    a.recv(NOW + 100, d.step(NOW, {"cmd": "start"}))
    a.recv(NOW + 200, _low_offer(a, "too early", 1))
    add(a, "rdv-tx-offer-before-third-hello", "a bound OFFER in HELLO_ECHOED, before the "
        "dialer echoed the acceptor's nonce", ["table", "nosdp", "error"], ["OUT_OF_ORDER"])

    d, a = _pair(True, "answer in ready")
    _hello(d, a)
    a.recv(NOW + 400, _sign_raw(SEED_LOW, PUB_HIGH, FrameType.RV_ANSWER,
                                {1: EPOCH, 2: _h("x")[:16], 3: 1, 4: "v=0", 5: FP_LOW, 6: 0,
                                 7: _h("y")[:16], 8: a.stream_nonce}))
    add(a, "rdv-tx-answer-without-offer", "ANSWER while no OFFER is outstanding",
        ["table", "error"], ["OUT_OF_ORDER"])

    d, a = _pair(True, "bad sig")
    a.step(NOW, {"cmd": "start"})
    corrupt = bytearray(d.step(NOW, {"cmd": "start"}))
    corrupt[-1] ^= 0x80
    a.recv(NOW + 100, bytes(corrupt))
    add(a, "rdv-tx-bad-signature", "dialer HELLO with a corrupted signature", ["sig", "error"],
        ["BAD_SIGNATURE"])

    d, a = _pair(True, "wrong epoch")
    a.recv(NOW + 2 * DAY_MS, d.step(NOW, {"cmd": "start"}))
    add(a, "rdv-tx-wrong-epoch", "HELLO from epoch e received in epoch e+2", ["window", "error"],
        ["WRONG_EPOCH"])

    _, a = _pair(True, "stranger")
    stranger = _Rec("dialer", SEED_C, PUB_HIGH, "stranger d")
    a.recv(NOW + 100, stranger.step(NOW, {"cmd": "start"}))
    add(a, "rdv-tx-unknown-peer", "HELLO signed by a key this pair does not contain",
        ["peer", "error"], ["UNKNOWN_PEER"])

    d, a = _pair(True, "oversize")
    _hello(d, a)
    a.recv(NOW + 400, _low_offer(a, "big", 1, {4: "x" * (codec.MAX_SDP_BYTES + 1)}))
    add(a, "rdv-tx-sdp-oversize", "OFFER with an SDP of 8193 bytes", ["sdp", "error"],
        ["OVERSIZE"])

    d, a = _pair(True, "echo")
    d.step(NOW, {"cmd": "start"})
    other, a2 = _pair(True, "echo other")
    d.recv(NOW + 200, a2.recv(NOW + 100, other.step(NOW, {"cmd": "start"})))
    add(d, "rdv-tx-hello-echo-mismatch", "acceptor HELLO echoing another HELLO's nonce",
        ["echo", "error"], ["REPLAY"])

    d, a = _pair(True, "ping")
    _hello(d, a)
    a.recv(NOW + 400, encode_frame(Frame(FrameType.PING, 0, ping_body(b"\x01" * 8)), Path.TOR)
           + encode_frame(Frame(FrameType.PADDING, 0, b"\x00\x00"), Path.TOR)
           + encode_frame(Frame(0xEA, 0, b"grease"), Path.TOR))
    a.step(NOW + 500, _answer(FP_HIGH))
    add(a, "rdv-tx-ping-padding-grease", "PING answered, PADDING and GREASE ignored, all in one "
        "recv; then a local send_answer with no OFFER is refused (a step-level error) and "
        "changes nothing", ["ping", "split", "table"], ["SPLIT"])

    # crossed OFFERs of different generations: the higher one wins, whoever leads
    d, a = _pair(True, "crossed")
    _hello(d, a)
    od = d.step(NOW + 400, _offer(1, FP_LOW, "v=0 g1 from LOW"))
    oa = a.step(NOW + 400, _offer(2, FP_HIGH, "v=0 g2 from HIGH"))
    d.recv(NOW + 500, oa)
    a.recv(NOW + 500, od)
    a.recv(NOW + 700, d.step(NOW + 600, _answer(FP_LOW)))
    add(d, "rdv-tx-crossed-generations-low", "LOW offers g1, HIGH offers g2: g2 wins",
        ["glare", "crossed"], ["GLARE"])
    add(a, "rdv-tx-crossed-generations-high", "LOW offers g1, HIGH offers g2: g2 wins",
        ["glare", "crossed"], ["GLARE"])

    # ANSWER checks on the offering side (the LOW dialer is recorded)
    for ident, comment, gen, offer_nonce, err in [
        ("rdv-tx-answer-wrong-offer-nonce", "ANSWER naming another OFFER's nonce", 3,
         _h("not our offer")[:16], "MESSAGE_INVALID"),
        ("rdv-tx-answer-old-generation", "ANSWER for generation 2 while 3 is outstanding", 2,
         None, "RDV_STALE_GENERATION"),
        ("rdv-tx-answer-higher-generation", "ANSWER for generation 4 naming the outstanding "
         "OFFER of 3: it names another OFFER (MESSAGE_INVALID, RDV-31), not a stale one", 4,
         None, "MESSAGE_INVALID"),
    ]:
        d, a = _pair(True, ident)
        _hello(d, a)
        offer = d.step(NOW + 400, _offer(3, FP_LOW))
        nonce = offer_nonce or bytes.fromhex(
            adapter.run_op("rendezvous.decode", {}, {"frame": offer.hex()})["value"]["message"]
            ["nonce"])
        d.recv(NOW + 500, _sign_raw(SEED_HIGH, PUB_LOW, FrameType.RV_ANSWER,
                                    {1: EPOCH, 2: _h(ident)[:16], 3: gen, 4: "v=0",
                                     5: FP_HIGH, 6: 0, 7: nonce, 8: d.stream_nonce}))
        add(d, ident, comment, ["answer", "error"], ["STALE_GENERATION"]
            if err == "RDV_STALE_GENERATION" else ["SCHEMA"])

    # local generation rule: last_generation 5, the first OFFER is 6
    d, a = _pair(True, "local generation", last_generation=5)
    _hello(d, a)
    d.step(NOW + 400, _offer(5, FP_LOW))
    d.step(NOW + 500, _offer(6, FP_LOW))
    add(d, "rdv-tx-local-stale-generation", "last_generation 5: send_offer(5) is refused (a "
        "step-level error, nothing drawn), send_offer(6) is sent", ["localgen", "mark"],
        ["STALE_GENERATION"])

    # the peer's ERROR frame, then silence in the terminal state
    d, a = _pair(True, "peer error")
    _hello(d, a)
    a.recv(NOW + 400, encode_frame(Frame(FrameType.ERROR, 0, encode_cbor(
        {1: 0x0005, 2: "peer gave up"})), Path.TOR))
    a.recv(NOW + 500, encode_frame(Frame(FrameType.PING, 0, ping_body(b"\x02" * 8)), Path.TOR))
    add(a, "rdv-tx-peer-error", "ERROR from the peer: ERROR state, no reply; later frames "
        "discarded", ["recverror", "terminal"])
    # a broken ERROR frame (unsorted keys) is fatal but never answered with an ERROR
    d, a = _pair(True, "broken peer error")
    _hello(d, a)
    a.recv(NOW + 400, bytes([1, FrameType.ERROR, 0, 0, 5]) + bytes.fromhex("a202000100"))
    add(a, "rdv-tx-broken-peer-error", "a malformed ERROR frame: ERROR state, no ERROR in reply",
        ["noerrorreply", "recverror", "errorbyte"], ["NON_CANONICAL"])
    # ... also when a header check fails: the type byte alone makes it an ERROR frame
    d, a = _pair(True, "error frame bad flags")
    _hello(d, a)
    a.recv(NOW + 400, encode_frame(Frame(FrameType.ERROR, 0, encode_cbor(
        {1: 0x0005, 2: ""})), Path.TOR)[:2] + b"\x80" + encode_frame(Frame(
            FrameType.ERROR, 0, encode_cbor({1: 0x0005, 2: ""})), Path.TOR)[3:])
    add(a, "rdv-tx-error-type-bad-flags", "a frame with the ERROR type byte and flag bit 7 set: "
        "FRAME_BAD_FLAGS, ERROR state, no ERROR frame in reply", ["noerrorreply", "errorbyte"])
    d, a = _pair(True, "eof")
    _hello(d, a)
    a.recv(NOW + 500, d.step(NOW + 400, _offer(1, FP_LOW)))
    a.step(NOW + 600, _answer(FP_HIGH))
    a.recv(NOW + 700, b"")
    add(a, "rdv-tx-eof-after-answer", "the stream ends after ANSWERED: ERROR, no frame",
        ["eof"])
    d, a = _pair(True, "eof inside a frame")
    _hello(d, a)
    a.recv(NOW + 500, d.step(NOW + 400, _offer(1, FP_LOW))[:20])
    a.recv(NOW + 600, b"")
    add(a, "rdv-tx-eof-inside-a-frame", "the stream ends 20 bytes into an OFFER: "
        "FRAME_TRUNCATED (framing, FRM-36) before PROTOCOL_VIOLATION (RDV-47), no frame",
        ["eof", "truncated", "split"], ["SPLIT"])
    d, a = _pair(True, "bye then junk")
    _hello(d, a)
    a.recv(NOW + 500, d.step(NOW + 400, _bye("RDV_DUPLICATE_STREAM")) + b"\xff" * 5)
    add(a, "rdv-tx-bye-then-junk", "BYE (duplicate stream) and junk in one recv: CLOSED, the "
        "bytes after the BYE are discarded", ["bye", "closed", "terminal", "split"], ["SPLIT"])

    # machine.new refuses a bad config, in p4-03 §14.2's order [RDV-58]; no step runs
    def bad_config(ident: str, comment: str, role: str, config: Json, error: str) -> None:
        params = {"machine": "rendezvous", "role": role, "config": config}
        groups.setdefault(repr(params), (params, []))[1].append(
            test(ident, comment, [T["config"]], {"rng": [], "steps": []}, valid=False,
                 error=error, flags=["CONFIG"]))

    good = {"identity_seed": SEED_LOW.hex(), "peer_pub": PUB_HIGH.hex()}
    bad_config("rdv-tx-config-unknown-key", "a key the config table does not define", "dialer",
               {**good, "generation": 1}, "MESSAGE_INVALID")
    bad_config("rdv-tx-config-no-peer", "peer_pub missing", "acceptor",
               {"identity_seed": SEED_LOW.hex()}, "MESSAGE_INVALID")
    bad_config("rdv-tx-config-mark-range", "last_generation 2^64 (before the short seed)",
               "dialer", {**good, "identity_seed": SEED_LOW[:31].hex(),
                          "last_generation": 1 << 64}, "MESSAGE_INVALID")
    bad_config("rdv-tx-config-short-seed", "a 31-byte identity seed", "dialer",
               {**good, "identity_seed": SEED_LOW[:31].hex()}, "RDV_KEY_INVALID")
    bad_config("rdv-tx-config-own-key", "peer_pub is this endpoint's own key", "acceptor",
               {**good, "peer_pub": PUB_LOW.hex()}, "RDV_KEY_INVALID")
    bad_config("rdv-tx-config-incarnation-15", "a 15-byte incarnation (before the short seed)",
               "dialer", {**good, "identity_seed": SEED_LOW[:31].hex(),
                          "incarnation": INC_LOW[:15].hex()}, "MESSAGE_INVALID")
    bad_config("rdv-tx-config-peer-incarnation-17", "a 17-byte peer_incarnation", "acceptor",
               {**good, "peer_incarnation": (INC_HIGH + b"\x00").hex()}, "MESSAGE_INVALID")
    bad_config("rdv-tx-config-peer-generation-range", "peer_generation 2^64", "acceptor",
               {**good, "peer_generation": 1 << 64}, "MESSAGE_INVALID")

    # points clean-room ports had to guess (p4-03 revision 4)
    r = _Rec("dialer", SEED_LOW, NOT_A_KEY, "peer not a key")
    r.step(NOW, {"cmd": "start"})
    add(r, "rdv-tx-config-peer-not-a-key", "a 32-byte peer_pub that is not a valid identity key "
        "is accepted (lengths and equality only); start sends the HELLO", ["peerkey", "config"])
    d, a = _pair(True, "command order")
    big_sdp = "x" * (codec.MAX_SDP_BYTES + 1)
    d.step(NOW - 10, {"cmd": "send_offer", "fingerprint": FP_LOW.hex(), "generation": 0,
                      "last_rx": 0})
    d.step(NOW - 5, _offer(0, FP_LOW, big_sdp))
    _hello(d, a)
    d.step(NOW + 400, _offer(0, FP_LOW, big_sdp))
    d.step(NOW + 401, _offer(1, FP_LOW, big_sdp))
    d.step(NOW + 402, _offer(1, FP_LOW[:31]))
    d.step(NOW + 403, _offer(1, FP_LOW))
    add(d, "rdv-tx-refused-command-order", "send_offer refusals in RDV-74's order: a missing "
        "sdp (MESSAGE_INVALID) before the state; in IDLE, UNEXPECTED_MESSAGE before the stale "
        "generation and the oversized sdp; in READY, RDV_STALE_GENERATION before the oversized "
        "sdp; then the sdp, the 31-byte fingerprint; nothing drawn until the valid OFFER",
        ["cmdorder"], ["OUT_OF_ORDER"])
    d, a = _pair(True, "other layer")
    _hello(d, a)
    a.recv(NOW + 400, encode_frame(Frame(FrameType.PAIR_PAKE, 0, encode_cbor(
        {1: 1, 2: bytes(32)})), Path.TOR))
    add(a, "rdv-tx-other-layer-frame", "a PAIR_PAKE frame on an authenticated onion stream: not "
        "this machine's, UNEXPECTED_MESSAGE, ERROR sent, the machine fails", ["otherlayer",
        "table"], ["OUT_OF_ORDER"])  # fmt: skip
    d, a = _pair(True, "acceptor no start")
    a.recv(NOW + 100, d.step(NOW, {"cmd": "start"}))
    a.step(NOW + 600_000, {"tick": True})
    add(a, "rdv-tx-acceptor-recv-before-start", "the acceptor receives the dialer's HELLO "
        "without start: it echoes it; no HELLO timer was armed, so a tick 10 min later changes "
        "nothing", ["acceptorstart", "timers"], ["TIMEOUT"])
    d, a = _pair(True, "unregistered code")
    _hello(d, a)
    a.recv(NOW + 400, encode_frame(Frame(FrameType.ERROR, 0, encode_cbor(
        {1: 0x7F0A, 2: "from the future"})), Path.TOR))
    add(a, "rdv-tx-peer-unregistered-code", "the peer's ERROR carries 0x7f0a, which the "
        "registry does not name: RENDEZVOUS_FAILED and error say \"0x7f0a\" (lowercase)",
        ["recverror"])

    _restored_transcripts(add)

    out: list[Json] = []
    for params, tests in groups.values():
        out.append(group("machine.transcript", tests, params))
    return out


def _restored_transcripts(add: Any) -> None:
    """RV_HELLO's generation and incarnation (RDV-59): the receiver adopts the peer's mark
    (RDV-60) and reports a regression or a new incarnation (RDV-61), never refusing."""
    # LOW was restored from an old backup: its mark is 2, HIGH's is 9.  After the HELLOs LOW's
    # OFFER for 5 is refused locally, its OFFER for 10 is answered.
    d = _Rec("dialer", SEED_LOW, PUB_HIGH, "restored d", 2, incarnation=INC_LOW.hex())
    a = _Rec("acceptor", SEED_HIGH, PUB_LOW, "restored a", 9, incarnation=INC_HIGH.hex(),
             peer_incarnation=INC_LOW.hex(), peer_generation=9)
    _hello(d, a)
    d.step(NOW + 400, _offer(5, FP_LOW))
    a.recv(NOW + 600, d.step(NOW + 500, _offer(10, FP_LOW)))
    d.recv(NOW + 800, a.step(NOW + 700, _answer(FP_HIGH)))
    add(d, "rdv-tx-restored-dialer-adopts-peer-generation",
        "restored dialer (mark 2) meets a peer announcing 9: an OFFER for 5 is refused locally, "
        "one for 10 is answered", ["hellogen", "adopt", "localgen"], ["RESTORED"])
    add(a, "rdv-tx-peer-generation-regressed",
        "the peer announces 2 where 9 was stored: PEER_RESET (generation) after "
        "PEER_AUTHENTICATED, the stream stays READY, its OFFER for 10 is accepted",
        ["hellogen", "peerreset", "adopt"], ["RESTORED"])
    # the acceptor is the restored one: the dialer's OFFER for 3 is refused locally (it adopted 9
    # from the acceptor's HELLO), and its OFFER for 4 at the acceptor was stale before adoption:
    # the adoption rule makes both sides agree on "above 9".
    d = _Rec("dialer", SEED_HIGH, PUB_LOW, "adopt d", 3, incarnation=INC_HIGH.hex())
    a = _Rec("acceptor", SEED_LOW, PUB_HIGH, "adopt a", 9, incarnation=INC_LOW.hex())
    _hello(d, a)
    d.step(NOW + 400, _offer(9, FP_HIGH))
    a.recv(NOW + 600, d.step(NOW + 500, _offer(12, FP_HIGH)))
    add(d, "rdv-tx-dialer-adopts-acceptor-generation",
        "the dialer's mark is 3, the acceptor announces 9: an OFFER for 9 is refused locally, "
        "12 goes out", ["hellogen", "adopt", "localgen"], ["RESTORED"])
    # a new incarnation with the same or a higher generation
    d = _Rec("dialer", SEED_LOW, PUB_HIGH, "new inc d", 4, incarnation=_h("inc new")[:16].hex())
    a = _Rec("acceptor", SEED_HIGH, PUB_LOW, "new inc a", 4, incarnation=INC_HIGH.hex(),
             peer_incarnation=INC_LOW.hex(), peer_generation=4)
    _hello(d, a)
    add(a, "rdv-tx-peer-incarnation-changed",
        "the peer's HELLO carries another incarnation than the stored one: PEER_RESET "
        "(incarnation), READY", ["hellogen", "peerreset"], ["RESTORED"])
    d = _Rec("dialer", SEED_HIGH, PUB_LOW, "both d", 1, incarnation=_h("inc copy")[:16].hex())
    a = _Rec("acceptor", SEED_LOW, PUB_HIGH, "both a", 6, incarnation=INC_LOW.hex(),
             peer_incarnation=INC_HIGH.hex(), peer_generation=6)
    _hello(d, a)
    add(a, "rdv-tx-peer-reset-both",
        "another incarnation and a lower generation: PEER_RESET (both)", ["hellogen",
        "peerreset"], ["RESTORED"])
    d = _Rec("dialer", SEED_HIGH, PUB_LOW, "same d", 7, incarnation=INC_HIGH.hex())
    a = _Rec("acceptor", SEED_LOW, PUB_HIGH, "same a", 6, incarnation=INC_LOW.hex(),
             peer_incarnation=INC_HIGH.hex(), peer_generation=6)
    _hello(d, a)
    add(a, "rdv-tx-peer-unchanged", "the stored incarnation and a generation above the stored "
        "one: no PEER_RESET", ["hellogen", "peerreset"])
    d = _Rec("dialer", SEED_HIGH, PUB_LOW, "acc reset d", 5, incarnation=INC_HIGH.hex(),
             peer_incarnation=_h("inc old")[:16].hex(), peer_generation=8)
    a = _Rec("acceptor", SEED_LOW, PUB_HIGH, "acc reset a", 2, incarnation=INC_LOW.hex())
    _hello(d, a)
    add(d, "rdv-tx-dialer-reports-peer-reset",
        "the dialer judges the acceptor's echoing HELLO: PEER_RESET (both)",
        ["hellogen", "peerreset", "authepoch"], ["RESTORED"])


def _pair_groups() -> list[Json]:
    """Both roles through the harness relay (``machine.pair``), so two implementations can be
    run against each other: LOW dials (it leads), HIGH accepts."""
    cfg = {"dialer": {"identity_seed": SEED_LOW.hex(), "peer_pub": PUB_HIGH.hex()},
           "acceptor": {"identity_seed": SEED_HIGH.hex(), "peer_pub": PUB_LOW.hex()}}

    def offer(role: str, at: int, fp: bytes, sdp: str) -> Json:
        return {"role": role, "now": NOW + at,
                "in": {"cmd": "send_offer", "sdp": sdp, "fingerprint": fp.hex(),
                       "generation": 1, "last_rx": 0}}

    def answer(at: int) -> Json:
        return {"role": "acceptor", "now": NOW + at,
                "in": {"cmd": "send_answer", "sdp": "v=0 answer",
                       "fingerprint": FP_HIGH.hex(), "last_rx": 5}}

    start = [{"role": "dialer", "now": NOW, "in": {"cmd": "start"}},
             {"role": "acceptor", "now": NOW, "in": {"cmd": "start"}}]
    authenticated = {"event": "PEER_AUTHENTICATED"}

    def vec(ident: str, comment: str, tags: list[str], script: list[Json], final: Json,
            config: Json, flags: list[str] | None = None) -> Json:
        inp = {"rng": {"dialer": [r.hex() for r in _rng(f"{ident} d")],
                       "acceptor": [r.hex() for r in _rng(f"{ident} a")]},
               "script": script, "latencyMs": 10}
        t = test(ident, comment, [T[x] for x in tags], inp, value={"final": final},
                 flags=flags)
        return group("machine.pair", [t], {"machine": "rendezvous",
                                           "roles": ["dialer", "acceptor"], "config": config})

    stranger = {"dialer": cfg["dialer"],
                "acceptor": {"identity_seed": SEED_HIGH.hex(), "peer_pub": PUB_C.hex()}}
    return [
        vec("rdv-pair-offer-answer", "HELLO both ways, OFFER gen 1, ANSWER: both ANSWERED",
            ["table", "order", "gen", "answer"],
            [*start, offer("dialer", 100, FP_LOW, "v=0 offer"), answer(200)],
            {"dialer": {"state": "ANSWERED", "events": [
                authenticated, {"event": "ANSWER_RECEIVED", "generation": 1,
                                "fingerprint": FP_HIGH.hex(), "last_rx": 5}]},
             "acceptor": {"state": "ANSWERED", "events": [
                 authenticated, {"event": "OFFER_RECEIVED", "generation": 1,
                                 "fingerprint": FP_LOW.hex(), "sdp": "v=0 offer"}]}},
            cfg),
        vec("rdv-pair-unknown-peer", "the acceptor expects another device: both end in ERROR",
            ["peer", "error"], start,
            {"dialer": {"state": "ERROR", "errors": ["RDV_UNKNOWN_PEER"], "events": [
                {"event": "RENDEZVOUS_FAILED", "code": "RDV_UNKNOWN_PEER", "by_peer": True}]},
             "acceptor": {"state": "ERROR", "errors": ["RDV_UNKNOWN_PEER"], "events": [
                 {"event": "RENDEZVOUS_FAILED", "code": "RDV_UNKNOWN_PEER",
                  "by_peer": False}]}},
            stranger, flags=["UNKNOWN_PEER"]),
        vec("rdv-pair-glare", "crossed OFFERs of one generation: the leader's wins",
            ["glare", "glareaction", "leader"],
            [*start, offer("dialer", 100, FP_LOW, "v=0 low"),
             offer("acceptor", 100, FP_HIGH, "v=0 high"), answer(200)],
            {"dialer": {"state": "ANSWERED", "events": [
                authenticated, {"event": "ANSWER_RECEIVED", "generation": 1}]},
             "acceptor": {"state": "ANSWERED", "events": [
                 authenticated, {"event": "OFFER_RECEIVED", "sdp": "v=0 low", "glare": True}]}},
            cfg),
    ]


# ----------------------------------------------------------------------------- onion addresses

_ONION = "iqdwoocyiodcp76yu3gycuwauskmzmuyzw34v5cx6wqlsab2ovdopryd"  # §14.1, LOW's onion


def _onion_cases() -> list[Json]:
    """``rendezvous.parse_onion``: ASCII-only text rules (RDV-56), with or without ``.onion``."""
    c: list[Json] = []
    for ident, comment, addr, tags, flags in [
        ("rdv-onion-label", "the 56-character label, as rendezvous.derive gives it", _ONION,
         ["onionparse", "onion"], []),
        ("rdv-onion-suffix", "with the .onion suffix", _ONION + ".onion", ["onionparse"], []),
        ("rdv-onion-upper", "upper case A-Z, suffix too", (_ONION + ".onion").upper(),
         ["onionparse"], []),
        ("rdv-onion-ascii-space", "surrounded by SP, HT, LF and CR (stripped)",
         " \t" + _ONION + ".onion\r\n", ["onionparse"], ["BOUNDARY"]),
    ]:
        c.append(_case("rendezvous.parse_onion", ident, comment, tags, {"address": addr},
                       flags=flags or None))
    bad_checksum = _ONION[:-8] + ("a" if _ONION[-8] != "a" else "b") + _ONION[-7:]
    version_2 = base64.b32encode(
        bytes.fromhex(_run("rendezvous.parse_onion", {"address": _ONION})["value"]["public_key"])
        + b"\x00\x00\x02").decode().lower()
    for ident, comment, addr, flags in [
        ("rdv-onion-long-s", "U+017F LATIN SMALL LETTER LONG S in place of s (upper() maps it "
         "to S)", _ONION.replace("s", "\u017f"), ["NON_ASCII"]),
        ("rdv-onion-dotless-i", "U+0131 LATIN SMALL LETTER DOTLESS I in place of i (upper() "
         "maps it to I)", _ONION.replace("i", "\u0131"), ["NON_ASCII"]),
        ("rdv-onion-kelvin", "U+212A KELVIN SIGN in an upper-case address (lower() maps it to "
         "k)", _ONION.upper().replace("K", "\u212a"), ["NON_ASCII"]),
        ("rdv-onion-nbsp", "surrounded by U+00A0 NO-BREAK SPACE (not stripped)",
         "\u00a0" + _ONION + "\u00a0", ["NON_ASCII"]),
        ("rdv-onion-vt", "followed by VT (U+000B), which is not one of the four stripped",
         _ONION + "\u000b", []),
        ("rdv-onion-padding", "50 letters and 6 '=' (base32 padding): 56 characters that "
         "decode to fewer than 35 bytes", "a" * 50 + "=" * 6, []),
        ("rdv-onion-55", "55 characters", _ONION[:-1], []),
        ("rdv-onion-digit-1", "a '1', outside the base32 alphabet", "1" + _ONION[1:], []),
        ("rdv-onion-checksum", "one character changed: the checksum fails", bad_checksum, []),
        ("rdv-onion-version-2", "a valid-looking label whose version byte is 2", version_2, []),
        ("rdv-onion-empty", "the empty string", "", []),
        ("rdv-onion-suffix-only", "only .onion", ".onion", []),
    ]:
        c.append(_case("rendezvous.parse_onion", ident, comment, ["onionparse"],
                       {"address": addr}, error="ONION_ADDRESS_INVALID", flags=flags or None))
    return c


def build() -> dict[str, Json]:
    try:
        files = {
            "rendezvous/derive.json": envelope("rendezvous", SPEC, REV, NOTES, [
                group("rendezvous.derive", _derive_cases()),
            ]),
            "rendezvous/messages.json": envelope("rendezvous", SPEC, REV, NOTES, [
                group("rendezvous.sign", _sign_cases()),
                group("rendezvous.decode", _decode_cases()),
                group("rendezvous.verify", _verify_cases()),
            ]),
            "rendezvous/onion.json": envelope("rendezvous", SPEC, REV, NOTES, [
                group("rendezvous.parse_onion", _onion_cases()),
            ]),
            "rendezvous/transcripts.json": envelope("rendezvous", SPEC, REV, NOTES,
                                                    _transcripts()),
            "rendezvous/pairs.json": envelope("rendezvous", SPEC, REV, NOTES, _pair_groups()),
        }
    except P4Error as exc:  # pragma: no cover - a builder bug, not a vector
        raise AssertionError(f"reference raised {exc}") from exc
    return files


if __name__ == "__main__":  # pragma: no cover - debugging aid
    from ._envelope import dump

    for name, obj in build().items():
        print(name, obj["numberOfTests"], len(dump(obj)))
