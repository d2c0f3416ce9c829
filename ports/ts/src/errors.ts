/** The one error-code registry of P⁴ (p4-00 §7.3 and the `error-codes` tables of each layer doc). */
export const ERROR_CODES = {
  NO_ERROR: 0x0000,
  INTERNAL_ERROR: 0x0001,
  PROTOCOL_VIOLATION: 0x0002,
  MESSAGE_INVALID: 0x0003,
  UNEXPECTED_MESSAGE: 0x0004,
  TIMEOUT: 0x0005,
  VERSION_UNSUPPORTED: 0x0006,
  FRAME_TRUNCATED: 0x0101,
  FRAME_TRAILING_BYTES: 0x0102,
  FRAME_TOO_LARGE: 0x0103,
  FRAME_UNKNOWN_TYPE: 0x0104,
  FRAME_RESERVED_TYPE: 0x0105,
  FRAME_BAD_VERSION: 0x0106,
  FRAME_BAD_FLAGS: 0x0107,
  FRAME_PATH_NOT_ALLOWED: 0x0108,
  CBOR_MALFORMED: 0x0110,
  CBOR_NON_MINIMAL: 0x0111,
  CBOR_UNSORTED_KEYS: 0x0112,
  CBOR_DUPLICATE_KEY: 0x0113,
  CBOR_FORBIDDEN: 0x0114,
  CBOR_TOO_DEEP: 0x0115,
  CBOR_INVALID_UTF8: 0x0116,
  CBOR_TRAILING: 0x0117,
  CBOR_NOT_MAP: 0x0118,
  DEVICE_ID_MALFORMED: 0x0201,
  DEVICE_ID_CHECK_FAILED: 0x0202,
  IDENTITY_KEY_INVALID: 0x0203,
  SIGNATURE_INVALID: 0x0204,
  PAIR_CONFIRM_FAILED: 0x0210,
  PAIR_PAKE_INVALID: 0x0211,
  PAIR_IDENTITY_INVALID: 0x0212,
  PAIR_INVITATION_EXPIRED: 0x0213,
  PAIR_INVITATION_BURNT: 0x0214,
  PAIR_CODE_MALFORMED: 0x0215,
  PAIR_URI_MALFORMED: 0x0216,
  PAIR_INVITER_MISMATCH: 0x0217,
  PAIR_OUTCOME_UNKNOWN: 0x0218,
  RDV_BAD_SIGNATURE: 0x0301,
  RDV_REPLAY: 0x0302,
  RDV_WRONG_EPOCH: 0x0303,
  RDV_STALE_GENERATION: 0x0304,
  RDV_UNKNOWN_PEER: 0x0305,
  RDV_KEY_INVALID: 0x0306,
  RDV_DUPLICATE_STREAM: 0x0307,
  SES_WRONG_PEER: 0x0401,
  SES_WRONG_GENERATION: 0x0402,
  SES_BINDING_MISMATCH: 0x0403,
  SES_BAD_SIGNATURE: 0x0404,
  SES_SEQ_GAP: 0x0405,
  SES_ACK_INVALID: 0x0406,
  SES_INCARNATION_STALE: 0x0407,
  SES_INCARNATION_CONFLICT: 0x0408,
  SES_OUTBOX_FULL: 0x0409,
  CHAN_ID_INVALID: 0x0501,
  CHAN_NAME_INVALID: 0x0502,
  CHAN_TOO_MANY: 0x0503,
  CHAN_FLOW_CONTROL: 0x0504,
  CHAN_OFFSET_GAP: 0x0505,
  CHAN_FINAL_OFFSET: 0x0506,
  CHAN_UNKNOWN: 0x0507,
  CHAN_CLOSED: 0x0508,
  CHAN_CREDIT_EXCEEDED: 0x0509,
  CHAN_CONSUME_INVALID: 0x050a,
  FILE_RECORD_INVALID: 0x0801,
  FILE_NAME_INVALID: 0x0802,
  FILE_TOO_LARGE: 0x0803,
  FILE_REFUSED: 0x0804,
  FILE_DISK_FULL: 0x0805,
  FILE_OFFSET_INVALID: 0x0806,
  FILE_HASHES_INVALID: 0x0807,
  FILE_DATA_OVERRUN: 0x0808,
  FILE_BLOCK_MISMATCH: 0x0809,
  FILE_ROOT_MISMATCH: 0x080a,
  FILE_SOURCE_CHANGED: 0x080b,
  FILE_IO_ERROR: 0x080c,
  FILE_CANCELLED: 0x080d,
  FILE_INTERRUPTED: 0x080e,
  PROFILE_NOT_FOUND: 0x0601,
  PROFILE_EXISTS: 0x0602,
  PROFILE_CORRUPT: 0x0603,
  PROFILE_INSECURE: 0x0604,
  PROFILE_VERSION_UNSUPPORTED: 0x0605,
  PROFILE_LOCKED: 0x0606,
  PEER_UNKNOWN: 0x0607,
  PEER_EXISTS: 0x0608,
  PEER_NAME_INVALID: 0x0609,
  TOR_NOT_INSTALLED: 0x0701,
  TOR_UNREACHABLE: 0x0702,
  TOR_REFUSED: 0x0703,
  TOR_TIMEOUT: 0x0704,
  TOR_ONION_UNREACHABLE: 0x0705,
  TOR_CLIENT_AUTH_FAILED: 0x0706,
  TOR_LAUNCH_FAILED: 0x0707,
  ONION_ADDRESS_INVALID: 0x0708,
} as const;

export type ErrorName = keyof typeof ERROR_CODES;

const BY_VALUE = new Map<number, ErrorName>(
  (Object.entries(ERROR_CODES) as [ErrorName, number][]).map(([k, v]) => [v, k]),
);

/** Registry name of a numeric code, or `0x` + four lowercase hex digits for an unregistered one. */
export function codeName(code: number): string {
  return BY_VALUE.get(code) ?? "0x" + code.toString(16).padStart(4, "0");
}

export function codeValue(name: string): number | undefined {
  return (ERROR_CODES as Record<string, number>)[name];
}

export function isErrorName(name: string): name is ErrorName {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, name);
}

/** Base class: every P⁴ error carries one registry code (p4-00 §7.1). */
export class P4Error extends Error {
  readonly code: ErrorName;
  constructor(code: ErrorName, message?: string) {
    super(message ?? code);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The local caller asked for something the protocol does not allow; nothing is sent. */
export class LocalProtocolError extends P4Error {}

/** The peer sent something the protocol does not allow. */
export class RemoteProtocolError extends P4Error {}

/** Bytes from the peer that do not decode. */
export class DecodeError extends RemoteProtocolError {}
