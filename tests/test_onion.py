"""v3 onion encodings (p4ref.rendezvous._onion) against tor's own and RFC test vectors."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from p4ref.errors import DecodeError, ErrorCode
from p4ref.rendezvous._onion import (
    client_auth_keypair,
    client_auth_private_b64,
    client_auth_public_b32,
    expanded_secret_key,
    onion_address,
    onion_address_from_seed,
    parse_onion_address,
    tor_key_blob,
)

# tor src/test/test_hs_common.c, test_build_address (pubkey from hs_build_address.py, which is
# the first Ed25519 vector of draft-josefsson-eddsa-ed25519 = RFC 8032 §7.1 TEST 1).
TOR_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
TOR_ADDR = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid"
# RFC 8032 §7.1 TEST 1 secret key (seed) whose public key is TOR_PUB.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
# older tor test_build_address: a key of 32 bytes 0x42.
TOR_ADDR_42 = "ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbezhid"
# tor test_validate_address: one valid address and two with an invalid checksum.
TOR_VALID = "p3xnclpu4mu22dwaurjtsybyqk4xfjmcfz6z62yl24uwmhjatiwnlnad"
TOR_BAD_CHECKSUM = [
    "l5satjgud6gucryazcyvyvhuxhr74u6ygigiuyixe3a6ysis67ororad",
    "btojiu7nu5y5iwut64eufevogqdw4wmqzugnoluw232r4t3ecsfv37ad",
]
# RFC 7748 §6.1: Alice's X25519 private and public keys.
X25519_PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
X25519_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")

keys32 = st.binary(min_size=32, max_size=32)


def test_tor_vector_build_address() -> None:
    assert onion_address(TOR_PUB) == TOR_ADDR
    assert onion_address(b"\x42" * 32) == TOR_ADDR_42


def test_seed_to_address_rfc8032_chain() -> None:
    assert onion_address_from_seed(RFC8032_SEED) == TOR_ADDR


def test_tor_vector_validate_address() -> None:
    assert onion_address(parse_onion_address(TOR_VALID)) == TOR_VALID
    for bad in TOR_BAD_CHECKSUM:
        with pytest.raises(DecodeError) as ei:
            parse_onion_address(bad)
        assert ei.value.code == ErrorCode.ONION_ADDRESS_INVALID
        assert "checksum" in ei.value.message


def test_parse_accepts_suffix_and_case() -> None:
    assert parse_onion_address(TOR_ADDR) == TOR_PUB
    assert parse_onion_address(TOR_ADDR + ".onion") == TOR_PUB
    assert parse_onion_address(TOR_ADDR.upper() + ".ONION") == TOR_PUB


@given(keys32)
def test_round_trip(pub: bytes) -> None:
    addr = onion_address(pub)
    assert len(addr) == 56 and addr == addr.lower() and addr.endswith("d")
    assert parse_onion_address(addr) == pub


@pytest.mark.parametrize("pos", range(56))
def test_any_single_char_tamper_rejected(pos: int) -> None:
    c = TOR_ADDR[pos]
    swapped = "a" if c != "a" else "b"
    bad = TOR_ADDR[:pos] + swapped + TOR_ADDR[pos + 1 :]
    with pytest.raises(DecodeError) as ei:
        parse_onion_address(bad)
    assert ei.value.code == ErrorCode.ONION_ADDRESS_INVALID


def test_version_and_shape_rejected() -> None:
    raw = bytearray(base64.b32decode(TOR_ADDR.upper()))
    raw[34] = 4  # version 4 (checksum recomputed over version 3 stays as is → also mismatch)
    cases = [
        base64.b32encode(bytes(raw)).decode().lower(),
        TOR_ADDR[:-1],
        TOR_ADDR + "a",
        TOR_ADDR[:-1] + "1",  # '1' is not in the base32 alphabet
        "",
        "facebookcorewwwi",  # a v2 address
    ]
    for bad in cases:
        with pytest.raises(DecodeError) as ei:
            parse_onion_address(bad)
        assert ei.value.code == ErrorCode.ONION_ADDRESS_INVALID


def test_version_checked_even_with_valid_checksum() -> None:
    pub = TOR_PUB
    ver = b"\x04"
    checksum = hashlib.sha3_256(b".onion checksum" + pub + ver).digest()[:2]
    addr = base64.b32encode(pub + checksum + ver).decode().lower()
    with pytest.raises(DecodeError, match="version 4"):
        parse_onion_address(addr)


@given(keys32)
def test_expanded_key_matches_public_key(seed: bytes) -> None:
    blob = expanded_secret_key(seed)
    assert len(blob) == 64
    assert blob[0] & 7 == 0 and blob[31] & 0x80 == 0 and blob[31] & 0x40
    assert blob[32:] == hashlib.sha512(seed).digest()[32:]
    assert crypto_scalarmult_ed25519_base_noclamp(blob[:32]) == bytes(SigningKey(seed).verify_key)
    assert base64.b64decode(tor_key_blob(seed)) == blob


def test_client_auth_rfc7748_vector() -> None:
    priv, pub = client_auth_keypair(X25519_PRIV)
    assert priv == X25519_PRIV and pub == X25519_PUB
    assert bytes(PrivateKey(priv).public_key) == pub
    b32 = client_auth_public_b32(pub)
    assert len(b32) == 52 and "=" not in b32 and b32 == b32.upper()
    assert base64.b32decode(b32 + "====") == pub
    b64 = client_auth_private_b64(priv)
    assert len(b64) == 44 and base64.b64decode(b64) == priv


def test_wrong_lengths_rejected() -> None:
    from p4ref.errors import P4Error

    for fn in (expanded_secret_key, onion_address, onion_address_from_seed, client_auth_keypair):
        with pytest.raises(P4Error):
            fn(b"\x00" * 31)


@pytest.mark.parametrize("bad", [
    "a" * 50 + "=" * 6,  # issue 8 §2: raised IndexError (decodes to fewer than 35 bytes)
    "a" * 48 + "=" * 8,
    TOR_ADDR[:-1] + "=",
    TOR_ADDR.replace("s", "\u017f"),  # LONG S: "ſ".upper() == "S"
    TOR_ADDR.replace("i", "\u0131"),  # DOTLESS I: "ı".upper() == "I"
    TOR_ADDR.upper().replace("K", "\u212a"),  # KELVIN SIGN: "K".lower() == "k"
    "\u00a0" + TOR_ADDR,  # NBSP is not ASCII white space
    TOR_ADDR + "\u2028",
    TOR_ADDR + "\x0b",  # VT: ASCII, but not one of SP HT LF CR
    TOR_ADDR + "\x1c",
    TOR_ADDR + ".onion.",
    "\u0661" * 56,  # ARABIC-INDIC DIGIT ONE
])
def test_text_rules_are_ascii_only(bad: str) -> None:
    """RDV-56: every non-ASCII character and every malformed label is ONION_ADDRESS_INVALID,
    never another exception."""
    with pytest.raises(DecodeError) as ei:
        parse_onion_address(bad)
    assert ei.value.code == ErrorCode.ONION_ADDRESS_INVALID


def test_only_sp_ht_lf_cr_are_stripped() -> None:
    assert parse_onion_address(" \t" + TOR_ADDR + ".onion\r\n") == TOR_PUB


@given(st.text(max_size=70))
def test_any_text_gives_a_key_or_the_typed_error(s: str) -> None:
    try:
        assert len(parse_onion_address(s)) == 32
    except DecodeError as exc:
        assert exc.code == ErrorCode.ONION_ADDRESS_INVALID
