/** P⁴ frames (p4-01): registry, the ordered decoder of §5.1, the encoder of §5.3, the stream reader of §5.2. */
import { Bytes, concat } from "./bytes.js";
import { CborMap, cmap, decodeBody, encode as cborEncode } from "./cbor.js";
import { DecodeError, LocalProtocolError, P4Error, type ErrorName } from "./errors.js";

export const VERSION = 1;
export const HEADER_LEN = 5;
export const MAX_FRAME_SIZE = 16384;
export const MAX_BODY_SIZE = MAX_FRAME_SIZE - HEADER_LEN;
export const MAX_REASON_BYTES = 256;

export type Path = "tor" | "datachannel";
type BodyKind = "cbor" | "binary";

export interface FrameType {
  readonly code: number;
  readonly name: string;
  readonly body: BodyKind;
  readonly flags: number;
  readonly paths: readonly Path[];
}

const BOTH: readonly Path[] = ["tor", "datachannel"];
const TOR: readonly Path[] = ["tor"];
const DC: readonly Path[] = ["datachannel"];

/** p4-01 §4.3 (union of the `frame-types` tables). */
export const FRAME_TYPES: readonly FrameType[] = [
  { code: 0x01, name: "ERROR", body: "cbor", flags: 0, paths: BOTH },
  { code: 0x02, name: "PING", body: "cbor", flags: 0, paths: BOTH },
  { code: 0x03, name: "PONG", body: "cbor", flags: 0, paths: BOTH },
  { code: 0x04, name: "PADDING", body: "binary", flags: 0, paths: BOTH },
  { code: 0x10, name: "PAIR_PAKE", body: "cbor", flags: 0, paths: TOR },
  { code: 0x11, name: "PAIR_CONFIRM", body: "cbor", flags: 0, paths: TOR },
  { code: 0x12, name: "PAIR_IDENTITY", body: "cbor", flags: 0, paths: TOR },
  { code: 0x13, name: "PAIR_DONE", body: "cbor", flags: 0, paths: TOR },
  { code: 0x20, name: "RV_HELLO", body: "cbor", flags: 0, paths: TOR },
  { code: 0x21, name: "RV_OFFER", body: "cbor", flags: 0, paths: TOR },
  { code: 0x22, name: "RV_ANSWER", body: "cbor", flags: 0, paths: TOR },
  { code: 0x23, name: "RV_BYE", body: "cbor", flags: 0, paths: TOR },
  { code: 0x31, name: "SES_HELLO", body: "cbor", flags: 0, paths: BOTH },
  { code: 0x32, name: "SES_AUTH", body: "cbor", flags: 0, paths: BOTH },
  { code: 0x33, name: "SES_MSG", body: "binary", flags: 0, paths: BOTH },
  { code: 0x34, name: "SES_ACK", body: "binary", flags: 0, paths: BOTH },
  { code: 0x35, name: "SES_END", body: "cbor", flags: 0, paths: BOTH },
  { code: 0x36, name: "SES_SIGNAL", body: "binary", flags: 0, paths: BOTH },
  { code: 0x40, name: "DATA", body: "binary", flags: 0x01, paths: DC },
];

export const T = {
  ERROR: 0x01, PING: 0x02, PONG: 0x03, PADDING: 0x04,
  PAIR_PAKE: 0x10, PAIR_CONFIRM: 0x11, PAIR_IDENTITY: 0x12, PAIR_DONE: 0x13,
  RV_HELLO: 0x20, RV_OFFER: 0x21, RV_ANSWER: 0x22, RV_BYE: 0x23,
  DATA: 0x40,
} as const;

const BY_CODE = new Map<number, FrameType>(FRAME_TYPES.map((t) => [t.code, t]));
export const frameType = (code: number): FrameType | undefined => BY_CODE.get(code);
export const isIgnorableRange = (t: number): boolean => t >= 0xe0 && t <= 0xfe;

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly body: Bytes;
  readonly ignorable: boolean;
  /** The decoded CBOR body for body kind `cbor` (undefined for binary and ignorable frames). */
  readonly map?: CborMap;
}

/** Checks 6–12 of §5.1 on an already length-checked frame. Throws with `make(code)`. */
function checkTypeAndBody(
  type: number, flags: number, body: Bytes, path: Path,
  make: (code: ErrorName, msg: string) => P4Error,
): Frame {
  if (type === 0x00 || type === 0xff) throw make("FRAME_RESERVED_TYPE", "reserved type");
  const t = BY_CODE.get(type);
  if (t === undefined) {
    if (isIgnorableRange(type)) return { type, flags, body, ignorable: true };
    throw make("FRAME_UNKNOWN_TYPE", "unknown frame type 0x" + type.toString(16));
  }
  if (!t.paths.includes(path)) throw make("FRAME_PATH_NOT_ALLOWED", t.name + " not allowed on " + path);
  if ((flags & ~t.flags) !== 0) throw make("FRAME_BAD_FLAGS", "flag bit outside the mask");
  if (t.body === "binary") return { type, flags, body, ignorable: false };
  let map: CborMap;
  try {
    map = decodeBody(body);
  } catch (e) {
    if (e instanceof P4Error) throw make(e.code, e.message);
    throw e;
  }
  if (type === T.ERROR || type === T.PING || type === T.PONG) {
    const why = coreSchemaProblem(type, map);
    if (why !== undefined) throw make("MESSAGE_INVALID", why);
  }
  return { type, flags, body, ignorable: false, map };
}

function coreSchemaProblem(type: number, m: CborMap): string | undefined {
  if (type === T.ERROR) {
    const keys = m.keys();
    if (keys.length !== 2 || keys[0] !== 1n || keys[1] !== 2n) return "ERROR needs exactly keys 1, 2";
    const code = m.get(1);
    const reason = m.get(2);
    if (typeof code !== "bigint" || code < 0n || code > 0xffffn) return "bad ERROR code";
    if (typeof reason !== "string") return "bad ERROR reason";
    if (new TextEncoder().encode(reason).length > MAX_REASON_BYTES) return "reason too long";
    return undefined;
  }
  const keys = m.keys();
  if (keys.length !== 1 || keys[0] !== 1n) return "PING/PONG needs exactly key 1";
  const nonce = m.get(1);
  if (!(nonce instanceof Uint8Array) || nonce.length !== 8) return "nonce must be 8 bytes";
  return undefined;
}

const decodeErr = (code: ErrorName, msg: string): P4Error => new DecodeError(code, msg);
const localErr = (code: ErrorName, msg: string): P4Error => new LocalProtocolError(code, msg);

/** Header checks 2–3 of §5.1 (the stream reader applies them as soon as 5 bytes are there). */
function checkHeader(unit: Bytes): number {
  if (unit[0] !== VERSION) throw new DecodeError("FRAME_BAD_VERSION", "version is not 1");
  const len = ((unit[3] ?? 0) << 8) | (unit[4] ?? 0);
  if (len > MAX_BODY_SIZE) throw new DecodeError("FRAME_TOO_LARGE", "length above 16379");
  return len;
}

/** DecodeFrame: one unit that must hold exactly one frame (§5.1). */
export function decodeFrame(unit: Bytes, path: Path): Frame {
  if (unit.length < HEADER_LEN) throw new DecodeError("FRAME_TRUNCATED", "shorter than the header");
  const len = checkHeader(unit);
  if (unit.length < HEADER_LEN + len) throw new DecodeError("FRAME_TRUNCATED", "body truncated");
  if (unit.length > HEADER_LEN + len) throw new DecodeError("FRAME_TRAILING_BYTES", "bytes after the frame");
  return checkTypeAndBody(unit[1] ?? 0, unit[2] ?? 0, unit.slice(HEADER_LEN), path, decodeErr);
}

/** EncodeFrame (§5.3): refuses what a receiver would reject, with the receiver's code. */
export function encodeFrame(type: number, flags: number, body: Bytes, path: Path): Bytes {
  if (!Number.isInteger(type) || type < 0 || type > 255 || !Number.isInteger(flags) || flags < 0 || flags > 255)
    throw new LocalProtocolError("MESSAGE_INVALID", "type or flags not a byte");
  if (body.length > MAX_BODY_SIZE) throw new LocalProtocolError("FRAME_TOO_LARGE", "body above 16379 bytes");
  checkTypeAndBody(type, flags, body, path, localErr);
  return rawFrame(type, flags, body);
}

/** Header + body without checks (for frames this implementation built itself). */
export function rawFrame(type: number, flags: number, body: Bytes): Bytes {
  return concat(Uint8Array.of(VERSION, type, flags, body.length >> 8, body.length & 0xff), body);
}

/**
 * Stream reader of §5.2 (`tor` path): reassembles frames from any split. Ignorable frames are
 * returned with `ignorable: true` so that the caller can drop them (framing.stream does).
 */
export class StreamReader {
  private buf: Bytes = new Uint8Array(0);
  /** Bytes of `buf` before `off` were already cut (no copy per frame). */
  private off = 0;
  private failed: P4Error | undefined;
  constructor(readonly path: Path = "tor") {}

  get pending(): number {
    return this.buf.length - this.off;
  }

  /** Append bytes without cutting frames (use `next()` to cut them one by one). */
  push(data: Bytes): void {
    if (data.length === 0) return;
    this.buf = this.pending === 0 ? data.slice() : concat(this.buf.subarray(this.off), data);
    this.off = 0;
  }

  /** Append bytes; return every complete frame, in order. Throws on the first error (and again later). */
  feed(data: Bytes): Frame[] {
    if (this.failed) throw this.failed;
    this.push(data);
    const out: Frame[] = [];
    try {
      for (;;) {
        const f = this.next();
        if (f === undefined) break;
        out.push(f);
      }
    } catch (e) {
      if (e instanceof P4Error) this.failed = e;
      throw e;
    }
    return out;
  }

  /**
   * Cut one frame off the buffer, or undefined when more bytes are needed. On error, the frame's
   * header type (for the ERROR-type rule of the layers above) is available via `lastType`.
   */
  next(): Frame | undefined {
    if (this.failed) throw this.failed;
    if (this.pending < HEADER_LEN) return undefined;
    const b = this.buf.subarray(this.off);
    this.lastType = b[1] ?? 0;
    try {
      const len = checkHeader(b);
      if (b.length < HEADER_LEN + len) return undefined;
      const unit = b.subarray(0, HEADER_LEN + len);
      this.off += HEADER_LEN + len;
      return decodeFrame(unit, this.path);
    } catch (e) {
      if (e instanceof P4Error) this.failed = e;
      throw e;
    }
  }

  /** End of stream: FRAME_TRUNCATED if part of a frame is buffered (FRM-36). */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.pending > 0) {
      this.failed = new DecodeError("FRAME_TRUNCATED", "stream ended inside a frame");
      throw this.failed;
    }
  }

  lastType = 0;
}

/** Build an ERROR frame body {1: code, 2: reason}. */
export function errorFrame(code: number, reason = ""): Bytes {
  const enc = new TextEncoder();
  let r = reason;
  while (enc.encode(r).length > MAX_REASON_BYTES) r = Array.from(r).slice(0, -1).join("");
  return rawFrame(T.ERROR, 0, encodeErrorBody(code, r));
}

function encodeErrorBody(code: number, reason: string): Bytes {
  return cborEncode(cmap({ 1: BigInt(code), 2: reason }));
}

export function pongFrame(nonce: Bytes): Bytes {
  return rawFrame(T.PONG, 0, cborEncode(cmap({ 1: nonce })));
}
