"""L1 identity: the device's Ed25519 key and its human-facing device ID (p4-02 §3).

- :class:`Identity`, :func:`generate_identity`, :func:`check_public_key`, :func:`verify` — the key
  and the verification rules (p4-02 §3.1).
- :func:`device_id`, :func:`parse_device_id` — the text form with Luhn mod 32 check
  characters (p4-02 §3.2, §3.3).

Pure: no file or OS access here; the profile store (:mod:`p4ref.io.store`) keeps the seed.
"""

from __future__ import annotations

from p4ref.identity._device_id import (
    ALPHABET,
    DEVICE_ID_LEN,
    PUBLIC_KEY_LEN,
    device_id,
    luhn32_check_char,
    parse_device_id,
)
from p4ref.identity._keys import (
    SEED_LEN,
    SIGNATURE_LEN,
    Identity,
    check_public_key,
    generate_identity,
    verify,
)

__all__ = [
    "ALPHABET",
    "DEVICE_ID_LEN",
    "PUBLIC_KEY_LEN",
    "SEED_LEN",
    "SIGNATURE_LEN",
    "Identity",
    "check_public_key",
    "device_id",
    "generate_identity",
    "luhn32_check_char",
    "parse_device_id",
    "verify",
]
