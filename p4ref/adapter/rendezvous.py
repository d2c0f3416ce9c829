"""Reference-adapter ops for the rendezvous layer (p4-03); pure.

Everything here is the p4-03 section "Test-vector interface" (§14) turned into code: the ops
``rendezvous.derive``, ``rendezvous.sign``, ``rendezvous.decode``, ``rendezvous.verify`` and
``rendezvous.parse_onion``, and the ``rendezvous`` machine (roles ``dialer`` / ``acceptor``;
config keys ``identity_seed``, ``peer_pub``, ``last_generation``, ``incarnation``,
``peer_incarnation``, ``peer_generation``; commands ``start``, ``send_offer``,
``send_answer``, ``send_bye``; events ``PEER_AUTHENTICATED``, ``PEER_RESET``,
``OFFER_RECEIVED``, ``ANSWER_RECEIVED``, ``BYE``, ``RENDEZVOUS_FAILED``).

``machine.step`` output (conformance/README.md §3.4, RULES decisions 3–4): the frames the machine
queued, in order, as ``{"send": hex}``, then its events, then, in the step in which it failed,
``{"error": CODE}`` with the code of its ``RENDEZVOUS_FAILED`` event.  A command the machine
refuses without failing (wrong state, stale generation, bad argument) is not an output: the whole
step request is answered with that error.
"""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from ..errors import DecodeError, ErrorCode, LocalProtocolError
from ..framing import FrameType, Path, decode_frame, encode_frame
from ..rendezvous import _codec as codec
from ..rendezvous._derive import derive_epoch_keys, epochs_to_accept, role_of
from ..rendezvous._events import (
    AnswerReceived,
    Bye,
    Event,
    OfferReceived,
    PeerAuthenticated,
    PeerReset,
    RendezvousFailed,
)
from ..rendezvous._machine import NonceCache, RendezvousMachine, check_received
from ..rendezvous._onion import parse_onion_address
from ._jsonargs import Json, ListRng, Op, run_listed_op
from ._jsonargs import hex_arg as _hex
from ._jsonargs import int_arg as _int
from ._jsonargs import str_arg as _str

__all__ = ["MACHINE", "code_name", "event_json", "new", "step", "vectors_ops"]

MACHINE = "rendezvous"
CONFIG_KEYS = frozenset({"identity_seed", "peer_pub", "last_generation", "incarnation",
                         "peer_incarnation", "peer_generation"})
_U64_MAX = (1 << 64) - 1


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04x}"


def _code(value: object) -> int:
    if isinstance(value, str) and value in ErrorCode.__members__:
        return int(ErrorCode[value])
    raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"not an error code name: {value!r}")


def new(role: str, config: Json, rng: list[bytes]) -> RendezvousMachine:
    if role not in ("dialer", "acceptor"):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"role {role!r}")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown config {sorted(unknown)}")
    # p4-03 §14.2 [RDV-58]: every shape problem (MESSAGE_INVALID) before the keys (RDV_KEY_INVALID)
    seed, peer = _hex(config, "identity_seed"), _hex(config, "peer_pub")
    last_generation = _int(config, "last_generation", 0)
    incarnation = _hex(config, "incarnation") if "incarnation" in config else bytes(16)
    peer_inc = _hex(config, "peer_incarnation") if "peer_incarnation" in config else None
    peer_generation = _int(config, "peer_generation", 0)
    for name, value in (("last_generation", last_generation), ("peer_generation", peer_generation)):
        if not 0 <= value <= _U64_MAX:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{name} is 0 … 2^64-1")
    for name, inc in (("incarnation", incarnation), ("peer_incarnation", peer_inc)):
        if inc is not None and len(inc) != 16:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{name} is 16 bytes")
    return RendezvousMachine(seed, peer, dialer=role == "dialer", rng=ListRng(rng),
                             last_generation=last_generation, incarnation=incarnation,
                             peer_incarnation=peer_inc, peer_generation=peer_generation)


def event_json(ev: Event) -> Json:
    if isinstance(ev, PeerAuthenticated):
        return {
            "event": "PEER_AUTHENTICATED",
            "peer_pub": ev.peer_pub.hex(),
            "epoch": ev.epoch,
            "role": ev.my_role.value,
            "peer_generation": ev.peer_generation,
            "peer_incarnation": ev.peer_incarnation.hex(),
        }
    if isinstance(ev, PeerReset):
        return {"event": "PEER_RESET", "cause": ev.cause}
    if isinstance(ev, OfferReceived | AnswerReceived):
        out: Json = {
            "event": "OFFER_RECEIVED" if isinstance(ev, OfferReceived) else "ANSWER_RECEIVED",
            "generation": ev.generation,
            "sdp": ev.sdp,
            "fingerprint": ev.fingerprint.hex(),
            "last_rx": ev.last_rx,
        }
        if isinstance(ev, OfferReceived):
            out["glare"] = ev.glare
        return out
    if isinstance(ev, Bye):
        return {"event": "BYE", "code": code_name(ev.reason)}
    assert isinstance(ev, RendezvousFailed)
    return {"event": "RENDEZVOUS_FAILED", "code": code_name(ev.code), "by_peer": ev.by_peer}


def step(m: RendezvousMachine, now_ms: int, inp: Json) -> Json:
    """One step; a refused command raises (the step request answers ``error``, decision 4)."""
    if "recv" in inp:
        m.receive_data(_hex(inp, "recv"), now_ms)
    elif inp.get("tick") is True:
        m.handle_timer(now_ms)
    else:
        cmd = inp.get("cmd")
        if cmd == "start":
            m.start(now_ms)
        elif cmd == "send_offer":
            m.send_offer(
                _str(inp, "sdp"), _hex(inp, "fingerprint"), _int(inp, "generation"),
                _int(inp, "last_rx"), now_ms,
            )
        elif cmd == "send_answer":
            m.send_answer(_str(inp, "sdp"), _hex(inp, "fingerprint"), _int(inp, "last_rx"), now_ms)
        elif cmd == "send_bye":
            m.send_bye(_code(inp.get("reason", "NO_ERROR")), now_ms)
        else:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown step {inp!r}")
    out: list[Json] = [{"send": encode_frame(f, Path.TOR).hex()} for f in m.frames_to_send()]
    failed: int | None = None
    while (ev := m.next_event()) is not None:
        out.append(event_json(ev))
        if isinstance(ev, RendezvousFailed):
            failed = ev.code
    if failed is not None:
        out.append({"error": code_name(failed)})
    return {"out": out, "state": m.state.value}


# ------------------------------------------------------------------------- codec / crypto ops

_MESSAGE_INTS = ("epoch", "timestamp_ms", "generation", "last_rx", "reason")
_MESSAGE_HEX = ("nonce", "sender_pub", "recipient_pub", "echo", "fingerprint", "offer_nonce",
                "stream_nonce", "incarnation", "signature")


def _message_arg(inp: Json) -> codec.Message:
    """The ``message`` object of ``rendezvous.sign``: ``type`` plus the §6.2 field names."""
    raw = inp.get("message")
    if not isinstance(raw, dict):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "message must be an object")
    unknown = set(raw) - {"type", "sdp", *_MESSAGE_INTS, *_MESSAGE_HEX}
    if unknown:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown fields {sorted(unknown)}")
    d: dict[str, Any] = {"type": _str(raw, "type")}
    if d["type"] in ("RV_OFFER", "RV_ANSWER", "RV_BYE") and "stream_nonce" not in raw:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "stream_nonce is required (§6.2)")
    if d["type"] == "RV_HELLO" and not {"generation", "incarnation"} <= set(raw):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "generation and incarnation (§6.2)")
    for key in raw:
        if key in _MESSAGE_INTS:
            d[key] = _int(raw, key)
        elif key in _MESSAGE_HEX:
            d[key] = _hex(raw, key).hex()
        elif key == "sdp":
            d[key] = _str(raw, key)
    return codec.message_from_json(d)


def _derive(params: Json, inp: Json) -> Json:
    """{pair_root_key, my_pub, peer_pub, epoch} -> every derived value (§5); onion addresses are
    the 56-character label without ``.onion``."""
    k = derive_epoch_keys(
        _hex(inp, "pair_root_key"), _hex(inp, "my_pub"), _hex(inp, "peer_pub"), _int(inp, "epoch")
    )
    return {
        "my_role": k.my_role.value,
        "my_onion_seed": k.my_onion_seed.hex(),
        "peer_onion_seed": k.peer_onion_seed.hex(),
        "my_expanded_secret_key": k.my_expanded_secret_key.hex(),
        "my_onion_address": k.my_onion_address,
        "peer_onion_address": k.peer_onion_address,
        "my_client_auth_priv": k.my_client_auth_priv.hex(),
        "my_client_auth_pub": k.my_client_auth_pub.hex(),
        "peer_client_auth_pub": k.peer_client_auth_pub.hex(),
    }


def _sign(params: Json, inp: Json) -> Json:
    """{identity_seed, recipient_pub, message: {type, fields…}} -> {signature_input, frame}."""
    seed = _hex(inp, "identity_seed")
    if len(seed) != 32:
        raise LocalProtocolError(ErrorCode.RDV_KEY_INVALID, "identity_seed is 32 bytes")
    key = SigningKey(seed)
    recipient = _hex(inp, "recipient_pub")
    role_of(bytes(key.verify_key), recipient)  # RDV_KEY_INVALID on equal/short keys
    signed = codec.sign_message(_message_arg(inp), key, recipient)
    frame = codec.encode_message(signed)
    unsigned = codec.unsigned_body(signed)
    sig_input = codec.signature_input(
        FrameType(frame.type), unsigned, bytes(key.verify_key), recipient
    )
    return {"signature_input": sig_input.hex(), "frame": encode_frame(frame, Path.TOR).hex()}


def _decode(params: Json, inp: Json) -> Json:
    """{frame} -> {message}: framing decode on the tor path, then the body schema (§6)."""
    frame = decode_frame(_hex(inp, "frame"), Path.TOR)
    if frame.ignorable:
        raise DecodeError(ErrorCode.UNEXPECTED_MESSAGE, "ignorable frame")
    return {"message": codec.message_json(codec.decode_message(frame))}


def _verify(params: Json, inp: Json) -> Json:
    """{frame, sender_pub, recipient_pub, now, seen?, hello_nonce?, last_generation?} ->
    {message}: §8.1 steps 1–8 as a receiver whose replay cache holds ``seen``, whose own HELLO
    nonce on the stream is ``hello_nonce`` and whose ``G`` is ``last_generation`` (no glare in
    this stateless op: an OFFER must exceed it, an ANSWER must not be below it)."""
    frame = decode_frame(_hex(inp, "frame"), Path.TOR)
    msg = codec.decode_message(frame)
    now = _int(inp, "now")
    cache = NonceCache()
    window = epochs_to_accept(now // 1000)
    seen = inp.get("seen", [])
    if not isinstance(seen, list) or not all(isinstance(i, dict) for i in seen):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "seen is a list of objects")
    for item in seen:
        cache.add(_int(item, "epoch"), _hex(item, "nonce"), window)
    check_received(msg, _hex(inp, "sender_pub"), _hex(inp, "recipient_pub"), now, cache)
    if "hello_nonce" in inp:
        mine = _hex(inp, "hello_nonce")
        bound = msg.echo if isinstance(msg, codec.Hello) else msg.stream_nonce
        if bound is not None and bound != mine:
            raise DecodeError(ErrorCode.RDV_REPLAY, "not bound to this stream")
    if "last_generation" in inp and isinstance(msg, codec.Offer | codec.Answer):
        current = _int(inp, "last_generation")
        if msg.generation < current or (
            isinstance(msg, codec.Offer) and msg.generation == current
        ):
            raise DecodeError(ErrorCode.RDV_STALE_GENERATION, f"generation {msg.generation}")
    return {"message": codec.message_json(msg)}


def _parse_onion(params: Json, inp: Json) -> Json:
    """{address} -> {public_key}: a v3 onion address, with or without ``.onion`` (§5.4)."""
    return {"public_key": parse_onion_address(_str(inp, "address")).hex()}


def vectors_ops() -> dict[str, Op]:
    return {
        "rendezvous.derive": _derive,
        "rendezvous.sign": _sign,
        "rendezvous.verify": _verify,
        "rendezvous.decode": _decode,
        "rendezvous.parse_onion": _parse_onion,
    }


def run_op(op: str, params: Json, inp: Json) -> Json:
    """Helper for tests and the vector builder: ``{"value": …}`` or ``{"error": NAME}``."""
    return run_listed_op(vectors_ops(), op, params, inp)
