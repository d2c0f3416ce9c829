"""Pairing vectors (spec/p4-02-identity-pairing-v1.md §5–§8).

Files under ``pairing/``:

- ``invite.json``      ``pairing.parse_code`` / ``pairing.parse_uri``: valid and invalid inputs;
- ``crypto.json``      ``pairing.key_schedule`` (RFC 9382 Appendix B, all four vectors),
                       ``pairing.spake2`` (edwards25519 runs with fixed randomness),
                       ``pairing.kdf`` and ``pairing.open_identity``;
- ``messages.json``    ``pairing.decode``: bodies, valid and invalid;
- ``transcripts.json`` ``machine.transcript``: each role step by step, happy and failing;
- ``pairs.json``       ``machine.pair``: both roles through the harness relay.

All randomness is fixed: identity seeds are SHA-256 of a label, PAKE draws SHA-512 of
``"p4 vector pairing " + label``.  Expected values are computed by the reference through the same
adapter hook the harness calls; published values (RFC 9382) are literals checked against it, and
every honest run is checked to end with equal keys on both sides.
"""

from __future__ import annotations

import hashlib
from typing import Any

from nacl.bindings import crypto_scalarmult_ed25519_noclamp
from nacl.signing import SigningKey

from p4ref.adapter import pairing as adapter
from p4ref.errors import P4Error
from p4ref.framing import CborValue, Frame, FrameType, Path, encode_cbor, encode_frame, error_body
from p4ref.pairing import _crypto as C
from p4ref.pairing._invite import InviteUri, ShortCode

from ._envelope import Json, envelope, group, test

SPEC, REV = "p4-02-identity-pairing-v1", 3

# Requirement tags of spec/p4-02 (§5–§10), by rule.
T = {
    "tor-only": "PAIR-3", "code-generate": "PAIR-4", "code-canonical": "PAIR-5",
    "code-parse": "PAIR-6", "code-password": "PAIR-7", "code-onion": "PAIR-8",
    "ascii": "PAIR-52", "uri-order": "PAIR-53", "uri-key": "PAIR-54", "commit": "PAIR-55",
    "commit-check": "PAIR-56", "uri-key-check": "PAIR-57", "done-inviter": "PAIR-58",
    "outcome-unknown": "PAIR-59", "check-order": "PAIR-60", "any-split": "PAIR-61",
    "stream-drop": "PAIR-62",
    "uri-generate": "PAIR-10", "uri-onion": "PAIR-11", "uri-parse": "PAIR-12",
    "uri-version": "PAIR-13", "uri-canonical": "PAIR-14", "uri-onion-check": "PAIR-15",
    "expiry-enforce": "PAIR-16", "expiry-accepter": "PAIR-17", "single-use": "PAIR-18",
    "burn-both": "PAIR-19", "body-encode": "PAIR-21", "body-schema": "PAIR-22",
    "version-check": "PAIR-23", "w": "PAIR-25", "pake": "PAIR-26", "scalar": "PAIR-27",
    "element-check": "PAIR-29", "k-identity": "PAIR-30", "key-schedule": "PAIR-31",
    "confirm-accepter": "PAIR-32", "confirm-inviter": "PAIR-33", "th": "PAIR-35",
    "identity-seal": "PAIR-36", "identity-check": "PAIR-37", "identity-self": "PAIR-38",
    "done-check": "PAIR-39", "root": "PAIR-40", "table": "PAIR-42", "unexpected": "PAIR-43",
    "terminal-discard": "PAIR-44", "core-frames": "PAIR-45", "peer-error": "PAIR-46",
    "burnt-reply": "PAIR-47", "lost": "PAIR-48", "timer": "PAIR-49", "expiry-timer": "PAIR-50",
    "config": "PAIR-68", "idle": "PAIR-69", "terminal-pake": "PAIR-70", "uint64-expiry": "PAIR-71",
    "refused": "PAIR-72",
}  # fmt: skip

NOTES: dict[str, Json] = {
    "RFC9382": {
        "bugType": "BASIC",
        "description": "Published vector, RFC 9382 Appendix B (P-256): the transcript-to-key "
        "schedule part is group-independent and identical for edwards25519.",
        "links": ["https://www.rfc-editor.org/rfc/rfc9382#appendix-B"],
    },
    "NORMALISE": {
        "bugType": "EDGE_CASE",
        "description": "Case and surrounding white space are not significant (p4-02 §5).",
    },
    "NON_ASCII": {
        "bugType": "CAN_OF_WORMS",
        "description": "A character outside ASCII: Unicode-aware strip()/lower() would accept it "
        "(U+212A KELVIN SIGN lower-cases to 'k'; NBSP, U+3000, U+2028 and \\x1c-\\x1f are "
        "white space to Python). Text rules are ASCII-only (p4-02 §5.4).",
    },
    "CHECK_ORDER": {
        "bugType": "EDGE_CASE",
        "description": "Two rules are broken at once; the spec fixes which error wins.",
    },
    "SAS_COMMIT": {
        "bugType": "AUTH_BYPASS",
        "description": "The inviter's revealed identity must open the commitment it sent before "
        "it saw the accepter's identity; otherwise a man in the middle could grind the SAS.",
    },
    "URI_KEY": {
        "bugType": "AUTH_BYPASS",
        "description": "The inviter's identity key must be the one the URI commits to: someone "
        "who photographed the QR code cannot answer in the inviter's place.",
    },
    "DONE_LOST": {
        "bugType": "EDGE_CASE",
        "description": "The last PAIR_DONE is lost: the accepter must not report PAIRED and must "
        "say the outcome is unknown (p4-02 §11.7).",
    },
    "SPLIT": {
        "bugType": "EDGE_CASE",
        "description": "The same bytes delivered in other pieces must give the same result.",
    },
    "MALFORMED": {"bugType": "MISSING_CHECK", "description": "Input that must not parse."},
    "ONION_MISMATCH": {
        "bugType": "MISSING_CHECK",
        "description": "A URI whose onion is not the one derived from its secret.",
    },
    "NON_CANONICAL": {
        "bugType": "CAN_OF_WORMS",
        "description": "Base32 with non-zero spare bits decodes to the same secret in lax "
        "decoders; it must be rejected.",
    },
    "BAD_POINT": {
        "bugType": "MODIFIED_PARAMETER",
        "description": "A PAKE element outside the prime-order subgroup, non-canonical, or "
        "yielding K = identity (RFC 9382 §7).",
    },
    "WRONG_CODE": {
        "bugType": "AUTH_BYPASS",
        "description": "The peers hold different passwords: key confirmation must fail on the "
        "first MAC checked, and the invitation must be burnt.",
    },
    "TAMPERED": {
        "bugType": "AUTH_BYPASS",
        "description": "One bit of a MAC or of the sealed identity flipped in transit.",
    },
    "TRUNCATED": {"bugType": "MISSING_CHECK", "description": "A field or frame cut short."},
    "OVERSIZED": {"bugType": "MISSING_CHECK", "description": "A field or frame too long."},
    "OUT_OF_ORDER": {
        "bugType": "WRONG_STATE",
        "description": "A message the receiver's state does not accept: UNEXPECTED_MESSAGE.",
    },
    "EXPIRED": {
        "bugType": "MISSING_CHECK",
        "description": "An invitation used at or after its expiry time.",
    },
    "CONFIG": {
        "bugType": "MISSING_CHECK",
        "description": "machine.new with a config the Test-vector interface refuses (p4-02 §14).",
    },
    "BURNT": {
        "bugType": "MISSING_CHECK",
        "description": "A second PAKE for an invitation already consumed: one guess per code.",
    },
    "TIMEOUT": {"bugType": "MISSING_CHECK", "description": "The pairing timer fires."},
    "VERSION": {
        "bugType": "MODIFIED_PARAMETER",
        "description": "A pairing version other than 1.",
    },
}

NOW = 1_795_000_000_000  # ms; the machines' clock
EXPIRES = NOW + 600_000
CODE = "7-guitarist-revenge"
WRONG_CODE = "7-guitarist-reward"
SEED_A = hashlib.sha256(b"accepter").digest()
SEED_I = hashlib.sha256(b"inviter").digest()
SEED_X = hashlib.sha256(b"intruder").digest()
SECRET = hashlib.sha256(b"p4 vector pairing uri secret").digest()


def _pub(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


URI = str(InviteUri.create(SECRET, EXPIRES // 1000, _pub(SEED_I)))


def _draw(label: str) -> bytes:
    return hashlib.sha512(f"p4 vector pairing {label}".encode()).digest()


def _nonce(label: str) -> bytes:
    """A 32-byte identity nonce: SHA-256("p4 vector pairing nonce " + label)."""
    return hashlib.sha256(f"p4 vector pairing nonce {label}".encode()).digest()


def _case(
    ident: str,
    comment: str,
    tags: list[str],
    inp: Json,
    op: Any,
    error: str | None = None,
    flags: list[str] | None = None,
    acceptable: bool = False,
) -> Json:
    """A codec/crypto test whose value (or error) is what the reference op returns."""
    try:
        value = op({}, inp)
        got_error = None
    except P4Error as exc:
        value, got_error = None, exc.code.name
    if got_error != error:
        raise AssertionError(f"{ident}: reference gave {got_error or value}, expected {error}")
    if error is not None:
        return test(ident, comment, [T[t] for t in tags], inp, valid=False, error=error,
                    flags=flags)  # fmt: skip
    return test(ident, comment, [T[t] for t in tags], inp, value=value, flags=flags,
                acceptable=acceptable)  # fmt: skip


OPS = adapter.vectors_ops()

# ----------------------------------------------------------------------------- invitations


def _code_cases() -> list[Json]:
    op = OPS["pairing.parse_code"]
    cases = [
        _case("pair-code-canonical", "canonical short code", ["code-parse", "code-onion"],
              {"code": CODE}, op),
        _case("pair-code-normalised", "upper case and surrounding white space",
              ["code-parse", "code-canonical"], {"code": " \t7-GUITARIST-Revenge\n"}, op,
              flags=["NORMALISE"]),
        _case("pair-code-max-nameplate", "nameplate 9999999, last words of both lists",
              ["code-parse"], {"code": "9999999-yucatan-zulu"}, op),
        _case("pair-code-generated",
              "ShortCode.generate(ff ff ff ff a9 e9) → 4967725-passenger-treadmill",
              ["code-generate"],
              {"code": str(ShortCode.generate(bytes.fromhex("ffffffffa9e9")))}, op),
        _case("pair-code-ascii-white-space", "only SP, HT, LF and CR around the code",
              ["code-parse", "ascii"], {"code": "\r\n 7-guitarist-revenge \t"}, op,
              flags=["NORMALISE"]),
    ]  # fmt: skip
    if cases[3]["input"]["code"] != "4967725-passenger-treadmill":
        raise AssertionError("code generation changed")
    bad = [
        ("empty", "", "empty string"),
        ("one-word", "7-guitarist", "one word"),
        ("three-words", "7-guitarist-revenge-aardvark", "three words"),
        ("nameplate-zero", "0-guitarist-revenge", "nameplate 0"),
        ("nameplate-leading-zero", "07-guitarist-revenge", "leading zero"),
        ("nameplate-too-big", "10000000-guitarist-revenge", "nameplate 10000000 (8 digits)"),
        ("nameplate-missing", "-guitarist-revenge", "no nameplate"),
        ("words-swapped", "7-revenge-guitarist", "even word first"),
        ("two-odd-words", "7-guitarist-guitarist", "second word from the odd list"),
        ("unknown-word", "7-guitarist-apples", "word in neither list"),
        ("spaces", "7 guitarist revenge", "spaces instead of hyphens"),
        ("double-hyphen", "7--guitarist-revenge", "empty field"),
        ("non-ascii-digit", "\u0667-guitarist-revenge", "Arabic-Indic digit seven"),
    ]
    for ident, text, comment in bad:
        cases.append(_case(f"pair-code-bad-{ident}", comment, ["code-parse"], {"code": text}, op,
                           error="PAIR_CODE_MALFORMED", flags=["MALFORMED"]))  # fmt: skip
    non_ascii = [
        (
            "kelvin-sign",
            "7-hamburger-\u212aiwi",
            "U+212A KELVIN SIGN for the k of kiwi (lower() would read it as k)",
        ),
        ("nbsp", "\u00a07-guitarist-revenge", "a leading U+00A0 NO-BREAK SPACE"),
        ("ideographic-space", "7-guitarist-revenge\u3000", "a trailing U+3000 IDEOGRAPHIC SPACE"),
        ("line-separator", "7-guitarist-revenge\u2028", "a trailing U+2028 LINE SEPARATOR"),
        ("file-separator", "\x1c7-guitarist-revenge", "a leading U+001C (str.strip() strips it)"),
        ("unit-separator", "7-guitarist-revenge\x1f", "a trailing U+001F"),
        (
            "vertical-tab",
            "\x0b7-guitarist-revenge",
            "a leading VT: only SP, HT, LF, CR are stripped",
        ),
        ("fullwidth-digit", "\uff17-guitarist-revenge", "U+FF17 FULLWIDTH DIGIT SEVEN"),
    ]
    for ident, text, comment in non_ascii:
        cases.append(_case(f"pair-code-bad-{ident}", comment, ["code-parse", "ascii"],
                           {"code": text}, op, error="PAIR_CODE_MALFORMED",
                           flags=["NON_ASCII"]))  # fmt: skip
    return cases


def _uri_cases() -> list[Json]:
    op = OPS["pairing.parse_uri"]
    q = dict(p.split("=") for p in URI.split("?")[1].split("&"))
    other_onion = InviteUri(bytes(32), 1, bytes(16)).onion

    def mk(**kw: str) -> str:
        return "p4:pair?" + "&".join(f"{k}={v}" for k, v in {**q, **kw}.items())

    reordered = "p4:pair?" + "&".join(f"{k}={q[k]}" for k in ("x", "i", "s", "o", "v"))
    bumped = q["s"][:-1] + chr(ord(q["s"][-1]) + 1)  # non-zero spare bits: non-canonical
    bumped_i = q["i"][:-1] + chr(ord(q["i"][-1]) + 1)
    cases = [
        _case("pair-uri-canonical", "URI as generated", ["uri-parse", "uri-onion",
              "uri-generate"], {"uri": URI}, op),
        _case("pair-uri-upper", "the whole URI upper case", ["uri-parse"], {"uri": URI.upper()},
              op, flags=["NORMALISE"]),
        _case("pair-uri-reordered", "parameters in another order", ["uri-parse"],
              {"uri": reordered}, op),
        _case("pair-uri-zero-expiry", "expiry 0 parses (the machine rejects it later)",
              ["uri-parse"], {"uri": str(InviteUri.create(SECRET, 0, _pub(SEED_I)))}, op),
        _case("pair-uri-ascii-white-space", "only SP, HT, LF and CR around the URI",
              ["uri-parse", "ascii"], {"uri": "\t " + URI + "\r\n"}, op, flags=["NORMALISE"]),
    ]  # fmt: skip
    malformed = "PAIR_URI_MALFORMED"
    bad = [
        ("scheme", URI.replace("p4:", "p5:"), "another scheme", malformed, "uri-parse"),
        ("path", URI.replace("pair?", "pear?"), "another path", malformed, "uri-parse"),
        ("no-query", "p4:pair", "no parameters", malformed, "uri-parse"),
        ("missing-x", mk().rsplit("&", 1)[0], "no expiry", malformed, "uri-parse"),
        ("missing-i", "p4:pair?" + "&".join(f"{k}={v}" for k, v in q.items() if k != "i"),
         "no key commitment (a revision-1 URI)", malformed, "uri-key"),
        ("key-commitment-short", mk(i=q["i"][:-1]), "25 base32 characters for i", malformed,
         "uri-key"),
        ("key-commitment-non-canonical", mk(i=bumped_i), "non-zero spare bits in i",
         malformed, "uri-canonical"),
        ("duplicate", URI + "&x=1", "x twice", malformed, "uri-parse"),
        ("unknown-param", URI + "&z=1", "unknown parameter", malformed, "uri-parse"),
        ("empty-param", URI + "&", "empty parameter", malformed, "uri-parse"),
        ("version-2", mk(v="2"), "version 2", "VERSION_UNSUPPORTED", "uri-version"),
        ("version-leading-zero", mk(v="01"), "version with a leading zero", malformed,
         "uri-parse"),
        ("secret-short", mk(s=q["s"][:-1]), "51 base32 characters", malformed, "uri-parse"),
        ("secret-padding", mk(s=q["s"] + "===="), "base32 padding", malformed, "uri-parse"),
        ("secret-bad-char", mk(s="1" + q["s"][1:]), "'1' is not base32", malformed, "uri-parse"),
        ("secret-non-canonical", mk(s=bumped),
         "non-zero spare bits in the last character", malformed, "uri-canonical"),
        ("version-2-non-canonical", mk(v="2", s=bumped),
         "version 2 and a non-canonical secret: the version is checked first",
         "VERSION_UNSUPPORTED", "uri-order"),
        ("version-2-onion-mismatch", mk(v="2", o=other_onion),
         "version 2 and an onion of another secret: the version is checked first",
         "VERSION_UNSUPPORTED", "uri-order"),
        ("version-2-new-parameter", mk(v="2") + "&n=1",
         "version 2 with a parameter this version does not know: the version first",
         "VERSION_UNSUPPORTED", "uri-order"),
        ("version-bad-and-non-canonical", mk(v="01", s=bumped),
         "an ill-formed version is malformed, whatever else is wrong", malformed, "uri-order"),
        ("non-canonical-onion-mismatch", mk(s=bumped, o=other_onion),
         "non-canonical secret and an onion of another secret", malformed, "uri-order"),
        ("onion-mismatch", mk(o=other_onion), "valid onion of another secret", malformed,
         "uri-onion-check"),
        ("onion-suffix", mk(o=q["o"] + ".onion"), "onion with .onion suffix", malformed,
         "uri-parse"),
        ("expiry-negative", mk(x="-1"), "negative expiry", malformed, "uri-parse"),
        ("expiry-leading-zero", mk(x="0" + q["x"]), "expiry with a leading zero", malformed,
         "uri-parse"),
    ]  # fmt: skip
    flag_of = {
        "secret-non-canonical": "NON_CANONICAL",
        "onion-mismatch": "ONION_MISMATCH",
        "version-2": "VERSION",
        "key-commitment-non-canonical": "NON_CANONICAL",
    }
    for ident, text, comment, err, tag in bad:
        flag = "CHECK_ORDER" if tag == "uri-order" else flag_of.get(ident, "MALFORMED")
        cases.append(_case(f"pair-uri-bad-{ident}", comment, [tag], {"uri": text}, op, error=err,
                           flags=[flag]))  # fmt: skip
    non_ascii = [
        ("kelvin-sign", URI.replace("k", "\u212a", 1), "U+212A KELVIN SIGN for a k"),
        ("nbsp", "\u00a0" + URI, "a leading U+00A0 NO-BREAK SPACE"),
        ("ideographic-space", URI + "\u3000", "a trailing U+3000 IDEOGRAPHIC SPACE"),
        ("line-separator", URI + "\u2028", "a trailing U+2028 LINE SEPARATOR"),
        ("record-separator", "\x1e" + URI, "a leading U+001E"),
        ("dotless-i", URI.replace("i", "\u0131", 1), "U+0131 for an i"),
    ]
    for ident, text, comment in non_ascii:
        if text == URI:
            raise AssertionError(f"{ident}: nothing replaced")
        cases.append(_case(f"pair-uri-bad-{ident}", comment, ["uri-parse", "ascii"],
                           {"uri": text}, op, error=malformed, flags=["NON_ASCII"]))  # fmt: skip
    return cases


# ----------------------------------------------------------------------------- crypto

# RFC 9382 Appendix B: (A, B, w, pA, pB, K, Ke, cA, cB), P-256 vectors.
RFC9382_B = [
    ("server", "client",
     "2ee57912099d31560b3a44b1184b9b4866e904c49d12ac5042c97dca461b1a5f",
     "04a56fa807caaa53a4d28dbb9853b9815c61a411118a6fe516a8798434751470f9010153ac33d0d5f2047ffdb1"
     "a3e42c9b4e6be662766e1eeb4116988ede5f912c",
     "0406557e482bd03097ad0cbaa5df82115460d951e3451962f1eaf4367a420676d09857ccbc522686c83d1852ab"
     "fa8ed6e4a1155cf8f1543ceca528afb591a1e0b7",
     "0412af7e89717850671913e6b469ace67bd90a4df8ce45c2af19010175e37eed69f75897996d539356e2fa6a40"
     "6d528501f907e04d97515fbe83db277b715d3325",
     "0e0672dc86f8e45565d338b0540abe69",
     "58ad4aa88e0b60d5061eb6b5dd93e80d9c4f00d127c65b3b35b1b5281fee38f0",
     "d3e2e547f1ae04f2dbdbf0fc4b79f8ecff2dff314b5d32fe9fcef2fb26dc459b"),
    ("", "client",
     "0548d8729f730589e579b0475a582c1608138ddf7054b73b5381c7e883e2efae",
     "04a897b769e681c62ac1c2357319a3d363f610839c4477720d24cbe32f5fd85f44fb92ba966578c1b712be6962"
     "498834078262caa5b441ecfa9d4a9485720e918a",
     "04e0f816fd1c35e22065d5556215c097e799390d16661c386e0ecc84593974a61b881a8c82327687d050186297"
     "0c64565560cb5671f696048050ca66ca5f8cc7fc",
     "048f83ec9f6e4f87cc6f9dc740bdc2769725f923364f01c84148c049a39a735ebda82eac03e00112fd6a571068"
     "2767cff5361f7e819e53d8d3c3a2922e0d837aa6",
     "642f05c473c2cd79909f9a841e2f30a7",
     "47d29e6666af1b7dd450d571233085d7a9866e4d49d2645e2df975489521232b",
     "3313c5cefc361d27fb16847a91c2a73b766ffa90a4839122a9b70a2f6bd1d6df"),
    ("server", "",
     "626e0cdc7b14c9db3e52a0b1b3a768c98e37852d5db30febe0497b14eae8c254",
     "04f88fb71c99bfffaea370966b7eb99cd4be0ff1a7d335caac4211c4afd855e2e15a873b298503ad8ba1d9cbb9"
     "a392d2ba309b48bfd7879aefd0f2cea6009763b0",
     "040c269d6be017dccb15182ac6bfcd9e2a14de019dd587eaf4bdfd353f031101e7cca177f8eb362a6e83e7d5e7"
     "29c0732e1b528879c086f39ba0f31a9661bd34db",
     "0445ee233b8ecb51ebd6e7da3f307e88a1616bae2166121221fdc0dadb986afaf3ec8a988dc9c626fa3b99f58a"
     "7ca7c9b844bb3e8dd9554aafc5b53813504c1cbe",
     "005184ff460da2ce59062c87733c299c",
     "bc9f9bbe99f26d0b2260e6456e05a86196a3307ec6663a18bf6ac825736533b2",
     "c2370e1bf813b086dff0d834e74425a06e6390f48f5411900276dcccc5a297ec"),
    ("", "",
     "7bf46c454b4c1b25799527d896508afd5fc62ef4ec59db1efb49113063d70cca",
     "04a65b367a3f613cf9f0654b1b28a1e3a8a40387956c8ba6063e8658563890f46ca1ef6a676598889fc28de295"
     "0ab8120b79a5ef1ea4c9f44bc98f585634b46d66",
     "04589f13218822710d98d8b2123a079041052d9941b9cf88c6617ddb2fcc0494662eea8ba6b64692dc31825003"
     "0c6af045cb738bc81ba35b043c3dcb46adf6f58d",
     "041a3c03d51b452537ca2a1fea6110353c6d5ed483c4f0f86f4492ca3f378d40a994b4477f93c64d928edbbcd3"
     "e85a7c709b7ea73ee97986ce3d1438e135543772",
     "fc6374762ba5cf11f4b2caa08b2cd1b9",
     "dfb4db8d48ae5a675963ea5e6c19d98d4ea028d8e898dad96ea19a80ade95dca",
     "d0f0609d1613138d354f7e95f19fb556bf52d751947241e8c7118df5ef0ae175"),
]  # fmt: skip


def _key_schedule_cases() -> list[Json]:
    cases = []
    for n, (a, b, w, pa, pb, k, ke, ca, cb) in enumerate(RFC9382_B, 1):
        tt = C.transcript(a.encode(), b.encode(), *(bytes.fromhex(v) for v in (pa, pb, k, w)))
        case = _case(f"pair-rfc9382-b{n}", f"RFC 9382 Appendix B vector {n} (A={a!r}, B={b!r})",
                     ["key-schedule"], {"TT": tt.hex()}, OPS["pairing.key_schedule"],
                     flags=["RFC9382"])  # fmt: skip
        got = case["expect"]["value"]
        if (got["Ke"], got["cA"], got["cB"]) != (ke, ca, cb):
            raise AssertionError(f"RFC 9382 vector {n} does not reproduce")
        cases.append(case)
    tt = bytes.fromhex(cases[0]["input"]["TT"])
    cases.append(_case("pair-ks-aad", "a non-empty AAD enters only the ConfirmationKeys info "
                       "(RFC 9382 §4): Ke and Ka are those of the empty AAD, KcA, KcB, cA, cB "
                       "differ", ["key-schedule"], {"TT": tt.hex(), "aad": b"p4 test".hex()},
                       OPS["pairing.key_schedule"]))
    return cases


def _spake2_cases() -> list[Json]:
    op = OPS["pairing.spake2"]
    runs = [
        ("pair-spake2-code", "short code 7-guitarist-revenge (the §13 example)", CODE.encode(),
         "7", "x", "y"),
        ("pair-spake2-uri", "URI secret, slot 'uri'", SECRET, "uri", "uri x", "uri y"),
        ("pair-spake2-nameplate-max", "nameplate 9999999", b"9999999-yucatan-zulu", "9999999",
         "x9", "y9"),
    ]  # fmt: skip
    cases = []
    for ident, comment, pw, slot, lx, ly in runs:
        inp = {"password": pw.hex(), "slot": slot, "x_random": _draw(lx).hex(),
               "y_random": _draw(ly).hex()}  # fmt: skip
        cases.append(_case(ident, comment, ["w", "pake", "scalar", "key-schedule"], inp, op))
    return cases


def _kdf_cases(spake: list[Json]) -> list[Json]:
    op = OPS["pairing.kdf"]
    pub_a, pub_i = _pub(SEED_A), _pub(SEED_I)
    cases = []
    for s in spake:
        v = s["expect"]["value"]
        inp = {"Ke": v["Ke"], "TT": v["TT"], "accepter_identity": pub_a.hex(),
               "inviter_identity": pub_i.hex(), "accepter_nonce": _nonce("x").hex(),
               "inviter_nonce": _nonce("y").hex()}  # fmt: skip
        cases.append(_case(s["id"].replace("spake2", "kdf"), "keys after " + s["comment"],
                           ["th", "root", "commit", "uri-key"], inp, op))  # fmt: skip
    base = cases[0]["input"]
    swapped = {**base, "accepter_identity": pub_i.hex(), "inviter_identity": pub_a.hex()}
    cases.append(_case("pair-kdf-roles-swapped", "identities in the other roles: other keys",
                       ["root"], swapped, op))  # fmt: skip
    other_nonce = {**base, "accepter_nonce": _nonce("x'").hex()}
    cases.append(_case("pair-kdf-other-accepter-nonce",
                       "another accepter nonce: another SAS and root key, same commitment",
                       ["root", "commit"], other_nonce, op, flags=["SAS_COMMIT"]))  # fmt: skip
    return cases


def _identity_cases(kdf: Json) -> list[Json]:
    op = OPS["pairing.open_identity"]
    v = kdf["expect"]["value"]
    th, ka, ki = (bytes.fromhex(v[k]) for k in ("TH", "k_identity_accepter", "k_identity_inviter"))
    sealed_a = C.seal_identity(ka, th, SigningKey(SEED_A), C.Role.ACCEPTER, _nonce("x"))
    sealed_i = C.seal_identity(ki, th, SigningKey(SEED_I), C.Role.INVITER, _nonce("y"))
    base = {"key": ka.hex(), "TH": th.hex(), "ciphertext": sealed_a.hex(), "sender": "accepter"}
    tampered = bytearray(sealed_a)
    tampered[40] ^= 0x01
    # a correctly sealed identity whose signature names the wrong role
    wrong_role = C.seal_identity(ka, th, SigningKey(SEED_A), C.Role.INVITER, _nonce("x"))
    cases = [
        _case("pair-identity-accepter", "the accepter's sealed identity (§13 example)",
              ["identity-seal", "identity-check"], base, op),
        _case("pair-identity-inviter", "the inviter's sealed identity",
              ["identity-seal", "identity-check"],
              {"key": ki.hex(), "TH": th.hex(), "ciphertext": sealed_i.hex(), "sender": "inviter"},
              op),
        _case("pair-identity-tampered", "one ciphertext bit flipped", ["identity-check"],
              {**base, "ciphertext": bytes(tampered).hex()}, op,
              error="PAIR_IDENTITY_INVALID", flags=["TAMPERED"]),
        _case("pair-identity-wrong-key", "opened with the inviter's key", ["identity-check"],
              {**base, "key": ki.hex()}, op, error="PAIR_IDENTITY_INVALID", flags=["TAMPERED"]),
        _case("pair-identity-wrong-th", "opened under another transcript hash",
              ["identity-check"], {**base, "TH": bytes(32).hex()}, op,
              error="PAIR_IDENTITY_INVALID", flags=["TAMPERED"]),
        _case("pair-identity-wrong-role", "signature names the inviter role, sent as accepter",
              ["identity-check"], {**base, "ciphertext": wrong_role.hex()}, op,
              error="PAIR_IDENTITY_INVALID", flags=["TAMPERED"]),
        _case("pair-identity-15-bytes", "a 15-byte ciphertext (shorter than the AEAD tag)",
              ["identity-check"], {**base, "ciphertext": sealed_a[:15].hex()}, op,
              error="PAIR_IDENTITY_INVALID", flags=["TRUNCATED"]),
        _case("pair-identity-empty", "an empty ciphertext", ["identity-check"],
              {**base, "ciphertext": ""}, op, error="PAIR_IDENTITY_INVALID",
              flags=["TRUNCATED"]),
        _case("pair-identity-revision-1", "a revision-1 sealed identity (119 bytes, no nonce)",
              ["identity-check"], {**base, "ciphertext": sealed_a[:119].hex()}, op,
              error="PAIR_IDENTITY_INVALID", flags=["TRUNCATED"]),
    ]  # fmt: skip
    return cases


# ----------------------------------------------------------------------------- messages


def _frame(ftype: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([1, ftype, flags]) + len(body).to_bytes(2, "big") + body


def _message_cases() -> list[Json]:
    op = OPS["pairing.decode"]
    el = bytes(range(32))
    mac = bytes(range(100, 132))
    cases = [
        _case("pair-msg-pake", "PAIR_PAKE", ["body-encode"],
              {"frame": _frame(0x10, encode_cbor({1: 1, 2: el})).hex()}, op),
        _case("pair-msg-confirm", "PAIR_CONFIRM", ["body-encode"],
              {"frame": _frame(0x11, encode_cbor({1: mac})).hex()}, op),
        _case("pair-msg-confirm-commitment", "PAIR_CONFIRM with the inviter's commitment",
              ["body-encode", "commit"],
              {"frame": _frame(0x11, encode_cbor({1: mac, 2: el})).hex()}, op),
        _case("pair-msg-identity", "PAIR_IDENTITY", ["body-encode"],
              {"frame": _frame(0x12, encode_cbor({1: bytes(154)})).hex()}, op),
        _case("pair-msg-done", "PAIR_DONE", ["body-encode"],
              {"frame": _frame(0x13, encode_cbor({1: mac})).hex()}, op),
    ]  # fmt: skip
    inv = "MESSAGE_INVALID"
    bad: list[tuple[str, str, bytes, str, str, str]] = [
        ("pake-missing-element", "no key 2", _frame(0x10, encode_cbor({1: 1})), inv,
         "body-schema", "TRUNCATED"),
        ("pake-extra-key", "key 3 added", _frame(0x10, encode_cbor({1: 1, 2: el, 3: 0})), inv,
         "body-schema", "OVERSIZED"),
        ("pake-element-31", "element of 31 bytes", _frame(0x10, encode_cbor({1: 1, 2: el[:31]})),
         inv, "body-schema", "TRUNCATED"),
        ("pake-element-33", "element of 33 bytes",
         _frame(0x10, encode_cbor({1: 1, 2: el + b"\x00"})), inv, "body-schema", "OVERSIZED"),
        ("pake-element-text", "element as a text string",
         _frame(0x10, encode_cbor({1: 1, 2: "x" * 32})), inv, "body-schema", "MALFORMED"),
        ("pake-version-bytes", "version as a byte string",
         _frame(0x10, encode_cbor({1: b"\x01", 2: el})), inv, "version-check", "MALFORMED"),
        ("pake-version-2", "version 2", _frame(0x10, encode_cbor({1: 2, 2: el})),
         "VERSION_UNSUPPORTED", "version-check", "VERSION"),
        ("pake-version-2-short-element", "version 2 and a short element: the schema first",
         _frame(0x10, encode_cbor({1: 2, 2: el[:31]})), inv, "version-check", "VERSION"),
        ("confirm-mac-31", "MAC of 31 bytes", _frame(0x11, encode_cbor({1: mac[:31]})), inv,
         "body-schema", "TRUNCATED"),
        ("confirm-commitment-31", "commitment of 31 bytes",
         _frame(0x11, encode_cbor({1: mac, 2: el[:31]})), inv, "body-schema", "TRUNCATED"),
        ("confirm-key-3", "PAIR_CONFIRM with key 3",
         _frame(0x11, encode_cbor({1: mac, 3: el})), inv, "body-schema", "OVERSIZED"),
        ("identity-153", "sealed identity of 153 bytes",
         _frame(0x12, encode_cbor({1: bytes(153)})), inv, "body-schema", "TRUNCATED"),
        ("identity-155", "sealed identity of 155 bytes",
         _frame(0x12, encode_cbor({1: bytes(155)})), inv, "body-schema", "OVERSIZED"),
        ("identity-revision-1", "a revision-1 sealed identity of 119 bytes",
         _frame(0x12, encode_cbor({1: bytes(119)})), inv, "body-schema", "TRUNCATED"),
        ("ignorable-type", "an ignorable frame type (0xEA) is not a pairing message",
         _frame(0xEA, b"grease"), "UNEXPECTED_MESSAGE", "body-schema", "MALFORMED"),
        ("rendezvous-type", "an RV_HELLO frame is not a pairing message",
         _frame(0x20, b"\xa0"), "UNEXPECTED_MESSAGE", "body-schema", "MALFORMED"),
        ("ping", "a PING frame is not a pairing message",
         _frame(0x02, encode_cbor({1: bytes(8)})), "UNEXPECTED_MESSAGE", "body-schema",
         "MALFORMED"),
        ("done-empty-map", "empty map", _frame(0x13, b"\xa0"), inv, "body-schema", "TRUNCATED"),
        ("pake-non-minimal", "version encoded as 18 01 (non-minimal CBOR)",
         _frame(0x10, b"\xa2\x01\x18\x01\x02\x58\x20" + el), "CBOR_NON_MINIMAL", "body-encode",
         "MALFORMED"),
        ("pake-flags", "flag bit set", _frame(0x10, encode_cbor({1: 1, 2: el}), flags=1),
         "FRAME_BAD_FLAGS", "body-encode", "MALFORMED"),
        ("frame-truncated", "frame cut in its body", _frame(0x11, encode_cbor({1: mac}))[:-1],
         "FRAME_TRUNCATED", "body-encode", "TRUNCATED"),
    ]  # fmt: skip
    for ident, comment, frame, err, tag, flag in bad:
        cases.append(_case(f"pair-msg-bad-{ident}", comment, [tag], {"frame": frame.hex()}, op,
                           error=err, flags=[flag]))  # fmt: skip
    return cases


# ----------------------------------------------------------------------------- transcripts


class _Rec:
    """One machine driven through the adapter hook; its steps become a transcript test."""

    def __init__(self, role: str, config: Json, rng_labels: list[str]) -> None:
        self.role = role
        self.config = config
        # each attempt draws a 64-byte scalar value, then a 32-byte identity nonce
        self.rng = [v for label in rng_labels for v in (_draw(label), _nonce(label))]
        self.m = adapter.new(role, config, list(self.rng))
        self.steps: list[Json] = []
        self.outs: list[Json] = []

    def step(self, now: int, inp: Json) -> list[bytes]:
        try:
            out = adapter.step(self.m, now, inp)
        except P4Error as exc:  # a refused input: the step answers the error (§14)
            out = {"error": exc.code.name}
        self.steps.append({"now": now, "in": inp})
        self.outs.append(out)
        return [bytes.fromhex(o["send"]) for o in out.get("out", []) if "send" in o]

    def recv(self, now: int, frame: bytes) -> list[bytes]:
        return self.step(now, {"recv": frame.hex()})

    def last(self) -> Json:
        return self.outs[-1]

    def case(self, ident: str, comment: str, tags: list[str], flags: list[str] | None = None
             ) -> Json:  # fmt: skip
        # every random value of the attempt, whether or not this run reached its draw
        inp = {"rng": [r.hex() for r in self.rng], "steps": self.steps}
        return test(ident, comment, [T[t] for t in tags], inp, value={"steps": self.outs},
                    flags=flags)  # fmt: skip

    def params(self) -> Json:
        return {"machine": "pairing", "role": self.role, "config": self.config}


def _cfg(seed: bytes, *, code: str | None = CODE, uri: str | None = None,
         expires_at: int | None = EXPIRES, timeout_ms: int | None = None) -> Json:  # fmt: skip
    cfg: Json = {"uri": uri} if uri is not None else {"code": code}
    cfg["identity_seed"] = seed.hex()
    if expires_at is not None:
        cfg["expires_at"] = expires_at
    if timeout_ms is not None:
        cfg["timeout_ms"] = timeout_ms
    return cfg


def _pair(label: str, code_a: str = CODE, uri: str | None = None,
          expires_at: int | None = EXPIRES) -> tuple[_Rec, _Rec]:  # fmt: skip
    a = _Rec("accepter", _cfg(SEED_A, code=code_a, uri=uri, expires_at=None),
             [f"{label}x".strip() if label else "x"])  # fmt: skip
    i = _Rec("inviter", _cfg(SEED_I, uri=uri, expires_at=expires_at),
             [f"{label}y".strip() if label else "y"])  # fmt: skip
    return a, i


def _honest(a: _Rec, i: _Rec, t: int = NOW) -> None:
    """Run both recorders to the end, one frame per step."""
    i.step(t, {"cmd": "start"})
    pending: list[tuple[_Rec, bytes]] = [(i, f) for f in a.step(t + 1, {"cmd": "start"})]
    now = t + 2
    while pending:
        dst, frame = pending.pop(0)
        src_out = dst.recv(now, frame)
        other = a if dst is i else i
        pending.extend((other, f) for f in src_out)
        now += 10
    ev_a = [o for out in a.outs for o in out["out"] if o.get("event") == "PAIRED"]
    ev_i = [o for out in i.outs for o in out["out"] if o.get("event") == "PAIRED"]
    if not ev_a or not ev_i or ev_a[0]["pair_root_key"] != ev_i[0]["pair_root_key"]:
        raise AssertionError("honest run did not pair with equal keys")


def _frames_of(a: _Rec, i: _Rec) -> tuple[list[bytes], list[bytes]]:
    """The frames each recorder sent in an honest run (accepter's, inviter's)."""

    def sent(r: _Rec) -> list[bytes]:
        return [bytes.fromhex(o["send"]) for out in r.outs for o in out["out"] if "send" in o]

    return sent(a), sent(i)


def _flip(frame: bytes, index: int = -1) -> bytes:
    b = bytearray(frame)
    b[index] ^= 0x01
    return bytes(b)


def _transcripts() -> list[Json]:
    groups: dict[str, tuple[Json, list[Json]]] = {}

    def add(rec: _Rec, ident: str, comment: str, tags: list[str],
            flags: list[str] | None = None) -> None:  # fmt: skip
        key = repr(rec.params())
        groups.setdefault(key, (rec.params(), []))[1].append(rec.case(ident, comment, tags, flags))

    def inviter(label: str = "y", **kw: Any) -> _Rec:
        r = _Rec("inviter", _cfg(SEED_I, **kw), [label])
        r.step(NOW, {"cmd": "start"})
        return r

    def accepter(label: str = "x", seed: bytes = SEED_A, **kw: Any) -> _Rec:
        r = _Rec("accepter", _cfg(seed, expires_at=None, **kw), [label])
        r.step(NOW + 1, {"cmd": "start"})
        return r

    # honest runs: short code and URI, both roles
    a, i = _pair("")
    _honest(a, i)
    add(
        i,
        "pair-tx-code-inviter",
        "short code, inviter side (§13 example)",
        [
            "table",
            "single-use",
            "confirm-inviter",
            "identity-check",
            "done-check",
            "root",
            "commit",
            "done-inviter",
        ],
    )
    add(
        a,
        "pair-tx-code-accepter",
        "short code, accepter side (§13 example)",
        [
            "table",
            "confirm-accepter",
            "identity-check",
            "root",
            "tor-only",
            "commit-check",
            "done-inviter",
        ],
    )
    fa, fi = _frames_of(a, i)  # each: PAKE, CONFIRM, IDENTITY, DONE
    ua, ui = _pair("uri ", uri=URI, expires_at=None)
    _honest(ua, ui)
    add(
        ui,
        "pair-tx-uri-inviter",
        "URI invitation, inviter side (expiry from the URI)",
        ["table", "uri-onion", "root"],
    )
    add(
        ua,
        "pair-tx-uri-accepter",
        "URI invitation, accepter side: the inviter's key matches the URI's commitment",
        ["table", "root", "uri-key-check"],
    )

    # any split: the same bytes in other pieces give the same outputs
    sa = accepter()
    sa.recv(NOW + 2, fi[0] + fi[1])
    sa.recv(NOW + 3, fi[2] + fi[3])
    add(
        sa,
        "pair-tx-accepter-two-frames-per-recv",
        "the inviter's frames two per recv",
        ["any-split"],
        ["SPLIT"],
    )
    sa = accepter()
    stream = b"".join(fi)
    for n, (lo, hi) in enumerate([(0, 1), (1, 60), (60, 200), (200, len(stream))]):
        sa.recv(NOW + 2 + n, stream[lo:hi])
    add(
        sa,
        "pair-tx-accepter-odd-splits",
        "the inviter's stream cut at bytes 1, 60 and 200",
        ["any-split"],
        ["SPLIT"],
    )
    si = inviter()
    si.recv(NOW + 2, b"".join(fa))
    add(
        si,
        "pair-tx-inviter-one-recv",
        "the accepter's whole stream in one recv",
        ["any-split", "done-inviter"],
        ["SPLIT"],
    )

    si = inviter()
    padding = _frame(0x04, bytes(13_200)) * 5  # 66,025 bytes of PADDING
    si.recv(NOW + 2, padding + fa[0])
    add(
        si,
        "pair-tx-inviter-large-recv",
        "more than 64 KiB in one recv: five PADDING frames, then the PAIR_PAKE",
        ["any-split", "core-frames"],
        ["SPLIT"],
    )

    # the last PAIR_DONE: lost, late, tampered, followed by junk
    la = accepter()
    for n, f in enumerate(fi[:3]):
        la.recv(NOW + 2 + n, f)
    la.step(NOW + 1 + 60_000, {"tick": True})
    add(
        la,
        "pair-tx-accepter-done-lost-timeout",
        "the inviter's PAIR_DONE never comes: ERROR(TIMEOUT), PAIRING_FAILED(PAIR_OUTCOME_UNKNOWN)",
        ["outcome-unknown", "timer"],
        ["DONE_LOST"],
    )
    la = accepter()
    for n, f in enumerate(fi[:3]):
        la.recv(NOW + 2 + n, f)
    la.step(NOW + 10, {"recv": ""})
    add(
        la,
        "pair-tx-accepter-done-lost-stream",
        "the stream ends after the accepter's PAIR_DONE: PAIR_OUTCOME_UNKNOWN, nothing stored",
        ["outcome-unknown", "lost"],
        ["DONE_LOST"],
    )
    la = accepter()
    for n, f in enumerate(fi[:3]):
        la.recv(NOW + 2 + n, f)
    la.recv(NOW + 10, _flip(fi[3]))
    add(
        la,
        "pair-tx-tampered-done-inviter",
        "the inviter's PAIR_DONE with one bit flipped",
        ["done-inviter"],
        ["TAMPERED"],
    )
    la = accepter()
    for n, f in enumerate(fi[:3]):
        la.recv(NOW + 2 + n, f)
    la.recv(NOW + 10, _frame(0x01, error_body(0x0210, "bad done")))
    add(
        la,
        "pair-tx-accepter-done-refused",
        "the inviter refuses the accepter's PAIR_DONE: a definite failure with the inviter's code",
        ["peer-error", "done-inviter"],
    )
    junk = _frame(0x10, b"\xa2\x01\x18\x01")  # non-minimal CBOR, cut short
    la = accepter()
    for n, f in enumerate(fi[:3]):
        la.recv(NOW + 2 + n, f)
    la.recv(NOW + 10, fi[3] + junk)
    add(
        la,
        "pair-tx-accepter-done-then-junk",
        "PAIR_DONE and a malformed frame in one recv: PAIRED, the junk discarded",
        ["terminal-discard", "any-split"],
    )
    li = inviter()
    for n, f in enumerate(fa[:3]):
        li.recv(NOW + 2 + n, f)
    li.recv(NOW + 10, fa[3] + junk)
    add(
        li,
        "pair-tx-inviter-done-then-junk",
        "PAIR_DONE and a malformed frame in one recv: "
        "PAIRED and PAIR_DONE sent, the junk discarded",
        ["terminal-discard", "done-inviter"],
    )

    # wrong code: the accepter detects it on cB; the inviter learns it from ERROR; burnt after
    wa = _Rec("accepter", _cfg(SEED_A, code=WRONG_CODE, expires_at=None), ["wrong x"])
    wi = _Rec("inviter", _cfg(SEED_I), ["wrong y"])
    wi.step(NOW, {"cmd": "start"})
    (pake_a,) = wa.step(NOW + 1, {"cmd": "start"})
    pake_i, confirm_i = wi.recv(NOW + 2, pake_a)
    wa.recv(NOW + 3, pake_i)
    (err,) = wa.recv(NOW + 4, confirm_i)
    add(
        wa,
        "pair-tx-wrong-code-accepter",
        "wrong words: cB does not verify",
        ["confirm-accepter", "burn-both"],
        ["WRONG_CODE"],
    )
    wi.recv(NOW + 5, err)
    (pake_a2,) = _Rec("accepter", _cfg(SEED_A, expires_at=None), ["retry x"]).step(
        NOW + 6, {"cmd": "start"})  # fmt: skip
    wi.step(NOW + 6, {"recv": ""})
    wi.recv(NOW + 7, pake_a2)
    add(
        wi,
        "pair-tx-wrong-code-inviter-burnt",
        "wrong words: the accepter's ERROR ends the attempt; the right code afterwards is refused",
        ["peer-error", "burnt-reply", "single-use", "burn-both"],
        ["WRONG_CODE", "BURNT"],
    )

    # wrong code seen by the inviter: an accepter that skips checking cB and sends its cA
    xi = inviter("wrong2 y")
    w_bad = C.derive_w(WRONG_CODE.encode(), "7")
    x = C.draw_scalar(_draw("wrong2 x"))
    p_a = C.spake2_element(C.Role.ACCEPTER, w_bad, x)
    pake_i, _ = xi.recv(NOW + 1, _frame(0x10, encode_cbor({1: 1, 2: p_a})))
    p_b = pake_i[11:43]
    k = C.spake2_shared(C.Role.ACCEPTER, w_bad, x, p_b)
    ida, idb = C.spake2_ids("7")
    ca = C.key_schedule(C.transcript(ida, idb, p_a, p_b, k, w_bad)).ca
    xi.recv(NOW + 2, _frame(0x11, encode_cbor({1: ca})))
    add(
        xi,
        "pair-tx-wrong-code-inviter",
        "wrong words: cA does not verify at the inviter",
        ["confirm-inviter"],
        ["WRONG_CODE"],
    )

    # tampered messages
    ti = inviter()
    ti.recv(NOW + 2, fa[0])
    ti.recv(NOW + 12, _flip(fa[1]))
    add(ti, "pair-tx-tampered-ca", "cA with one bit flipped", ["confirm-inviter"], ["TAMPERED"])
    ta = accepter()
    ta.recv(NOW + 2, fi[0])
    ta.recv(NOW + 3, _flip(fi[1], 12))
    add(ta, "pair-tx-tampered-cb", "cB with one bit flipped", ["confirm-accepter"], ["TAMPERED"])
    ti = inviter()
    ti.recv(NOW + 2, fa[0])
    ti.recv(NOW + 12, fa[1])
    ti.recv(NOW + 13, _flip(fa[2], 60))
    add(
        ti,
        "pair-tx-tampered-identity",
        "sealed accepter identity with one bit flipped",
        ["identity-check"],
        ["TAMPERED"],
    )
    ti = inviter()
    for n, f in enumerate(fa[:3]):
        ti.recv(NOW + 2 + n, f)
    ti.recv(NOW + 30, _flip(fa[3]))
    add(
        ti,
        "pair-tx-tampered-done",
        "the accepter's PAIR_DONE MAC with one bit flipped",
        ["done-check"],
        ["TAMPERED"],
    )
    ta = accepter()
    ta.recv(NOW + 2, fi[0])
    ta.recv(NOW + 3, fi[1])
    ta.recv(NOW + 4, _flip(fi[2], 30))
    add(
        ta,
        "pair-tx-tampered-identity-inviter",
        "sealed inviter identity with one bit flipped",
        ["identity-check"],
        ["TAMPERED"],
    )
    ta = accepter()
    ta.recv(NOW + 2, fi[0])
    ta.recv(NOW + 3, _flip(fi[1], -1))  # the last byte of the commitment
    ta.recv(NOW + 4, fi[2])
    add(
        ta,
        "pair-tx-commitment-mismatch",
        "the inviter's identity does not open the commitment it sent in PAIR_CONFIRM",
        ["commit-check"],
        ["SAS_COMMIT"],
    )

    # the URI commits to another identity key than the one that answers
    other_uri = str(InviteUri.create(SECRET, EXPIRES // 1000, _pub(SEED_X)))
    ka, ki = _pair("uri ", uri=URI, expires_at=None)
    _honest(ka, ki)
    _, uki = _frames_of(ka, ki)
    ma = _Rec("accepter", _cfg(SEED_A, uri=other_uri, expires_at=None), ["uri x"])
    ma.step(NOW + 1, {"cmd": "start"})
    for n, f in enumerate(uki[:3]):
        ma.recv(NOW + 2 + n, f)
    add(
        ma,
        "pair-tx-uri-inviter-mismatch",
        "the inviter's key is not the one the URI commits to: PAIR_INVITER_MISMATCH, no PAIR_DONE",
        ["uri-key-check"],
        ["URI_KEY"],
    )

    # self-pairing: both devices use the same identity key
    sa = _Rec("accepter", _cfg(SEED_I, expires_at=None), ["self x"])
    si = inviter("self y")
    (p,) = sa.step(NOW + 1, {"cmd": "start"})
    p1, c1 = si.recv(NOW + 2, p)
    sa.recv(NOW + 3, p1)
    c2, id2 = sa.recv(NOW + 4, c1)
    si.recv(NOW + 5, c2)
    si.recv(NOW + 6, id2)
    add(
        si,
        "pair-tx-self",
        "the accepter presents the inviter's own identity key",
        ["identity-self"],
    )

    # bad PAKE elements and versions at the inviter: the stream ends, the invitation does not
    bad_pakes: list[tuple[str, str, dict[int, CborValue], str, str]] = [
        ("identity-point", "element = the identity point", {1: 1, 2: bytes([1]) + bytes(31)},
         "element-check", "BAD_POINT"),
        ("small-order", "element of order 2", {1: 1, 2: bytes([0xEC]) + b"\xff" * 30 + b"\x7f"},
         "element-check", "BAD_POINT"),
        ("k-identity", "element = w·M, so pA − w·M is the identity",
         {1: 1, 2: crypto_scalarmult_ed25519_noclamp(C.derive_w(CODE.encode(), "7"), C.M_POINT)},
         "k-identity", "BAD_POINT"),
        ("version-2", "PAIR_PAKE version 2", {1: 2, 2: fa[0][11:43]}, "version-check", "VERSION"),
        ("element-31", "element of 31 bytes (truncated field)", {1: 1, 2: fa[0][11:42]},
         "body-schema", "TRUNCATED"),
        ("element-33", "element of 33 bytes (oversized field)", {1: 1, 2: fa[0][11:43] + b"\0"},
         "body-schema", "OVERSIZED"),
    ]  # fmt: skip
    for ident, comment, body, tag, flag in bad_pakes:
        bi = inviter()
        bi.recv(NOW + 1, _frame(0x10, encode_cbor(body)))
        add(
            bi,
            f"pair-tx-pake-{ident}",
            comment + ": ERROR, the stream ends, the invitation stays",
            [tag, "stream-drop"],
            [flag],
        )
    bi = inviter()
    bi.recv(NOW + 1, _frame(0x10, encode_cbor({1: 1, 2: bytes([1]) + bytes(31)})))
    bi.recv(NOW + 2, fa[0])  # same stream: ignored
    bi.step(NOW + 3, {"recv": ""})
    for n, f in enumerate(fa):  # a new stream: the real accepter pairs
        bi.recv(NOW + 4 + n, f)
    add(
        bi,
        "pair-tx-bad-pake-then-pair",
        "an invalid PAIR_PAKE costs its stream only: the next stream pairs",
        ["stream-drop", "single-use"],
        ["BAD_POINT"],
    )
    bi = inviter()
    bi.recv(NOW + 1, b"\x07junk on the stream")
    bi.step(NOW + 2, {"recv": ""})
    bi.recv(NOW + 3, fa[0])
    add(
        bi,
        "pair-tx-junk-then-pake",
        "junk before any PAKE: framing ERROR on that stream; the next stream is answered",
        ["stream-drop"],
        ["MALFORMED"],
    )

    # check order
    ei = inviter(expires_at=NOW + 1000)
    ei.recv(NOW + 1000, _frame(0x10, encode_cbor({1: 1, 2: bytes([1]) + bytes(31)})))
    add(
        ei,
        "pair-tx-late-invalid-pake",
        "an invalid element at the expiry time: expiry is checked before the element",
        ["check-order", "expiry-enforce"],
        ["CHECK_ORDER"],
    )
    ei = inviter(expires_at=NOW + 1000)
    ei.recv(NOW + 1000, _frame(0x10, encode_cbor({1: 1})))
    ei.step(NOW + 1001, {"tick": True})
    add(
        ei,
        "pair-tx-late-malformed-pake",
        "a malformed PAIR_PAKE at the expiry time: the schema "
        "first (its stream ends), then the timer expires the invitation",
        ["check-order", "expiry-timer"],
        ["CHECK_ORDER"],
    )
    oa = accepter()
    oa.recv(NOW + 2, _frame(0x11, encode_cbor({1: bytes(31)})))
    add(
        oa,
        "pair-tx-schema-before-state",
        "a malformed PAIR_CONFIRM while waiting for "
        "PAIR_PAKE: MESSAGE_INVALID (schema), not UNEXPECTED_MESSAGE",
        ["check-order"],
        ["CHECK_ORDER"],
    )
    oa = accepter()
    oa.recv(NOW + 2, fi[0])
    oa.recv(NOW + 3, _frame(0x11, encode_cbor({1: fi[1][9:41]})))
    add(
        oa,
        "pair-tx-confirm-without-commitment",
        "the inviter's PAIR_CONFIRM without key 2",
        ["commit", "body-schema"],
        ["TRUNCATED"],
    )
    oi = inviter()
    oi.recv(NOW + 2, fa[0])
    oi.recv(NOW + 3, _frame(0x11, encode_cbor({1: fa[1][9:41], 2: bytes(32)})))
    add(
        oi,
        "pair-tx-confirm-with-commitment",
        "the accepter's PAIR_CONFIRM with a key 2",
        ["commit", "body-schema"],
        ["OVERSIZED"],
    )

    # truncated and oversized frames on the stream
    bi = inviter()
    bi.recv(NOW + 1, fa[0][:-1])
    bi.step(EXPIRES, {"tick": True})
    add(
        bi,
        "pair-tx-frame-truncated",
        "PAIR_PAKE missing its last byte: buffered, then the invitation expires",
        ["expiry-timer"],
        ["TRUNCATED", "EXPIRED"],
    )
    bi = inviter()
    bi.recv(NOW + 1, bytes.fromhex("01100040") + b"\x00")
    add(bi, "pair-tx-frame-too-large", "frame header declares 16384 body bytes", ["body-schema",
        "stream-drop"], ["OVERSIZED"])  # fmt: skip

    # out of order
    oi = inviter()
    oi.recv(NOW + 1, fa[1])
    add(
        oi,
        "pair-tx-inviter-confirm-first",
        "PAIR_CONFIRM before PAIR_PAKE: the stream ends",
        ["unexpected", "stream-drop"],
        ["OUT_OF_ORDER"],
    )
    oi = inviter()
    oi.recv(NOW + 1, fa[0])
    oi.recv(NOW + 2, fa[0])
    add(
        oi,
        "pair-tx-inviter-pake-twice",
        "PAIR_PAKE repeated on the stream",
        ["unexpected"],
        ["OUT_OF_ORDER"],
    )
    oi = inviter()
    oi.recv(NOW + 1, fa[0])
    oi.recv(NOW + 2, fa[2])
    add(
        oi,
        "pair-tx-inviter-identity-before-confirm",
        "PAIR_IDENTITY before PAIR_CONFIRM",
        ["unexpected"],
        ["OUT_OF_ORDER"],
    )
    oa = accepter()
    oa.recv(NOW + 2, fi[1])
    add(
        oa,
        "pair-tx-accepter-confirm-first",
        "PAIR_CONFIRM before PAIR_PAKE",
        ["unexpected"],
        ["OUT_OF_ORDER"],
    )
    oa = accepter()
    oa.recv(NOW + 2, fi[0])
    oa.recv(NOW + 3, _frame(0x13, encode_cbor({1: bytes(32)})))
    add(
        oa,
        "pair-tx-accepter-done",
        "PAIR_DONE before PAIR_CONFIRM",
        ["unexpected"],
        ["OUT_OF_ORDER"],
    )
    oa = accepter()
    oa.recv(NOW + 2, _frame(0x20, b"\xa0"))
    add(
        oa,
        "pair-tx-accepter-rendezvous-frame",
        "an RV_HELLO during pairing",
        ["unexpected"],
        ["OUT_OF_ORDER"],
    )

    # framing-level frames, ERROR and terminal states
    ci = inviter()
    ci.recv(NOW + 1, encode_frame(Frame(FrameType.PING, 0, encode_cbor({1: bytes(8)})), Path.TOR))
    ci.recv(NOW + 2, _frame(0xEA, b"grease") + _frame(0x04, b"\x00\x00"))
    ci.recv(NOW + 3, fa[0])
    add(
        ci,
        "pair-tx-ping-grease-padding",
        "PING answered, GREASE and PADDING discarded",
        ["core-frames"],
    )
    ci = inviter()
    ci.recv(NOW + 1, _frame(0x01, error_body(0x0005, "gave up")))
    ci.recv(NOW + 2, fa[0])  # same stream: ignored after the peer's ERROR
    ci.step(NOW + 3, {"recv": ""})
    ci.recv(NOW + 4, fa[0])  # a new stream: answered, the invitation was not consumed
    add(
        ci,
        "pair-tx-inviter-peer-error-before-pake",
        "ERROR before any PAKE: that stream is dead, the invitation is not; a new stream pairs",
        ["peer-error", "stream-drop"],
    )
    ci = inviter()
    ci.recv(NOW + 1, fa[0])
    ci.recv(NOW + 2, _frame(0x01, error_body(0x0005, "gave up")))
    ci.step(NOW + 3, {"recv": ""})
    ci.recv(NOW + 4, fa[0])
    add(
        ci,
        "pair-tx-inviter-peer-error",
        "ERROR after the PAKE: failed and burnt",
        ["peer-error", "burnt-reply"],
        ["BURNT"],
    )
    ci = inviter()
    ci.recv(NOW + 1, fa[0])
    ci.recv(NOW + 2, _frame(0x01, encode_cbor({1: 5, 2: b"not text"})))
    add(ci, "pair-tx-broken-error-frame", "an ERROR frame with a byte-string reason: "
        "MESSAGE_INVALID, and no ERROR sent in reply", ["peer-error", "single-use"],
        ["MALFORMED"])  # fmt: skip
    pa_ = accepter()
    for n, f in enumerate(fi):
        pa_.recv(NOW + 2 + n, f)
    pa_.recv(NOW + 10, fi[1])
    pa_.recv(NOW + 11, _frame(0x01, error_body(0x0005, "late")))
    add(
        pa_,
        "pair-tx-accepter-paired-discards",
        "after PAIRED, further frames are discarded",
        ["terminal-discard"],
    )

    ea_ = accepter()
    ea_.recv(NOW + 2, fi[0] + fi[1][:20])
    ea_.step(NOW + 3, {"recv": ""})
    add(
        ea_,
        "pair-tx-accepter-eof-mid-frame",
        "the stream ends inside a frame: PROTOCOL_VIOLATION (a lost stream), not FRAME_TRUNCATED",
        ["lost", "check-order"],
        ["TRUNCATED", "CHECK_ORDER"],
    )
    li = inviter()
    li.recv(NOW + 1, fa[0][:20])
    li.step(NOW + 2, {"recv": ""})
    li.recv(NOW + 3, fa[0])
    add(
        li,
        "pair-tx-inviter-eof-mid-frame",
        "before the PAKE, a stream that ends inside a frame is just gone; the next one is answered",
        ["lost", "stream-drop"],
        ["TRUNCATED"],
    )
    ci = inviter()
    ci.recv(NOW + 1, fa[0])
    ci.recv(NOW + 2, _frame(0x01, error_body(0x0005, "x"), flags=0x80))
    add(
        ci,
        "pair-tx-error-frame-bad-flags",
        "a frame of type ERROR that fails the header check: FRAME_BAD_FLAGS, never answered",
        ["peer-error"],
        ["MALFORMED"],
    )

    # connection loss
    li = inviter()
    li.step(NOW + 1, {"recv": ""})
    li.recv(NOW + 2, fa[0])
    li.step(NOW + 3, {"recv": ""})
    add(
        li,
        "pair-tx-connection-lost",
        "lost before the PAKE: keep waiting; after: burnt",
        ["lost", "single-use"],
    )

    # expiry and timeout
    ei = inviter(expires_at=NOW + 1000)
    ei.step(NOW + 999, {"tick": True})
    ei.step(NOW + 1000, {"tick": True})
    ei.recv(NOW + 1001, fa[0])
    add(
        ei,
        "pair-tx-expiry-timer",
        "the expiry timer fires: FAILED without a frame; then burnt",
        ["expiry-timer", "burnt-reply"],
        ["EXPIRED"],
    )
    ei = inviter(expires_at=NOW + 1000)
    ei.recv(NOW + 1000, fa[0])
    add(
        ei,
        "pair-tx-pake-after-expiry",
        "PAIR_PAKE at the expiry time, timer not yet run",
        ["expiry-enforce"],
        ["EXPIRED"],
    )
    ea = _Rec("accepter", _cfg(SEED_A, uri=str(InviteUri.create(SECRET, NOW // 1000,
              _pub(SEED_I))), expires_at=None), ["x"])  # fmt: skip
    ea.step(NOW, {"cmd": "start"})
    add(
        ea,
        "pair-tx-accepter-uri-expired",
        "URI whose expiry is now: start fails, nothing sent",
        ["expiry-accepter"],
        ["EXPIRED"],
    )
    ta = _Rec("accepter", _cfg(SEED_A, expires_at=None, timeout_ms=60_000), ["x"])
    ta.step(NOW, {"cmd": "start"})
    ta.step(NOW + 59_999, {"tick": True})
    ta.step(NOW + 60_000, {"tick": True})
    add(ta, "pair-tx-accepter-timeout", "no answer within 60 s", ["timer"], ["TIMEOUT"])
    ta = _Rec("accepter", _cfg(SEED_A, expires_at=None, timeout_ms=60_000), ["x"])
    ta.step(NOW, {"cmd": "start"})
    ta.recv(NOW + 60_000, fi[0])  # a frame at the deadline does not fire the timer
    ta.step(NOW + 60_000, {"tick": True})
    add(
        ta,
        "pair-tx-timer-on-tick-only",
        "timers fire only on tick, not on a late frame",
        ["timer"],
        ["TIMEOUT"],
    )
    ti = _Rec("inviter", _cfg(SEED_I, timeout_ms=60_000), ["y"])
    ti.step(NOW, {"cmd": "start"})
    ti.recv(NOW + 5, fa[0])
    ti.step(NOW + 60_005, {"tick": True})
    ti.step(NOW + 60_006, {"recv": ""})
    ti.recv(NOW + 60_007, fa[0])
    add(ti, "pair-tx-inviter-timeout", "no PAIR_CONFIRM within 60 s: burnt", ["timer",
        "single-use"], ["TIMEOUT", "BURNT"])  # fmt: skip

    # points clean-room ports had to guess (p4-02 revision 3)
    r = _Rec("inviter", _cfg(SEED_I), ["y"])
    r.recv(NOW, encode_frame(Frame(FrameType.PING, 0, encode_cbor({1: bytes(8)})), Path.TOR))
    r.recv(NOW, fa[0])
    r.step(NOW + 1, {"cmd": "start"})
    r.recv(NOW + 2, encode_frame(Frame(FrameType.PING, 0, encode_cbor({1: bytes(8)})), Path.TOR))
    add(r, "pair-tx-idle-recv-refused", "bytes before start (a PING, a PAIR_PAKE) are refused "
        "with UNEXPECTED_MESSAGE, the machine unchanged; after start a PING is answered",
        ["idle", "refused", "core-frames"], ["OUT_OF_ORDER"])
    r = accepter()
    r.step(NOW + 2, {"cmd": "start"})
    add(r, "pair-tx-start-twice", "a second start is refused with UNEXPECTED_MESSAGE, the "
        "machine unchanged (nothing sent again, nothing drawn)", ["refused"], ["OUT_OF_ORDER"])
    r = inviter(expires_at=NOW + 1000)
    r.step(NOW + 1000, {"tick": True})
    r.recv(NOW + 1001, b"\xff\xff\xff\xff\xff")
    r.recv(NOW + 1002, fa[0])
    r.step(NOW + 1003, {"recv": ""})
    r.recv(NOW + 1004, _frame(0x10, b"\xa0"))
    add(r, "pair-tx-terminal-pake-any-body", "FAILED by expiry: bytes that fail framing end the "
        "stream silently (the PAIR_PAKE after them on that stream is ignored); on a new stream "
        "a type-0x10 frame whose body breaks the schema is still a further PAIR_PAKE: "
        "PAIR_INVITATION_EXPIRED", ["terminal-pake", "terminal-discard", "burnt-reply"],
        ["EXPIRED", "MALFORMED"])
    ax, ix = _pair("", expires_at=NOW + 1000)
    _honest(ax, ix)
    ix.step(NOW + 900, {"recv": ""})
    ix.recv(NOW + 5000, fa[0])
    add(ix, "pair-tx-burnt-after-expiry-time", "paired before the expiry time; a PAIR_PAKE after "
        "it: the invitation ended by pairing, not by expiry, so PAIR_INVITATION_BURNT",
        ["terminal-pake", "burnt-reply"], ["BURNT"])
    r = inviter()
    r.recv(NOW + 1, fi[1])
    add(r, "pair-tx-confirm-wrong-direction-early", "the inviter in WAIT_PAKE gets a PAIR_CONFIRM "
        "with key 2 (only the inviter sends key 2): schema (PAIR-55) before state, so "
        "MESSAGE_INVALID, not UNEXPECTED_MESSAGE; only the stream ends", ["check-order",
        "commit", "stream-drop"], ["CHECK_ORDER"])  # fmt: skip
    r = accepter()
    r.recv(NOW + 2, _frame(0x01, error_body(0x7777, "from the future")))
    add(r, "pair-tx-peer-unregistered-code", "the peer's ERROR carries 0x7777, which the "
        "registry does not name: PAIRING_FAILED and error report it as received, \"0x7777\"",
        ["peer-error"])
    big = 2**53 + 1
    r = _Rec("inviter", {**_cfg(SEED_I, expires_at=None), "expires_at": {"int": str(big)}},
             ["y"])  # fmt: skip
    r.step(NOW, {"cmd": "start"})
    r.recv(NOW + 1, fa[0])
    add(r, "pair-tx-expires-at-lossless", "expires_at 2^53 + 1 in the lossless form: a uint64, "
        "compared exactly; the PAKE is answered", ["uint64-expiry", "expiry-enforce"],
        ["EXPIRED"])

    # machine.new refuses a bad config, in p4-02 §14's order [PAIR-68]; no step runs
    def bad_config(ident: str, comment: str, role: str, config: Json, error: str) -> None:
        params = {"machine": "pairing", "role": role, "config": config}
        groups.setdefault(repr(params), (params, []))[1].append(
            test(ident, comment, [T["config"]], {"rng": [], "steps": []}, valid=False,
                 error=error, flags=["CONFIG"]))

    good = _cfg(SEED_I)
    bad_config("pair-tx-config-unknown-key", "a key the config table does not define",
               "inviter", {**good, "colour": "blue"}, "MESSAGE_INVALID")
    bad_config("pair-tx-config-code-and-uri", "both code and uri",
               "inviter", {**good, "uri": "p4:pair"}, "MESSAGE_INVALID")
    bad_config("pair-tx-config-no-invitation", "neither code nor uri",
               "accepter", {"identity_seed": SEED_A.hex()}, "MESSAGE_INVALID")
    bad_config("pair-tx-config-timeout-zero", "timeout_ms 0 (before the bad code is parsed)",
               "accepter", {**_cfg(SEED_A, code="no code", expires_at=None), "timeout_ms": 0},
               "MESSAGE_INVALID")
    bad_config("pair-tx-config-bad-code", "a code that does not parse (before the short seed)",
               "accepter", {**_cfg(SEED_A, code="no code", expires_at=None),
                            "identity_seed": SEED_A[:31].hex()}, "PAIR_CODE_MALFORMED")
    bad_config("pair-tx-config-short-seed", "a 31-byte identity seed",
               "inviter", {**good, "identity_seed": SEED_I[:31].hex()}, "IDENTITY_KEY_INVALID")

    return [group("machine.transcript", tests, params) for params, tests in groups.values()]


# ----------------------------------------------------------------------------- pairs


def _pair_cases() -> list[Json]:
    def vec(ident: str, comment: str, tags: list[str], cfg_a: Json, cfg_i: Json,
            final: Json, flags: list[str] | None = None, equal: bool = True) -> Json:  # fmt: skip
        inp = {
            "rng": {"inviter": [_draw(f"{ident} y").hex(), _nonce(f"{ident} y").hex()],
                    "accepter": [_draw(f"{ident} x").hex(), _nonce(f"{ident} x").hex()]},
            "script": [{"role": "inviter", "now": NOW, "in": {"cmd": "start"}},
                       {"role": "accepter", "now": NOW + 5, "in": {"cmd": "start"}}],
            "latencyMs": 10,
            "tick": {"everyMs": 10_000, "max": 20},
        }  # fmt: skip
        value: Json = {"final": final}
        if equal:
            value["equal"] = [["PAIRED", "pair_root_key"], ["PAIRED", "sas"]]
            # both or neither, as far as two messages allow (p4-02 §11.7): the accepter never
            # ends PAIRED while the inviter failed; when the inviter's PAIR_DONE is lost the
            # accepter says it does not know (PAIR_OUTCOME_UNKNOWN).  When the accepter's PAIR_PAKE
            # is lost, its own timer fails it and its ERROR only ends the inviter's stream
            # (PAIR-62): the inviter keeps waiting in WAIT_PAKE until its invitation expires,
            # which is later than the relay's ticks reach.
            value["underFaults"] = [
                {"inviter": {"state": "FAILED"}, "accepter": {"state": "FAILED"}},
                {"inviter": {"state": "PAIRED"}, "accepter": {"state": "FAILED"}},
                {"inviter": {"state": "WAIT_PAKE"}, "accepter": {"state": "FAILED"}},
            ]
        t = test(ident, comment, [T[x] for x in tags], inp, value=value, flags=flags)
        t["_config"] = {"accepter": cfg_a, "inviter": cfg_i}
        return t

    paired = {"inviter": {"state": "PAIRED", "events": [{"event": "PAIRED"}]},
              "accepter": {"state": "PAIRED", "events": [{"event": "PAIRED"}]}}  # fmt: skip
    cases = [
        vec("pair-pair-code", "short code, both roles", ["table", "root"],
            _cfg(SEED_A, expires_at=None), _cfg(SEED_I), paired),
        vec("pair-pair-uri", "URI, both roles", ["table", "root", "uri-onion"],
            _cfg(SEED_A, uri=URI, expires_at=None), _cfg(SEED_I, uri=URI, expires_at=None),
            paired),
        vec("pair-pair-wrong-code", "different words: both fail, nobody pairs",
            ["confirm-accepter", "burn-both"],
            _cfg(SEED_A, code=WRONG_CODE, expires_at=None), _cfg(SEED_I),
            {"inviter": {"state": "FAILED",
                         "events": [{"event": "PAIRING_FAILED", "code": "PAIR_CONFIRM_FAILED"}]},
             "accepter": {"state": "FAILED", "errors": ["PAIR_CONFIRM_FAILED"]}},
            ["WRONG_CODE"], equal=False),
        vec("pair-pair-other-nameplate", "same words, other nameplate: both fail",
            ["code-password", "confirm-accepter"],
            _cfg(SEED_A, code="8-guitarist-revenge", expires_at=None), _cfg(SEED_I),
            {"inviter": {"state": "FAILED"}, "accepter": {"state": "FAILED"}},
            ["WRONG_CODE"], equal=False),
    ]  # fmt: skip
    return cases


def _pair_groups() -> list[Json]:
    out = []
    for t in _pair_cases():
        cfg = t.pop("_config")
        out.append(group("machine.pair", [t], {"machine": "pairing",
                                               "roles": ["inviter", "accepter"],
                                               "config": cfg}))  # fmt: skip
    return out


def build() -> dict[str, Json]:
    try:
        spake = _spake2_cases()
        kdf = _kdf_cases(spake)
        files = {
            "pairing/invite.json": envelope("pairing", SPEC, REV, NOTES, [
                group("pairing.parse_code", _code_cases()),
                group("pairing.parse_uri", _uri_cases()),
            ]),
            "pairing/crypto.json": envelope("pairing", SPEC, REV, NOTES, [
                group("pairing.key_schedule", _key_schedule_cases()),
                group("pairing.spake2", spake),
                group("pairing.kdf", kdf),
                group("pairing.open_identity", _identity_cases(kdf[0])),
            ]),
            "pairing/messages.json": envelope("pairing", SPEC, REV, NOTES, [
                group("pairing.decode", _message_cases()),
            ]),
            "pairing/transcripts.json": envelope("pairing", SPEC, REV, NOTES, _transcripts()),
            "pairing/pairs.json": envelope("pairing", SPEC, REV, NOTES, _pair_groups()),
        }  # fmt: skip
    except P4Error as exc:  # pragma: no cover - a builder bug, not a vector
        raise AssertionError(f"reference raised {exc}") from exc
    return files


if __name__ == "__main__":  # pragma: no cover - debugging aid
    from ._envelope import dump

    for name, obj in build().items():
        print(name, obj["numberOfTests"], len(dump(obj)))
