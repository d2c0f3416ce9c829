"""Identity vectors: device-ID text form and Ed25519 keys (p4-02-identity-pairing-v1 §3).

Files: ``identity/device_id.json`` (ops ``identity.device_id_encode`` / ``_decode``) and
``identity/keys.json`` (``identity.keypair`` / ``sign`` / ``verify``, RFC 8032 §7.1 TEST 1-3, and
the Ed25519 edge cases of p4-02 §3.1.1: small-order, non-canonical and mixed-order keys and R
values, S ≥ ℓ, cofactored-only signatures, and the order of the key and signature checks).

The edge inputs are built here in plain integer arithmetic on edwards25519 (no library would sign
with a small-order key), and each verdict is stated three times: by the builder, by
:func:`_spec_verify` (p4-02 §3.1.1 step by step, written from the spec text) and by the reference
(libsodium through PyNaCl); the build fails unless all three agree.

Every expected result is computed by the reference (through the same adapter ops the harness
calls) *and* compared with what the builder states — a literal where one is given, the declared
error otherwise — so a regression in p4ref cannot silently rewrite the vectors.
"""

from __future__ import annotations

import hashlib
from typing import Any

from p4ref.adapter.identity import vectors_ops
from p4ref.errors import P4Error
from p4ref.identity import ALPHABET, device_id, luhn32_check_char

from ._envelope import Json, envelope, group, test

SPEC, REVISION = "p4-02-identity-pairing-v1", 3  # follows the spec's front matter

# Requirement tags defined in spec/p4-02 §3, by rule.
T = {
    "key": "IDN-1",  # Ed25519 key from a 32-byte seed
    "sig": "IDN-2",  # pure Ed25519; reject bad length, S >= L, non-verifying
    "keylen": "IDN-3",  # seed / public key not 32 bytes -> IDENTITY_KEY_INVALID
    "b32": "IDN-4",  # RFC 4648 base32, upper case, no padding
    "groups": "IDN-5",  # four groups of 13 + check character
    "display": "IDN-6",  # eight groups of seven joined by "-"
    "luhn": "IDN-7",  # Luhn mod 32 exactly as specified
    "order": "IDN-8",  # parse steps in order, first failure wins
    "normalise": "IDN-9",  # remove space and '-', ASCII upper-casing only
    "length": "IDN-10",  # 56 characters
    "alphabet": "IDN-11",  # base32 alphabet only; 0/1/8/9 rejected
    "check": "IDN-12",  # check characters -> DEVICE_ID_CHECK_FAILED
    "padding": "IDN-13",  # last 4 bits zero
    "equal": "IDN-14",  # compare parsed keys, not text
    "keyvalid": "IDN-27",  # canonical, not small order, on the curve -> IDENTITY_KEY_INVALID
    "verify": "IDN-28",  # verification steps in order; cofactorless, R compared byte for byte
}

NOTES: dict[str, Json] = {
    "RFC8032": {
        "bugType": "BASIC",
        "description": "Published test vector, RFC 8032 §7.1.",
        "links": ["https://www.rfc-editor.org/rfc/rfc8032#section-7.1"],
    },
    "NORMALISE": {
        "bugType": "EDGE_CASE",
        "description": "Lower case, missing or extra separators: accepted (p4-02 §3.3).",
    },
    "TYPO": {
        "bugType": "MISSING_CHECK",
        "description": "A mistyped or swapped character: the check characters must catch it.",
    },
    "LUHN_BLIND_SPOT": {
        "bugType": "EDGE_CASE",
        "description": "Swapping A and 7 inside a group is the one adjacent transposition Luhn "
        "mod 32 cannot detect; the text decodes (to another key). Catches a non-standard Luhn.",
    },
    "LENGTH": {"bugType": "MISSING_CHECK", "description": "Not 56 characters after normalising."},
    "ALPHABET": {
        "bugType": "MISSING_CHECK",
        "description": "A character outside A-Z 2-7; 0/1/8 are rejected, not mapped to O/I/B.",
    },
    "UNICODE_CASE": {
        "bugType": "CAN_OF_WORMS",
        "description": "A non-ASCII letter that a Unicode upper-casing turns into A-Z "
        "(U+0131 -> I, U+017F -> S): only ASCII a-z may be upper-cased.",
    },
    "NON_CANONICAL": {
        "bugType": "MALLEABILITY",
        "description": "Unused low bits of the last key character set: a second spelling of "
        "one key, rejected.",
    },
    "CHECK_ORDER": {
        "bugType": "EDGE_CASE",
        "description": "More than one rule broken: the first failing step names the error.",
    },
    "WRONG_LENGTH": {"bugType": "MISSING_CHECK", "description": "Key, seed or signature length."},
    "MODIFIED": {"bugType": "MISSING_CHECK", "description": "Message or signature altered."},
    "S_OUT_OF_RANGE": {
        "bugType": "SIGNATURE_MALLEABILITY",
        "description": "S replaced by S + L: RFC 8032 §5.1.7 requires rejecting S >= L.",
    },
    "SMALL_ORDER_KEY": {
        "bugType": "EDGE_CASE",
        "description": "A public key of small order (any of the 8 torsion points, or an "
        "encoding of one): refused with IDENTITY_KEY_INVALID even where [S]B = R + [k]A holds "
        "(ZIP-215 and libraries that follow it accept these).",
        "links": ["https://eprint.iacr.org/2020/1244", "https://zips.z.cash/zip-0215"],
    },
    "NON_CANONICAL_KEY": {
        "bugType": "EDGE_CASE",
        "description": "A public key whose y is >= p, or that is not on the curve: "
        "IDENTITY_KEY_INVALID, not SIGNATURE_INVALID.",
    },
    "MIXED_ORDER_KEY": {
        "bugType": "EDGE_CASE",
        "description": "A key aB + T with T of order 8: accepted as a key; the cofactorless "
        "equation decides. Catches verifiers that refuse it, or use the cofactored equation.",
        "links": ["https://eprint.iacr.org/2020/1244"],
    },
    "COFACTORED_ONLY": {
        "bugType": "EDGE_CASE",
        "description": "[8][S]B = [8]R + [8][k]A holds but [S]B = R + [k]A does not: "
        "SIGNATURE_INVALID (the cofactorless equation is normative).",
        "links": ["https://eprint.iacr.org/2020/1244"],
    },
    "SMALL_ORDER_R": {
        "bugType": "EDGE_CASE",
        "description": "R of small order: SIGNATURE_INVALID even where the equation holds.",
    },
    "NON_CANONICAL_R": {
        "bugType": "SIGNATURE_MALLEABILITY",
        "description": "R not in canonical form (y >= p, or x = 0 with the sign bit set): "
        "SIGNATURE_INVALID even where the equation holds after decoding.",
    },
}

# RFC 8032 §7.1, TEST 1-3: (name, secret key (seed), public key, message, signature)
RFC8032 = [
    (
        "test1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "test2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "test3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

# The worked example of p4-02 §3.2 (RFC 8032 TEST 1 public key).
EXAMPLE_ID = "25NJQAM-CWEFLPM-VKL73J4-SZAHHIT-HOC4XT3-KTCGJNJ-PAINGR5-YHKENAI"

L = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point

# --- edwards25519 in integers (RFC 8032 §5.1), only to build and check the edge cases ---------

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int]  # affine (x, y)
ZERO: Point = (0, 1)


def _inv(v: int) -> int:
    return pow(v, P - 2, P)


def _recover_x(y: int, sign: int) -> int | None:
    """RFC 8032 §5.1.3 step 2-4 for a canonical y; None if not on the curve or x = 0 and sign."""
    if y >= P:
        return None
    x2 = (y * y - 1) * _inv(D * y * y + 1) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if x & 1 != sign else x


def _add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (x1 * y2 + x2 * y1) * _inv(1 + t) % P, (y1 * y2 + x1 * x2) * _inv(1 - t) % P


Ext = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), RFC 8032 §5.1.4


def _ext_add(a: Ext, b: Ext) -> Ext:
    """RFC 8032 §5.1.4 point addition (complete: also doubles)."""
    (x1, y1, z1, t1), (x2, y2, z2, t2) = a, b
    aa, bb = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    cc, dd = t1 * 2 * D * t2 % P, z1 * 2 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return e * f % P, g * h % P, f * g % P, e * h % P


def _mul(k: int, pt: Point) -> Point:
    acc: Ext = (0, 1, 1, 0)
    cur: Ext = (pt[0], pt[1], 1, pt[0] * pt[1] % P)
    while k:
        if k & 1:
            acc = _ext_add(acc, cur)
        cur, k = _ext_add(cur, cur), k >> 1
    zi = _inv(acc[2])
    return acc[0] * zi % P, acc[1] * zi % P


def _enc(pt: Point) -> bytes:
    return (pt[1] | (pt[0] & 1) << 255).to_bytes(32, "little")


def _dec(b: bytes) -> Point | None:
    """Strict decoding (RFC 8032 §5.1.3): None for y >= p or a non-point."""
    v = int.from_bytes(b, "little")
    x = _recover_x(v & ((1 << 255) - 1), v >> 255)
    return None if x is None else (x, v & ((1 << 255) - 1))


BASE: Point = (_recover_x(4 * _inv(5) % P, 0) or 0, 4 * _inv(5) % P)
Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
T8: Point = (_recover_x(Y8, 0) or 0, Y8)  # a point of order 8
assert _mul(L, BASE) == ZERO and _mul(4, T8) != ZERO and _mul(8, T8) == ZERO


def _k(r: bytes, a: bytes, msg: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + msg).digest(), "little") % L


def _spec_verify(pub: bytes, msg: bytes, sig: bytes) -> str | None:
    """p4-02 §3.1.1, step by step as the text says: the error code, or None if valid."""
    if len(pub) != 32:
        return "IDENTITY_KEY_INVALID"  # step 1
    y = int.from_bytes(pub, "little") & ((1 << 255) - 1)
    if y >= P or y in (0, 1, P - 1, Y8, P - Y8) or _dec(pub) is None:
        return "IDENTITY_KEY_INVALID"  # step 2
    if len(sig) != 64:
        return "SIGNATURE_INVALID"  # step 3
    r_bytes, s = sig[:32], int.from_bytes(sig[32:], "little")
    if s >= L:
        return "SIGNATURE_INVALID"  # step 4
    r_pt, a_pt = _dec(r_bytes), _dec(pub)
    if r_pt is None or _enc(r_pt) != r_bytes or _mul(8, r_pt) == ZERO:
        return "SIGNATURE_INVALID"  # step 5
    assert a_pt is not None
    neg_ka = _mul(8 * L - _k(r_bytes, pub, msg), a_pt)  # −[k]A for A of any order (8ℓ·A = 0)
    if _enc(_add(_mul(s, BASE), neg_ka)) != r_bytes:
        return "SIGNATURE_INVALID"  # step 6
    return None


_OPS = vectors_ops()


def _run(op: str, inp: Json) -> tuple[bool, Any]:
    try:
        return True, _OPS[op]({}, inp)
    except P4Error as e:
        return False, e.code.name


def _case(
    op: str,
    ident: str,
    comment: str,
    req: list[str],
    inp: Json,
    *,
    value: Json | None = None,
    error: str | None = None,
    flags: list[str] | None = None,
) -> Json:
    """A test whose outcome the reference must reproduce (``value`` None = take the computed)."""
    ok, got = _run(op, inp)
    if op == "identity.verify":
        spec = _spec_verify(
            *(bytes.fromhex(inp[k]) for k in ("public_key", "message", "signature"))
        )
        if spec != error:
            raise AssertionError(f"{ident}: p4-02 §3.1.1 gives {spec}, the builder says {error}")
    if error is not None:
        if ok or got != error:
            raise AssertionError(f"{ident}: expected {error}, reference gave {got!r}")
        return test(ident, comment, req, inp, valid=False, error=error, flags=flags)
    if not ok:
        raise AssertionError(f"{ident}: expected a value, reference gave {got}")
    if value is not None and got != value:
        raise AssertionError(f"{ident}: expected {value!r}, reference gave {got!r}")
    return test(ident, comment, req, inp, value=got, flags=flags)


def _seeded(label: str) -> bytes:
    return hashlib.sha256(b"p4 vector " + label.encode()).digest()


def _compact(text: str) -> str:
    return text.replace("-", "")


def _display(compact: str) -> str:
    return "-".join(compact[i : i + 7] for i in range(0, 56, 7))


def _with_checks(data: str) -> str:
    """52 data characters -> 56 with check characters (for hand-built edge cases)."""
    return "".join(data[i : i + 13] + luhn32_check_char(data[i : i + 13]) for i in range(0, 52, 13))


def _sub(text: str, pos: int, ch: str) -> str:
    return text[:pos] + ch + text[pos + 1 :]


def _encode_tests() -> list[Json]:
    op = "identity.device_id_encode"
    enc = [T["b32"], T["groups"], T["display"], T["luhn"]]
    tests = [
        _case(
            op,
            "idn-encode-rfc8032-test1",
            "Worked example of p4-02 §3.2: RFC 8032 TEST 1 public key.",
            enc,
            {"public_key": RFC8032[0][2]},
            value={"device_id": EXAMPLE_ID},
            flags=["RFC8032"],
        )
    ]
    for name, _seed, pub, _msg, _sig in RFC8032[1:]:
        tests.append(
            _case(
                op,
                f"idn-encode-rfc8032-{name}",
                f"RFC 8032 {name.upper()} public key.",
                enc,
                {"public_key": pub},
                flags=["RFC8032"],
            )
        )
    tests += [
        _case(
            op,
            "idn-encode-zero",
            "All-zero key: every character and check is A.",
            enc,
            {"public_key": "00" * 32},
            value={"device_id": _display("A" * 56)},
        ),
        _case(
            op,
            "idn-encode-ones",
            "All-ones key: last data character is Q (1 bit + 4 zero padding bits).",
            enc,
            {"public_key": "ff" * 32},
        ),
        _case(
            op,
            "idn-encode-seeded",
            "Key = sha256('p4 vector identity/encode').",
            enc,
            {"public_key": _seeded("identity/encode").hex()},
        ),
        _case(
            op,
            "idn-encode-short-key",
            "31-byte key.",
            [T["keylen"]],
            {"public_key": "00" * 31},
            error="IDENTITY_KEY_INVALID",
            flags=["WRONG_LENGTH"],
        ),
        _case(
            op,
            "idn-encode-long-key",
            "33-byte key.",
            [T["keylen"]],
            {"public_key": "00" * 33},
            error="IDENTITY_KEY_INVALID",
            flags=["WRONG_LENGTH"],
        ),
    ]
    return tests


def _blind_spot_pair() -> tuple[str, str]:
    """An ID with 'A7' at positions 4-5 of group 1, and the same text with '7A' there."""
    compact = _compact(device_id(_seeded("identity/blind-spot")))
    data = "".join(compact[i : i + 13] for i in range(0, 56, 14))
    good = _with_checks(data[:3] + "A7" + data[5:])
    swapped = good[:3] + "7A" + good[5:]
    return _display(good), _display(swapped)


def _decode_tests() -> list[Json]:
    op = "identity.device_id_decode"
    pub1 = RFC8032[0][2]
    cid = _compact(EXAMPLE_ID)  # 56 characters, no separators
    dec = [T["normalise"], T["length"], T["alphabet"], T["check"], T["padding"]]
    ok = {"public_key": pub1}
    tests = [
        _case(
            op, "idn-decode-display", "Canonical display form.", dec, {"text": EXAMPLE_ID}, value=ok
        ),
        _case(
            op,
            "idn-decode-lower",
            "Lower case.",
            [T["normalise"], T["equal"]],
            {"text": EXAMPLE_ID.lower()},
            value=ok,
            flags=["NORMALISE"],
        ),
        _case(
            op,
            "idn-decode-compact",
            "No separators.",
            [T["normalise"], T["equal"]],
            {"text": cid},
            value=ok,
            flags=["NORMALISE"],
        ),
        _case(
            op,
            "idn-decode-spaces",
            "Groups of four separated by spaces, mixed case.",
            [T["normalise"]],
            {"text": " ".join(cid[i : i + 4] for i in range(0, 56, 4)).swapcase()},
            value=ok,
            flags=["NORMALISE"],
        ),
        _case(
            op,
            "idn-decode-odd-separators",
            "Separators anywhere, doubled, leading and trailing.",
            [T["normalise"]],
            {"text": " -" + cid[:5] + "--" + cid[5:30] + " - " + cid[30:] + "- "},
            value=ok,
            flags=["NORMALISE"],
        ),
        _case(
            op,
            "idn-decode-zero",
            "All A: the all-zero key.",
            dec,
            {"text": "A" * 56},
            value={"public_key": "00" * 32},
        ),
        _case(
            op,
            "idn-decode-ones",
            "All-ones key; last data character Q.",
            dec,
            {"text": device_id(b"\xff" * 32)},
            value={"public_key": "ff" * 32},
        ),
    ]
    good, swapped = _blind_spot_pair()
    tests.append(
        _case(
            op,
            "idn-decode-luhn-blind-spot",
            "'A7' swapped to '7A' inside a group is not "
            "detected by Luhn mod 32: decodes, to a different key.",
            [T["luhn"], T["check"]],
            {"text": swapped},
            flags=["LUHN_BLIND_SPOT"],
        )
    )
    assert _run(op, {"text": good})[1] != _run(op, {"text": swapped})[1]

    # --- typos: CHECK_FAILED ---
    first = cid[0]
    other = ALPHABET[(ALPHABET.index(first) + 1) % 32]
    i_data_last = 12  # last data char of group 1
    tests += [
        _case(
            op,
            "idn-decode-typo-first",
            f"First character {first}->{other}.",
            [T["check"]],
            {"text": _display(_sub(cid, 0, other))},
            error="DEVICE_ID_CHECK_FAILED",
            flags=["TYPO"],
        ),
        _case(
            op,
            "idn-decode-typo-check-char",
            "Check character of group 2 changed.",
            [T["check"]],
            {"text": _display(_sub(cid, 27, "A" if cid[27] != "A" else "B"))},
            error="DEVICE_ID_CHECK_FAILED",
            flags=["TYPO"],
        ),
        _case(
            op,
            "idn-decode-typo-last",
            "Last character (check of group 4) changed.",
            [T["check"]],
            {"text": _display(_sub(cid, 55, "A" if cid[55] != "A" else "B"))},
            error="DEVICE_ID_CHECK_FAILED",
            flags=["TYPO"],
        ),
        _case(
            op,
            "idn-decode-transposed",
            "Two adjacent data characters swapped.",
            [T["check"]],
            {"text": _display(cid[:1] + cid[2] + cid[1] + cid[3:])},
            error="DEVICE_ID_CHECK_FAILED",
            flags=["TYPO"],
        ),
        _case(
            op,
            "idn-decode-transposed-check",
            "Last data character and check character of group 1 swapped.",
            [T["check"]],
            {"text": _display(cid[:i_data_last] + cid[13] + cid[12] + cid[14:])},
            error="DEVICE_ID_CHECK_FAILED",
            flags=["TYPO"],
        ),
        _case(
            op,
            "idn-decode-transposed-groups",
            "Check of group 1 swapped with the first character of group 2.",
            [T["check"]],
            {"text": _display(cid[:13] + cid[14] + cid[13] + cid[15:])},
            error="DEVICE_ID_CHECK_FAILED",
            flags=["TYPO"],
        ),
    ]
    assert cid[1] != cid[2] and cid[12] != cid[13] and cid[13] != cid[14]

    # --- malformed ---
    pos_i = cid.index("I")  # the example contains an I and an S (asserted by index())
    pos_s = cid.index("S")
    pos_o = cid.index("O")
    tests += [
        _case(
            op,
            "idn-decode-empty",
            "Empty text.",
            [T["normalise"], T["length"]],
            {"text": ""},
            error="DEVICE_ID_MALFORMED",
            flags=["LENGTH"],
        ),
        _case(
            op,
            "idn-decode-55",
            "One character missing.",
            [T["normalise"], T["length"]],
            {"text": _display(cid)[:-1]},
            error="DEVICE_ID_MALFORMED",
            flags=["LENGTH"],
        ),
        _case(
            op,
            "idn-decode-57",
            "One character too many.",
            [T["normalise"], T["length"]],
            {"text": EXAMPLE_ID + "A"},
            error="DEVICE_ID_MALFORMED",
            flags=["LENGTH"],
        ),
        _case(
            op,
            "idn-decode-raw-base32",
            "The 52-character base32 key without check characters.",
            [T["normalise"], T["length"]],
            {"text": "".join(cid[i : i + 13] for i in range(0, 56, 14))},
            error="DEVICE_ID_MALFORMED",
            flags=["LENGTH"],
        ),
        _case(
            op,
            "idn-decode-padding-equals",
            "base32 '=' padding appended to 52 characters "
            "(56 characters, '=' not in the alphabet).",
            [T["alphabet"]],
            {"text": "".join(cid[i : i + 13] for i in range(0, 56, 14)) + "===="},
            error="DEVICE_ID_MALFORMED",
            flags=["ALPHABET"],
        ),
        _case(
            op,
            "idn-decode-digit-zero",
            "Digit 0 typed for letter O: rejected, not mapped.",
            [T["alphabet"]],
            {"text": _display(_sub(cid, pos_o, "0"))},
            error="DEVICE_ID_MALFORMED",
            flags=["ALPHABET"],
        ),
        _case(
            op,
            "idn-decode-digit-one",
            "Digit 1 typed for letter I: rejected, not mapped.",
            [T["alphabet"]],
            {"text": _display(_sub(cid, pos_i, "1"))},
            error="DEVICE_ID_MALFORMED",
            flags=["ALPHABET"],
        ),
        _case(
            op,
            "idn-decode-digit-eight",
            "Digit 8: not in the alphabet.",
            [T["alphabet"]],
            {"text": _display(_sub(cid, 0, "8"))},
            error="DEVICE_ID_MALFORMED",
            flags=["ALPHABET"],
        ),
        _case(
            op,
            "idn-decode-underscore",
            "'_' separators: only space and '-' are removed, so 63 characters remain.",
            [T["normalise"], T["length"]],
            {"text": EXAMPLE_ID.replace("-", "_")},
            error="DEVICE_ID_MALFORMED",
            flags=["LENGTH"],
        ),
        _case(
            op,
            "idn-decode-newline",
            "Trailing newline: only space and '-' are removed, so 57 characters remain.",
            [T["normalise"], T["length"]],
            {"text": EXAMPLE_ID + "\n"},
            error="DEVICE_ID_MALFORMED",
            flags=["LENGTH"],
        ),
        _case(
            op,
            "idn-decode-tab-inside",
            "A tab in place of one character (56 characters).",
            [T["alphabet"]],
            {"text": _display(_sub(cid, 20, "\t"))},
            error="DEVICE_ID_MALFORMED",
            flags=["ALPHABET"],
        ),
        _case(
            op,
            "idn-decode-dotless-i",
            "U+0131 (dotless i) for I: Unicode upper-casing would give I.",
            [T["normalise"], T["alphabet"]],
            {"text": _display(_sub(cid, pos_i, "\u0131"))},
            error="DEVICE_ID_MALFORMED",
            flags=["UNICODE_CASE"],
        ),
        _case(
            op,
            "idn-decode-long-s",
            "U+017F (long s) for S: Unicode upper-casing would give S.",
            [T["normalise"], T["alphabet"]],
            {"text": _display(_sub(cid, pos_s, "\u017f"))},
            error="DEVICE_ID_MALFORMED",
            flags=["UNICODE_CASE"],
        ),
        _case(
            op,
            "idn-decode-fullwidth",
            "U+FF21 (fullwidth A) for A.",
            [T["alphabet"]],
            {"text": _display(_sub(cid, cid.index("A"), "\uff21"))},
            error="DEVICE_ID_MALFORMED",
            flags=["UNICODE_CASE"],
        ),
    ]
    # non-canonical padding bits: last data character B (00001) with correct check characters
    data = "".join(cid[i : i + 13] for i in range(0, 56, 14))
    nonc = _with_checks(data[:51] + "B")
    tests += [
        _case(
            op,
            "idn-decode-nonzero-padding",
            "Last data character B (low bits 0001) with valid check characters.",
            [T["padding"]],
            {"text": _display(nonc)},
            error="DEVICE_ID_MALFORMED",
            flags=["NON_CANONICAL"],
        ),
        _case(
            op,
            "idn-decode-order-alphabet-before-check",
            "A bad character and a wrong check character: alphabet is checked first.",
            [T["order"]],
            {"text": _display(_sub(_sub(cid, 0, "0"), 13, "A" if cid[13] != "A" else "B"))},
            error="DEVICE_ID_MALFORMED",
            flags=["CHECK_ORDER"],
        ),
        _case(
            op,
            "idn-decode-order-check-before-padding",
            "Non-zero padding bits and a wrong "
            "check character in group 4: check characters are checked first.",
            [T["order"]],
            {"text": _display(nonc[:55] + ("A" if nonc[55] != "A" else "B"))},
            error="DEVICE_ID_CHECK_FAILED",
            flags=["CHECK_ORDER"],
        ),
        _case(
            op,
            "idn-decode-order-length-first",
            "57 characters including a bad character: length is checked first.",
            [T["order"]],
            {"text": cid + "0"},
            error="DEVICE_ID_MALFORMED",
            flags=["CHECK_ORDER"],
        ),
    ]
    return tests


def _keys_files() -> Json:
    kp, sg, vf = [], [], []
    for name, seed, pub, msg, sig in RFC8032:
        kp.append(
            _case(
                "identity.keypair",
                f"idn-keypair-rfc8032-{name}",
                f"RFC 8032 §7.1 {name.upper()}: seed -> public key.",
                [T["key"]],
                {"seed": seed},
                value={"public_key": pub},
                flags=["RFC8032"],
            )
        )
        sg.append(
            _case(
                "identity.sign",
                f"idn-sign-rfc8032-{name}",
                f"RFC 8032 §7.1 {name.upper()}: pure Ed25519 signature.",
                [T["sig"]],
                {"seed": seed, "message": msg},
                value={"signature": sig},
                flags=["RFC8032"],
            )
        )
        vf.append(
            _case(
                "identity.verify",
                f"idn-verify-rfc8032-{name}",
                f"RFC 8032 §7.1 {name.upper()}: valid signature.",
                [T["sig"]],
                {"public_key": pub, "message": msg, "signature": sig},
                value={"valid": True},
                flags=["RFC8032"],
            )
        )
    kp += [
        _case(
            "identity.keypair",
            "idn-keypair-short-seed",
            "31-byte seed.",
            [T["keylen"]],
            {"seed": "00" * 31},
            error="IDENTITY_KEY_INVALID",
            flags=["WRONG_LENGTH"],
        ),
        _case(
            "identity.keypair",
            "idn-keypair-long-seed",
            "64-byte libsodium-style secret key (seed || public key) instead of the seed.",
            [T["keylen"]],
            {"seed": RFC8032[0][1] + RFC8032[0][2]},
            error="IDENTITY_KEY_INVALID",
            flags=["WRONG_LENGTH"],
        ),
    ]
    _, _seed2, pub2, msg2, sig2 = RFC8032[1]
    pub1, sig1 = RFC8032[0][2], RFC8032[0][4]
    sig2b = bytes.fromhex(sig2)
    s_plus_l = (int.from_bytes(sig2b[32:], "little") + L).to_bytes(32, "little")
    flip_r = bytes([sig2b[0] ^ 0x01]) + sig2b[1:]
    flip_s = sig2b[:40] + bytes([sig2b[40] ^ 0x01]) + sig2b[41:]
    bad = "SIGNATURE_INVALID"
    vf += [
        _case(
            "identity.verify",
            "idn-verify-modified-message",
            "TEST 2 with message 73.",
            [T["sig"]],
            {"public_key": pub2, "message": "73", "signature": sig2},
            error=bad,
            flags=["MODIFIED"],
        ),
        _case(
            "identity.verify",
            "idn-verify-extra-byte",
            "TEST 2 with message 7200.",
            [T["sig"]],
            {"public_key": pub2, "message": "7200", "signature": sig2},
            error=bad,
            flags=["MODIFIED"],
        ),
        _case(
            "identity.verify",
            "idn-verify-flipped-r",
            "TEST 2, bit 0 of R flipped.",
            [T["sig"]],
            {"public_key": pub2, "message": msg2, "signature": flip_r.hex()},
            error=bad,
            flags=["MODIFIED"],
        ),
        _case(
            "identity.verify",
            "idn-verify-flipped-s",
            "TEST 2, a bit of S flipped.",
            [T["sig"]],
            {"public_key": pub2, "message": msg2, "signature": flip_s.hex()},
            error=bad,
            flags=["MODIFIED"],
        ),
        _case(
            "identity.verify",
            "idn-verify-wrong-key",
            "TEST 1 signature checked against the TEST 2 key.",
            [T["sig"]],
            {"public_key": pub2, "message": "", "signature": sig1},
            error=bad,
            flags=["MODIFIED"],
        ),
        _case(
            "identity.verify",
            "idn-verify-s-plus-l",
            "TEST 2 with S replaced by S + L.",
            [T["sig"]],
            {"public_key": pub2, "message": msg2, "signature": (sig2b[:32] + s_plus_l).hex()},
            error=bad,
            flags=["S_OUT_OF_RANGE"],
        ),
        _case(
            "identity.verify",
            "idn-verify-short-signature",
            "63-byte signature.",
            [T["sig"]],
            {"public_key": pub2, "message": msg2, "signature": sig2[:-2]},
            error=bad,
            flags=["WRONG_LENGTH"],
        ),
        _case(
            "identity.verify",
            "idn-verify-short-key",
            "31-byte public key.",
            [T["keylen"]],
            {"public_key": pub1[:-2], "message": "", "signature": sig1},
            error="IDENTITY_KEY_INVALID",
            flags=["WRONG_LENGTH"],
        ),
    ]
    vf += _edge_verify_tests()
    groups = [
        group("identity.keypair", kp),
        group("identity.sign", sg),
        group("identity.verify", vf),
    ]
    return envelope("identity", SPEC, REVISION, _notes(groups), groups)


def _le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def _grind(r: bytes, a: bytes, label: str, *, multiple_of: int, want: bool) -> tuple[bytes, int]:
    """The first message ``label || i`` whose k is (or is not) a multiple of ``multiple_of``."""
    for i in range(1000):
        msg = f"{label} {i}".encode()
        k = _k(r, a, msg)
        if (k % multiple_of == 0) == want:
            return msg, k
    raise AssertionError("no message found")  # pragma: no cover - probability 2^-100 or so


def _edge_verify_tests() -> list[Json]:
    """Edge cases of p4-02 §3.1.1 ("Taming the many EdDSAs", Chalkias et al. 2020, Table 1)."""
    a = int.from_bytes(_seeded("identity/edge-a"), "little") % L  # a secret scalar
    r = int.from_bytes(_seeded("identity/edge-r"), "little") % L  # a nonce
    a_pt, r_pt = _mul(a, BASE), _mul(r, BASE)
    pub, rb = _enc(a_pt), _enc(r_pt)
    op, key_bad, sig_bad = "identity.verify", "IDENTITY_KEY_INVALID", "SIGNATURE_INVALID"
    kv, vr = [T["keyvalid"], T["verify"]], [T["sig"], T["verify"]]
    tests: list[Json] = []

    def case(
        ident: str,
        comment: str,
        req: list[str],
        a_b: bytes,
        msg: bytes,
        sig: bytes,
        error: str | None,
        flags: list[str],
    ) -> None:
        inp = {"public_key": a_b.hex(), "message": msg.hex(), "signature": sig.hex()}
        value = {"valid": True} if error is None else None
        tests.append(_case(op, ident, comment, req, inp, value=value, error=error, flags=flags))

    # --- small-order public keys: the equation holds (k ≡ 0 mod the point's order, S = r) ---
    small = [
        ("identity", "the neutral element (0, 1), order 1", _le(1), 1),
        ("order2", "(0, −1), order 2", _le(P - 1), 2),
        ("order4", "(√−1, 0), order 4", _le(0), 4),
        ("order8", "a point of order 8, y = Y8", _enc(T8), 8),
        ("order8-neg-y", "a point of order 8, y = p − Y8", _enc(_add(T8, (0, P - 1))), 8),
        ("negative-zero", "(0, 1) with the sign bit set ('−0')", _le(1 | 1 << 255), 1),
        ("noncanonical-identity", "(0, 1) written with y = p + 1", _le(P + 1), 1),
        ("noncanonical-order4", "(√−1, 0) written with y = p", _le(P), 4),
    ]
    for name, what, key, order in small:
        msg, _ = _grind(rb, key, f"small-order key {name}", multiple_of=order, want=True)
        case(
            f"idn-verify-small-order-key-{name}",
            f"Public key {what}; S = r, so [S]B = R + [k]A holds (cofactored too). Refused.",
            kv,
            key,
            msg,
            rb + _le(r),
            key_bad,
            ["SMALL_ORDER_KEY"],
        )

    # --- keys that are not canonical encodings of a curve point ---
    y3 = 3  # (x, 3) is on the curve; so is its non-canonical spelling y = p + 3
    assert _recover_x(y3, 0) is not None and _recover_x(2, 0) is None
    sig2 = bytes.fromhex(RFC8032[1][4])
    for ident, what, key in [
        ("idn-verify-noncanonical-key", "y = p + 3 (the point with y = 3)", _le(P + y3)),
        ("idn-verify-noncanonical-key-sign", "y = p + 3, sign bit set", _le(P + y3 | 1 << 255)),
        ("idn-verify-key-all-ones", "all 32 bytes 0xff (y = 2^255 − 1 ≥ p)", b"\xff" * 32),
        ("idn-verify-key-not-on-curve", "y = 2: (y² − 1)/(dy² + 1) is not a square", _le(2)),
    ]:
        case(
            ident,
            f"Public key {what}, with RFC 8032 TEST 2's message and signature.",
            kv,
            key,
            bytes.fromhex(RFC8032[1][3]),
            sig2,
            key_bad,
            ["NON_CANONICAL_KEY"],
        )

    # --- mixed-order key aB + T8: the cofactorless equation decides ---
    mixed = _enc(_add(a_pt, T8))
    msg, k = _grind(rb, mixed, "mixed-order key", multiple_of=8, want=True)
    case(
        "idn-verify-mixed-order-key-valid",
        "Key aB + T (T of order 8), k ≡ 0 mod 8: [S]B = R + [k]A holds. Valid.",
        [T["sig"], T["keyvalid"], T["verify"]],
        mixed,
        msg,
        rb + _le((r + k * a) % L),
        None,
        ["MIXED_ORDER_KEY"],
    )
    msg, k = _grind(rb, mixed, "mixed-order key", multiple_of=8, want=False)
    case(
        "idn-verify-mixed-order-key-cofactored-only",
        "Key aB + T (T of order 8), k ≢ 0 mod 8: only the cofactored equation holds.",
        vr,
        mixed,
        msg,
        rb + _le((r + k * a) % L),
        sig_bad,
        ["MIXED_ORDER_KEY", "COFACTORED_ONLY"],
    )

    # --- R values: S = k·a makes [S]B = R + [k]A hold for R = 0 ---
    msg = b"p4 edge R"
    for ident, what, r_b, flag in [
        (
            "idn-verify-small-order-r-identity",
            "R = (0, 1): the equation holds",
            _le(1),
            "SMALL_ORDER_R",
        ),
        (
            "idn-verify-small-order-r-order8",
            "R of order 8: only the cofactored equation holds",
            _enc(T8),
            "SMALL_ORDER_R",
        ),
        (
            "idn-verify-noncanonical-r-identity",
            "R = (0, 1) written with y = p + 1",
            _le(P + 1),
            "NON_CANONICAL_R",
        ),
        (
            "idn-verify-noncanonical-r-negative-zero",
            "R = (0, 1) with the sign bit set",
            _le(1 | 1 << 255),
            "NON_CANONICAL_R",
        ),
    ]:
        k = _k(r_b, pub, msg)
        case(ident, f"{what}; S = k·a.", vr, pub, msg, r_b + _le(k * a % L), sig_bad, [flag])
    r_mixed = _enc(_add(r_pt, T8))
    k = _k(r_mixed, pub, msg)
    case(
        "idn-verify-mixed-order-r",
        "R = rB + T (T of order 8), S = r + k·a: only the cofactored equation holds.",
        vr,
        pub,
        msg,
        r_mixed + _le((r + k * a) % L),
        sig_bad,
        ["COFACTORED_ONLY"],
    )
    k = _k(rb, pub, msg)
    good = rb + _le((r + k * a) % L)
    case(
        "idn-verify-edge-baseline",
        "The honest signature these edge cases vary.",
        [T["sig"], T["verify"]],
        pub,
        msg,
        good,
        None,
        [],
    )

    # --- order of checks: the key first, whatever is wrong with the signature ---
    case(
        "idn-verify-order-short-key-short-signature",
        "31-byte key and 63-byte signature: the key is checked first.",
        [T["keylen"], T["verify"]],
        pub[:31],
        msg,
        good[:63],
        key_bad,
        ["CHECK_ORDER"],
    )
    case(
        "idn-verify-order-small-order-key-short-signature",
        "Small-order key (0, 1) and a 63-byte signature: the key is checked first.",
        [T["keyvalid"], T["verify"]],
        _le(1),
        msg,
        good[:63],
        key_bad,
        ["CHECK_ORDER"],
    )
    s_plus_l = rb + _le((r + k * a) % L + L)
    case(
        "idn-verify-order-noncanonical-key-s-out-of-range",
        "Non-canonical key and S ≥ ℓ: the key is checked first.",
        [T["keyvalid"], T["verify"]],
        _le(P + y3),
        msg,
        s_plus_l,
        key_bad,
        ["CHECK_ORDER"],
    )
    case(
        "idn-verify-edge-s-plus-l",
        "The baseline with S + ℓ (< 2^253, so a check of the top "
        "three bits alone lets it through).",
        vr,
        pub,
        msg,
        s_plus_l,
        sig_bad,
        ["S_OUT_OF_RANGE"],
    )
    return tests


def _notes(groups: list[Json]) -> dict[str, Json]:
    used = {f for g in groups for t in g["tests"] for f in t["flags"]}
    return {k: v for k, v in NOTES.items() if k in used}


def build() -> dict[str, Json]:
    id_groups = [
        group("identity.device_id_encode", _encode_tests()),
        group("identity.device_id_decode", _decode_tests()),
    ]
    return {
        "identity/device_id.json": envelope(
            "identity", SPEC, REVISION, _notes(id_groups), id_groups
        ),
        "identity/keys.json": _keys_files(),
    }


if __name__ == "__main__":  # pragma: no cover - debugging aid
    from ._envelope import dump

    for name, obj in build().items():
        print(name, obj["numberOfTests"], len(dump(obj)))
