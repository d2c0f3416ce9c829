"""Device-ID text form: what a human reads, types and compares (p4-02 §3.2, §3.3).

A device ID is the 32-byte Ed25519 public key written in RFC 4648 base32 (upper case, no
padding: 52 characters), cut into four groups of 13 characters, each followed by one
Luhn mod 32 check character computed over that group (56 characters), shown as eight groups
of seven joined by ``-``::

    25NJQAM-CWEFLPM-VKL73J4-SZAHHIT-HOC4XT3-KTCGJNJ-PAINGR5-YHKENAI   (p4-02 §3.2.2)

Parsing (p4-02 §3.3) removes U+0020 SPACE and U+002D HYPHEN-MINUS, maps ASCII ``a``-``z`` to
upper case [IDN-9] and then checks, in this order [IDN-8]: length 56 [IDN-10], alphabet
[IDN-11], the four check characters [IDN-12], the unused low bits of the last data character
[IDN-13]. The digits ``0``, ``1``, ``8`` and ``9`` are *rejected*, not normalised to
``O``/``I``/``B``: the encoder never emits them, so such a character is a mistyped one, and
rejecting it keeps every implementation's accepted language identical [IDN-11].

Error behaviour: every single-character substitution is detected (Luhn mod N detects all of
them); an adjacent transposition goes unnoticed only when it swaps ``A`` and ``7`` inside one
14-character group (code points 0 and 31, the one pair Luhn mod 32 cannot tell apart).
"""

from __future__ import annotations

from p4ref.errors import DecodeError, ErrorCode, LocalProtocolError

__all__ = [
    "ALPHABET",
    "DEVICE_ID_LEN",
    "PUBLIC_KEY_LEN",
    "device_id",
    "luhn32_check_char",
    "parse_device_id",
]

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
"""RFC 4648 §6 base32 alphabet; a character's Luhn code point is its index here."""

PUBLIC_KEY_LEN = 32
DATA_LEN = 52  # base32 characters for 256 bits (260 bits, the last 4 are zero)
GROUP_LEN = 13  # data characters per check character
DEVICE_ID_LEN = 56  # 52 data + 4 check characters, separators removed
DISPLAY_GROUP = 7  # characters per displayed group

_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_N = len(ALPHABET)  # 32
_LOWER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOOKALIKES = {"0": "O", "1": "I", "8": "B"}


def luhn32_check_char(group: str) -> str:
    """Luhn mod 32 check character of ``group`` (base32 characters), p4-02 §3.2.1 [IDN-7].

    Standard Luhn mod N: from the rightmost character leftwards, multiply the code point by
    2, 1, 2, 1, …; write each product in base 32 and add its two digits (``p // 32 + p % 32``);
    the check code point is ``(32 - sum % 32) % 32``.
    """
    factor = 2
    total = 0
    for ch in reversed(group):
        addend = factor * _INDEX[ch]
        total += addend // _N + addend % _N
        factor = 1 if factor == 2 else 2
    return ALPHABET[(_N - total % _N) % _N]


def _b32encode(data: bytes) -> str:
    """RFC 4648 base32, upper case, without padding."""
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    nchars = -(-nbits // 5)
    bits <<= nchars * 5 - nbits  # pad with zero bits to a whole number of characters
    return "".join(ALPHABET[(bits >> (5 * (nchars - 1 - i))) & 31] for i in range(nchars))


def device_id(public_key: bytes) -> str:
    """The display form of a 32-byte identity public key (p4-02 §3.2) [IDN-4]..[IDN-7].

    Raises :class:`LocalProtocolError` (IDENTITY_KEY_INVALID) for a key of another length.
    """
    if len(public_key) != PUBLIC_KEY_LEN:
        raise LocalProtocolError(
            ErrorCode.IDENTITY_KEY_INVALID,
            f"an identity public key is {PUBLIC_KEY_LEN} bytes, got {len(public_key)}",
        )
    data = _b32encode(bytes(public_key))
    assert len(data) == DATA_LEN
    chars: list[str] = []
    for g in range(0, DATA_LEN, GROUP_LEN):
        group = data[g : g + GROUP_LEN]
        chars.append(group + luhn32_check_char(group))
    full = "".join(chars)
    return "-".join(full[i : i + DISPLAY_GROUP] for i in range(0, DEVICE_ID_LEN, DISPLAY_GROUP))


def parse_device_id(text: str) -> bytes:
    """The 32-byte public key a device-ID text names (p4-02 §3.3) [IDN-8]..[IDN-13].

    Compare the returned keys, never the texts [IDN-14].

    Accepts lower case and any placement of spaces and ``-``. Raises :class:`DecodeError`
    with DEVICE_ID_MALFORMED (length, alphabet, non-zero padding bits) or
    DEVICE_ID_CHECK_FAILED (a check character does not match: a typo).
    """
    s = text.replace(" ", "").replace("-", "").translate(_LOWER)
    if len(s) != DEVICE_ID_LEN:
        raise DecodeError(
            ErrorCode.DEVICE_ID_MALFORMED,
            f"a device ID has {DEVICE_ID_LEN} letters and digits, this one has {len(s)}",
        )
    for pos, ch in enumerate(s):
        if ch not in _INDEX:
            hint = ""
            if ch in _LOOKALIKES:
                hint = f" (device IDs never contain {ch!r}; did you mean {_LOOKALIKES[ch]!r}?)"
            raise DecodeError(
                ErrorCode.DEVICE_ID_MALFORMED,
                f"character {pos + 1} ({ch!r}) is not a device-ID character{hint}",
            )
    data: list[str] = []
    step = GROUP_LEN + 1
    for g in range(4):
        chunk = s[g * step : (g + 1) * step]
        group, check = chunk[:GROUP_LEN], chunk[GROUP_LEN]
        if luhn32_check_char(group) != check:
            raise DecodeError(
                ErrorCode.DEVICE_ID_CHECK_FAILED,
                f"device ID does not check out in characters {g * step + 1}-{(g + 1) * step}"
                " (a mistyped or swapped character)",
            )
        data.append(group)
    value = 0
    for ch in "".join(data):
        value = (value << 5) | _INDEX[ch]
    if value & 0xF:
        raise DecodeError(
            ErrorCode.DEVICE_ID_MALFORMED,
            "the last key character has non-zero padding bits (not a canonical device ID)",
        )
    return (value >> 4).to_bytes(PUBLIC_KEY_LEN, "big")
