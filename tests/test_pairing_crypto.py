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
RFC9382_B = [
    (
        b"server", b"client",
        "2ee57912099d31560b3a44b1184b9b4866e904c49d12ac5042c97dca461b1a5f",
        "04a56fa807caaa53a4d28dbb9853b9815c61a411118a6fe516a8798434751470f9010153ac33d0d5f2047ffdb1"
        "a3e42c9b4e6be662766e1eeb4116988ede5f912c",
        "0406557e482bd03097ad0cbaa5df82115460d951e3451962f1eaf4367a420676d09857ccbc522686c83d1852ab"
        "fa8ed6e4a1155cf8f1543ceca528afb591a1e0b7",
        "0412af7e89717850671913e6b469ace67bd90a4df8ce45c2af19010175e37eed69f75897996d539356e2fa6a40"
        "6d528501f907e04d97515fbe83db277b715d3325",
        "0e0672dc86f8e45565d338b0540abe69",
        "58ad4aa88e0b60d5061eb6b5dd93e80d9c4f00d127c65b3b35b1b5281fee38f0",
        "d3e2e547f1ae04f2dbdbf0fc4b79f8ecff2dff314b5d32fe9fcef2fb26dc459b",
    ),
    (
        b"", b"client",
        "0548d8729f730589e579b0475a582c1608138ddf7054b73b5381c7e883e2efae",
        "04a897b769e681c62ac1c2357319a3d363f610839c4477720d24cbe32f5fd85f44fb92ba966578c1b712be6962"
        "498834078262caa5b441ecfa9d4a9485720e918a",
        "04e0f816fd1c35e22065d5556215c097e799390d16661c386e0ecc84593974a61b881a8c82327687d050186297"
        "0c64565560cb5671f696048050ca66ca5f8cc7fc",
        "048f83ec9f6e4f87cc6f9dc740bdc2769725f923364f01c84148c049a39a735ebda82eac03e00112fd6a571068"
        "2767cff5361f7e819e53d8d3c3a2922e0d837aa6",
        "642f05c473c2cd79909f9a841e2f30a7",
        "47d29e6666af1b7dd450d571233085d7a9866e4d49d2645e2df975489521232b",
        "3313c5cefc361d27fb16847a91c2a73b766ffa90a4839122a9b70a2f6bd1d6df",
    ),
    (
        b"server", b"",
        "626e0cdc7b14c9db3e52a0b1b3a768c98e37852d5db30febe0497b14eae8c254",
        "04f88fb71c99bfffaea370966b7eb99cd4be0ff1a7d335caac4211c4afd855e2e15a873b298503ad8ba1d9cbb9"
        "a392d2ba309b48bfd7879aefd0f2cea6009763b0",
        "040c269d6be017dccb15182ac6bfcd9e2a14de019dd587eaf4bdfd353f031101e7cca177f8eb362a6e83e7d5e7"
        "29c0732e1b528879c086f39ba0f31a9661bd34db",
        "0445ee233b8ecb51ebd6e7da3f307e88a1616bae2166121221fdc0dadb986afaf3ec8a988dc9c626fa3b99f58a"
        "7ca7c9b844bb3e8dd9554aafc5b53813504c1cbe",
        "005184ff460da2ce59062c87733c299c",
        "bc9f9bbe99f26d0b2260e6456e05a86196a3307ec6663a18bf6ac825736533b2",
        "c2370e1bf813b086dff0d834e74425a06e6390f48f5411900276dcccc5a297ec",
    ),
    (
        b"", b"",
        "7bf46c454b4c1b25799527d896508afd5fc62ef4ec59db1efb49113063d70cca",
        "04a65b367a3f613cf9f0654b1b28a1e3a8a40387956c8ba6063e8658563890f46ca1ef6a676598889fc28de295"
        "0ab8120b79a5ef1ea4c9f44bc98f585634b46d66",
        "04589f13218822710d98d8b2123a079041052d9941b9cf88c6617ddb2fcc0494662eea8ba6b64692dc31825003"
        "0c6af045cb738bc81ba35b043c3dcb46adf6f58d",
        "041a3c03d51b452537ca2a1fea6110353c6d5ed483c4f0f86f4492ca3f378d40a994b4477f93c64d928edbbcd3"
        "e85a7c709b7ea73ee97986ce3d1438e135543772",
        "fc6374762ba5cf11f4b2caa08b2cd1b9",
        "dfb4db8d48ae5a675963ea5e6c19d98d4ea028d8e898dad96ea19a80ade95dca",
        "d0f0609d1613138d354f7e95f19fb556bf52d751947241e8c7118df5ef0ae175",
    ),
]  # fmt: skip


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
    return key, th, C.seal_identity(key, th, sk, role), sk


def test_identity_round_trip() -> None:
    key, th, ct, sk = _sealed()
    assert len(ct) == C.IDENTITY_CT_LEN
    assert C.open_identity(key, th, ct, C.Role.ACCEPTER) == bytes(sk.verify_key)


@pytest.mark.parametrize("index", [0, 10, 50, 118])
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
    fin = C.final_keys(bytes(16), bytes(32), bytes(32), b"\x01" * 32)
    assert len(fin.pair_root_key) == 32 and len(fin.sas) == 6 and fin.sas.isdigit()
    assert fin != C.final_keys(bytes(16), bytes(32), b"\x01" * 32, bytes(32))  # order matters


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
    for r in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x12\x34\x56\x78"):
        code = ShortCode.generate(r)
        assert parse_code(str(code)) == code
        assert 1 <= code.nameplate <= 9999
    assert str(parse_code("  7-GUITARIST-Revenge\n")) == "7-guitarist-revenge"


@pytest.mark.parametrize(
    "text",
    [
        "", "7", "7-guitarist", "7-guitarist-revenge-extra", "0-guitarist-revenge",
        "07-guitarist-revenge", "10000-guitarist-revenge", "-1-guitarist-revenge",
        "7-revenge-guitarist", "7-guitarist-guitarist", "7 guitarist revenge",
        "7--guitarist-revenge", "x-guitarist-revenge", "٧-guitarist-revenge",
    ],
)  # fmt: skip
def test_code_malformed(text: str) -> None:
    with pytest.raises(LocalProtocolError) as exc:
        parse_code(text)
    assert exc.value.code is ErrorCode.PAIR_CODE_MALFORMED


def test_uri_round_trip() -> None:
    uri = InviteUri(bytes(range(32)), 1_795_000_000)
    text = str(uri)
    assert text.startswith("p4:pair?v=1&o=") and len(uri.onion) == 56
    assert parse_uri(text) == uri
    assert parse_uri(text.upper()) == uri
    reordered = "p4:pair?" + "&".join(reversed(text.split("?")[1].split("&")))
    assert parse_uri(reordered) == uri


def _uri_variants() -> dict[str, tuple[str, ErrorCode]]:
    good = str(InviteUri(bytes(range(32)), 1_795_000_000))
    q = dict(p.split("=") for p in good.split("?")[1].split("&"))
    other = InviteUri(bytes(32), 1).onion

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
