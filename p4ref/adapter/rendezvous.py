"""Reference-adapter ops for the rendezvous layer (p4-03); pure.

Machine transcripts (group op ``machine.transcript``, params ``{machine: "rendezvous", role,
config}``):

- ``role``: ``"dialer"`` or ``"acceptor"`` (LOW/HIGH follow from the keys);
- ``config``: ``{identity_seed: hex, peer_pub: hex, generation?: int}``;
- ``rng``: the 16-byte nonces (and 2-byte jitter values) the machine draws, in order;
- step input: ``{"recv": frame hex}`` | ``{"tick": true}`` | ``{"cmd": "start"}`` |
  ``{"cmd": "offer", sdp, fingerprint, generation, last_rx}`` |
  ``{"cmd": "answer", sdp, fingerprint, last_rx}`` | ``{"cmd": "bye", reason: NAME}``;
- step input ``{"recv": ""}`` is end of stream (EOF);
- step output: ``{"out": [...], "state": NAME}``; ``out`` lists a refused local call as
  ``{"error": NAME}``, then the frames the machine queued, in order, as ``{"send": hex}``, then
  events as ``{"event": NAME, ...}``.

Codec/crypto ops (``vectors_ops``): ``rendezvous.derive``, ``rendezvous.sign``,
``rendezvous.verify``, ``rendezvous.decode`` (see each function).
"""

from __future__ import annotations

from nacl.signing import SigningKey

from ..errors import DecodeError, ErrorCode, LocalProtocolError, P4Error
from ..framing import FrameType, Path, decode_frame, encode_frame
from ..rendezvous import _codec as codec
from ..rendezvous._derive import derive_epoch_keys, epochs_to_accept, role_of
from ..rendezvous._events import (
    AnswerReceived,
    Bye,
    Event,
    OfferReceived,
    PeerAuthenticated,
    RendezvousFailed,
)
from ..rendezvous._machine import NonceCache, RendezvousMachine, check_received
from ._jsonargs import Json, Op, int_value
from ._jsonargs import hex_arg as _hex
from ._jsonargs import int_arg as _int
from ._jsonargs import str_arg as _str

__all__ = ["MACHINE", "code_name", "event_json", "new", "step", "vectors_ops"]

MACHINE = "rendezvous"


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04x}"


def _code(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ErrorCode.__members__:
        return int(ErrorCode[value])
    raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"not an error code: {value!r}")


class _ListRng:
    """The machine's randomness replayed from the vector's ``rng`` list."""

    __slots__ = ("_values",)

    def __init__(self, values: list[bytes]) -> None:
        self._values = list(values)

    def __call__(self, n: int) -> bytes:
        if not self._values:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "transcript rng exhausted")
        v = self._values.pop(0)
        if len(v) != n:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, f"rng value has {len(v)} != {n}")
        return v


def new(role: str, config: Json, rng: list[bytes]) -> RendezvousMachine:
    if role not in ("dialer", "acceptor"):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"role {role!r}")
    return RendezvousMachine(
        _hex(config, "identity_seed"),
        _hex(config, "peer_pub"),
        dialer=role == "dialer",
        rng=_ListRng(rng),
        generation=_int(config, "generation", 0),
    )


def event_json(ev: Event) -> Json:
    if isinstance(ev, PeerAuthenticated):
        return {
            "event": "PEER_AUTHENTICATED",
            "peer_pub": ev.peer_pub.hex(),
            "epoch": ev.epoch,
            "role": ev.my_role.value,
        }
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
        return {"event": "BYE", "reason": code_name(ev.reason)}
    assert isinstance(ev, RendezvousFailed)
    return {"event": "RENDEZVOUS_FAILED", "code": code_name(ev.code), "by_peer": ev.by_peer}


def step(m: RendezvousMachine, now_ms: int, inp: Json) -> Json:
    out: list[Json] = []
    try:
        if "recv" in inp:
            m.receive_data(_hex(inp, "recv"), now_ms)
        elif inp.get("tick"):
            m.handle_timer(now_ms)
        else:
            cmd = inp.get("cmd")
            if cmd == "start":
                m.start(now_ms)
            elif cmd == "offer":
                m.send_offer(
                    _str(inp, "sdp"), _hex(inp, "fingerprint"), _int(inp, "generation"),
                    _int(inp, "last_rx"), now_ms,
                )
            elif cmd == "answer":
                m.send_answer(
                    _str(inp, "sdp"), _hex(inp, "fingerprint"), _int(inp, "last_rx"), now_ms
                )
            elif cmd == "bye":
                m.send_bye(_code(inp.get("reason", "NO_ERROR")), now_ms)
            else:
                raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"unknown step {inp!r}")
    except LocalProtocolError as exc:
        out.append({"error": exc.code.name})
    out.extend({"send": encode_frame(f, Path.TOR).hex()} for f in m.frames_to_send())
    while (ev := m.next_event()) is not None:
        out.append(event_json(ev))
    return {"out": out, "state": m.state.value}


# ------------------------------------------------------------------------- codec / crypto ops


def _derive(params: Json, inp: Json) -> Json:
    """{pair_root_key, my_pub, peer_pub, epoch} -> every derived value (§5)."""
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
    raw = inp.get("message")
    if not isinstance(raw, dict):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "message must be an object")
    # integers beyond 2^53 - 1 arrive in the lossless {"int": "<decimal>"} form
    raw = {k: int_value(v, k) if isinstance(v, dict) else v for k, v in raw.items()}
    signed = codec.sign_message(codec.message_from_json(raw), key, recipient)
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
    """{frame, sender_pub, recipient_pub, now, seen?: [{epoch, nonce}], generation?} -> {message}.

    Applies §8.1 steps 1–7 as a receiver whose replay cache holds ``seen`` and whose highest
    generation is ``generation``: an OFFER must exceed it (no glare in this stateless op)."""
    frame = decode_frame(_hex(inp, "frame"), Path.TOR)
    msg = codec.decode_message(frame)
    now = _int(inp, "now")
    cache = NonceCache()
    window = epochs_to_accept(now // 1000)
    for item in inp.get("seen", []):
        cache.add(_int(item, "epoch"), _hex(item, "nonce"), window)
    check_received(msg, _hex(inp, "sender_pub"), _hex(inp, "recipient_pub"), now, cache)
    if "generation" in inp and isinstance(msg, codec.Offer | codec.Answer):
        current = _int(inp, "generation")
        if msg.generation < current or (
            isinstance(msg, codec.Offer) and msg.generation == current
        ):
            raise DecodeError(ErrorCode.RDV_STALE_GENERATION, f"generation {msg.generation}")
    return {"message": codec.message_json(msg)}


def vectors_ops() -> dict[str, Op]:
    return {
        "rendezvous.derive": _derive,
        "rendezvous.sign": _sign,
        "rendezvous.verify": _verify,
        "rendezvous.decode": _decode,
    }


def run_op(op: str, params: Json, inp: Json) -> Json:
    """Helper for tests: ``{"value": …}`` or ``{"error": NAME}``."""
    try:
        return {"value": vectors_ops()[op](params, inp)}
    except P4Error as exc:
        return {"error": exc.code.name}
