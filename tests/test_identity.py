"""Identity key and device-ID text form (p4-02 §3.1-§3.3)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4ref.adapter.identity import vectors_ops
from p4ref.errors import DecodeError, ErrorCode, LocalProtocolError, P4Error, RemoteProtocolError
from p4ref.identity import (
    ALPHABET,
    Identity,
    check_public_key,
    device_id,
    generate_identity,
    luhn32_check_char,
    parse_device_id,
    verify,
)
from tools.vectors.identity import EXAMPLE_ID, RFC8032, build

PUB1 = bytes.fromhex(RFC8032[0][2])


# --- independent reference: Luhn mod N as a validator (Wikipedia "Luhn mod N algorithm") ----


def _luhn32_valid(chunk: str) -> bool:
    """Validation form: factor 1 on the rightmost (check) character, then 2, 1, …"""
    factor, total = 1, 0
    for ch in reversed(chunk):
        addend = factor * ALPHABET.index(ch)
        total += addend // 32 + addend % 32
        factor = 3 - factor
    return total % 32 == 0


def _compact(text: str) -> str:
    return text.replace("-", "")


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "seed", "pub", "msg", "sig"), RFC8032, ids=[v[0] for v in RFC8032]
)
def test_rfc8032_vectors(name: str, seed: str, pub: str, msg: str, sig: str) -> None:
    """IDN-1, IDN-2."""
    ident = Identity(bytes.fromhex(seed))
    assert ident.public_key.hex() == pub
    assert ident.sign(bytes.fromhex(msg)).hex() == sig
    verify(bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig))


def test_identity_hides_seed_and_is_frozen() -> None:
    ident = Identity(bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(ident)
    with pytest.raises(AttributeError):
        ident.seed = bytes(32)  # type: ignore[misc]
    assert ident == Identity(bytes(range(32)))


def test_generate_identity_uses_injected_rng() -> None:
    calls: list[int] = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return bytes.fromhex(RFC8032[0][1])

    assert generate_identity(rng).public_key == PUB1
    assert calls == [32]
    with pytest.raises(LocalProtocolError) as e:
        generate_identity(lambda n: bytes(n - 1))
    assert e.value.code is ErrorCode.IDENTITY_KEY_INVALID


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_seed_length(n: int) -> None:
    with pytest.raises(LocalProtocolError) as e:
        Identity(bytes(n))
    assert e.value.code is ErrorCode.IDENTITY_KEY_INVALID


def test_verify_errors() -> None:
    ident = Identity(bytes(32))
    sig = ident.sign(b"hello")
    verify(ident.public_key, b"hello", sig)
    for pub, msg, s, code in [
        (ident.public_key, b"hellO", sig, ErrorCode.SIGNATURE_INVALID),
        (ident.public_key, b"hello", sig[:63], ErrorCode.SIGNATURE_INVALID),
        (ident.public_key, b"hello", bytes(64), ErrorCode.SIGNATURE_INVALID),
        (ident.public_key[:31], b"hello", sig, ErrorCode.IDENTITY_KEY_INVALID),
        (PUB1, b"hello", sig, ErrorCode.SIGNATURE_INVALID),
    ]:
        with pytest.raises(RemoteProtocolError) as e:
            verify(pub, msg, s)
        assert e.value.code is code


# --- Ed25519 edge cases (p4-02 §3.1.1) ------------------------------------------------------


def _edge_tests() -> list[dict[str, Any]]:
    keys = build()["identity/keys.json"]
    (grp,) = [g for g in keys["testGroups"] if g["op"] == "identity.verify"]
    return [t for t in grp["tests"] if t["flags"] or t["id"].startswith("idn-verify-edge")]


@pytest.mark.parametrize("case", _edge_tests(), ids=lambda t: str(t["id"]))
def test_edge_verdicts_match_libsodium(case: dict[str, Any]) -> None:
    """IDN-2, IDN-27, IDN-28: the spec's verdict at each edge is libsodium's accept/refuse.

    PyNaCl's VerifyKey is libsodium's crypto_sign_ed25519_verify_detached (released branches:
    S < L, A canonical and not of small order, R not of small order, [S]B - [k]A encoded and
    compared with R byte for byte). p4ref only adds the key checks up front, for the error code.
    """
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    inp = case["input"]
    pub, msg, sig = (bytes.fromhex(inp[k]) for k in ("public_key", "message", "signature"))
    try:
        VerifyKey(pub).verify(msg, sig)
        sodium_accepts = True
    except (BadSignatureError, ValueError):
        sodium_accepts = False
    assert sodium_accepts == (case["result"] == "valid")


def test_small_order_key_is_identity_key_invalid() -> None:
    """IDN-27, IDN-28: a key of small order is refused as a key, before the signature; with
    S = r the equation [S]B = R + [k]0 holds, so only the key check can refuse it."""
    from tools.vectors.identity import BASE, _enc, _mul

    r = 12345
    sig = _enc(_mul(r, BASE)) + r.to_bytes(32, "little")
    for key in (
        (1).to_bytes(32, "little"),  # the neutral element
        bytes(32),  # order 4
        (1 | 1 << 255).to_bytes(32, "little"),  # "-0"
        (2**255 - 18).to_bytes(32, "little"),  # y = p + 1: the neutral element again
    ):
        with pytest.raises(RemoteProtocolError) as e:
            verify(key, b"m", sig)
        assert e.value.code is ErrorCode.IDENTITY_KEY_INVALID
        with pytest.raises(RemoteProtocolError) as e:
            verify(key, b"m", sig[:63])  # the key is checked before the signature's length
        assert e.value.code is ErrorCode.IDENTITY_KEY_INVALID


@given(st.binary(min_size=32, max_size=32))
def test_check_public_key_agrees_with_strict_decoding(pub: bytes) -> None:
    """IDN-27 against an independent decoder (RFC 8032 §5.1.3 plus [8]A != 0)."""
    from tools.vectors.identity import ZERO, _dec, _mul

    pt = _dec(pub)
    expect_ok = pt is not None and _mul(8, pt) != ZERO
    try:
        check_public_key(pub)
        ok = True
    except RemoteProtocolError as e:
        assert e.code is ErrorCode.IDENTITY_KEY_INVALID
        ok = False
    assert ok == expect_ok


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 63),
    st.integers(0, 255),
    st.sampled_from(["key", "sig", "msg", "none"]),
    st.binary(min_size=0, max_size=8),
)
def test_verify_matches_spec_text(pos: int, xor: int, where: str, msg: bytes) -> None:
    """IDN-28: on mutated keys and signatures the reference answers exactly what the steps of
    p4-02 §3.1.1, implemented independently in the vector builder, answer."""
    from tools.vectors.identity import _spec_verify

    ident = Identity(bytes(32))
    pub, sig = bytearray(ident.public_key), bytearray(ident.sign(msg))
    if where == "key":
        pub[pos % 32] ^= xor
    elif where == "sig":
        sig[pos] ^= xor
    elif where == "msg":
        msg = msg + bytes([xor])
    want = _spec_verify(bytes(pub), msg, bytes(sig))
    try:
        verify(bytes(pub), msg, bytes(sig))
        got = None
    except RemoteProtocolError as e:
        got = e.code.name
    assert got == want


def test_real_keys_pass_check_public_key() -> None:
    for i in range(50):
        check_public_key(Identity(bytes([i]) * 32).public_key)


# --- device ID: format -----------------------------------------------------------------------


def test_worked_example() -> None:
    """p4-02 §3.2 worked example, step by step."""
    import base64

    b32 = base64.b32encode(PUB1).decode().rstrip("=")
    assert b32 == "25NJQAMCWEFLPVKL73J4SZAHHIHOC4XT3KTCGJNPAINGR5YHKENA"
    groups = [b32[i : i + 13] for i in range(0, 52, 13)]
    assert [luhn32_check_char(g) for g in groups] == ["M", "T", "J", "I"]
    assert device_id(PUB1) == EXAMPLE_ID
    assert parse_device_id(EXAMPLE_ID) == PUB1


@given(st.binary(min_size=32, max_size=32))
def test_roundtrip_and_shape(pub: bytes) -> None:
    text = device_id(pub)
    assert len(text) == 63
    assert [len(g) for g in text.split("-")] == [7] * 8
    compact = _compact(text)
    assert set(compact) <= set(ALPHABET)
    assert all(_luhn32_valid(compact[i : i + 14]) for i in range(0, 56, 14))
    assert parse_device_id(text) == pub
    assert parse_device_id(compact.lower()) == pub
    assert parse_device_id(" ".join(compact)) == pub


@pytest.mark.parametrize("n", [0, 31, 33])
def test_encode_wrong_length(n: int) -> None:
    with pytest.raises(LocalProtocolError) as e:
        device_id(bytes(n))
    assert e.value.code is ErrorCode.IDENTITY_KEY_INVALID


@pytest.mark.parametrize(
    "text",
    ["", "A" * 55, "A" * 57, EXAMPLE_ID.replace("-", "_"), EXAMPLE_ID + "\n", EXAMPLE_ID + "="],
)
def test_malformed(text: str) -> None:
    with pytest.raises(DecodeError) as e:
        parse_device_id(text)
    assert e.value.code is ErrorCode.DEVICE_ID_MALFORMED


@pytest.mark.parametrize("bad", ["0", "1", "8", "9", "=", "\u0131", "\u017f", "\uff21", "é"])
def test_lookalikes_and_unicode_rejected(bad: str) -> None:
    """IDN-9, IDN-11: 0/1/8/9 and non-ASCII letters are rejected (never mapped/upper-cased)."""
    compact = _compact(EXAMPLE_ID)
    for pos in (0, 20, 55):
        with pytest.raises(DecodeError) as e:
            parse_device_id(compact[:pos] + bad + compact[pos + 1 :])
        assert e.value.code is ErrorCode.DEVICE_ID_MALFORMED


def test_lookalike_hint_in_message() -> None:
    compact = _compact(EXAMPLE_ID)
    pos = compact.index("O")
    with pytest.raises(DecodeError, match="did you mean 'O'"):
        parse_device_id(compact[:pos] + "0" + compact[pos + 1 :])


def test_nonzero_padding_bits() -> None:
    data = "".join(_compact(EXAMPLE_ID)[i : i + 13] for i in range(0, 56, 14))
    for last in ALPHABET:
        bad = data[:51] + last
        text = "".join(
            bad[i : i + 13] + luhn32_check_char(bad[i : i + 13]) for i in range(0, 52, 13)
        )
        if ALPHABET.index(last) & 0xF:
            with pytest.raises(DecodeError) as e:
                parse_device_id(text)
            assert e.value.code is ErrorCode.DEVICE_ID_MALFORMED
        else:
            assert parse_device_id(text)[:31] == PUB1[:31]


# --- device ID: error detection --------------------------------------------------------------


def test_every_single_substitution_is_detected() -> None:
    """Exhaustive over one ID: 56 positions × 31 other alphabet characters, all rejected."""
    compact = _compact(EXAMPLE_ID)
    n = 0
    for pos, orig in enumerate(compact):
        for ch in ALPHABET:
            if ch == orig:
                continue
            with pytest.raises(DecodeError) as e:
                parse_device_id(compact[:pos] + ch + compact[pos + 1 :])
            assert e.value.code is ErrorCode.DEVICE_ID_CHECK_FAILED
            n += 1
    assert n == 56 * 31


def test_single_substitution_detected_for_random_ids() -> None:
    rnd = random.Random(1)
    for _ in range(50):
        compact = _compact(device_id(rnd.randbytes(32)))
        for pos in range(56):
            for ch in ALPHABET:
                if ch != compact[pos]:
                    with pytest.raises(DecodeError):
                        parse_device_id(compact[:pos] + ch + compact[pos + 1 :])


def test_adjacent_transposition_blind_spot_is_exactly_a7() -> None:
    """Inside a 14-character group, a swap of x and y goes undetected iff {x, y} = {A, 7}."""
    data = [c for i, c in enumerate(_compact(EXAMPLE_ID)) if i % 14 != 13][:13]
    undetected: set[frozenset[str]] = set()
    for pos in range(13):  # pairs (pos, pos+1); pos 12 swaps the last data and the check char
        for x in ALPHABET:
            for y in ALPHABET:
                if x == y or (pos == 12 and y != luhn32_check_char("".join(data[:12]) + x)):
                    continue
                g = list(data)
                g[pos] = x
                if pos < 12:
                    g[pos + 1] = y
                check = luhn32_check_char("".join(g))
                chunk = [*g, check]
                chunk[pos], chunk[pos + 1] = chunk[pos + 1], chunk[pos]
                if _luhn32_valid("".join(chunk)):
                    undetected.add(frozenset((x, y)))
    assert undetected == {frozenset("A7")}


def transposition_detection_rate(n_ids: int = 2000, seed: int = 7) -> tuple[int, int]:
    """(detected, total) over every adjacent swap of two *different* characters in
    ``n_ids`` random device IDs (55 swaps each, separators ignored)."""
    rnd = random.Random(seed)
    detected = total = 0
    for _ in range(n_ids):
        pub = rnd.randbytes(32)
        compact = _compact(device_id(pub))
        for i in range(55):
            if compact[i] == compact[i + 1]:
                continue
            total += 1
            swapped = compact[:i] + compact[i + 1] + compact[i] + compact[i + 2 :]
            try:
                got = parse_device_id(swapped)
            except DecodeError:
                detected += 1
            else:
                assert got != pub
                assert {compact[i], compact[i + 1]} == {"A", "7"}
                assert i % 14 != 13  # never across a group boundary
    return detected, total


def test_adjacent_transposition_rate() -> None:
    detected, total = transposition_detection_rate()
    rate = detected / total
    print(f"\nadjacent transpositions detected: {detected}/{total} = {rate:.4%}")
    assert rate > 0.995


# --- adapter + vectors -----------------------------------------------------------------------


def _run(op: str, params: dict[str, Any], inp: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", vectors_ops()[op](params, inp)
    except P4Error as e:
        return "error", e.code.name


def test_vectors_through_adapter() -> None:
    files = build()
    assert set(files) == {"identity/device_id.json", "identity/keys.json"}
    n = 0
    for env in files.values():
        for grp in env["testGroups"]:
            for t in grp["tests"]:
                status, got = _run(grp["op"], grp["params"], t["input"])
                if t["result"] == "invalid":
                    assert (status, got) == ("error", t["expect"]["error"]), t["id"]
                else:
                    assert (status, got) == ("ok", t["expect"]["value"]), t["id"]
                assert all(tag.startswith("IDN-") for tag in t["req"])
                n += 1
    assert n >= 50


def test_equality_is_by_parsed_key() -> None:
    """IDN-14: different spellings of one ID are the same device."""
    spellings = [EXAMPLE_ID, EXAMPLE_ID.lower(), _compact(EXAMPLE_ID), " ".join(EXAMPLE_ID)]
    assert {parse_device_id(s) for s in spellings} == {PUB1}


def test_adapter_ops_names() -> None:
    assert sorted(vectors_ops()) == [
        "identity.device_id_decode",
        "identity.device_id_encode",
        "identity.keypair",
        "identity.sign",
        "identity.verify",
    ]


def test_adapter_bad_hex_is_typed() -> None:
    status, got = _run("identity.keypair", {}, {"seed": "zz"})
    assert (status, got) == ("error", "MESSAGE_INVALID")
