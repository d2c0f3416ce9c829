"""P⁴ error model (p4-00-conventions §7).

Every error P⁴ raises carries a code from the one error-code registry. The registry table in
``spec/p4-00-conventions.md`` (and the per-layer tables in the layer specs) is the source of truth;
``tools/spec_check.py`` fails when this enum and the spec disagree.

- :class:`LocalProtocolError`: the caller misused the API (nothing was sent or accepted).
- :class:`RemoteProtocolError`: the peer broke the protocol; a decode failure is a
  :class:`DecodeError`, a subclass, because bytes from outside are the peer's responsibility.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "DecodeError",
    "ErrorCode",
    "LocalProtocolError",
    "P4Error",
    "RemoteProtocolError",
]


class ErrorCode(IntEnum):
    """Registry of error codes (u16). Ranges: 0x00xx core, 0x01xx framing, 0x02xx identity and
    pairing, 0x03xx rendezvous, 0x04xx session, 0x05xx channels, 0x06xx local storage,
    0x07xx tor driver, 0x08xx file transfer."""

    # --- core (p4-00) ---
    NO_ERROR = 0x0000
    INTERNAL_ERROR = 0x0001
    PROTOCOL_VIOLATION = 0x0002
    MESSAGE_INVALID = 0x0003
    UNEXPECTED_MESSAGE = 0x0004
    TIMEOUT = 0x0005
    VERSION_UNSUPPORTED = 0x0006

    # --- framing (p4-01) ---
    FRAME_TRUNCATED = 0x0101
    FRAME_TRAILING_BYTES = 0x0102
    FRAME_TOO_LARGE = 0x0103
    FRAME_UNKNOWN_TYPE = 0x0104
    FRAME_RESERVED_TYPE = 0x0105
    FRAME_BAD_VERSION = 0x0106
    FRAME_BAD_FLAGS = 0x0107
    FRAME_PATH_NOT_ALLOWED = 0x0108
    CBOR_MALFORMED = 0x0110
    CBOR_NON_MINIMAL = 0x0111
    CBOR_UNSORTED_KEYS = 0x0112
    CBOR_DUPLICATE_KEY = 0x0113
    CBOR_FORBIDDEN = 0x0114
    CBOR_TOO_DEEP = 0x0115
    CBOR_INVALID_UTF8 = 0x0116
    CBOR_TRAILING = 0x0117
    CBOR_NOT_MAP = 0x0118

    # --- identity (p4-02, 0x0201-0x020F) ---
    DEVICE_ID_MALFORMED = 0x0201  # p4-02 §3.3: wrong length or a character outside the alphabet
    DEVICE_ID_CHECK_FAILED = 0x0202  # p4-02 §3.3: a Luhn mod 32 check character does not match
    IDENTITY_KEY_INVALID = 0x0203  # p4-02 §3.1: wrong length; non-canonical/small-order key
    SIGNATURE_INVALID = 0x0204  # p4-02 §3.1: an Ed25519 signature does not verify

    # --- pairing (p4-02, 0x0210-0x02FF) ---
    PAIR_CONFIRM_FAILED = 0x0210  # p4-02 §7.4: a key-confirmation or DONE MAC does not match
    PAIR_PAKE_INVALID = 0x0211  # p4-02 §7.3: PAKE element not in the prime-order group, or K = I
    PAIR_IDENTITY_INVALID = 0x0212  # p4-02 §7.6: identity message undecryptable/malformed/unsigned
    PAIR_INVITATION_EXPIRED = 0x0213  # p4-02 §5.3: the invitation's expiry time has passed
    PAIR_INVITATION_BURNT = 0x0214  # p4-02 §5.3: the invitation was already used or failed once
    PAIR_CODE_MALFORMED = 0x0215  # p4-02 §5.1: a short code that does not parse (local)
    PAIR_URI_MALFORMED = 0x0216  # p4-02 §5.2: a p4:pair URI that does not parse (local)
    PAIR_INVITER_MISMATCH = 0x0217  # p4-02 §7.6: inviter key is not the one the URI commits to
    PAIR_OUTCOME_UNKNOWN = 0x0218  # p4-02 §8.4: no PAIR_DONE; the peer may have stored (local)

    # --- rendezvous (p4-03, 0x0301-0x03FF) ---
    RDV_BAD_SIGNATURE = 0x0301
    RDV_REPLAY = 0x0302
    RDV_WRONG_EPOCH = 0x0303
    RDV_STALE_GENERATION = 0x0304
    RDV_UNKNOWN_PEER = 0x0305
    RDV_KEY_INVALID = 0x0306
    RDV_DUPLICATE_STREAM = 0x0307

    # --- session (p4-04, 0x0401-0x04FF) ---
    SES_WRONG_PEER = 0x0401  # p4-04 §7.3 check 4: a HELLO names keys that are not this pair's
    SES_WRONG_GENERATION = 0x0402  # p4-04 §7.3 check 5: HELLO generation is not the connection's
    SES_BINDING_MISMATCH = 0x0403  # p4-04 §7.3 check 6: HELLO channel bindings differ from ours
    SES_BAD_SIGNATURE = 0x0404  # p4-04 §7.3 check 7: the SES_AUTH signature does not verify
    SES_SEQ_GAP = 0x0405  # p4-04 §8.2, §8.5: a seq beyond the next expected one
    SES_ACK_INVALID = 0x0406  # p4-04 §8.3: an ACK above the last assigned seq
    SES_INCARNATION_STALE = 0x0407  # p4-04 §9: counters went backwards within an incarnation
    SES_INCARNATION_CONFLICT = 0x0408  # p4-04 §9: a retired incarnation is back online
    SES_OUTBOX_FULL = 0x0409  # p4-04 §8.6: local, the outbox quota is reached

    # --- channels (p4-05, 0x0501-0x05FF) ---
    CHAN_ID_INVALID = 0x0501  # p4-05 §6.1: an item names a channel id the peer may not use
    CHAN_NAME_INVALID = 0x0502  # p4-05 §5.3: a name breaks the name rules
    CHAN_TOO_MANY = 0x0503  # p4-05 §6.2: the live-channel limit is reached
    CHAN_FLOW_CONTROL = 0x0504  # p4-05 §7.1: DATA beyond the credit limit granted
    CHAN_OFFSET_GAP = 0x0505  # p4-05 §7.1: DATA above the next expected offset
    CHAN_FINAL_OFFSET = 0x0506  # p4-05 §8.1: DATA beyond, or a CLOSE that moves, the final offset
    CHAN_UNKNOWN = 0x0507  # p4-05 §13.2: local, no live channel with that id
    CHAN_CLOSED = 0x0508  # p4-05 §8.1: local, write or close after this side's CLOSE
    CHAN_CREDIT_EXCEEDED = 0x0509  # p4-05 §4.3: local, a write larger than the credit
    CHAN_CONSUME_INVALID = 0x050A  # p4-05 §7.3: local, more bytes confirmed than delivered

    # --- local storage / profile (0x0601-0x06FF) ---
    PROFILE_NOT_FOUND = 0x0601  # p4-02 §3.4: no profile (or no identity.key) at the path
    PROFILE_EXISTS = 0x0602  # p4-02 §3.4: init refused, a profile is already there
    PROFILE_CORRUPT = 0x0603  # p4-02 §3.4: a profile file fails its format or checksum
    PROFILE_INSECURE = 0x0604  # p4-02 §3.4: identity.key or the directory is group/other-accessible
    PROFILE_VERSION_UNSUPPORTED = 0x0605  # p4-02 §3.4: a file written by a newer format version
    PROFILE_LOCKED = 0x0606  # p4-02 §3.4: another writer held the profile lock too long
    PEER_UNKNOWN = 0x0607  # p4-02 §3.4: no paired peer with that name or device ID
    PEER_EXISTS = 0x0608  # p4-02 §3.4: a peer with that name or device ID is already paired
    PEER_NAME_INVALID = 0x0609  # p4-02 §3.4: empty, too long, or contains control characters

    # --- tor driver, local (0x0701-0x07FF) ---
    TOR_NOT_INSTALLED = 0x0701  # no `tor` / `tor-gencert` executable on PATH
    TOR_UNREACHABLE = 0x0702  # control port/socket cannot be reached or authenticated
    TOR_REFUSED = 0x0703  # tor answered a control command with an error (text included)
    TOR_TIMEOUT = 0x0704  # a tor operation did not finish in time
    TOR_ONION_UNREACHABLE = 0x0705  # SOCKS could not reach the onion service (0xF0-0xF3, 0xF7)
    TOR_CLIENT_AUTH_FAILED = 0x0706  # descriptor needs client auth we lack (SOCKS 0xF4/0xF5)
    TOR_LAUNCH_FAILED = 0x0707  # a tor process we started exited or never became ready
    ONION_ADDRESS_INVALID = 0x0708  # v3 onion address: bad length/base32/checksum/version

    # --- file transfer (p4-06, 0x0801-0x08FF; sent in FILE_REFUSE / FILE_CANCEL) ---
    FILE_RECORD_INVALID = 0x0801  # p4-06 §7.4: unknown record type or a Length over its limit
    FILE_NAME_INVALID = 0x0802  # p4-06 §5: a name that breaks the name rules
    FILE_TOO_LARGE = 0x0803  # p4-06 §8.2: refusal, the size is above the receiver's limit
    FILE_REFUSED = 0x0804  # p4-06 §8.2: refusal, the user or application declined
    FILE_DISK_FULL = 0x0805  # p4-06 §8.7: no space at the receiver; the partial file is kept
    FILE_OFFSET_INVALID = 0x0806  # p4-06 §8.2: an ACCEPT offset not on a block boundary/past end
    FILE_HASHES_INVALID = 0x0807  # p4-06 §8.3: hashes out of order, past the end, too many ahead
    FILE_DATA_OVERRUN = 0x0808  # p4-06 §8.3: DATA past its block or past the offered size
    FILE_BLOCK_MISMATCH = 0x0809  # p4-06 §8.4: a block does not match its leaf hash
    FILE_ROOT_MISMATCH = 0x080A  # p4-06 §8.4: the leaves do not chain to the offered root
    FILE_SOURCE_CHANGED = 0x080B  # p4-06 §8.3: the sender's file changed since it was hashed
    FILE_IO_ERROR = 0x080C  # p4-06 §8.7: reading or writing the file failed (not disk full)
    FILE_CANCELLED = 0x080D  # p4-06 §8.5: the user or application cancelled
    FILE_INTERRUPTED = 0x080E  # p4-06 §8.5: the channel ended before the transfer did (local)


class P4Error(Exception):
    """Base of every P⁴ error; ``code`` is the registry code, ``str(err)`` a human sentence."""

    def __init__(self, code: ErrorCode, message: str = "") -> None:
        self.code = code
        self.message = message or code.name
        super().__init__(f"{code.name} (0x{int(code):04x}): {self.message}")


class LocalProtocolError(P4Error):
    """The local caller asked for something the protocol does not allow."""


class RemoteProtocolError(P4Error):
    """The peer sent something the protocol does not allow."""


class DecodeError(RemoteProtocolError):
    """Bytes from the peer could not be decoded; ``code`` says which rule they broke."""
