"""Reference-adapter ops for pairing (p4-02): the machine and the codec/crypto ops.

The interface is p4-02 §14 "Test-vector interface"; this module implements it.

Machine (``MACHINE = "pairing"``)::

    new(role, config, rng)   role "inviter" | "accepter"
        config: {"code": "7-guitarist-revenge"} or {"uri": "p4:pair?..."},
                "identity_seed": hex (32 bytes), optional "expires_at" (ms), "timeout_ms" (ms)
        rng: the values the machine draws, in order (64-byte scalar draw, 32-byte nonce)
    step(m, now, inp)        inp: {"cmd": "start"} | {"recv": hex} (any split; "" = end of
                                  stream) | {"tick": true}
        -> {"out": [{"send": hex}..., {"event": ...}..., {"error": NAME}?], "state": NAME}

``{"error": CODE}`` is the last item of the step in which the machine fails, with the code of its
PAIRING_FAILED event (conformance/README.md); a command the machine refuses without failing is an
adapter-level error.

Ops (``vectors_ops``), bytes as hex: ``pairing.parse_code``, ``pairing.parse_uri``,
``pairing.spake2``, ``pairing.key_schedule``, ``pairing.kdf``, ``pairing.open_identity``,
``pairing.decode``.
"""

from __future__ import annotations

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ..framing import HEADER_LEN, Frame, FrameType, Path, decode_frame, encode_frame
from ..pairing import _crypto as C
from ..pairing._codec import PairConfirm, PairDone, PairIdentity, PairPake, decode_message
from ..pairing._events import Paired, PairingFailed
from ..pairing._invite import parse_code, parse_uri
from ..pairing._machine import DEFAULT_TIMEOUT_MS, Invitation, PairingMachine
from ._jsonargs import Json, Op, int_value
from ._jsonargs import hex_arg as _hex
from ._jsonargs import str_arg as _str

__all__ = ["MACHINE", "new", "step", "vectors_ops"]

MACHINE = "pairing"


CONFIG_KEYS = frozenset({"code", "uri", "identity_seed", "expires_at", "timeout_ms"})


def _bad(why: str) -> LocalProtocolError:
    return LocalProtocolError(ErrorCode.MESSAGE_INVALID, why)


def new(role: str, config: Json, rng: list[bytes]) -> PairingMachine:
    """``machine.new`` in p4-02 §14's order: the config's shape (MESSAGE_INVALID), then the
    invitation as parse_code / parse_uri would refuse it, then the seed (IDENTITY_KEY_INVALID)."""
    if role not in {r.value for r in C.Role}:
        raise _bad(f"role is one of {sorted(r.value for r in C.Role)}")
    if unknown := sorted(set(config) - CONFIG_KEYS):
        raise _bad(f"unknown config keys {unknown}")
    if ("code" in config) == ("uri" in config):
        raise _bad("config has exactly one of code, uri")
    text = _str(config, "code" if "code" in config else "uri")
    seed = _hex(config, "identity_seed")
    exp = config.get("expires_at")
    expires_at = int_value(exp, "expires_at") if exp is not None else None
    timeout_ms = int_value(config.get("timeout_ms", DEFAULT_TIMEOUT_MS), "timeout_ms")
    if timeout_ms <= 0:
        raise _bad("timeout_ms is > 0")
    invitation = (Invitation.from_code(text, expires_at) if "code" in config
                  else Invitation.from_uri(text, expires_at))
    return PairingMachine(C.Role(role), invitation, seed, list(rng), timeout_ms=timeout_ms)


def step(m: PairingMachine, now_ms: int, inp: Json) -> Json:
    """One step.  A peer's protocol error shows in the outputs (ERROR sent, PAIRING_FAILED,
    ``error``); a LocalProtocolError (a refused command) propagates as an adapter-level error."""
    started = b""
    try:
        if "recv" in inp:
            m.receive_data(_hex(inp, "recv"), now_ms)
        elif inp.get("cmd") == "start":
            started = m.start(now_ms)  # start() hands back what it queued
        elif inp.get("tick") is True:
            m.handle_timer(now_ms)
        else:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, f"unknown input {sorted(inp)}")
    except RemoteProtocolError:
        pass  # the machine queued ERROR / PAIRING_FAILED; the outputs say what happened
    out: list[Json] = [{"send": f} for f in _split(started) + _frames_hex(m)]
    failed: str | None = None
    while (ev := m.next_event()) is not None:
        out.append(event_json(ev))
        if isinstance(ev, PairingFailed):
            failed = _code_name(ev)
    if failed is not None:
        out.append({"error": failed})
    return {"out": out, "state": m.state.value}


def _frames_hex(m: PairingMachine) -> list[str]:
    return [encode_frame(f, Path.TOR).hex() for f in m.frames_to_send()]


def _split(data: bytes) -> list[str]:
    """Cut a run of whole encoded frames into one hex string per frame."""
    out, pos = [], 0
    while pos < len(data):
        end = pos + HEADER_LEN + int.from_bytes(data[pos + 3 : pos + 5], "big")
        out.append(data[pos:end].hex())
        pos = end
    return out


def event_json(ev: Paired | PairingFailed) -> Json:
    if isinstance(ev, Paired):
        return {
            "event": "PAIRED",
            "peer_identity": ev.peer_identity.hex(),
            "pair_root_key": ev.pair_root_key.hex(),
            "sas": ev.sas,
        }
    return {"event": "PAIRING_FAILED", "code": _code_name(ev)}


def _code_name(ev: PairingFailed) -> str:
    """The registry name, or ``0x`` and four lowercase hex digits for a peer's unregistered
    code (p4-02 §14, p4-00 CNV-38)."""
    return f"0x{ev.peer_code:04x}" if ev.peer_code is not None else ev.code.name


# --- codec and crypto ops -------------------------------------------------------------------


def _parse_code(params: Json, inp: Json) -> Json:
    code = parse_code(_str(inp, "code"))
    return {
        "canonical": str(code),
        "password": code.password.hex(),
        "slot": code.slot,
        "nameplate": code.nameplate,
        "words": list(code.words),
        "onion_seed": code.onion_seed.hex(),
    }


def _parse_uri(params: Json, inp: Json) -> Json:
    uri = parse_uri(_str(inp, "uri"))
    return {
        "version": uri.version,
        "secret": uri.secret.hex(),
        "onion": uri.onion,
        "key_commitment": uri.key_commitment.hex(),
        "expires": uri.expires,
        "onion_seed": uri.onion_seed.hex(),
    }


def _spake2(params: Json, inp: Json) -> Json:
    """Both halves of SPAKE2 from the password, slot and the two 64-byte draws."""
    password, slot = _hex(inp, "password"), _str(inp, "slot")
    w = C.derive_w(password, slot)
    x, y = C.draw_scalar(_hex(inp, "x_random")), C.draw_scalar(_hex(inp, "y_random"))
    p_a = C.spake2_element(C.Role.ACCEPTER, w, x)
    p_b = C.spake2_element(C.Role.INVITER, w, y)
    k = C.spake2_shared(C.Role.ACCEPTER, w, x, p_b)
    if k != C.spake2_shared(C.Role.INVITER, w, y, p_a):  # pragma: no cover - group law
        raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "K differs")
    id_a, id_b = C.spake2_ids(slot)
    tt = C.transcript(id_a, id_b, p_a, p_b, k, w)
    ks = C.key_schedule(tt)
    return {
        "A": id_a.hex(), "B": id_b.hex(), "w": w.hex(), "x": x.hex(), "y": y.hex(),
        "pA": p_a.hex(), "pB": p_b.hex(), "K": k.hex(), "TT": tt.hex(),
        "Ke": ks.ke.hex(), "Ka": ks.ka.hex(), "KcA": ks.kca.hex(), "KcB": ks.kcb.hex(),
        "cA": ks.ca.hex(), "cB": ks.cb.hex(),
    }  # fmt: skip


def _key_schedule(params: Json, inp: Json) -> Json:
    """RFC 9382 §4 from a transcript (so RFC 9382 Appendix B vectors apply verbatim)."""
    aad = _hex(inp, "aad") if "aad" in inp else C.AAD
    ks = C.key_schedule(_hex(inp, "TT"), aad)
    return {
        "Ke": ks.ke.hex(), "Ka": ks.ka.hex(), "KcA": ks.kca.hex(), "KcB": ks.kcb.hex(),
        "cA": ks.ca.hex(), "cB": ks.cb.hex(),
    }  # fmt: skip


def _kdf(params: Json, inp: Json) -> Json:
    """Everything after the PAKE: TH, identity keys, the inviter's commitment, TH2, root key,
    SAS, both PAIR_DONE keys and MACs, and the URI's commitment to the inviter's key."""
    ke, tt = _hex(inp, "Ke"), _hex(inp, "TT")
    pub_a, pub_i = _hex(inp, "accepter_identity"), _hex(inp, "inviter_identity")
    nonce_a, nonce_i = _hex(inp, "accepter_nonce"), _hex(inp, "inviter_nonce")
    th = C.transcript_hash(tt)
    k_a, k_b = C.identity_keys(ke, th)
    commitment = C.identity_commitment(th, pub_i, nonce_i)
    fin = C.final_keys(ke, th, pub_a, pub_i, nonce_a, nonce_i, commitment)
    return {
        "TH": th.hex(), "k_identity_accepter": k_a.hex(), "k_identity_inviter": k_b.hex(),
        "commitment": commitment.hex(), "TH2": fin.th2.hex(),
        "pair_root_key": fin.pair_root_key.hex(), "sas": fin.sas,
        "k_done_accepter": fin.k_done_accepter.hex(), "k_done_inviter": fin.k_done_inviter.hex(),
        "done_accepter": C.done_mac(fin.k_done_accepter, fin.th2).hex(),
        "done_inviter": C.done_mac(fin.k_done_inviter, fin.th2).hex(),
        "uri_key_commitment": C.inviter_key_commitment(pub_i).hex(),
    }  # fmt: skip


def _open_identity(params: Json, inp: Json) -> Json:
    opened = C.open_identity(
        _hex(inp, "key"), _hex(inp, "TH"), _hex(inp, "ciphertext"), C.Role(_str(inp, "sender"))
    )
    return {"identity": opened.public_key.hex(), "nonce": opened.nonce.hex()}


def _decode(params: Json, inp: Json) -> Json:
    """Decode one pairing frame (framing checks first, then the p4-02 §6 body schema)."""
    frame: Frame = decode_frame(_hex(inp, "frame"), Path.TOR)
    msg = decode_message(frame)  # UNEXPECTED_MESSAGE for a type that is not a pairing message
    name = FrameType(frame.type).name
    if isinstance(msg, PairPake):
        return {"type": name, "version": msg.version, "element": msg.element.hex()}
    if isinstance(msg, PairIdentity):
        return {"type": name, "ciphertext": msg.ciphertext.hex()}
    if isinstance(msg, PairConfirm) and msg.commitment is not None:
        return {"type": name, "mac": msg.mac.hex(), "commitment": msg.commitment.hex()}
    assert isinstance(msg, PairConfirm | PairDone)
    return {"type": name, "mac": msg.mac.hex()}


def vectors_ops() -> dict[str, Op]:
    return {
        "pairing.parse_code": _parse_code,
        "pairing.parse_uri": _parse_uri,
        "pairing.spake2": _spake2,
        "pairing.key_schedule": _key_schedule,
        "pairing.kdf": _kdf,
        "pairing.open_identity": _open_identity,
        "pairing.decode": _decode,
    }
