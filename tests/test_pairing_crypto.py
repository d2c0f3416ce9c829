"""Pairing crypto and invitation formats (p4-02 §5, §7), checked against published vectors.

Published vectors used here (PAIR-24: primitives come from libsodium, hashlib and
`cryptography`, and these vectors pin them):
- RFC 8032 §7.1 TEST 1 and TEST 2 (Ed25519 keys and signatures; also the libsodium base-point
  multiplication our SPAKE2 uses);
- RFC 5869 Appendix A.1 and A.3 (HKDF-SHA-256, with and without salt);
- RFC 9382 Appendix B, all four vectors (transcript TT and key schedule: Ke, KcA, KcB, cA, cB).
  They are P-256 vectors; the transcript and key schedule are group-independent byte operations,
  so they check exactly the code edwards25519 SPAKE2 uses on top of the group;
- RFC 9382 §6 point generation for M and N (edwards25519 seeds).
"""

from __future__ import annotations

import hashlib

import pytest
from nacl.bindings import (
    crypto_core_ed25519_is_valid_point,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)
from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, LocalProtocolError, P4Error, RemoteProtocolError
from p4ref.pairing import _crypto as C
from p4ref.pairing._invite import (
    EVEN_WORDS,
    ODD_WORDS,
    InviteUri,
    ShortCode,
    parse_code,
    parse_uri,
)
from tools.vectors.pairing import RFC9382_B as _BUILDER_RFC9382_B

# --- RFC 8032 §7.1 ----------------------------------------------------------------------------

RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
        "1cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
        "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "pub", "msg", "sig"), RFC8032)
def test_rfc8032_ed25519(seed: str, pub: str, msg: str, sig: str) -> None:
    sk = SigningKey(bytes.fromhex(seed))
    assert bytes(sk.verify_key).hex() == pub
    assert sk.sign(bytes.fromhex(msg)).signature.hex() == sig


@pytest.mark.parametrize(("seed", "pub", "msg", "sig"), RFC8032)
def test_rfc8032_base_point_multiplication(seed: str, pub: str, msg: str, sig: str) -> None:
    """The noclamp base multiplication SPAKE2 uses gives RFC 8032's A = [s]B (§5.1.5)."""
    h = bytearray(hashlib.sha512(bytes.fromhex(seed)).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    assert crypto_scalarmult_ed25519_base_noclamp(bytes(h)).hex() == pub


# --- RFC 5869 Appendix A ------------------------------------------------------------------------


def test_rfc5869_a1() -> None:
    okm = C.hkdf_sha256(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_rfc5869_a3_empty_salt() -> None:
    okm = C.hkdf_sha256(bytes([0x0B] * 22), b"", b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


# --- RFC 9382 ------------------------------------------------------------------------------------

# (A, B, w, pA, pB, K, Ke, cA, cB) from RFC 9382 Appendix B (SPAKE2-P256-SHA256-HKDF-HMAC).
# The published literals live once, in the vector builder (which checks them too).
RFC9382_B = [(a.encode(), b.encode(), *rest) for a, b, *rest in _BUILDER_RFC9382_B]


@pytest.mark.parametrize("vec", RFC9382_B, ids=["v1", "v2", "v3", "v4"])
def test_rfc9382_transcript_and_key_schedule(vec: tuple[bytes, bytes, str, ...]) -> None:
    a, b, w, pa, pb, k, ke, ca, cb = vec
    tt = C.transcript(a, b, *(bytes.fromhex(x) for x in (pa, pb, k, w)))
    ks = C.key_schedule(tt)
    assert (ks.ke.hex(), ks.ca.hex(), ks.cb.hex()) == (ke, ca, cb)


def test_rfc9382_v1_confirmation_keys() -> None:
    a, b, w, pa, pb, k, *_ = RFC9382_B[0]
    ks = C.key_schedule(C.transcript(a, b, *(bytes.fromhex(x) for x in (pa, pb, k, w))))
    assert ks.kca.hex() == "00c12546835755c86d8c0db7851ae86f"
    assert ks.kcb.hex() == "a9fa3406c3b781b93d804485430ca27a"


@pytest.mark.parametrize(("name", "point"), [("M", C.M_POINT), ("N", C.N_POINT)])
def test_rfc9382_point_generation(name: str, point: bytes) -> None:
    """M and N are the first valid prime-order point of SHA-256 iterated on the seed (§6)."""
    v = hashlib.sha256(f"edwards25519 point generation seed ({name})".encode()).digest()
    while not crypto_core_ed25519_is_valid_point(v):
        v = hashlib.sha256(v).digest()
    assert v == point


# --- SPAKE2 over edwards25519 --------------------------------------------------------------------


def _draw(label: bytes) -> bytes:
    return C.draw_scalar(hashlib.sha512(label).digest())


def _run(pw_a: bytes, pw_b: bytes, slot: str = "7") -> tuple[C.Spake2Keys, C.Spake2Keys]:
    wa, wb = C.derive_w(pw_a, slot), C.derive_w(pw_b, slot)
    x, y = _draw(b"x"), _draw(b"y")
    pa = C.spake2_element(C.Role.ACCEPTER, wa, x)
    pb = C.spake2_element(C.Role.INVITER, wb, y)
    ka = C.spake2_shared(C.Role.ACCEPTER, wa, x, pb)
    kb = C.spake2_shared(C.Role.INVITER, wb, y, pa)
    ida, idb = C.spake2_ids(slot)
    return (
        C.key_schedule(C.transcript(ida, idb, pa, pb, ka, wa)),
        C.key_schedule(C.transcript(ida, idb, pa, pb, kb, wb)),
    )


def test_spake2_agrees() -> None:
    a, b = _run(b"7-guitarist-revenge", b"7-guitarist-revenge")
    assert a == b


def test_spake2_wrong_password_disagrees() -> None:
    a, b = _run(b"7-guitarist-revenge", b"7-guitarist-reward")
    assert a.ke != b.ke and not C.verify_mac(a.cb, b.cb) and not C.verify_mac(a.ca, b.ca)


def test_w_binds_slot() -> None:
    assert C.derive_w(b"pw", "7") != C.derive_w(b"pw", "8")


BAD_POINTS = {
    "identity": "01" + "00" * 31,
    "order-2": "ec" + "ff" * 30 + "7f",
    "non-canonical": "ed" + "ff" * 30 + "7f",
    "torsion-component": bytes(
        crypto_scalarmult_ed25519_noclamp(bytes([5] + [0] * 31), C.M_POINT)[:-1] + b"\x80"
    ).hex(),
    "short": "00" * 31,
}


@pytest.mark.parametrize("point", BAD_POINTS.values(), ids=BAD_POINTS.keys())
def test_spake2_rejects_bad_points(point: str) -> None:
    w = C.derive_w(b"pw", "7")
    with pytest.raises(RemoteProtocolError) as exc:
        C.spake2_shared(C.Role.INVITER, w, _draw(b"y"), bytes.fromhex(point))
    assert exc.value.code is ErrorCode.PAIR_PAKE_INVALID


def test_spake2_rejects_element_giving_identity() -> None:
    """pA = w*M makes pA - w*M the identity: K would be I (RFC 9382 §7)."""
    w = C.derive_w(b"pw", "7")
    pa = crypto_scalarmult_ed25519_noclamp(w, C.M_POINT)
    with pytest.raises(RemoteProtocolError) as exc:
        C.spake2_shared(C.Role.INVITER, w, _draw(b"y"), pa)
    assert exc.value.code is ErrorCode.PAIR_PAKE_INVALID


def test_draw_scalar_rejects_zero_and_bad_length() -> None:
    with pytest.raises(LocalProtocolError):
        C.draw_scalar(bytes(64))
    with pytest.raises(LocalProtocolError):
        C.draw_scalar(bytes(32))


# --- identity sealing ------------------------------------------------------------------------


def _sealed(role: C.Role = C.Role.ACCEPTER) -> tuple[bytes, bytes, bytes, SigningKey]:
    key, th, sk = bytes(range(32)), hashlib.sha256(b"th").digest(), SigningKey(bytes(32))
    return key, th, C.seal_identity(key, th, sk, role, NONCE), sk


NONCE = hashlib.sha256(b"nonce").digest()


def test_identity_round_trip() -> None:
    key, th, ct, sk = _sealed()
    assert len(ct) == C.IDENTITY_CT_LEN == 154
    assert C.open_identity(key, th, ct, C.Role.ACCEPTER) == C.OpenedIdentity(
        bytes(sk.verify_key), NONCE
    )


@pytest.mark.parametrize("length", [0, 1, 15, 16, 119, 153, 155, 1000])
def test_identity_any_length_is_a_typed_error(length: int) -> None:
    """Fuzz finding (issue 8 §2): a ciphertext under 16 bytes made PyNaCl raise ValueError."""
    key, th, ct, _ = _sealed()
    data = (ct * 8)[:length]
    with pytest.raises(RemoteProtocolError) as exc:
        C.open_identity(key, th, data, C.Role.ACCEPTER)
    assert exc.value.code is ErrorCode.PAIR_IDENTITY_INVALID


@pytest.mark.parametrize("index", [0, 10, 50, 118, 153])
def test_identity_tampered(index: int) -> None:
    key, th, ct, _ = _sealed()
    bad = bytearray(ct)
    bad[index] ^= 1
    with pytest.raises(RemoteProtocolError) as exc:
        C.open_identity(key, th, bytes(bad), C.Role.ACCEPTER)
    assert exc.value.code is ErrorCode.PAIR_IDENTITY_INVALID


def test_identity_wrong_role_or_transcript() -> None:
    key, th, ct, _ = _sealed()
    with pytest.raises(RemoteProtocolError):
        C.open_identity(key, th, ct, C.Role.INVITER)  # signature names the other role
    with pytest.raises(RemoteProtocolError):
        C.open_identity(key, bytes(32), ct, C.Role.ACCEPTER)  # AAD differs


def test_final_keys_shape() -> None:
    n1, n2, cm = b"\x02" * 32, b"\x03" * 32, b"\x04" * 32
    fin = C.final_keys(bytes(16), bytes(32), bytes(32), b"\x01" * 32, n1, n2, cm)
    assert len(fin.pair_root_key) == 32 and len(fin.sas) == 6 and fin.sas.isdigit()
    other = C.final_keys(bytes(16), bytes(32), b"\x01" * 32, bytes(32), n1, n2, cm)
    assert fin != other  # order matters
    assert fin.k_done_accepter != fin.k_done_inviter  # one PAIR_DONE key per direction
    for args in ((n2, n1, cm), (n1, n1, cm), (n1, n2, n1)):  # the nonces and the commitment
        assert C.final_keys(bytes(16), bytes(32), bytes(32), b"\x01" * 32, *args).sas != fin.sas


def test_onion_seeds_are_domain_separated() -> None:
    assert C.nameplate_onion_seed(7) != C.nameplate_onion_seed(8)
    assert C.pairing_onion_seed(bytes(32)) != C.nameplate_onion_seed(0)


# --- invitation formats ------------------------------------------------------------------------


def test_wordlist_pinned() -> None:
    """The PGP word list is part of the wire format (p4-02 Appendix A); pin its bytes."""
    assert len(set(ODD_WORDS)) == len(set(EVEN_WORDS)) == 256
    assert not set(ODD_WORDS) & set(EVEN_WORDS)
    digest = hashlib.sha256((" ".join(ODD_WORDS) + "\n" + " ".join(EVEN_WORDS)).encode())
    assert digest.hexdigest() == WORDLIST_SHA256


WORDLIST_SHA256 = "9c0bc1fa18bac07e27728dacabc9a6f84862dd8231959376d80b823634ff401e"


def test_wordlist_spot_checks() -> None:
    # PGP word list: 0x00, 0xA9 and 0xFF of each list
    assert (EVEN_WORDS[0], ODD_WORDS[0]) == ("aardvark", "adroitness")
    assert (EVEN_WORDS[0xA9], ODD_WORDS[0xA9]) == ("revenge", "passenger")
    assert (EVEN_WORDS[0xFF], ODD_WORDS[0xFF]) == ("zulu", "yucatan")


def test_code_round_trip() -> None:
    for r in (bytes(6), b"\xff" * 6, b"\x12\x34\x56\x78\x9a\xbc"):
        code = ShortCode.generate(r)
        assert parse_code(str(code)) == code
        assert 1 <= code.nameplate <= 9_999_999
    assert str(parse_code("  7-GUITARIST-Revenge\n")) == "7-guitarist-revenge"


@pytest.mark.parametrize(
    "text",
    [
        "", "7", "7-guitarist", "7-guitarist-revenge-extra", "0-guitarist-revenge",
        "07-guitarist-revenge", "10000000-guitarist-revenge", "-1-guitarist-revenge",
        "7-revenge-guitarist", "7-guitarist-guitarist", "7 guitarist revenge",
        "7--guitarist-revenge", "x-guitarist-revenge", "٧-guitarist-revenge",
    ],
)  # fmt: skip
def test_code_malformed(text: str) -> None:
    with pytest.raises(LocalProtocolError) as exc:
        parse_code(text)
    assert exc.value.code is ErrorCode.PAIR_CODE_MALFORMED


PUB = bytes(SigningKey(bytes(32)).verify_key)


def test_uri_round_trip() -> None:
    uri = InviteUri.create(bytes(range(32)), 1_795_000_000, PUB)
    text = str(uri)
    assert text.startswith("p4:pair?v=1&o=") and len(uri.onion) == 56
    assert parse_uri(text) == uri
    assert parse_uri(text.upper()) == uri
    reordered = "p4:pair?" + "&".join(reversed(text.split("?")[1].split("&")))
    assert parse_uri(reordered) == uri


def _uri_variants() -> dict[str, tuple[str, ErrorCode]]:
    good = str(InviteUri.create(bytes(range(32)), 1_795_000_000, PUB))
    q = dict(p.split("=") for p in good.split("?")[1].split("&"))
    other = InviteUri(bytes(32), 1, bytes(16)).onion

    def mk(**kw: str) -> str:
        return "p4:pair?" + "&".join(f"{k}={v}" for k, v in {**q, **kw}.items())

    bad = ErrorCode.PAIR_URI_MALFORMED
    return {
        "scheme": (good.replace("p4:", "p5:"), bad),
        "path": (good.replace("pair?", "pear?"), bad),
        "version-2": (mk(v="2"), ErrorCode.VERSION_UNSUPPORTED),
        "version-01": (mk(v="01"), bad),
        "missing-x": (good.rsplit("&", 1)[0], bad),
        "duplicate": (good + "&x=1", bad),
        "unknown-key": (good + "&z=1", bad),
        "secret-short": (mk(s=q["s"][:-1]), bad),
        "secret-noncanonical": (mk(s=q["s"][:-1] + "r"), bad),
        "secret-padding": (mk(s=q["s"] + "===="), bad),
        "onion-mismatch": (mk(o=other), bad),
        "onion-suffix": (mk(o=q["o"] + ".onion"), bad),
        "expiry-negative": (mk(x="-1"), bad),
        "expiry-leading-zero": (mk(x="01"), bad),
        "empty-value": (mk(x=""), bad),
    }


@pytest.mark.parametrize("case", sorted(_uri_variants()))
def test_uri_malformed(case: str) -> None:
    text, code = _uri_variants()[case]
    with pytest.raises(P4Error) as exc:
        parse_uri(text)
    assert exc.value.code is code
