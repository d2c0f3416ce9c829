"""File transfer over one P⁴ channel (spec/p4-06-files-v1.md): records, names, hashes, and the
sans-I/O sender and receiver machines.  The asyncio driver that reads and writes real files is
:mod:`p4ref.io.files`."""

from ._codec import (
    HASH_LEN,
    HEADER_LEN,
    MAX_BLOCK_SIZE,
    MAX_DATA_LEN,
    MAX_SIZE,
    MIN_BLOCK_SIZE,
    Accept,
    Cancel,
    Complete,
    Data,
    Hashes,
    Offer,
    Record,
    RecordType,
    Refuse,
    block_count,
    block_length,
    chain_init,
    chain_step,
    check_name,
    decode_record,
    encode_record,
    leaf_hashes,
    root_of,
)
from ._events import (
    Accepted,
    BlockVerified,
    Cancelled,
    Completed,
    Event,
    FileFailed,
    FileVerified,
    OfferReceived,
    ReadBlock,
    Refused,
    Write,
)
from ._machine import (
    MAX_PENDING_HASHES,
    RECEIVER_TRANSITIONS,
    SENDER_TRANSITIONS,
    FileReceiver,
    FileSender,
    State,
    transition_table_markdown,
)

__all__ = [
    "HASH_LEN", "HEADER_LEN", "MAX_BLOCK_SIZE", "MAX_DATA_LEN", "MAX_PENDING_HASHES", "MAX_SIZE",
    "MIN_BLOCK_SIZE", "RECEIVER_TRANSITIONS", "SENDER_TRANSITIONS", "Accept", "Accepted",
    "BlockVerified", "Cancel", "Cancelled", "Complete", "Completed", "Data", "Event", "FileFailed",
    "FileReceiver", "FileSender", "FileVerified", "Hashes", "Offer", "OfferReceived", "ReadBlock",
    "Record", "RecordType", "Refuse", "Refused", "State", "Write", "block_count", "block_length",
    "chain_init", "chain_step", "check_name", "decode_record", "encode_record", "leaf_hashes",
    "root_of", "transition_table_markdown",
]
