"""Events the file-transfer machines hand to their driver (spec/p4-06-files-v1.md §9.4, §14.2).

Frozen and slotted.  Two kinds: requests to the driver (``ReadBlock``: read this block;
``Write``: write these bytes at this offset) and reports (the rest).  The machines never touch
a disk: the driver performs the request and answers with a command (``block``, ``read_failed``,
``write_failed``, ``finish``).  ``__post_init__`` re-checks shapes so a machine bug cannot leak a
malformed value upward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ._codec import HASH_LEN, MAX_DATA_LEN

__all__ = [
    "Accepted",
    "BlockVerified",
    "Cancelled",
    "Completed",
    "Event",
    "FileFailed",
    "FileVerified",
    "OfferReceived",
    "ReadBlock",
    "Refused",
    "Write",
]


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


@dataclass(frozen=True, slots=True)
class Accepted:
    """Sender: the receiver accepted; data flows from ``offset`` (§8.2)."""

    offset: int
    name = "ACCEPTED"


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """Sender: read block ``index`` (``length`` bytes at ``offset``) and answer with the
    ``block`` command when the channel has credit for it (§8.8)."""

    index: int
    offset: int
    length: int
    name = "READ_BLOCK"

    def __post_init__(self) -> None:
        _require(self.length > 0, "a block is not empty")


@dataclass(frozen=True, slots=True)
class Refused:
    """The receiver refused the offer with ``code`` (sender), or refused it on its own because
    the size is above ``max_size`` (receiver) (§8.2)."""

    code: int
    name = "REFUSED"


@dataclass(frozen=True, slots=True)
class Completed:
    """Sender: the receiver verified and stored every byte (FILE_COMPLETE, §8.4)."""

    name = "COMPLETED"


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The peer cancelled with FILE_CANCELLED (§8.5)."""

    name = "CANCELLED"


@dataclass(frozen=True, slots=True)
class FileFailed:
    """The machine entered FAILED with ``code``; ``by_peer`` when the peer's FILE_CANCEL or the
    end of its direction caused it (§8.5, §9)."""

    code: int
    by_peer: bool
    name = "FILE_FAILED"


@dataclass(frozen=True, slots=True)
class OfferReceived:
    """Receiver: a valid offer; answer with ``accept`` or ``refuse`` (§8.1)."""

    file_name: str
    size: int
    block_size: int
    root: bytes
    name = "OFFER_RECEIVED"

    def __post_init__(self) -> None:
        _require(len(self.root) == HASH_LEN, "root is 32 bytes")


@dataclass(frozen=True, slots=True)
class Write:
    """Receiver: write ``data`` at ``offset`` of the partial file (§8.3)."""

    offset: int
    data: bytes
    name = "WRITE"

    def __post_init__(self) -> None:
        _require(0 < len(self.data) <= MAX_DATA_LEN, "a write holds one DATA record")


@dataclass(frozen=True, slots=True)
class BlockVerified:
    """Receiver: block ``index`` matched its leaf; the verified prefix is now ``verified`` bytes
    and ``chain`` its chain value, the pair a driver persists for a resume (§8.6)."""

    index: int
    verified: int
    chain: bytes
    name = "BLOCK_VERIFIED"

    def __post_init__(self) -> None:
        _require(len(self.chain) == HASH_LEN, "chain is 32 bytes")


@dataclass(frozen=True, slots=True)
class FileVerified:
    """Receiver: every block matched and the chain equals the root; make the file durable,
    move it into place, then send ``finish`` (§8.4)."""

    name = "FILE_VERIFIED"


Event: TypeAlias = (
    Accepted | ReadBlock | Refused | Completed | Cancelled | FileFailed | OfferReceived | Write
    | BlockVerified | FileVerified
)
