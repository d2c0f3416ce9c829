/** File-transfer sender and receiver machines (p4-06 §8, §9, §14.2), sans-I/O. */
import { sha256 } from "@noble/hashes/sha2";
import { Bytes, concat, equal, hexOrUndefined } from "../bytes.js";
import { codeName, codeValue, P4Error, type ErrorName } from "../errors.js";
import { StepOutput, type Machine } from "../machine.js";
import {
  chain0, chainNext, checkHeader, encodeRecord, FileError, HEADER_LEN, MAX_DATA_LEN, MAX_PENDING_HASHES, parseRecordBody,
  type FileRecord, type RecType,
} from "./records.js";

export type FileRole = "sender" | "receiver";
export type FileState =
  | "IDLE" | "OFFERED" | "SENDING" | "WAIT_COMPLETE" | "WAIT_OFFER" | "RECEIVING" | "VERIFIED"
  | "DONE" | "REFUSED" | "CANCELLED" | "FAILED";

export interface FileConfig {
  readonly role: FileRole;
  readonly name?: string;
  readonly size?: bigint;
  readonly blockSize?: bigint;
  readonly root?: Bytes;
  readonly maxSize?: bigint;
}

const TERMINAL: readonly FileState[] = ["DONE", "REFUSED", "CANCELLED", "FAILED"];
const code = (n: ErrorName): bigint => BigInt(codeValue(n) as number);

/** Rows of §9.2/§9.3 for received records: state → accepted record types. */
const RECV_ROWS: Record<FileRole, Partial<Record<FileState, RecType[]>>> = {
  sender: {
    OFFERED: ["FILE_ACCEPT", "FILE_REFUSE", "FILE_CANCEL"],
    SENDING: ["FILE_CANCEL"],
    WAIT_COMPLETE: ["FILE_COMPLETE", "FILE_CANCEL"],
  },
  receiver: {
    WAIT_OFFER: ["FILE_OFFER"],
    OFFERED: ["FILE_CANCEL"],
    RECEIVING: ["FILE_HASHES", "FILE_DATA", "FILE_CANCEL"],
    VERIFIED: ["FILE_CANCEL"],
  },
};

export class FileMachine implements Machine {
  state: FileState;
  private buf: Bytes = new Uint8Array(0);
  // the offer
  private size = 0n;
  private bs = 0n;
  private root: Bytes = new Uint8Array(0);
  // sender
  private wantBlock: bigint | undefined;
  // receiver
  private pos = 0n;
  private nextLeaf = 0n;
  private readonly leafOf = new Map<bigint, Bytes>();
  private chain: Bytes = new Uint8Array(0);
  private hasher = sha256.create();

  constructor(readonly cfg: FileConfig) {
    this.state = cfg.role === "sender" ? "IDLE" : "WAIT_OFFER";
    if (cfg.role === "sender") {
      this.size = cfg.size ?? 0n;
      this.bs = cfg.blockSize ?? 1048576n;
      this.root = cfg.root ?? new Uint8Array(32);
    }
  }

  private get nBlocks(): bigint {
    return (this.size + this.bs - 1n) / this.bs;
  }
  private blockLen(k: bigint): bigint {
    const end = (k + 1n) * this.bs;
    return (end < this.size ? end : this.size) - k * this.bs;
  }

  private queue(out: StepOutput, r: FileRecord): void {
    out.sends.push(encodeRecord(r));
    out.sendConns.push(undefined);
  }

  /** FIL-32 / FIL-33 / FIL-34: enter FAILED. */
  private fail(out: StepOutput, c: string, byPeer: boolean, sendCancel: boolean): void {
    if (sendCancel) this.queue(out, { type: "FILE_CANCEL", code: BigInt(codeValue(c) ?? 1) });
    this.state = "FAILED";
    out.events.push({ event: "FILE_FAILED", code: c, by_peer: byPeer });
    out.error = c;
  }

  // ------------------------------------------------------------------ commands

  command(_now: number, name: string, a: Record<string, unknown>): StepOutput {
    const out = new StepOutput();
    const refuse = (c: ErrorName, m: string): never => {
      throw new FileError(c, m);
    };
    const role = this.cfg.role;
    const s = this.state;
    const rows: Record<string, FileState[]> = role === "sender"
      ? { start: ["IDLE"], block: ["SENDING"], read_failed: ["SENDING"], cancel: ["OFFERED", "SENDING", "WAIT_COMPLETE"] }
      : { accept: ["OFFERED"], refuse: ["OFFERED"], write_failed: ["RECEIVING", "VERIFIED"], finish: ["VERIFIED"], cancel: ["OFFERED", "RECEIVING", "VERIFIED"] };
    if (!(rows[name] ?? []).includes(s)) refuse("UNEXPECTED_MESSAGE", `${name} in ${s}`);
    const onlyArgs = (...allowed: string[]): void => {
      for (const k of Object.keys(a)) if (!allowed.includes(k)) refuse("MESSAGE_INVALID", "unknown argument " + k);
    };
    const codeArg = (allowed: ErrorName[], dflt: ErrorName): ErrorName => {
      if (a.code === undefined) return dflt;
      const c = a.code;
      return typeof c === "string" && (allowed as string[]).includes(c) ? (c as ErrorName) : refuse("MESSAGE_INVALID", "code");
    };
    switch (name) {
      case "start":
        onlyArgs();
        this.queue(out, { type: "FILE_OFFER", name: this.cfg.name ?? "", size: this.size, blockSize: this.bs, root: this.root });
        this.state = "OFFERED";
        break;
      case "block": {
        onlyArgs("index", "data", "hash");
        const idx = uintArg(a.index);
        if (idx === undefined || idx !== this.wantBlock) refuse("MESSAGE_INVALID", "not the block READ_BLOCK asked for");
        const hash = hexOrUndefined(a.hash);
        if (hash === undefined || hash.length !== 32) return refuse("MESSAGE_INVALID", "hash is not 32 bytes");
        const data = hexOrUndefined(a.data) ?? refuse("MESSAGE_INVALID", "data is not hex");
        const k = idx as bigint;
        if (BigInt(data.length) !== this.blockLen(k) || !equal(sha256(data), hash)) {
          this.fail(out, "FILE_SOURCE_CHANGED", false, true);
          break;
        }
        this.queue(out, { type: "FILE_HASHES", first: k, hashes: [hash] });
        for (let i = 0; i < data.length; i += MAX_DATA_LEN) this.queue(out, { type: "FILE_DATA", data: data.subarray(i, i + MAX_DATA_LEN) });
        if (k + 1n < this.nBlocks) this.readBlock(out, k + 1n);
        else {
          this.wantBlock = undefined;
          this.state = "WAIT_COMPLETE";
        }
        break;
      }
      case "read_failed": {
        onlyArgs("code");
        this.fail(out, codeArg(["FILE_IO_ERROR", "FILE_SOURCE_CHANGED"], "FILE_IO_ERROR"), false, true);
        break;
      }
      case "accept": {
        onlyArgs("offset", "chain");
        const off = uintArg(a.offset) ?? refuse("MESSAGE_INVALID", "offset");
        if (!(off === this.size || (off % this.bs === 0n && off <= this.size))) refuse("FILE_OFFSET_INVALID", "offset");
        let chain: Bytes;
        if (off === 0n) {
          if (a.chain !== undefined) refuse("MESSAGE_INVALID", "chain at offset 0");
          chain = chain0(this.size, this.bs);
        } else {
          const c = hexOrUndefined(a.chain);
          if (c === undefined || c.length !== 32) return refuse("MESSAGE_INVALID", "chain");
          chain = c;
        }
        this.queue(out, { type: "FILE_ACCEPT", offset: off });
        this.pos = off;
        this.nextLeaf = off / this.bs;
        this.chain = chain;
        this.hasher = sha256.create();
        if (off === this.size) this.checkRoot(out);
        else this.state = "RECEIVING";
        break;
      }
      case "refuse": {
        onlyArgs("code");
        const c = codeArg(["FILE_REFUSED", "FILE_TOO_LARGE", "FILE_DISK_FULL", "FILE_IO_ERROR"], "FILE_REFUSED");
        this.queue(out, { type: "FILE_REFUSE", code: code(c) });
        this.state = "REFUSED";
        break;
      }
      case "write_failed":
        onlyArgs("code");
        this.fail(out, codeArg(["FILE_IO_ERROR", "FILE_DISK_FULL"], "FILE_IO_ERROR"), false, true);
        break;
      case "finish":
        onlyArgs();
        this.queue(out, { type: "FILE_COMPLETE" });
        this.state = "DONE";
        break;
      case "cancel":
        onlyArgs();
        this.queue(out, { type: "FILE_CANCEL", code: code("FILE_CANCELLED") });
        this.state = "CANCELLED";
        break;
    }
    return out;
  }

  private readBlock(out: StepOutput, k: bigint): void {
    this.wantBlock = k;
    this.state = "SENDING";
    out.events.push({ event: "READ_BLOCK", index: k, offset: k * this.bs, length: this.blockLen(k) });
  }

  private checkRoot(out: StepOutput): void {
    if (equal(this.chain, this.root)) {
      this.state = "VERIFIED";
      out.events.push({ event: "FILE_VERIFIED" });
    } else this.fail(out, "FILE_ROOT_MISMATCH", false, true);
  }

  tick(_now: number): StepOutput {
    return new StepOutput();
  }

  // ------------------------------------------------------------------ receiving

  recv(_now: number, data: Bytes): StepOutput {
    const out = new StepOutput();
    if (TERMINAL.includes(this.state)) return out;
    if (data.length === 0) {
      if (this.state !== "VERIFIED") this.fail(out, "FILE_INTERRUPTED", true, false);
      return out;
    }
    this.buf = concat(this.buf, data);
    while (!TERMINAL.includes(this.state) && this.buf.length >= HEADER_LEN) {
      const b = this.buf;
      let t: RecType;
      let len: number;
      try {
        ({ t, len } = checkHeader(b));
      } catch (e) {
        if (!(e instanceof P4Error)) throw e;
        this.fail(out, e.code, false, true);
        break;
      }
      if (b.length < HEADER_LEN + len) break;
      const body = b.subarray(HEADER_LEN, HEADER_LEN + len);
      this.buf = b.slice(HEADER_LEN + len);
      try {
        const r = parseRecordBody(t, body);
        if (!(RECV_ROWS[this.cfg.role][this.state] ?? []).includes(r.type)) throw new FileError("UNEXPECTED_MESSAGE", `${r.type} in ${this.state}`);
        this.onRecord(out, r);
      } catch (e) {
        if (!(e instanceof P4Error)) throw e;
        this.fail(out, e.code, false, true);
      }
    }
    return out;
  }

  private onRecord(out: StepOutput, r: FileRecord): void {
    switch (r.type) {
      case "FILE_CANCEL":
        if (r.code === code("FILE_CANCELLED")) {
          this.state = "CANCELLED";
          out.events.push({ event: "CANCELLED" });
        } else this.fail(out, codeName(Number(r.code)), true, false);
        return;
      case "FILE_ACCEPT": {
        const off = r.offset;
        if (!(off === this.size || (off % this.bs === 0n && off <= this.size))) throw new FileError("FILE_OFFSET_INVALID", "offset");
        out.events.push({ event: "ACCEPTED", offset: off });
        if (off < this.size) this.readBlock(out, off / this.bs);
        else this.state = "WAIT_COMPLETE";
        return;
      }
      case "FILE_REFUSE":
        this.state = "REFUSED";
        out.events.push({ event: "REFUSED", code: codeName(Number(r.code)) });
        return;
      case "FILE_COMPLETE":
        this.state = "DONE";
        out.events.push({ event: "COMPLETED" });
        return;
      case "FILE_OFFER": {
        this.size = r.size;
        this.bs = r.blockSize;
        this.root = r.root;
        out.events.push({ event: "OFFER_RECEIVED", name: r.name, size: r.size, block_size: r.blockSize, root: r.root });
        if (r.size > (this.cfg.maxSize ?? (1n << 63n) - 1n)) {
          this.queue(out, { type: "FILE_REFUSE", code: code("FILE_TOO_LARGE") });
          out.events.push({ event: "REFUSED", code: "FILE_TOO_LARGE" });
          this.state = "REFUSED";
        } else this.state = "OFFERED";
        return;
      }
      case "FILE_HASHES": {
        const cur = this.pos / this.bs;
        const count = BigInt(r.hashes.length);
        if (r.first !== this.nextLeaf || r.first + count > this.nBlocks || r.first + count - cur > BigInt(MAX_PENDING_HASHES))
          throw new FileError("FILE_HASHES_INVALID", "leaves out of order, past the end or too far ahead");
        r.hashes.forEach((h, i) => this.leafOf.set(r.first + BigInt(i), h));
        this.nextLeaf = r.first + count;
        return;
      }
      case "FILE_DATA": {
        const k = this.pos / this.bs;
        const leaf = this.leafOf.get(k);
        if (leaf === undefined) throw new FileError("FILE_HASHES_INVALID", "data without its leaf");
        const blockEnd = k * this.bs + this.blockLen(k);
        if (this.pos + BigInt(r.data.length) > blockEnd) throw new FileError("FILE_DATA_OVERRUN", "data past the end of its block");
        out.events.push({ event: "WRITE", offset: this.pos, data: r.data });
        this.hasher.update(r.data);
        this.pos += BigInt(r.data.length);
        if (this.pos === blockEnd) {
          const got = this.hasher.digest();
          this.hasher = sha256.create();
          if (!equal(got, leaf)) throw new FileError("FILE_BLOCK_MISMATCH", "block does not match its leaf");
          this.chain = chainNext(this.chain, leaf);
          this.leafOf.delete(k);
          out.events.push({ event: "BLOCK_VERIFIED", index: k, verified: this.pos, chain: this.chain });
          if (this.pos === this.size) this.checkRoot(out);
        }
        return;
      }
    }
  }
}


function uintArg(v: unknown): bigint | undefined {
  let n: bigint | undefined;
  if (typeof v === "number" && Number.isSafeInteger(v)) n = BigInt(v);
  else if (typeof v === "object" && v !== null && typeof (v as { int?: unknown }).int === "string") {
    const s = (v as { int: string }).int;
    if (/^(0|[1-9][0-9]*)$/.test(s)) n = BigInt(s);
  }
  return n !== undefined && n >= 0n && n < 1n << 64n ? n : undefined;
}
