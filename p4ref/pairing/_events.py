"""Events the pairing machine emits (p4-02 §4): frozen, slotted, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorCode

__all__ = ["Event", "Paired", "PairingFailed"]


@dataclass(frozen=True, slots=True)
class Paired:
    """Pairing succeeded (p4-02 §4): the caller stores the peer and the pair root key."""

    peer_identity: bytes  # the peer's Ed25519 public key, 32 bytes
    pair_root_key: bytes  # 32 bytes, input of p4-03's derivations
    sas: str  # six decimal digits both users may compare

    def __post_init__(self) -> None:
        # p4-02 §7.7: the identity key and the root key are 32 bytes, the SAS six digits
        if len(self.peer_identity) != 32 or len(self.pair_root_key) != 32:
            raise ValueError("peer_identity and pair_root_key are 32 bytes")
        if len(self.sas) != 6 or not self.sas.isdigit():
            raise ValueError("sas is six decimal digits")

    def __repr__(self) -> str:  # never print the root key
        return f"Paired(peer_identity={self.peer_identity.hex()}, sas={self.sas!r})"


@dataclass(frozen=True, slots=True)
class PairingFailed:
    """Pairing ended without a result; the invitation is burnt (p4-02 §5.3)."""

    code: ErrorCode
    reason: str = ""
    #: the value of a peer's ERROR frame whose code the registry does not name (p4-00 CNV-38),
    #: reported as received; ``code`` is then PROTOCOL_VIOLATION for callers that need a name
    peer_code: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, ErrorCode):
            raise TypeError("code is an ErrorCode")


Event = Paired | PairingFailed
