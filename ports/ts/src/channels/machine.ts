/** The channel layer of one side (p4-05 §6–§11, §13.2): ids, credit, half-close, reset, restart. */
import { Bytes, concat, u64be, hexOrUndefined } from "../bytes.js";
import { codeValue, P4Error, type ErrorName } from "../errors.js";
import { StepOutput, type Machine } from "../machine.js";
import { ChannelError, decodeItem, encodeItem, INITIAL_WINDOW, MAX_CHAN_ID, MAX_DATA, validName, type Item } from "./items.js";

export type ChanState = "OPEN" | "HALF_CLOSED_LOCAL" | "HALF_CLOSED_REMOTE" | "CLOSED";
const U64_MAX = (1n << 64n) - 1n;

interface Chan {
  readonly id: bigint;
  readonly name: string;
  state: ChanState;
  sent: bigint;
  sendLimit: bigint;
  received: bigint;
  consumed: bigint;
  recvLimit: bigint;
  peerFinal?: bigint;
}

export interface ChannelsConfig {
  readonly role: "low" | "high";
  readonly window?: bigint;
  readonly maxChannels?: bigint;
}

const peerOpen = (c: Chan): boolean => c.state === "OPEN" || c.state === "HALF_CLOSED_LOCAL";
const ownClosed = (c: Chan): boolean => c.state === "HALF_CLOSED_LOCAL" || c.state === "CLOSED";

export class ChannelsMachine implements Machine {
  private readonly window: bigint;
  private readonly maxChannels: bigint;
  private readonly ownParity: bigint;
  private nextOwn: bigint;
  private nextPeer: bigint;
  private chans = new Map<bigint, Chan>();
  private failed = false;
  private buf: Bytes = new Uint8Array(0);
  private seq = 0n;

  constructor(readonly cfg: ChannelsConfig) {
    this.window = cfg.window ?? 1048576n;
    this.maxChannels = cfg.maxChannels ?? 256n;
    this.ownParity = cfg.role === "low" ? 0n : 1n;
    this.nextOwn = this.ownParity;
    this.nextPeer = 1n - this.ownParity;
  }

  get state(): string {
    const parts = [this.failed ? "FAILED" : "RUNNING"];
    for (const id of [...this.chans.keys()].sort((a, b) => (a < b ? -1 : 1))) parts.push(`${id}:${(this.chans.get(id) as Chan).state}`);
    return parts.join(" ");
  }

  private emit(out: StepOutput, it: Item): void {
    this.seq++;
    const body = concat(u64be(this.seq), encodeItem(it));
    out.sends.push(concat(Uint8Array.of(1, 0x33, 0, body.length >> 8, body.length & 0xff), body));
    out.sendConns.push(undefined);
  }

  private newChan(id: bigint, name: string): Chan {
    return { id, name, state: "OPEN", sent: 0n, sendLimit: INITIAL_WINDOW, received: 0n, consumed: 0n, recvLimit: INITIAL_WINDOW };
  }

  /** CHN-30: announce `window` right after an OPEN sent or accepted. */
  private initialCredit(out: StepOutput, c: Chan): void {
    if (this.window > INITIAL_WINDOW) {
      c.recvLimit = this.window;
      this.emit(out, { type: "CREDIT", chan: c.id, limit: c.recvLimit });
    }
  }

  private maybeForget(c: Chan): void {
    if (c.state === "CLOSED" && c.peerFinal !== undefined && c.consumed === c.peerFinal) this.chans.delete(c.id);
  }

  // ------------------------------------------------------------------ commands

  command(_now: number, name: string, a: Record<string, unknown>): StepOutput {
    const out = new StepOutput();
    const refuse = (code: ErrorName, m: string): never => {
      throw new ChannelError(code, m);
    };
    // §13.2: before anything else, every argument present and of its JSON type
    const ARGS: Record<string, [string, "int" | "hex" | "bool" | "str"][]> = {
      open: [["name", "str"]], write: [["chan", "int"], ["data", "hex"], ["end_of_message", "bool"]], close: [["chan", "int"]],
      reset: [["chan", "int"], ["code", "int"]], consumed: [["chan", "int"], ["nbytes", "int"]], resync: [], restart: [],
    };
    for (const [k, ty] of ARGS[name] ?? []) {
      const v = a[k];
      const ok = ty === "int" ? intArg(v) !== undefined : ty === "hex" ? hexOrUndefined(v) !== undefined : ty === "bool" ? typeof v === "boolean" : typeof v === "string";
      if (!ok) refuse("MESSAGE_INVALID", `${k} missing or not ${ty}`);
    }
    if (name === "restart") {
      this.restart();
      return out;
    }
    if (this.failed) refuse("UNEXPECTED_MESSAGE", "the item stream broke");
    const live = (): Chan => {
      const id = uintArg(a.chan) ?? refuse("CHAN_UNKNOWN", "no live channel " + String(a.chan));
      return this.chans.get(id) ?? refuse("CHAN_UNKNOWN", "no live channel " + String(id));
    };
    switch (name) {
      case "open": {
        const n = a.name;
        if (typeof n !== "string" || !validName(n)) refuse("CHAN_NAME_INVALID", "name breaks CHN-8");
        if (BigInt(this.chans.size) >= this.maxChannels || this.nextOwn > MAX_CHAN_ID) refuse("CHAN_TOO_MANY", "too many channels");
        const c = this.newChan(this.nextOwn, n as string);
        this.nextOwn += 2n;
        this.chans.set(c.id, c);
        this.emit(out, { type: "OPEN", chan: c.id, name: c.name });
        this.initialCredit(out, c);
        break;
      }
      case "write": {
        const c = live();
        if (ownClosed(c)) refuse("CHAN_CLOSED", "this side closed the channel");
        const data = hexOrUndefined(a.data) ?? refuse("MESSAGE_INVALID", "data is not hex");
        if (data.length === 0) refuse("MESSAGE_INVALID", "empty write");
        const eom = a.end_of_message === true;
        if (BigInt(data.length) > c.sendLimit - c.sent) refuse("CHAN_CREDIT_EXCEEDED", "write beyond the credit");
        for (let i = 0; i < data.length; i += MAX_DATA) {
          const chunk = data.subarray(i, i + MAX_DATA);
          const last = i + MAX_DATA >= data.length;
          this.emit(out, { type: "DATA", chan: c.id, offset: c.sent, eom: last && eom, data: chunk });
          c.sent += BigInt(chunk.length);
        }
        break;
      }
      case "close": {
        const c = live();
        if (ownClosed(c)) refuse("CHAN_CLOSED", "already closed");
        this.emit(out, { type: "CLOSE", chan: c.id, final: c.sent });
        c.state = c.state === "OPEN" ? "HALF_CLOSED_LOCAL" : "CLOSED";
        this.maybeForget(c);
        break;
      }
      case "reset": {
        const c = live();
        const code = intArg(a.code);
        const v = code === undefined ? -1n : code;
        const localOnly = (v >= 0x0507n && v <= 0x050an) || (v >> 8n === 0x06n) || (v >> 8n === 0x07n);
        if (v < 0n || v > 0xffffn || localOnly) refuse("MESSAGE_INVALID", "reset code");
        this.emit(out, { type: "RESET", chan: c.id, code: v });
        this.chans.delete(c.id);
        break;
      }
      case "consumed": {
        const c = live();
        const n = intArg(a.nbytes) as bigint;
        if (n < 0n || n > c.received - c.consumed) refuse("CHAN_CONSUME_INVALID", "more than delivered");
        c.consumed += n;
        if (peerOpen(c)) {
          const half = (this.window + 1n) / 2n;
          if (c.consumed + this.window >= c.recvLimit + half) {
            const lim = c.consumed + this.window;
            c.recvLimit = lim > U64_MAX ? U64_MAX : lim;
            this.emit(out, { type: "CREDIT", chan: c.id, limit: c.recvLimit });
          }
        }
        this.maybeForget(c);
        break;
      }
      case "resync":
        for (const id of [...this.chans.keys()].sort((x, y) => (x < y ? -1 : 1))) {
          const c = this.chans.get(id) as Chan;
          if (peerOpen(c)) this.emit(out, { type: "CREDIT", chan: c.id, limit: c.recvLimit });
        }
        break;
      default:
        refuse("UNEXPECTED_MESSAGE", "unknown command " + name);
    }
    return out;
  }

  /** §11.1: rebuild from the stored state: `received` = `consumed`, no failure, no partial frame. */
  private restart(): void {
    this.failed = false;
    this.buf = new Uint8Array(0);
    for (const c of this.chans.values()) c.received = c.consumed;
  }

  tick(_now: number): StepOutput {
    return new StepOutput();
  }

  // ------------------------------------------------------------------ receiving

  recv(_now: number, data: Bytes): StepOutput {
    const out = new StepOutput();
    if (this.failed || data.length === 0) return out;
    this.buf = concat(this.buf, data);
    while (!this.failed && this.buf.length >= 5) {
      const b = this.buf;
      const len = ((b[3] ?? 0) << 8) | (b[4] ?? 0);
      if (b[0] !== 1 || b[1] !== 0x33 || b[2] !== 0 || len < 9 || len > 16384) {
        this.breakStream(out, "MESSAGE_INVALID");
        break;
      }
      if (b.length < 5 + len) break;
      const item = b.slice(13, 5 + len);
      this.buf = b.slice(5 + len);
      try {
        this.onItem(out, decodeItem(item));
      } catch (e) {
        if (!(e instanceof P4Error)) throw e;
        this.breakStream(out, e.code);
      }
    }
    return out;
  }

  /** §10.1. */
  private breakStream(out: StepOutput, code: string): void {
    this.failed = true;
    this.buf = new Uint8Array(0);
    out.events.push({ event: "CHANNELS_FAILED", code });
    out.errors.push(code);
  }

  /** §6.1 routing, then the channel's row of §9.2. */
  private onItem(out: StepOutput, it: Item): void {
    const id = it.chan;
    const parity = id % 2n;
    if (it.type === "OPEN") {
      if (parity === this.ownParity || id > this.nextPeer || id > MAX_CHAN_ID) throw new ChannelError("CHAN_ID_INVALID", "bad OPEN id");
      if (id < this.nextPeer) return; // a repeat: ignored, live or not
      this.nextPeer += 2n;
      if (!validName(it.name)) {
        this.emit(out, { type: "RESET", chan: id, code: BigInt(codeValue("CHAN_NAME_INVALID") as number) });
        return;
      }
      if (BigInt(this.chans.size) >= this.maxChannels) {
        this.emit(out, { type: "RESET", chan: id, code: BigInt(codeValue("CHAN_TOO_MANY") as number) });
        return;
      }
      const c = this.newChan(id, it.name);
      this.chans.set(id, c);
      out.events.push({ event: "CHANNEL_OPENED", chan: id, name: it.name });
      this.initialCredit(out, c);
      return;
    }
    const c = this.chans.get(id);
    if (c === undefined) {
      const next = parity === this.ownParity ? this.nextOwn : this.nextPeer;
      if (id < next) return; // a late item of a forgotten channel (CHN-17)
      throw new ChannelError("CHAN_ID_INVALID", "item for a channel never opened");
    }
    switch (it.type) {
      case "DATA": {
        const end = it.offset + BigInt(it.data.length);
        if (c.peerFinal !== undefined && end > c.peerFinal) return this.fail(out, c, "CHAN_FINAL_OFFSET");
        if (end > c.recvLimit) return this.fail(out, c, "CHAN_FLOW_CONTROL");
        if (it.offset > c.received) return this.fail(out, c, "CHAN_OFFSET_GAP");
        if (end <= c.received) return;
        const from = Number(c.received - it.offset);
        out.events.push({ event: "CHANNEL_DATA", chan: id, offset: c.received, data: it.data.slice(from), end_of_message: it.eom });
        c.received = end;
        return;
      }
      case "CREDIT":
        if (c.state === "OPEN" || c.state === "HALF_CLOSED_REMOTE") {
          if (it.limit > c.sendLimit) {
            c.sendLimit = it.limit;
            out.events.push({ event: "CREDIT_GRANTED", chan: id, credit: c.sendLimit - c.sent, limit: c.sendLimit });
          }
        }
        return;
      case "CLOSE":
        if (c.state === "OPEN" || c.state === "HALF_CLOSED_LOCAL") {
          if (it.final !== c.received) return this.fail(out, c, "CHAN_FINAL_OFFSET");
          c.peerFinal = it.final;
          c.state = c.state === "OPEN" ? "HALF_CLOSED_REMOTE" : "CLOSED";
          out.events.push({ event: "CHANNEL_HALF_CLOSED", chan: id, final: it.final });
          this.maybeForget(c);
        } else if (it.final !== c.peerFinal) {
          this.fail(out, c, "CHAN_FINAL_OFFSET");
        }
        return;
      case "RESET":
        this.chans.delete(id);
        out.events.push({ event: "CHANNEL_RESET", chan: id, code: it.code, by_peer: true });
        return;
    }
  }

  /** CHN-37: the peer broke a channel rule; only that channel ends (no `error` output, §13.2). */
  private fail(out: StepOutput, c: Chan, code: ErrorName): void {
    const v = BigInt(codeValue(code) as number);
    this.emit(out, { type: "RESET", chan: c.id, code: v });
    this.chans.delete(c.id);
    out.events.push({ event: "CHANNEL_RESET", chan: c.id, code: v, by_peer: false });
  }
}


function intArg(v: unknown): bigint | undefined {
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === "object" && v !== null && typeof (v as { int?: unknown }).int === "string") {
    const s = (v as { int: string }).int;
    if (/^-?(0|[1-9][0-9]*)$/.test(s)) return BigInt(s);
  }
  return undefined;
}

function uintArg(v: unknown): bigint | undefined {
  const n = intArg(v);
  return n !== undefined && n >= 0n && n <= U64_MAX ? n : undefined;
}
