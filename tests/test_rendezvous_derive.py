"""Rendezvous derivation (p4-03 §5): mirrored keys, independence, roles, epochs, HKDF bytes."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, LocalProtocolError
from p4ref.rendezvous import (
    Role,
    derive_epoch_keys,
    epoch_of,
    epochs_to_accept,
    epochs_to_dial,
    epochs_to_publish,
    role_of,
)
from p4ref.rendezvous._derive import INFO_PREFIX, derive_key, hkdf_info, hkdf_salt
from p4ref.rendezvous._onion import expanded_secret_key, onion_address_from_seed

keys32 = st.binary(min_size=32, max_size=32)


def _pub(label: bytes) -> bytes:
    return bytes(SigningKey(hashlib.sha256(label).digest()).verify_key)


ROOT = hashlib.sha256(b"p4 test pair root").digest()
A, B = _pub(b"alice"), _pub(b"bob")
EPOCH = 20416


def _rfc5869(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 by hand (RFC 5869 §2.2–2.3), L = 32: one block."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


@given(keys32, keys32, keys32, st.integers(0, 2**40))
@settings(max_examples=60)
def test_both_peers_derive_mirrored_keys(root: bytes, a: bytes, b: bytes, epoch: int) -> None:
    if a == b:
        return
    ka = derive_epoch_keys(root, a, b, epoch)
    kb = derive_epoch_keys(root, b, a, epoch)
    assert ka.my_role is kb.my_role.other
    assert ka.is_leader != kb.is_leader
    assert ka.my_onion_seed == kb.peer_onion_seed and ka.peer_onion_seed == kb.my_onion_seed
    assert ka.my_onion_address == kb.peer_onion_address
    assert ka.peer_onion_address == kb.my_onion_address
    assert ka.my_client_auth_pub == kb.peer_client_auth_pub
    assert ka.peer_client_auth_pub == kb.my_client_auth_pub
    assert crypto_scalarmult_base(ka.my_client_auth_priv) == ka.my_client_auth_pub
    assert ka.my_onion_address != ka.peer_onion_address


def test_exact_hkdf_inputs() -> None:
    low, high = (A, B) if A < B else (B, A)
    salt = hkdf_salt(low, high)
    assert salt == low + high and len(salt) == 64
    info = hkdf_info(b"onion-seed", Role.LOW, EPOCH)
    assert info == b"P4-RDV-v1\x00onion-seed\x00low\x00" + EPOCH.to_bytes(8, "big")
    assert info.startswith(INFO_PREFIX)
    k = derive_epoch_keys(ROOT, low, high, EPOCH)
    assert k.my_role is Role.LOW
    assert k.my_onion_seed == _rfc5869(ROOT, salt, info)
    assert k.peer_onion_seed == _rfc5869(ROOT, salt, hkdf_info(b"onion-seed", Role.HIGH, EPOCH))
    auth_low = _rfc5869(ROOT, salt, hkdf_info(b"client-auth", Role.LOW, EPOCH))
    assert k.my_client_auth_priv == auth_low
    assert k.my_expanded_secret_key == expanded_secret_key(k.my_onion_seed)
    assert k.my_onion_address == onion_address_from_seed(k.my_onion_seed)
    assert len(k.my_onion_address) == 56


def test_secrets_not_in_repr() -> None:
    k = derive_epoch_keys(ROOT, A, B, EPOCH)
    text = repr(k)
    for secret in (k.my_onion_seed, k.peer_onion_seed, k.my_client_auth_priv):
        assert secret.hex() not in text and repr(secret) not in text


@given(keys32, keys32)
@settings(max_examples=30)
def test_different_root_key_gives_unrelated_outputs(r1: bytes, r2: bytes) -> None:
    if r1 == r2:
        return
    k1, k2 = derive_epoch_keys(r1, A, B, EPOCH), derive_epoch_keys(r2, A, B, EPOCH)
    v1 = {k1.my_onion_address, k1.peer_onion_address, k1.my_client_auth_pub.hex()}
    v2 = {k2.my_onion_address, k2.peer_onion_address, k2.my_client_auth_pub.hex()}
    assert not v1 & v2


def test_epochs_and_roles_separate_everything() -> None:
    k = derive_epoch_keys(ROOT, A, B, EPOCH)
    k2 = derive_epoch_keys(ROOT, A, B, EPOCH + 1)
    outputs = [
        k.my_onion_seed, k.peer_onion_seed, k.my_client_auth_priv,
        k2.my_onion_seed, k2.peer_onion_seed, k2.my_client_auth_priv,
    ]
    assert len(set(outputs)) == len(outputs)


def test_third_party_with_identity_keys_only_cannot_derive() -> None:
    """Everything depends on the pair root key: an attacker who knows both identity keys and
    guesses any other root (here: zeros, an identity key, the other key, their hash) gets
    nothing in common with the real outputs."""
    real = derive_epoch_keys(ROOT, A, B, EPOCH)
    guesses = [bytes(32), A, B, hashlib.sha256(A + B).digest(), hashlib.sha256(B + A).digest()]
    for g in guesses:
        k = derive_epoch_keys(g, A, B, EPOCH)
        assert k.my_onion_address != real.my_onion_address
        assert k.peer_onion_address != real.peer_onion_address
        assert k.my_client_auth_pub != real.my_client_auth_pub
    # another pair that shares identity A but has its own root learns nothing about (A, B)
    c = _pub(b"carol")
    kc = derive_epoch_keys(hashlib.sha256(b"other root").digest(), A, c, EPOCH)
    assert {kc.my_onion_address, kc.peer_onion_address}.isdisjoint(
        {real.my_onion_address, real.peer_onion_address}
    )


def test_same_identity_salt_binds_the_pair() -> None:
    """The same root key under another pair of identities gives other onions."""
    c = _pub(b"carol")
    assert derive_epoch_keys(ROOT, A, c, EPOCH).my_onion_address != (
        derive_epoch_keys(ROOT, A, B, EPOCH).my_onion_address
    )


def test_roles() -> None:
    lo, hi = (A, B) if A < B else (B, A)
    assert role_of(lo, hi) is Role.LOW and role_of(hi, lo) is Role.HIGH
    assert role_of(b"\x00" * 31 + b"\x01", b"\x01" + b"\x00" * 31) is Role.LOW
    with pytest.raises(LocalProtocolError) as e:
        role_of(A, A)
    assert e.value.code is ErrorCode.RDV_KEY_INVALID


@pytest.mark.parametrize(
    "root,my,peer",
    [(b"\x00" * 31, A, B), (ROOT, A[:31], B), (ROOT, A, B + b"\x00"), (ROOT, A, A)],
)
def test_bad_key_inputs(root: bytes, my: bytes, peer: bytes) -> None:
    with pytest.raises(LocalProtocolError) as e:
        derive_epoch_keys(root, my, peer, EPOCH)
    assert e.value.code is ErrorCode.RDV_KEY_INVALID


def test_epochs() -> None:
    assert epoch_of(0) == 0 and epoch_of(86399) == 0 and epoch_of(86400) == 1
    assert epoch_of(1_764_000_000) == 20416
    assert epochs_to_accept(1_764_000_000) == (20415, 20416, 20417)
    assert epochs_to_accept(10) == (0, 1)
    with pytest.raises(LocalProtocolError):
        hkdf_info(b"x", Role.LOW, 2**64)
    assert derive_key(ROOT, b"", b"x", Role.HIGH, 0) != derive_key(ROOT, b"", b"x", Role.LOW, 0)


def test_publish_and_dial_windows() -> None:
    """RDV-14: publish the current epoch (and the previous one for the first hour); dial the
    current, then the previous, then the next."""
    start = 20416 * 86400
    assert epochs_to_publish(start) == (20416, 20415)
    assert epochs_to_publish(start + 3599) == (20416, 20415)
    assert epochs_to_publish(start + 3600) == (20416,)
    assert epochs_to_publish(100) == (0,)
    assert epochs_to_dial(start + 5) == (20416, 20415, 20417)
    assert epochs_to_dial(5) == (0, 1)
