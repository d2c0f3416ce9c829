"""Session machine vectors (p4-04 §13.2): ``machine.transcript`` of one peer and ``machine.pair``
of both, built by driving two reference machines and recording one of them.

A :class:`Script` holds the machine under test (``me``, every step recorded with its outputs) and,
usually, a real machine for the other side (``peer``, not recorded) whose frames are handed to
``me`` in the order a scenario chooses: that is how the interleavings across connections and
generations are written.  Randomness is recorded as it is drawn (:class:`RecRng`), so each
vector's ``rng`` list is exactly what the machine draws, in the order of §13.2.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nacl.signing import SigningKey

from p4ref.adapter import session as ses
from p4ref.adapter import to_json
from p4ref.errors import ErrorCode, P4Error
from p4ref.framing import (
    Frame,
    FrameType,
    Path,
    decode_cbor_map,
    encode_cbor,
    encode_frame,
    error_body,
    ping_body,
)
from p4ref.session import _codec as codec

from ._envelope import Json, group, test

SEED_L = bytes.fromhex("be11679ffa71852399ff796774d64b70343ede5ade5241f572f49b46701d65b5")
SEED_H = bytes.fromhex("0d63dc515f47c8e7d62d34a113710b43ef69b8f1f8a0b4480854e0577aa14911")
SEED_M = bytes(range(7, 39))
PUB_L, PUB_H, PUB_M = (bytes(SigningKey(s).verify_key) for s in (SEED_L, SEED_H, SEED_M))
FP_L = bytes.fromhex("5ef3ebaaba988fd49975b99c200a4eba6f12d1b965ef4da4a3020a8be3583997")
FP_H = bytes(range(0x20, 0x40))
FP_X = bytes(range(0x60, 0x80))  # a certificate neither peer has
#: a complete RV_OFFER frame (type 0x21), as SES_SIGNAL carries it; its content is p4-03's
RV_OFFER = bytes.fromhex("0121000001a0")
RV_ANSWER = bytes.fromhex("0122000001a0")
T0 = 1000
DC = Path.DATACHANNEL


class RecRng:
    """Deterministic randomness that remembers what was drawn (the vector's ``rng`` list)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.drawn: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        k = len(self.drawn)
        v = hashlib.sha256(f"{self.label}:{k}".encode()).digest()[:n]
        self.drawn.append(v)
        return v


def cfg(seed: bytes, peer_pub: bytes, **extra: Any) -> Json:
    return {"identity_seed": seed.hex(), "peer_pub": peer_pub.hex(), **extra}


class Side:
    """One reference session machine, stepped through the adapter's JSON interface."""

    def __init__(self, label: str, config: Json) -> None:
        self.config = config
        self.rng = RecRng(label)
        first = [] if "state" in config else [self.rng(16)]
        self.m = ses.new("peer", config, first)
        self.m._rng = self.rng  # the builder records what the machine draws

    def step(self, now: int, item: Json) -> Json:
        try:
            return dict(to_json(ses.step(self.m, now, dict(item))))
        except P4Error as exc:
            return {"error": ErrorCode(exc.code).name}


def swap(item: Json) -> Json:
    """An ``open`` command as the other side gives it (bindings swapped)."""
    out = dict(item)
    out["binding_local"], out["binding_remote"] = item["binding_remote"], item["binding_local"]
    return out


class Script:
    """A transcript of ``me``; ``peer`` plays the other side, its frames delivered on demand."""

    def __init__(self, me: Side, peer: Side | None = None) -> None:
        self.me, self.peer = me, peer
        self.steps: list[Json] = []
        self.want: list[Json] = []
        self.to_peer: dict[int, list[str]] = defaultdict(list)
        self.to_me: dict[int, list[str]] = defaultdict(list)

    # --- me (recorded) --------------------------------------------------------------------
    def step(self, now: int, item: Json) -> Json:
        r = self.me.step(now, item)
        self.steps.append({"now": now, "in": item})
        self.want.append(r)
        for o in r.get("out", []):
            if "send" in o:
                self.to_peer[o["conn"]].append(o["send"])
        return r

    def recv(self, now: int, conn: int, data: bytes | str) -> Json:
        return self.step(now, {"recv": data if isinstance(data, str) else data.hex(),
                               "conn": conn})

    def deliver(self, now: int, conn: int, n: int | None = None, join: bool = False,
                drop: bool = False) -> list[str]:
        """Hand ``me`` the next ``n`` (all) frames the peer sent on ``conn``: one step each, or
        one ``recv`` holding them all (``join``); ``drop`` discards them instead."""
        q = self.to_me[conn]
        k = len(q) if n is None else n
        frames, self.to_me[conn] = q[:k], q[k:]
        if drop or not frames:
            return frames
        if join:
            self.recv(now, conn, "".join(frames))
        else:
            for f in frames:
                self.recv(now, conn, f)
        return frames

    def pending(self, conn: int) -> list[str]:
        return self.to_me[conn]

    # --- the peer (not recorded) ----------------------------------------------------------
    def peer_step(self, now: int, item: Json) -> Json:
        assert self.peer is not None
        r = self.peer.step(now, item)
        assert "error" not in r, (item, r)
        for o in r.get("out", []):
            if "send" in o:
                self.to_me[o["conn"]].append(o["send"])
        return r

    def feed_peer(self, now: int, conn: int | None = None, n: int | None = None,
                  drop: bool = False) -> None:
        """Hand the peer what ``me`` sent (on ``conn`` or on every connection)."""
        for c in [conn] if conn is not None else sorted(self.to_peer):
            q = self.to_peer[c]
            k = len(q) if n is None else n
            frames, self.to_peer[c] = q[:k], q[k:]
            if drop:
                continue
            for f in frames:
                self.peer_step(now, {"recv": f, "conn": c})

    # --- common sequences -----------------------------------------------------------------
    def open(self, now: int, conn: int, generation: int, path: str = "datachannel",
             mine: bytes = FP_L, theirs: bytes = FP_H, peer: bool = True,
             peer_generation: int | None = None, peer_bindings: tuple[bytes, bytes] | None = None
             ) -> None:
        item = {"cmd": "open", "conn": conn, "generation": generation, "path": path,
                "binding_local": mine.hex(), "binding_remote": theirs.hex()}
        self.step(now, item)
        if peer and self.peer is not None:
            p = swap(item)
            if peer_generation is not None:
                p["generation"] = peer_generation
            if peer_bindings is not None:
                p["binding_local"], p["binding_remote"] = (b.hex() for b in peer_bindings)
            self.peer_step(now, p)

    def handshake(self, now: int, conn: int, generation: int, path: str = "datachannel",
                  mine: bytes = FP_L, theirs: bytes = FP_H) -> None:
        """Open ``conn`` on both sides and run the handshake to OPEN (me: HELLO, AUTH steps)."""
        self.open(now, conn, generation, path, mine, theirs)
        self.feed_peer(now + 1, conn)  # me's HELLO: the peer answers with its AUTH
        self.deliver(now + 2, conn, 1)  # the peer's HELLO: me sends AUTH
        self.deliver(now + 3, conn, 1)  # the peer's AUTH: OPEN
        self.feed_peer(now + 4, conn)  # me's AUTH (and whatever followed): the peer opens

    def vector(self, ident: str, comment: str, req: list[str],
               flags: list[str] | None = None) -> tuple[Json, Json]:
        inp = {"rng": [r.hex() for r in self.me.rng.drawn], "steps": self.steps}
        want = [{"error": w["error"]} if "error" in w else w for w in self.want]
        params = {"machine": "session", "role": "peer", "config": self.me.config}
        return params, test(ident, comment, req, inp, value={"steps": want}, flags=flags)


def error_frame(code: ErrorCode) -> bytes:
    return encode_frame(Frame(FrameType.ERROR, 0, error_body(code, "")), DC)


def raw(ftype: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([1, ftype, flags]) + len(body).to_bytes(2, "big") + body


def msg(seq: int, payload: bytes) -> bytes:
    return encode_frame(codec.encode_msg(seq, payload), DC)


def ping(nonce: bytes) -> bytes:
    return encode_frame(Frame(FrameType.PING, 0, ping_body(nonce)), DC)


def low_high(label: str, me_low: bool = True, me_extra: Json | None = None,
             peer_extra: Json | None = None) -> Script:
    """``me`` is LOW (or HIGH) paired with the other; both fresh unless configs say otherwise."""
    lo = cfg(SEED_L, PUB_H, **(me_extra if me_low else peer_extra) or {})
    hi = cfg(SEED_H, PUB_L, **(peer_extra if me_low else me_extra) or {})
    me, peer = (lo, hi) if me_low else (hi, lo)
    return Script(Side(f"{label}/me", me), Side(f"{label}/peer", peer))


def groups_of(vectors: list[tuple[Json, Json]]) -> list[Json]:
    """One ``machine.transcript`` group per distinct params, in first-use order."""
    by: dict[str, tuple[Json, list[Json]]] = {}
    for params, t in vectors:
        by.setdefault(repr(params), (params, []))[1].append(t)
    return [group("machine.transcript", tests, params) for params, tests in by.values()]


__all__ = [
    "FP_H", "FP_L", "FP_X", "PUB_H", "PUB_L", "PUB_M", "RV_ANSWER", "RV_OFFER", "SEED_H",
    "SEED_L", "SEED_M", "T0", "RecRng", "Script", "Side", "cfg", "error_frame", "groups_of",
    "low_high", "msg", "ping", "raw", "swap",
]


# ------------------------------------------------------------------------------ the transcripts

INC_A = bytes.fromhex("a0" * 16)  # stored incarnations of the restore scenarios
INC_B = bytes.fromhex("b0" * 16)
INC_C = bytes.fromhex("c0" * 16)


def _vec(out: list[tuple[Json, Json]], s: Script, ident: str, comment: str, req: list[str],
         flags: list[str] | None = None) -> None:
    out.append(s.vector(ident, comment, req, flags))


def _handshake_vectors(out: list[tuple[Json, Json]]) -> None:
    s = low_high("hs-low")
    s.handshake(T0, 1, 1)
    s.step(T0 + 10, {"cmd": "send", "payload": b"hello".hex()})
    s.feed_peer(T0 + 11)
    s.peer_step(T0 + 12, {"cmd": "inbox_committed", "through": 1})
    s.peer_step(T0 + 32, {"tick": True})
    s.deliver(T0 + 40, 1)
    _vec(out, s, "ses-tx-handshake-low", "LOW: HELLO, the peer's HELLO (AUTH sent), the peer's "
         "AUTH (OPEN, active, connected); sends 'hello' as seq 1 and gets its ACK",
         ["SES-3", "SES-8", "SES-17", "SES-20", "SES-21", "SES-23", "SES-25", "SES-30"])

    s = low_high("hs-high", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.peer_step(T0 + 10, {"cmd": "send", "payload": b"hello".hex()})
    s.peer_step(T0 + 10, {"cmd": "send", "payload": b"world".hex()})
    s.deliver(T0 + 20, 1, join=True)
    s.step(T0 + 30, {"cmd": "inbox_committed", "through": 1})
    s.step(T0 + 49, {"tick": True})
    s.step(T0 + 50, {"tick": True})
    s.step(T0 + 60, {"cmd": "inbox_committed", "through": 2})
    s.step(T0 + 80, {"tick": True})
    _vec(out, s, "ses-tx-handshake-high", "HIGH: the handshake, then two messages in one recv "
         "(both delivered, in order, with LOW's incarnation); each commit is acknowledged "
         "ACK_DELAY (20 ms) later, on tick only", ["SES-6", "SES-23", "SES-26", "SES-28"])

    s = low_high("hs-split")
    s.open(T0, 1, 1)
    s.feed_peer(T0 + 1, 1)
    hello, auth = s.pending(1)
    s.to_me[1] = []
    s.recv(T0 + 2, 1, hello[:42])  # 21 bytes
    s.recv(T0 + 3, 1, hello[42:] + auth[:14])  # the rest, and 7 bytes of the AUTH
    s.recv(T0 + 4, 1, auth[14:])
    _vec(out, s, "ses-tx-handshake-split", "the peer's HELLO and AUTH split at odd places "
         "across three recv steps: the same outputs as whole frames", ["SES-23"], ["SPLIT"])

    # the checks of §7.3, each failing the connection with its code
    s = low_high("hs-binding", me_low=False)
    s.open(T0, 1, 1, mine=FP_H, theirs=FP_L, peer_bindings=(FP_X, FP_H))
    s.deliver(T0 + 5, 1)
    _vec(out, s, "ses-tx-wrong-fingerprint", "the peer's HELLO states a certificate (FP_X) "
         "other than the one HIGH's DTLS saw: SES_BINDING_MISMATCH, the connection fails",
         ["SES-1", "SES-23", "SES-51"], ["FINGERPRINT"])

    s = low_high("hs-binding-recv", me_low=False)
    s.open(T0, 1, 1, mine=FP_H, theirs=FP_L, peer_bindings=(FP_L, FP_X))
    s.deliver(T0 + 5, 1)
    _vec(out, s, "ses-tx-relayed-handshake", "the peer saw a certificate (FP_X) that is not "
         "HIGH's: a relay terminates DTLS between them (§7.4): SES_BINDING_MISMATCH",
         ["SES-1", "SES-23"], ["FINGERPRINT"])

    me = Side("hs-fwd/me", cfg(SEED_H, PUB_M))
    peer = Side("hs-fwd/peer", cfg(SEED_L, PUB_M))
    s = Script(me, peer)
    s.open(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.deliver(T0 + 5, 1)
    _vec(out, s, "ses-tx-forwarding-attack", "HIGH is paired with M; M forwarded LOW's and "
         "HIGH's signalling, so HIGH's data channel reaches LOW, whose HELLO names LOW and M: "
         "SES_WRONG_PEER (§7.4)", ["SES-3", "SES-23"], ["FORWARDING"])

    s = low_high("hs-gen")
    s.open(T0, 1, 1, peer_generation=2)
    s.deliver(T0 + 5, 1)
    _vec(out, s, "ses-tx-wrong-generation", "the peer's HELLO is for generation 2 on LOW's "
         "generation-1 connection: SES_WRONG_GENERATION", ["SES-23"], ["REPLAY"])

    s = low_high("hs-sig")
    s.open(T0, 1, 1)
    s.deliver(T0 + 5, 1)
    mine = bytes.fromhex(s.want[0]["out"][0]["send"])[5:]
    theirs = bytes.fromhex(s.steps[1]["in"]["recv"])[5:]
    forged = codec.sign_auth(SigningKey(SEED_M), PUB_L, PUB_H, mine, theirs)
    s.recv(T0 + 6, 1, encode_frame(codec.encode_auth(forged), DC))
    _vec(out, s, "ses-tx-auth-wrong-identity", "a valid HELLO, then a SES_AUTH over the right "
         "transcript signed by M's key, not HIGH's: SES_BAD_SIGNATURE", ["SES-21", "SES-23"],
         ["BAD_SIGNATURE"])

    s = low_high("hs-replay-auth")
    s.handshake(T0, 1, 1)
    old_auth = s.steps[2]["in"]["recv"]
    s.recv(T0 + 10, 1, b"")
    s.peer_step(T0 + 10, {"recv": "", "conn": 1})
    s.open(T0 + 20, 2, 2)
    s.deliver(T0 + 25, 2, 1)
    s.recv(T0 + 26, 2, old_auth)
    _vec(out, s, "ses-tx-replayed-auth", "generation 1's SES_AUTH replayed on generation 2 "
         "after the peer's fresh HELLO: LOW's new nonce is not in it: SES_BAD_SIGNATURE",
         ["SES-17", "SES-21", "SES-23"], ["REPLAY"])

    s = low_high("hs-replay-tor")
    tor = {"path": "tor", "mine": FP_L, "theirs": FP_H}
    s.handshake(T0, 1, 0, **tor)  # type: ignore[arg-type]
    old = [st["in"]["recv"] for st in s.steps[1:3]]
    s.recv(T0 + 10, 1, b"")
    s.open(T0 + 20, 2, 0, peer=False, **tor)  # type: ignore[arg-type]
    s.recv(T0 + 25, 2, old[0])
    s.recv(T0 + 26, 2, old[1])
    _vec(out, s, "ses-tx-replayed-handshake", "an onion-stream connection whose HELLO and AUTH "
         "are replayed from an earlier one with the same bindings: the HELLO passes its checks, "
         "the AUTH does not cover LOW's new nonce: SES_BAD_SIGNATURE", ["SES-17", "SES-23"],
         ["REPLAY"])

    s = low_high("hs-state")
    s.open(T0, 1, 1)
    s.recv(T0 + 5, 1, msg(1, b"early"))
    _vec(out, s, "ses-tx-msg-before-handshake", "a SES_MSG before the peer's HELLO: "
         "UNEXPECTED_MESSAGE (no (HELLO_SENT, recv SES_MSG) row)", ["SES-20", "SES-50"],
         ["STATE"])

    s = low_high("hs-hello-twice")
    s.open(T0, 1, 1)
    hello = s.pending(1)[0]
    s.deliver(T0 + 5, 1)
    s.recv(T0 + 6, 1, hello)
    _vec(out, s, "ses-tx-hello-twice", "a second SES_HELLO in AUTH_SENT: UNEXPECTED_MESSAGE",
         ["SES-50"], ["STATE", "REPLAY"])

    s = low_high("hs-schema")
    s.open(T0, 1, 1)
    body = dict(codec_map(bytes.fromhex(s.pending(1)[0])))
    body[12] = 0
    s.to_me[1] = []
    s.recv(T0 + 5, 1, raw(FrameType.SES_HELLO, encode_cbor_sorted(body)))
    _vec(out, s, "ses-tx-hello-unknown-key", "a HELLO with key 12: MESSAGE_INVALID (schema, "
         "check 2)", ["SES-16", "SES-23"], ["SCHEMA"])

    s = low_high("hs-unknown-type")
    s.open(T0, 1, 1, peer=False)
    s.recv(T0 + 5, 1, raw(0x30, b""))
    s.recv(T0 + 6, 1, msg(1, b"after"))
    _vec(out, s, "ses-tx-unknown-type", "frame type 0x30 (unassigned): FRAME_UNKNOWN_TYPE "
         "(framing, check 1); later bytes on the failed connection are discarded",
         ["SES-23", "SES-51"], ["FRAMING"])

    s = low_high("hs-timeout")
    s.open(T0, 1, 1, peer=False)
    s.step(T0 + 9999, {"tick": True})
    s.step(T0 + 10000, {"tick": True})
    _vec(out, s, "ses-tx-handshake-timeout", "no answer to the HELLO: nothing at 9999 ms, "
         "TIMEOUT at HANDSHAKE_TIMEOUT (10000 ms)", ["SES-47"], ["TIMER"])

    s = low_high("hs-eof-inside")
    s.open(T0, 1, 1)
    s.recv(T0 + 5, 1, s.pending(1)[0][:30])
    s.recv(T0 + 6, 1, b"")
    _vec(out, s, "ses-tx-eof-inside-frame", "the transport closes 15 bytes into the peer's "
         "HELLO: FRAME_TRUNCATED (p4-01 FRM-36), no ERROR frame (the transport is gone)",
         ["SES-58", "SES-51"], ["FRAMING", "SPLIT"])

    s = low_high("hs-timeout-two")
    s.open(T0, 1, 1, peer=False)
    s.open(T0, 2, 0, "tor", peer=False)
    s.step(T0 + 10000, {"tick": True})
    _vec(out, s, "ses-tx-two-timeouts", "two handshakes time out in one tick: each connection "
         "fails in ascending conn order (equal deadlines), one error item per failed "
         "connection, last", ["SES-47"], ["TIMER"])

    s = low_high("hs-peer-error")
    s.open(T0, 1, 1, peer=False)
    s.recv(T0 + 5, 1, error_frame(ErrorCode.SES_BINDING_MISMATCH))
    _vec(out, s, "ses-tx-peer-error", "the peer's ERROR frame: CONNECTION_FAILED by_peer with "
         "its code, no ERROR in reply", ["SES-51", "SES-52"])


def codec_map(frame: bytes) -> dict[int, Any]:
    return dict(decode_cbor_map(frame[5:]))


def encode_cbor_sorted(body: dict[int, Any]) -> bytes:
    return encode_cbor(dict(sorted(body.items())))


def transcripts() -> list[Json]:
    out: list[tuple[Json, Json]] = []
    _handshake_vectors(out)
    _stream_vectors(out)
    _generation_vectors(out)
    _liveness_vectors(out)
    _signal_vectors(out)
    _refused_vectors(out)
    _incarnation_vectors(out)
    _pinned_vectors(out)
    return groups_of(out)


def _send(s: Script, now: int, *payloads: bytes) -> None:
    for p in payloads:
        s.step(now, {"cmd": "send", "payload": p.hex()})


def _peer_send(s: Script, now: int, *payloads: bytes) -> None:
    for p in payloads:
        s.peer_step(now, {"cmd": "send", "payload": p.hex()})


def _stream_vectors(out: list[tuple[Json, Json]]) -> None:
    s = low_high("st-dup", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    for k, seq in enumerate((1, 1, 2, 1, 2, 3)):
        s.recv(T0 + 10 + k, 1, msg(seq, b"m%d" % seq))
    _vec(out, s, "ses-tx-duplicates", "seqs 1, 1, 2, 1, 2, 3 on one connection: each delivered "
         "once, duplicates dropped silently", ["SES-26"], ["DUPLICATE"])

    s = low_high("st-seq-zero", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.recv(T0 + 10, 1, raw(FrameType.SES_MSG, bytes(8) + b"zero"))
    _vec(out, s, "ses-tx-msg-seq-zero", "a SES_MSG with seq 0 on an open connection: "
         "MESSAGE_INVALID", ["SES-19"], ["SCHEMA"])

    s = low_high("st-gap", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.recv(T0 + 10, 1, msg(1, b"one"))
    s.recv(T0 + 11, 1, msg(3, b"three"))
    _vec(out, s, "ses-tx-seq-gap", "seq 3 after 1: SES_SEQ_GAP; the active connection is gone, "
         "so a new generation is asked for (dead)", ["SES-26", "SES-53"], ["GAP"])

    s = low_high("st-ack")
    s.handshake(T0, 1, 1)
    _send(s, T0 + 10, b"one", b"two")
    for k, n in enumerate((0, 1, 1, 3)):
        s.recv(T0 + 20 + k, 1, encode_frame(codec.encode_ack(n), DC))
    _vec(out, s, "ses-tx-ack-invalid", "ACK 0 and a repeated ACK 1 are ignored (cumulative), "
         "ACK 1 releases seq 1, ACK 3 is above tx (2): SES_ACK_INVALID", ["SES-30"],
         ["ACK"])

    s = low_high("st-ack-every", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    _peer_send(s, T0 + 10, *(bytes([k]) for k in range(17)))
    s.deliver(T0 + 20, 1, join=True)
    s.step(T0 + 30, {"cmd": "inbox_committed", "through": 15})
    s.step(T0 + 31, {"cmd": "inbox_committed", "through": 16})
    s.step(T0 + 32, {"cmd": "inbox_committed", "through": 17})
    s.step(T0 + 52, {"tick": True})
    _vec(out, s, "ses-tx-ack-every", "17 messages in one recv; commits through 15 (timer "
         "armed), 16 (ACK_EVERY unacknowledged: SES_ACK at once), 17 (timer), tick 20 ms later",
         ["SES-28"], ["ACK"])

    s = low_high("st-window", me_extra={"dc_window": 8})
    s.handshake(T0, 1, 1)
    _send(s, T0 + 10, b"aaaaa", b"bbbbb", b"ccc")
    s.feed_peer(T0 + 11)
    s.peer_step(T0 + 12, {"cmd": "inbox_committed", "through": 1})
    s.peer_step(T0 + 32, {"tick": True})
    s.deliver(T0 + 40, 1)
    _vec(out, s, "ses-tx-window-stall", "dc_window 8: the first 5-byte message goes, the second "
         "and third wait; ACK 1 releases the window and both go (5 + 3 = 8 bytes in flight)",
         ["SES-37"], ["WINDOW"])

    s = low_high("st-tor-window", me_extra={"tor_window": 4})
    s.handshake(T0, 1, 0, "tor")
    _send(s, T0 + 10, b"123456", b"7")
    s.recv(T0 + 20, 1, encode_frame(codec.encode_ack(1), Path.TOR))
    _vec(out, s, "ses-tx-tor-window", "tor_window 4 on the onion stream: one message larger "
         "than the window may always be in flight; the next waits for its ACK",
         ["SES-10", "SES-37"], ["WINDOW"])

    s = low_high("st-outbox", me_extra={"max_outbox": 2})
    s.handshake(T0, 1, 1)
    _send(s, T0 + 10, b"a", b"b", b"c")
    s.step(T0 + 11, {"cmd": "send", "payload": (b"x" * 16372).hex()})
    s.recv(T0 + 20, 1, encode_frame(codec.encode_ack(1), DC))
    _send(s, T0 + 21, b"c")
    _vec(out, s, "ses-tx-outbox-full", "max_outbox 2: a third message is refused with "
         "SES_OUTBOX_FULL (the machine unchanged), an oversize one with FRAME_TOO_LARGE first; "
         "after ACK 1 the third is accepted as seq 3", ["SES-36"], ["QUOTA"])


def _generation_vectors(out: list[tuple[Json, Json]]) -> None:
    # spec §17: the exact make-before-break interleaving, from the receiver's side
    s = low_high("gen-mbb-rx", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    _peer_send(s, T0 + 10, b"m1", b"m2", b"m3", b"m4", b"m5")
    s.deliver(T0 + 20, 1, 2)
    s.open(T0 + 30, 2, 2, mine=FP_H, theirs=FP_L)
    s.feed_peer(T0 + 31, 2)
    s.deliver(T0 + 32, 2, 1)
    s.deliver(T0 + 33, 2, 1)
    s.feed_peer(T0 + 34, 2)  # LOW opens gen 2: END{5} on gen 1, MSG 3, 4, 5 on gen 2
    _peer_send(s, T0 + 35, b"m6")
    s.deliver(T0 + 40, 2, 1)  # gen 2's MSG 3 first
    s.deliver(T0 + 41, 1, 3)  # gen 1's late MSG 3 (dropped), 4, 5 (delivered)
    s.deliver(T0 + 42, 2, 3)  # gen 2's MSG 4, 5 (dropped), 6 (delivered)
    s.deliver(T0 + 43, 1)  # gen 1's END{5}: 5 < next; both ENDs exchanged: closed
    _vec(out, s, "ses-tx-make-before-break", "spec §17: gen 1 delivers 1, 2 (3, 4, 5 in "
         "flight); gen 2 opens (HIGH announces rx 2, ends gen 1 with END{0}); gen 2's MSG 3 "
         "arrives first, then gen 1's late 3, 4, 5 (3 dropped, 4, 5 delivered), then gen 2's "
         "4, 5 (dropped) and 6, then gen 1's END{5}: each message exactly once, in order",
         ["SES-26", "SES-27", "SES-31", "SES-32", "SES-34", "SES-35"], ["INTERLEAVING"])

    s = low_high("gen-mbb-old-first", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    _peer_send(s, T0 + 10, b"m1", b"m2", b"m3")
    s.deliver(T0 + 20, 1, 1)
    s.open(T0 + 30, 2, 2, mine=FP_H, theirs=FP_L)
    s.feed_peer(T0 + 31, 2)
    s.deliver(T0 + 32, 2, 2)
    s.feed_peer(T0 + 34, 2)
    s.deliver(T0 + 40, 1)  # gen 1's 2, 3 and END{3} all arrive first
    s.deliver(T0 + 41, 2, join=True)  # gen 2's replay of 2, 3: duplicates
    _vec(out, s, "ses-tx-make-before-break-old-first", "the other order: gen 1's late frames "
         "and END arrive before gen 2's replay, which is dropped", ["SES-26", "SES-34"],
         ["INTERLEAVING"])

    s = low_high("gen-mbb-tx")
    s.handshake(T0, 1, 1)
    _send(s, T0 + 10, b"m1", b"m2", b"m3", b"m4", b"m5")
    s.feed_peer(T0 + 11, 1, 2)
    s.open(T0 + 30, 2, 2)
    s.feed_peer(T0 + 31, 2)
    s.deliver(T0 + 32, 2, 1)
    s.deliver(T0 + 33, 2, 1)
    _send(s, T0 + 34, b"m6")
    s.feed_peer(T0 + 35, 2, 1)  # LOW's AUTH: HIGH opens gen 2 and ends gen 1 (END{0})
    s.deliver(T0 + 40, 1)
    _vec(out, s, "ses-tx-make-before-break-sender", "LOW sent 1-5 on gen 1, HIGH got 1, 2; "
         "gen 2 opens with HIGH's HELLO announcing rx 2: LOW resumes there from 3 and sends "
         "END{5} on gen 1 in the same step; HIGH's END{0} closes gen 1",
         ["SES-27", "SES-31", "SES-32", "SES-33"], ["INTERLEAVING"])

    s = low_high("gen-gap-replay")
    s.handshake(T0, 1, 1)
    _send(s, T0 + 10, b"m1", b"m2", b"m3", b"m4", b"m5")
    s.feed_peer(T0 + 11, 1, 2)
    s.peer_step(T0 + 12, {"cmd": "inbox_committed", "through": 1})
    s.peer_step(T0 + 32, {"tick": True})
    s.deliver(T0 + 40, 1)
    s.recv(T0 + 50, 1, b"")
    s.to_peer[1] = []
    s.peer_step(T0 + 50, {"recv": "", "conn": 1})
    s.handshake(T0 + 60, 2, 2)
    _vec(out, s, "ses-tx-gap-replay", "HIGH acknowledged 1 and received 2 when gen 1 died; gen "
         "2's HELLO announces rx 2: LOW replays only 3, 4, 5 (from max(acked, rx) + 1)",
         ["SES-31", "SES-53"], ["REPLAY_GAP"])

    s = low_high("gen-ack-on-activate", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    _peer_send(s, T0 + 10, b"m1", b"m2")
    s.deliver(T0 + 20, 1)
    s.step(T0 + 21, {"cmd": "inbox_committed", "through": 2})
    s.step(T0 + 41, {"tick": True})  # SES_ACK 2 on gen 1, lost with it
    s.recv(T0 + 50, 1, b"")
    s.to_peer[1] = []
    s.peer_step(T0 + 50, {"recv": "", "conn": 1})
    s.handshake(T0 + 60, 2, 2, mine=FP_H, theirs=FP_L)
    _vec(out, s, "ses-tx-ack-on-activate", "HIGH's SES_ACK 2 was lost with gen 1; LOW's gen-2 "
         "HELLO says acked 0, so HIGH repeats SES_ACK 2 as gen 2 becomes active",
         ["SES-29", "SES-53"], ["ACK"])

    s = low_high("gen-end-first")
    s.handshake(T0, 1, 1)
    s.open(T0 + 30, 2, 2)
    s.feed_peer(T0 + 31, 2)  # HIGH answers LOW's HELLO with its AUTH
    s.deliver(T0 + 32, 2, 1)  # LOW: HIGH's HELLO, AUTH sent
    s.feed_peer(T0 + 33, 2)  # HIGH: LOW's AUTH: gen 2 open, END{0} on gen 1
    s.deliver(T0 + 34, 1)  # LOW: END on gen 1 while gen 2 is still AUTH_SENT
    _send(s, T0 + 35, b"still gen 1")
    s.deliver(T0 + 36, 2)  # HIGH's AUTH: gen 2 opens; LOW ends and closes gen 1
    _vec(out, s, "ses-tx-end-received-first", "HIGH switched first: LOW gets END on gen 1 "
         "(END_RECEIVED), keeps sending there until its gen 2 opens, then sends its own END "
         "and closes gen 1; the message is replayed on gen 2 from HIGH's announced rx 0",
         ["SES-32", "SES-33"], ["INTERLEAVING"])

    s = low_high("gen-end-gap", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.recv(T0 + 10, 1, msg(1, b"one"))
    s.recv(T0 + 11, 1, encode_frame(codec.encode_end(2), DC))
    _vec(out, s, "ses-tx-end-gap", "SES_END{2} after only seq 1 arrived on this ordered "
         "connection: SES_SEQ_GAP", ["SES-35"], ["GAP"])

    s = low_high("gen-drain", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.handshake(T0 + 100, 2, 2, mine=FP_H, theirs=FP_L)
    s.step(T0 + 100 + 3 + 9999, {"tick": True})
    s.step(T0 + 100 + 3 + 10000, {"tick": True})
    _vec(out, s, "ses-tx-drain-timeout", "HIGH switched to gen 2 and sent END on gen 1; the "
         "peer's END never comes: gen 1 closes at DRAIN_TIMEOUT (10000 ms)", ["SES-34"],
         ["TIMER"])

    s = low_high("gen-tor-fallback")
    s.handshake(T0, 1, 0, "tor")
    s.handshake(T0 + 100, 2, 1)
    _send(s, T0 + 110, b"direct")
    s.recv(T0 + 120, 2, b"")
    _send(s, T0 + 130, b"via tor")
    _vec(out, s, "ses-tx-tor-fallback", "the onion stream opens first (active, no_direct); the "
         "data channel of gen 1 opens and becomes active with no END on the onion stream "
         "(standby); when it closes, traffic falls back to the onion stream and a new "
         "generation is asked for (no_direct), replaying the unacknowledged message",
         ["SES-9", "SES-10", "SES-53"], ["PATH"])

    s = low_high("gen-tor-replaced")
    s.handshake(T0, 1, 0, "tor")
    _send(s, T0 + 10, b"first stream")
    s.handshake(T0 + 100, 2, 0, "tor")
    s.recv(T0 + 110, 1, b"")
    _send(s, T0 + 120, b"second stream")
    _vec(out, s, "ses-tx-tor-stream-replaced", "the onion stream is replaced (RDV-39, or a new "
         "dial): a new connection of generation 0 on the new stream, which stays standby (equal "
         "rank) while the first carries traffic; when the first stream ends, its connection "
         "closes and the new one becomes active, replaying the unacknowledged message, and a "
         "new generation is asked for (no_direct)", ["SES-70", "SES-72", "SES-9", "SES-53"],
         ["PATH"])


def _liveness_vectors(out: list[tuple[Json, Json]]) -> None:
    s = low_high("lv-dead")
    s.handshake(T0, 1, 1)
    _send(s, T0 + 10, b"unacked")
    s.step(T0 + 3 + 1999, {"tick": True})
    s.step(T0 + 3 + 2000, {"tick": True})
    s.step(T0 + 3 + 2000 + 6999, {"tick": True})
    s.step(T0 + 3 + 2000 + 7000, {"tick": True})
    _vec(out, s, "ses-tx-dead-path", "unacknowledged data (busy): PING after PROBE_BUSY "
         "(2000 ms) of silence, no PONG for PONG_TIMEOUT (7000 ms): TIMEOUT, the path is dead "
         "(within 9 s), a new generation is asked for", ["SES-43", "SES-46", "SES-53"],
         ["TIMER"])

    s = low_high("lv-idle-low")
    s.handshake(T0, 1, 1)
    s.step(T0 + 3 + 29999, {"tick": True})
    s.step(T0 + 3 + 30000, {"tick": True})
    body = bytes.fromhex(s.want[-1]["out"][0]["send"])[5:]  # the PING's body: {1: nonce}
    s.recv(T0 + 30100, 1, encode_frame(Frame(FrameType.PONG, 0, ping_body(bytes(8))),
                                       DC))
    s.recv(T0 + 30200, 1, encode_frame(Frame(FrameType.PONG, 0, body), DC))
    s.step(T0 + 60199, {"tick": True})
    s.step(T0 + 60200, {"tick": True})
    _vec(out, s, "ses-tx-idle-probe-low", "an idle LOW peer PINGs after PROBE_IDLE (30000 ms) of "
         "silence; an unmatched PONG proves nothing, the matching one clears the PING; the next "
         "PING comes 30000 ms after it", ["SES-43", "SES-44"], ["TIMER"])

    s = low_high("lv-idle-high", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.step(T0 + 3 + 30000, {"tick": True})
    s.step(T0 + 3 + 44999, {"tick": True})
    s.step(T0 + 3 + 45000, {"tick": True})
    _vec(out, s, "ses-tx-idle-probe-high", "an idle HIGH peer waits 1.5 x PROBE_IDLE (45000 "
         "ms) before its PING", ["SES-43", "SES-44"], ["TIMER"])

    s = low_high("lv-pong", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.recv(T0 + 10, 1, ping(bytes(range(8))))
    _vec(out, s, "ses-tx-ping-pong", "a PING is answered with a PONG carrying its nonce",
         ["SES-45"])

    s = low_high("lv-probe")
    s.handshake(T0, 1, 1)
    s.step(T0 + 10, {"cmd": "probe"})
    s.step(T0 + 10 + 6999, {"tick": True})
    s.step(T0 + 10 + 7000, {"tick": True})
    _vec(out, s, "ses-tx-probe", "the application asks for liveness: PING at once, TIMEOUT "
         "7000 ms later without an answer", ["SES-43", "SES-46"], ["TIMER"])

    s = low_high("lv-network")
    s.handshake(T0, 1, 1)
    s.step(T0 + 10, {"cmd": "network_changed"})
    s.handshake(T0 + 20, 2, 2)
    _vec(out, s, "ses-tx-network-changed", "network_changed: RECONNECT_NEEDED (network) and a "
         "PING on the active connection in the same step; gen 1 keeps the traffic until gen 2 "
         "opens", ["SES-48", "SES-49"], ["PATH"])

    s = low_high("lv-give-up")
    s.handshake(T0, 1, 1)
    s.step(T0 + 5, {"cmd": "give_up"})
    s.recv(T0 + 10, 1, b"")
    s.step(T0 + 20, {"cmd": "give_up"})
    s.open(T0 + 30, 2, 2, peer=False)
    _vec(out, s, "ses-tx-give-up", "give_up while connected changes nothing; after the "
         "connection closed (reconnecting) it makes the status offline; a new open makes it "
         "reconnecting again", ["SES-8"], ["STATUS"])


def _signal_vectors(out: list[tuple[Json, Json]]) -> None:
    s = low_high("sg-glare")
    s.handshake(T0, 1, 1)
    s.step(T0 + 10, {"cmd": "send_signal", "frame": RV_OFFER.hex()})
    s.peer_step(T0 + 10, {"cmd": "send_signal", "frame": RV_OFFER.hex()})
    s.deliver(T0 + 20, 1)
    s.peer_step(T0 + 20, {"cmd": "send_signal", "frame": RV_ANSWER.hex()})
    s.deliver(T0 + 30, 1)
    _vec(out, s, "ses-tx-signal-glare", "both peers send an RV_OFFER in-band at once (glare, "
         "resolved by p4-03 above this layer): each SES_SIGNAL is handed up unchanged as SIGNAL, "
         "then the ANSWER", ["SES-12", "SES-13", "SES-56"], ["SIGNAL"])

    s = low_high("sg-tor")
    s.handshake(T0, 1, 0, "tor")
    s.step(T0 + 10, {"cmd": "send_signal", "frame": RV_OFFER.hex()})
    s.recv(T0 + 20, 1, encode_frame(codec.encode_signal(RV_OFFER), Path.TOR))
    _vec(out, s, "ses-tx-signal-on-tor", "on the onion stream send_signal is refused "
         "(no active data channel) and a received SES_SIGNAL fails the connection with "
         "UNEXPECTED_MESSAGE", ["SES-14"], ["SIGNAL"])


def _refused_vectors(out: list[tuple[Json, Json]]) -> None:
    s = low_high("rf")

    def op(conn: int, gen: int, path: str = "datachannel", bl: bytes = FP_L,
           br: bytes = FP_H) -> Json:
        return {"cmd": "open", "conn": conn, "generation": gen, "path": path,
                "binding_local": bl.hex(), "binding_remote": br.hex()}

    s.step(T0, op(1, 1, "udp"))
    s.step(T0, {"recv": msg(1, b"x").hex(), "conn": 1})
    s.step(T0, {"cmd": "send_signal", "frame": "00"})
    s.step(T0, {"cmd": "inbox_committed", "through": 1})
    s.handshake(T0 + 1, 1, 3)
    s.step(T0 + 10, op(1, 4, "udp"))
    s.step(T0 + 11, op(1, 4, bl=FP_L[:31]))
    s.step(T0 + 12, op(2, 2, bl=FP_L[:31]))
    s.step(T0 + 13, op(2, 3))
    s.step(T0 + 14, op(2, 1, "tor"))
    s.step(T0 + 15, {"cmd": "send", "payload": (b"x" * 16372).hex()})
    s.step(T0 + 16, {"cmd": "send", "payload": (b"x" * 16371).hex()})
    s.step(T0 + 17, {"cmd": "send_signal", "frame": RV_OFFER.hex()[:-2]})
    s.step(T0 + 18, {"cmd": "inbox_committed", "through": 0})
    s.step(T0 + 19, {"cmd": "inbox_committed", "through": 1})
    s.step(T0 + 20, op(2, 4))
    _vec(out, s, "ses-tx-refused-commands", "refused commands leave the machine unchanged and "
         "draw nothing, in §13.2's order: path before a used conn before the bindings before the "
         "generation; recv on an unknown conn; send_signal without an active data channel "
         "before its bytes; inbox_committed outside rx_durable .. rx; the largest payload "
         "(16371 bytes) is accepted", ["SES-11", "SES-36", "CNV-32"], ["REFUSED", "ORDER"])

    s = low_high("rf-args")
    s.step(T0, {"cmd": "send_signal"})
    s.step(T0 + 1, op(1, 1))
    s.step(T0 + 2, {k: v for k, v in op(1, 2).items() if k != "binding_remote"})
    s.step(T0 + 3, {"cmd": "inbox_committed", "through": "1"})
    _vec(out, s, "ses-tx-refused-missing-argument", "a missing or ill-typed argument is "
         "MESSAGE_INVALID before every other refusal: send_signal without frame (and without "
         "an active data channel), open of a used conn without binding_remote, inbox_committed "
         "with a string", ["CNV-32"], ["REFUSED", "ORDER"])

    bad = [("ses-tx-config-same-key", "peer_pub is this peer's own key", cfg(SEED_L, PUB_L),
            "IDENTITY_KEY_INVALID"),
           ("ses-tx-config-short-seed", "a 31-byte identity seed",
            {"identity_seed": SEED_L[:31].hex(), "peer_pub": PUB_H.hex()},
            "IDENTITY_KEY_INVALID"),
           ("ses-tx-config-unknown-key", "a key the config table does not define (before the "
            "own key)", cfg(SEED_L, PUB_L, generation=1), "MESSAGE_INVALID"),
           ("ses-tx-config-state-no-inc", "a stored state without inc",
            cfg(SEED_L, PUB_H, state={"tx": 0}), "MESSAGE_INVALID")]
    for ident, comment, config, code in bad:
        params = {"machine": "session", "role": "peer", "config": config}
        out.append((params, test(ident, comment, ["SES-7"], {"rng": [], "steps": []},
                                 valid=False, error=code, flags=["CONFIG"])))


def _state(inc: bytes, **kw: Any) -> Json:
    st: Json = {"inc": inc.hex()}
    for k, v in kw.items():
        if isinstance(v, bytes):
            st[k] = v.hex()
        elif k == "retired":
            st[k] = [r.hex() for r in v]
        elif k == "outbox":
            st[k] = [[seq, p.hex()] for seq, p in v]
        else:
            st[k] = v
    return st


def _incarnation_vectors(out: list[tuple[Json, Json]]) -> None:
    # LOW remembers HIGH as INC_B, which acknowledged LOW's 1..3; HIGH comes back fresh
    s = low_high("inc-peer-new", me_extra={"state": _state(
        INC_A, tx=3, acked=3, peer_inc=INC_B, rx=2, generation=4)})
    s.handshake(T0, 1, 5)
    _send(s, T0 + 10, b"four")
    _vec(out, s, "ses-tx-reset-peer-new", "HIGH lost its whole state (a new incarnation that "
         "does not know LOW's): SESSION_RESET peer_new, lost_out [1, 3], INC_B retired; the "
         "stream continues at seq 4", ["SES-41", "SES-7"], ["INCARNATION"])

    # LOW was restored from a backup: it remembers sending 2, HIGH holds 5 of its messages
    s = low_high("inc-restored",
                 me_extra={"state": _state(INC_A, tx=2, acked=0, peer_inc=INC_B, rx=0,
                                           outbox=[(1, b"r1"), (2, b"r2")])},
                 peer_extra={"state": _state(INC_B, tx=0, acked=0, peer_inc=INC_A, rx=5)})
    s.handshake(T0, 1, 1)
    s.recv(T0 + 10, 1, b"")
    s.peer_step(T0 + 10, {"recv": "", "conn": 1})
    s.to_peer[1] = []
    s.handshake(T0 + 20, 2, 2)
    _vec(out, s, "ses-tx-reset-restored", "LOW's counters went backwards (HIGH holds seq 5 of "
         "LOW's incarnation, LOW's tx is 2): SES_INCARNATION_STALE, LOW re-incarnates (a new "
         "inc drawn), renumbers its 2 outbox messages from 1, SESSION_RESET restored; gen 2 "
         "runs under the new incarnation", ["SES-41", "SES-42"], ["INCARNATION"])

    s = low_high("inc-restored-high", me_low=False,
                 me_extra={"state": _state(INC_B, tx=0, acked=0, peer_inc=INC_A, rx=5)},
                 peer_extra={"state": _state(INC_A, tx=2, acked=0, peer_inc=INC_B, rx=0,
                                             outbox=[(1, b"r1"), (2, b"r2")])})
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    s.recv(T0 + 10, 1, b"")
    s.peer_step(T0 + 10, {"recv": "", "conn": 1})
    s.to_peer[1] = []
    s.handshake(T0 + 20, 2, 2, mine=FP_H, theirs=FP_L)
    s.deliver(T0 + 30, 2)
    _vec(out, s, "ses-tx-reset-peer-restored-then-new", "the same restore seen by HIGH: gen 1 "
         "fails (SES_INCARNATION_STALE, SESSION_RESET peer_restored, INC_A retired); gen 2 "
         "brings LOW's new incarnation, which §9 rule 3 reports as peer_new (no range lost: "
         "LOW knows HIGH's incarnation); the renumbered messages arrive as 1, 2 of the new "
         "incarnation", ["SES-41", "SES-42"], ["INCARNATION"])

    # positions and incarnations act only after SES_AUTH verified [SES-24]
    s = low_high("inc-unverified",
                 me_extra={"state": _state(INC_A, tx=2, acked=0, peer_inc=INC_B, rx=0,
                                           outbox=[(1, b"p1"), (2, b"p2")])},
                 peer_extra={"state": _state(INC_B, peer_inc=INC_A)})
    s.open(T0, 1, 1)
    s.feed_peer(T0 + 1, 1)
    hello, auth = s.pending(1)
    s.to_me[1] = []
    h = codec.decode_hello(Frame(FrameType.SES_HELLO, 0, bytes.fromhex(hello)[5:]))
    s.recv(T0 + 2, 1, encode_frame(codec.encode_hello(replace(h, rx=100, acked=50)), DC))
    s.recv(T0 + 3, 1, auth)
    s.peer_step(T0 + 4, {"recv": "", "conn": 1})
    s.to_peer[1] = []
    s.recv(T0 + 4, 1, b"")
    s.handshake(T0 + 10, 2, 2)
    _vec(out, s, "ses-tx-positions-before-auth", "a HELLO whose positions were changed in transit "
         "(rx 100: LOW would be stale) with the peer's real AUTH: SES_BAD_SIGNATURE and nothing "
         "else: no re-incarnation, no reset, no skipped messages; gen 2 resumes from 1",
         ["SES-24", "SES-23"], ["INCARNATION", "BAD_SIGNATURE"])

    s = low_high("inc-peer-restored",
                 me_extra={"state": _state(INC_A, tx=4, acked=4, peer_inc=INC_B, rx=0,
                                           generation=1)},
                 peer_extra={"state": _state(INC_B, tx=0, acked=0, peer_inc=INC_A, rx=2,
                                             generation=1)})
    s.handshake(T0, 1, 2)
    _vec(out, s, "ses-tx-reset-peer-restored", "HIGH was restored: it announces rx 2 of LOW's "
         "stream although it acknowledged 4: SES_INCARNATION_STALE, INC_B retired, "
         "SESSION_RESET peer_restored, lost_out [3, 4]", ["SES-41"], ["INCARNATION"])

    s = low_high("inc-conflict",
                 me_extra={"state": _state(INC_A, peer_inc=INC_C, retired=[INC_B])},
                 peer_extra={"state": _state(INC_B, peer_inc=INC_A)})
    s.handshake(T0, 1, 1)
    _vec(out, s, "ses-tx-incarnation-conflict", "a retired incarnation of HIGH (INC_B, a copied "
         "profile) is back: SES_INCARNATION_CONFLICT, nothing changes", ["SES-41"],
         ["INCARNATION"])
    _race_vector(out, True)
    _race_vector(out, False)


def _race_vector(out: list[tuple[Json, Json]], me_first: bool) -> None:
    """Make-before-break under traffic (p4-04 rev 4, §9 rule 2; ports/ts/live/README.md,
    Finding): the first side (LOW) builds its generation-2 SES_HELLO, then generation 1 carries
    3 more of its messages and 3 of the second side's, all committed and acknowledged, then the
    second side (HIGH) builds its HELLO.  The HELLOs disagree (HIGH's rx 8 > LOW's HELLO tx 5,
    HIGH's acked 3 > LOW's HELLO rx 0) although nobody was restored: generation 2 must open."""
    me_hi = not me_first
    s = low_high("race-first" if me_first else "race-second", me_low=me_first)
    mine, theirs = (FP_H, FP_L) if me_hi else (FP_L, FP_H)
    s.handshake(T0, 1, 1, mine=mine, theirs=theirs)

    def first(now: int, item: Json) -> None:
        (s.step if me_first else s.peer_step)(now, item)

    def second(now: int, item: Json) -> None:
        (s.peer_step if me_first else s.step)(now, item)

    def to_first(now: int, conn: int) -> None:
        if me_first:
            s.deliver(now, conn)
        else:
            s.feed_peer(now, conn)

    def to_second(now: int, conn: int) -> None:
        if me_first:
            s.feed_peer(now, conn)
        else:
            s.deliver(now, conn)

    def send(who: Callable[[int, Json], None], now: int, *payloads: bytes) -> None:
        for p in payloads:
            who(now, {"cmd": "send", "payload": p.hex()})

    send(first, T0 + 10, *(b"f%d" % k for k in range(1, 6)))
    to_second(T0 + 11, 1)
    second(T0 + 12, {"cmd": "inbox_committed", "through": 5})
    second(T0 + 32, {"tick": True})
    to_first(T0 + 40, 1)  # ACK 5
    gen2 = {"cmd": "open", "conn": 2, "generation": 2, "path": "datachannel",
            "binding_local": FP_L.hex(), "binding_remote": FP_H.hex()}
    first(T0 + 50, gen2)  # LOW's HELLO: tx 5, acked 5, rx 0 -- held in the network
    send(first, T0 + 60, *(b"f%d" % k for k in range(6, 9)))
    to_second(T0 + 61, 1)
    send(second, T0 + 62, b"s1", b"s2", b"s3")
    second(T0 + 63, {"cmd": "inbox_committed", "through": 8})
    second(T0 + 83, {"tick": True})
    to_first(T0 + 90, 1)  # s1..s3 and ACK 8
    first(T0 + 91, {"cmd": "inbox_committed", "through": 3})
    first(T0 + 111, {"tick": True})
    to_second(T0 + 112, 1)  # ACK 3
    second(T0 + 120, swap(gen2))  # HIGH's HELLO: rx 8, acked 3, tx 3
    to_second(T0 + 121, 2)  # LOW's HELLO reaches HIGH: HIGH's AUTH
    to_first(T0 + 122, 2)  # HIGH's HELLO and AUTH: LOW opens generation 2
    to_second(T0 + 123, 2)  # LOW's AUTH: HIGH opens generation 2
    to_first(T0 + 124, 1)
    to_first(T0 + 124, 2)
    to_second(T0 + 125, 1)
    if me_first:
        _vec(out, s, "ses-tx-mbb-race-hello-older", "make-before-break under traffic, seen by "
             "LOW, whose generation-2 HELLO (tx 5, rx 0) was built before 3 more of its "
             "messages and 3 of HIGH's crossed generation 1 and were acknowledged: HIGH's "
             "HELLO (rx 8, acked 3) exceeds LOW's HELLO but not LOW's current tx 8 and rx 3, "
             "so generation 2 opens, no SES_INCARNATION_STALE, no SESSION_RESET",
             ["SES-41", "SES-32"], ["INCARNATION", "ORDER"])
    else:
        _vec(out, s, "ses-tx-mbb-race-hello-newer", "the same make-before-break race seen by "
             "HIGH, whose HELLO (rx 8, acked 3) is the newer: LOW's HELLO (tx 5, rx 0) trails "
             "HIGH's counters, which is progress, not a restore: HIGH does not judge LOW's "
             "staleness; generation 2 opens, no SES_INCARNATION_STALE, no SESSION_RESET",
             ["SES-41", "SES-32"], ["INCARNATION", "ORDER"])


def _pinned_vectors(out: list[tuple[Json, Json]]) -> None:
    """Points the clean-room ports had to guess (ports/ts/SPEC-GAPS.md 12, 14; item 11, the
    unknown role, cannot be a vector: tools/vector_lint.py refuses a role the spec does not
    define): p4-04 revision 3 states them; each vector fails a port that chose otherwise."""
    s = low_high("pin-end-received")
    s.handshake(T0, 1, 1)
    s.recv(T0 + 10, 1, encode_frame(codec.encode_end(0), DC))
    s.step(T0 + 10 + 29999, {"tick": True})
    s.step(T0 + 10 + 30000, {"tick": True})
    s.step(T0 + 10 + 30000 + 7000, {"tick": True})
    _vec(out, s, "ses-tx-probe-end-received", "the peer sent SES_END (END_RECEIVED): the "
         "connection is still probed at the idle interval, and declared dead when the PING "
         "stays unanswered", ["SES-63", "SES-43", "SES-46"], ["TIMER"])

    s = low_high("pin-ack-timer", me_low=False)
    s.handshake(T0, 1, 1, mine=FP_H, theirs=FP_L)
    _peer_send(s, T0 + 10, b"a", b"b")
    s.deliver(T0 + 20, 1)
    s.step(T0 + 30, {"cmd": "inbox_committed", "through": 1})
    s.step(T0 + 40, {"cmd": "inbox_committed", "through": 2})
    s.step(T0 + 30 + 19, {"tick": True})
    s.step(T0 + 30 + 20, {"tick": True})
    _vec(out, s, "ses-tx-ack-timer-kept", "two commits 10 ms apart: the ack timer armed by the "
         "first is not moved by the second; one SES_ACK 2 at first commit + ACK_DELAY (20 ms)",
         ["SES-65", "SES-28"], ["TIMER", "ACK"])

    s = low_high("pin-ping-answered")
    s.handshake(T0, 1, 1)
    s.step(T0 + 3 + 30000, {"tick": True})
    s.recv(T0 + 3 + 30100, 1, ping(bytes(range(8))))
    s.step(T0 + 3 + 37000, {"tick": True})
    s.step(T0 + 3 + 30100 + 29999, {"tick": True})
    s.step(T0 + 3 + 30100 + 30000, {"tick": True})
    _vec(out, s, "ses-tx-ping-answered-by-frame", "a PING is outstanding; a frame other than its "
         "PONG (the peer's PING) proves the path alive: the first PING no longer counts (no "
         "TIMEOUT 7000 ms after it), silence counts from that frame, and a new PING follows "
         "PROBE_IDLE after it", ["SES-63", "SES-43", "SES-46"], ["TIMER"])

    s = low_high("pin-both-stale",
                 me_extra={"state": _state(INC_A, tx=1, acked=0, peer_inc=INC_B, rx=5,
                                           outbox=[(1, b"s1")])},
                 peer_extra={"state": _state(INC_B, tx=2, acked=0, peer_inc=INC_A, rx=3,
                                             outbox=[(1, b"p1"), (2, b"p2")])})
    s.handshake(T0, 1, 1)
    _vec(out, s, "ses-tx-reset-both-stale", "both peers are stale (HIGH holds 3 of LOW's "
         "messages, LOW remembers sending 1; LOW holds 5 of HIGH's, HIGH remembers sending 2): "
         "CONNECTION_FAILED, then SESSION_RESET restored, then peer_restored", ["SES-66",
                                                                            "SES-41"],
         ["INCARNATION", "ORDER"])


# ------------------------------------------------------------------------------ two-party vectors

ROLES = ("low", "high")
PAIR_CONFIG = {"low": cfg(SEED_L, PUB_H), "high": cfg(SEED_H, PUB_L)}
LATENCY = 10


def _open_both(t: int, conn: int, generation: int, path: str = "datachannel",
               high_sees: bytes = FP_L) -> list[Json]:
    low = {"cmd": "open", "conn": conn, "generation": generation, "path": path,
           "binding_local": FP_L.hex(), "binding_remote": FP_H.hex()}
    high = {**swap(low), "binding_remote": high_sees.hex()}
    return [{"role": "low", "now": t, "in": low}, {"role": "high", "now": t, "in": high}]


def _sends(role: str, t: int, payloads: list[bytes], every: int = 3) -> list[Json]:
    return [{"role": role, "now": t + k * every, "in": {"cmd": "send", "payload": p.hex()}}
            for k, p in enumerate(payloads)]


def _kill(role: str, t: int, conn: int) -> Json:
    return {"role": role, "now": t, "in": {"recv": "", "conn": conn}}


def _simulate(script: list[Json], label: str) -> tuple[dict[str, Side], dict[str, str],
                                                         dict[str, list[Json]],
                                                         dict[str, list[str]]]:
    """The relay of conformance/README.md §5.2 on a perfect network (connection-addressed)."""
    import heapq

    sides = {r: Side(f"{label}/{r}", PAIR_CONFIG[r]) for r in ROLES}
    other = {"low": "high", "high": "low"}
    queue: list[tuple[int, int, str, Json]] = []
    seq = 0
    for e in script:
        heapq.heappush(queue, (int(e["now"]), seq, str(e["role"]), dict(e["in"])))
        seq += 1
    state = {r: "" for r in ROLES}
    events: dict[str, list[Json]] = {r: [] for r in ROLES}
    errors: dict[str, list[str]] = {r: [] for r in ROLES}
    opened: dict[str, set[int]] = {r: set() for r in ROLES}
    dead: set[int] = set()
    eof: set[tuple[str, int]] = set()
    while queue:
        now, _, role, item = heapq.heappop(queue)
        conn = int(item.get("conn", -1))
        if "recv" in item:
            if item["recv"] == "":
                eof.add((role, conn))
                if conn not in dead:
                    dead.add(conn)
                    r2 = other[role]
                    if conn in opened[r2] and (r2, conn) not in eof:
                        eof.add((r2, conn))
                        heapq.heappush(queue, (now + LATENCY, seq, r2, {"recv": "", "conn": conn}))
                        seq += 1
            elif conn in dead:
                continue
        got = sides[role].step(now, item)
        assert "error" not in got, (label, role, item, got)
        state[role] = got["state"]
        if item.get("cmd") == "open":
            opened[role].add(conn)
        for o in got["out"]:
            if "send" in o:
                if o["conn"] in dead:
                    continue
                heapq.heappush(queue, (now + LATENCY, seq, other[role],
                                       {"recv": o["send"], "conn": o["conn"]}))
                seq += 1
            elif "event" in o:
                events[role].append(o)
            else:
                errors[role].append(o["error"])
    return sides, state, events, errors


def _pair(ident: str, comment: str, req: list[str], script: list[Json],
          streams: bool = True, faults: bool = True, final_events: bool = False,
          flags: list[str] | None = None) -> Json:
    sides, state, events, errors = _simulate(script, ident)
    final: Json = {}
    for r in ROLES:
        final[r] = {"state": state[r]}
        if errors[r]:
            final[r]["errors"] = errors[r]
        if final_events:
            final[r]["events"] = [e for e in events[r] if e["event"] in (
                "CONNECTION_FAILED", "SESSION_RESET")]
    value: Json = {"final": final}
    if streams:
        value["streams"] = []
        for sender, receiver in (("low", "high"), ("high", "low")):
            sent = [e["in"]["payload"] for e in script
                    if e["role"] == sender and e["in"].get("cmd") == "send"]
            got = [e["payload"] for e in events[receiver] if e["event"] == "MESSAGE"]
            assert got == sent, (ident, receiver, got, sent)  # the perfect network delivers all
            value["streams"].append({"role": receiver, "event": "MESSAGE", "field": "payload",
                                     "values": sent})
    if faults:
        value["underFaults"] = [{"low": {}, "high": {}}]
    inp = {"rng": {r: [v.hex() for v in sides[r].rng.drawn] for r in ROLES},
           "script": script, "latencyMs": LATENCY, "maxDeliveries": 3000}
    t = test(ident, comment, req, inp, value=value, flags=flags)
    return group("machine.pair", [t], {"machine": "session", "roles": list(ROLES),
                                       "config": PAIR_CONFIG})


def _payloads(prefix: str, n: int, start: int = 1) -> list[bytes]:
    return [f"{prefix}{k}".encode() for k in range(start, start + n)]


def pairs() -> list[Json]:
    gens = [
        *_open_both(0, 10, 0, "tor"), *_open_both(0, 1, 1),
        *_sends("low", 20, _payloads("L", 4)), *_sends("high", 22, _payloads("H", 2)),
        *_open_both(100, 2, 2),
        *_sends("low", 101, _payloads("L", 6, 5), every=4),
        *_sends("high", 105, _payloads("H", 2, 3)),
        *_open_both(200, 3, 3),
        *_sends("low", 195, _payloads("L", 5, 11), every=5),
        *_open_both(300, 4, 4),
        *_sends("high", 290, _payloads("H", 5, 5), every=6),
        *_sends("low", 305, _payloads("L", 2, 16)),
    ]
    killed = [
        *_open_both(0, 10, 0, "tor"), *_open_both(0, 1, 1),
        *_sends("low", 20, _payloads("L", 6)), *_sends("high", 21, _payloads("H", 3)),
        _kill("low", 33, 1),
        *_sends("low", 50, _payloads("L", 2, 7)),
        *_open_both(100, 2, 2),
        *_sends("low", 120, _payloads("L", 3, 9)), *_sends("high", 121, _payloads("H", 3, 4)),
        _kill("high", 126, 2),
        *_open_both(200, 3, 3),
        *_sends("high", 230, _payloads("H", 2, 7)),
    ]
    return [
        _pair("ses-pair-handshake", "LOW and HIGH open generation 1: both connected",
              ["SES-3", "SES-20", "SES-23"], _open_both(0, 1, 1), streams=False),
        _pair("ses-pair-generations", "an onion stream (standby) and four generations opened "
              "while the older ones still carry traffic, messages from both sides throughout: "
              "every message arrives once, in order; under faults what arrives is a prefix",
              ["SES-9", "SES-26", "SES-27", "SES-31", "SES-32", "SES-34"], gens,
              flags=["INTERLEAVING", "FAULTS"]),
        _pair("ses-pair-killed", "generation 1 dies with messages in flight (replayed from the "
              "announced position on generation 2), generation 2 dies (the onion stream "
              "carries the traffic), generation 3 opens", ["SES-10", "SES-31", "SES-53"],
              killed, flags=["REPLAY_GAP", "PATH", "FAULTS"]),
        _pair("ses-pair-wrong-fingerprint", "HIGH's DTLS saw a certificate other than LOW's "
              "(a relay in between): both fail the connection with SES_BINDING_MISMATCH, each "
              "detecting it in the other's HELLO (the crossing ERROR frames find the connection "
              "already failed)", ["SES-1", "SES-23", "SES-51"],
              _open_both(0, 1, 1, high_sees=FP_X), streams=False, faults=False,
              final_events=True, flags=["FINGERPRINT"]),
    ]
