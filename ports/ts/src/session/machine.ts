/** The session machine of p4-04 §11/§13.2: per-connection handshakes, the durable stream, incarnations, liveness. */
import { Bytes, compare, concat, equal, u64be, hexOrUndefined } from "../bytes.js";
import { cmap, encode } from "../cbor.js";
import { codeName, codeValue, ERROR_CODES, P4Error, type ErrorName } from "../errors.js";
import { errorFrame, pongFrame, rawFrame, StreamReader, T, type Frame, type Path } from "../framing.js";
import { publicKey } from "../identity.js";
import { StepOutput, type Machine, type MachineEvent, type Rng } from "../machine.js";
import { authInput, checkHello, MAX_PAYLOAD, parseSesFrame, SES, SessionError, signAuth, verifyAuth, type SesMsg } from "./messages.js";

export type ConnState = "HELLO_SENT" | "AUTH_SENT" | "OPEN" | "END_SENT" | "END_RECEIVED" | "CLOSED" | "FAILED";
export type Status = "connected" | "reconnecting" | "offline";

export const HANDSHAKE_TIMEOUT = 10000;
export const DRAIN_TIMEOUT = 10000;
export const PROBE_BUSY = 2000;
export const PROBE_IDLE = 30000;
export const PONG_TIMEOUT = 7000;
export const PROBE_REQUEST = 10000;
export const ACK_DELAY = 20;
export const ACK_EVERY = 16;
export const MAX_RETIRED = 8;
const KEEP_ENDED = 8;
const ZERO16 = new Uint8Array(16);

export interface StoredState {
  inc: Bytes; tx: bigint; acked: bigint; outbox: [bigint, Bytes][]; peerInc: Bytes; rx: bigint; retired: Bytes[]; generation: bigint;
}

export interface SessionConfig {
  readonly identitySeed: Bytes;
  readonly peerPub: Bytes;
  readonly state?: StoredState;
  readonly dcWindow?: bigint;
  readonly torWindow?: bigint;
  readonly maxOutbox?: bigint;
}

interface Conn {
  readonly id: number;
  readonly generation: bigint;
  readonly path: Path;
  readonly bl: Bytes;
  readonly br: Bytes;
  state: ConnState;
  reader: StreamReader;
  myHello: Bytes;
  myF: Readonly<Record<string, bigint | Bytes>>;
  peerHello?: Bytes;
  peerF?: Readonly<Record<string, bigint | Bytes>>;
  handshakeDeadline?: number;
  drainDeadline?: number;
  pongDeadline?: number;
  pingNonce?: Bytes;
  lastAlive: number;
  nextSend: bigint;
  sentHighest: bigint;
  sent: bigint[];
  endedAt?: number;
  openOrder: number;
}

const live = (c: Conn): boolean => c.state !== "CLOSED" && c.state !== "FAILED";

export class SessionMachine implements Machine {
  private readonly myPub: Bytes;
  private readonly isLow: boolean;
  private inc: Bytes;
  private tx: bigint;
  private acked: bigint;
  private readonly outbox = new Map<bigint, Bytes>();
  private peerInc: Bytes;
  private rx: bigint;
  private rxDurable: bigint;
  private retired: Bytes[];
  private maxGen: bigint;
  private readonly conns = new Map<number, Conn>();
  private readonly used = new Set<number>();
  private active: number | undefined;
  private status: Status = "offline";
  private asked = false;
  private probeUntil = -Infinity;
  private ackDeadline: number | undefined;
  private lastAckSent = 0n;
  private opened = 0;

  constructor(readonly cfg: SessionConfig, private readonly rng: Rng) {
    this.myPub = publicKey(cfg.identitySeed);
    this.isLow = compare(this.myPub, cfg.peerPub) < 0;
    const st = cfg.state;
    if (st !== undefined) {
      this.inc = st.inc;
      this.tx = st.tx;
      this.acked = st.acked;
      for (const [s, p] of st.outbox) this.outbox.set(s, p);
      this.peerInc = st.peerInc;
      this.rx = st.rx;
      this.rxDurable = st.rx;
      this.retired = [...st.retired];
      this.maxGen = st.generation;
      this.lastAckSent = st.rx;
    } else {
      this.inc = this.drawInc();
      this.tx = 0n;
      this.acked = 0n;
      this.peerInc = ZERO16;
      this.rx = 0n;
      this.rxDurable = 0n;
      this.retired = [];
      this.maxGen = 0n;
    }
  }

  get state(): string {
    const parts: string[] = [this.status];
    for (const id of [...this.conns.keys()].sort((a, b) => a - b)) parts.push(`${id}:${(this.conns.get(id) as Conn).state}`);
    return parts.join(" ");
  }

  private drawInc(): Bytes {
    for (;;) {
      const v = this.rng.draw(16);
      if (!equal(v, ZERO16)) return v;
    }
  }

  // ------------------------------------------------------------------ helpers

  private send(out: StepOutput, c: Conn, frame: Bytes): void {
    out.sends.push(frame);
    out.sendConns.push(c.id);
  }

  private ev(out: StepOutput, e: MachineEvent): void {
    out.events.push(e);
  }

  private computeStatus(): Status {
    if (this.active !== undefined) return "connected";
    const handshaking = [...this.conns.values()].some((c) => c.state === "HELLO_SENT" || c.state === "AUTH_SENT");
    return handshaking || this.asked ? "reconnecting" : "offline";
  }

  private updateStatus(out: StepOutput): void {
    const s = this.computeStatus();
    if (s !== this.status) {
      this.status = s;
      this.ev(out, { event: "STATUS", status: s });
    }
  }

  private reconnect(out: StepOutput, cause: "dead" | "no_direct" | "network"): void {
    this.asked = true;
    this.ev(out, { event: "RECONNECT_NEEDED", cause });
  }

  private window(c: Conn): bigint {
    return c.path === "tor" ? this.cfg.torWindow ?? 65536n : this.cfg.dcWindow ?? 4194304n;
  }

  /** Send outbox messages on the active connection, in order, within its window (SES-10, SES-37). */
  private pump(out: StepOutput): void {
    if (this.active === undefined) return;
    const c = this.conns.get(this.active) as Conn;
    let inflight = 0n;
    let count = 0;
    c.sent = c.sent.filter((s) => s > this.acked);
    for (const s of c.sent) {
      inflight += BigInt((this.outbox.get(s) ?? new Uint8Array(0)).length);
      count++;
    }
    if (c.nextSend <= this.acked) c.nextSend = this.acked + 1n;
    while (c.nextSend <= this.tx) {
      const p = this.outbox.get(c.nextSend);
      if (p === undefined) break;
      if (count > 0 && inflight + BigInt(p.length) > this.window(c)) break;
      this.send(out, c, rawFrame(SES.SES_MSG, 0, concat(u64be(c.nextSend), p)));
      c.sent.push(c.nextSend);
      c.sentHighest = c.nextSend;
      inflight += BigInt(p.length);
      count++;
      c.nextSend++;
    }
  }

  private sendAck(out: StepOutput): boolean {
    if (this.active === undefined) return false;
    const c = this.conns.get(this.active) as Conn;
    this.send(out, c, rawFrame(SES.SES_ACK, 0, u64be(this.rxDurable)));
    this.lastAckSent = this.rxDurable;
    this.ackDeadline = undefined;
    return true;
  }

  private preferred(): Conn | undefined {
    let best: Conn | undefined;
    for (const c of this.conns.values()) {
      if (c.state !== "OPEN" && c.state !== "END_RECEIVED") continue;
      if (best === undefined) best = c;
      else if (best.path === "tor" && c.path === "datachannel") best = c;
      else if (best.path === c.path && c.generation > best.generation) best = c;
    }
    return best;
  }

  private prefers(a: Conn, b: Conn): boolean {
    if (a.path === "datachannel" && b.path === "tor") return true;
    return a.path === b.path && a.generation > b.generation;
  }

  /** SES-31: `c` becomes the active connection; resume from max(acked, rx_peer) + 1. */
  private makeActive(out: StepOutput, c: Conn): void {
    this.active = c.id;
    const h = c.peerF as Record<string, bigint | Bytes>;
    const rxPeer = equal(h.peer_inc as Bytes, this.inc) ? (h.rx as bigint) : this.acked;
    c.nextSend = (rxPeer > this.acked ? rxPeer : this.acked) + 1n;
    c.sent = [];
    if (this.rxDurable > (h.acked as bigint) || this.rxDurable > this.lastAckSent) this.sendAck(out);
    this.pump(out);
  }

  // ------------------------------------------------------------------ commands

  command(now: number, name: string, args: Record<string, unknown>): StepOutput {
    const out = new StepOutput();
    const refuse = (code: ErrorName, m: string): never => {
      throw new SessionError(code, m);
    };
    switch (name) {
      case "open":
        this.open(out, now, args, refuse);
        break;
      case "send": {
        const p = hexOrUndefined(args.payload) ?? refuse("MESSAGE_INVALID", "payload is not hex");
        if (p.length > MAX_PAYLOAD) refuse("FRAME_TOO_LARGE", "payload over 16371 bytes");
        if (BigInt(this.outbox.size) >= (this.cfg.maxOutbox ?? 100000n)) refuse("SES_OUTBOX_FULL", "outbox full");
        this.tx++;
        this.outbox.set(this.tx, p);
        this.pump(out);
        break;
      }
      case "inbox_committed": {
        const t = uintArg(args.through) ?? refuse("MESSAGE_INVALID", "through is not a uint64");
        if (t < this.rxDurable || t > this.rx) refuse("UNEXPECTED_MESSAGE", "through outside rx_durable … rx");
        if (t > this.rxDurable) {
          this.rxDurable = t;
          if (this.rxDurable - this.lastAckSent >= BigInt(ACK_EVERY)) this.sendAck(out);
          else if (this.ackDeadline === undefined) this.ackDeadline = now + ACK_DELAY;
        }
        break;
      }
      case "send_signal": {
        const f = hexOrUndefined(args.frame) ?? refuse("MESSAGE_INVALID", "frame is not hex"); // §13.2: types first
        const c = this.active === undefined ? undefined : this.conns.get(this.active);
        if (c === undefined || c.path !== "datachannel") refuse("UNEXPECTED_MESSAGE", "no active data channel");
        const ok = f.length >= 5 && f[0] === 1 && (f[1] === T.RV_OFFER || f[1] === T.RV_ANSWER) && (((f[3] ?? 0) << 8) | (f[4] ?? 0)) === f.length - 5;
        if (!ok) refuse("MESSAGE_INVALID", "not one RV_OFFER or RV_ANSWER frame");
        this.send(out, c as Conn, rawFrame(SES.SES_SIGNAL, 0, f));
        break;
      }
      case "probe":
        this.probeUntil = now + PROBE_REQUEST;
        this.pingActive(out, now);
        break;
      case "network_changed":
        this.probeUntil = now + PROBE_REQUEST;
        this.pingActive(out, now);
        this.reconnect(out, "network");
        break;
      case "give_up":
        this.asked = false;
        break;
      default:
        refuse("MESSAGE_INVALID", "unknown command " + name);
    }
    this.updateStatus(out);
    this.forget();
    return out;
  }

  private open(out: StepOutput, now: number, a: Record<string, unknown>, refuse: (c: ErrorName, m: string) => never): void {
    const path = a.path;
    const id = uintArg(a.conn);
    if (id === undefined || id > BigInt(Number.MAX_SAFE_INTEGER)) return refuse("MESSAGE_INVALID", "conn");
    const bl = hexOrUndefined(a.binding_local);
    const br = hexOrUndefined(a.binding_remote);
    // §13.2: a missing or ill-typed argument before every other refusal
    if (bl === undefined || br === undefined || typeof path !== "string") return refuse("MESSAGE_INVALID", "arguments");
    const gen = uintArg(a.generation) ?? refuse("MESSAGE_INVALID", "generation");
    if (path !== "datachannel" && path !== "tor") refuse("MESSAGE_INVALID", "path");
    if (this.used.has(Number(id))) refuse("UNEXPECTED_MESSAGE", "conn already used");
    if (bl.length !== 32 || br.length !== 32) return refuse("MESSAGE_INVALID", "bindings");
    if (path === "tor" ? gen !== 0n : gen <= this.maxGen) refuse("SES_WRONG_GENERATION", "stale generation");
    const nonce = this.rng.draw(16);
    if (path === "datachannel") this.maxGen = gen;
    const f = {
      nonce, generation: gen, binding_sender: bl, binding_receiver: br, sender_pub: this.myPub, recipient_pub: this.cfg.peerPub,
      inc: this.inc, peer_inc: this.peerInc, rx: this.rx, acked: this.acked, tx: this.tx,
    };
    const body = encode(cmap({ 1: f.nonce, 2: f.generation, 3: f.binding_sender, 4: f.binding_receiver, 5: f.sender_pub, 6: f.recipient_pub, 7: f.inc, 8: f.peer_inc, 9: f.rx, 10: f.acked, 11: f.tx }));
    const c: Conn = {
      id: Number(id), generation: gen, path: path as Path, bl, br, state: "HELLO_SENT", reader: new StreamReader(path as Path),
      myHello: body, myF: f, handshakeDeadline: now + HANDSHAKE_TIMEOUT, lastAlive: now, nextSend: 1n, sentHighest: 0n, sent: [],
      openOrder: this.opened++,
    };
    this.used.add(c.id);
    this.conns.set(c.id, c);
    this.send(out, c, rawFrame(SES.SES_HELLO, 0, body));
  }

  private pingActive(out: StepOutput, now: number): void {
    if (this.active === undefined) return;
    const c = this.conns.get(this.active) as Conn;
    if (c.pongDeadline === undefined) this.ping(out, c, now);
  }

  private ping(out: StepOutput, c: Conn, now: number): void {
    const nonce = this.rng.draw(8);
    c.pingNonce = nonce;
    c.pongDeadline = now + PONG_TIMEOUT;
    this.send(out, c, rawFrame(T.PING, 0, encode(cmap({ 1: nonce }))));
  }

  // ------------------------------------------------------------------ receiving

  recv(now: number, data: Bytes): StepOutput {
    void now;
    void data;
    throw new SessionError("UNEXPECTED_MESSAGE", "session recv needs a conn");
  }

  recvOn(now: number, id: number, data: Bytes): StepOutput {
    const c = this.conns.get(id);
    if (c === undefined) throw new SessionError("UNEXPECTED_MESSAGE", "no such connection");
    const out = new StepOutput();
    const failedBefore = out.errors.length;
    void failedBefore;
    if (live(c)) {
      if (data.length === 0) {
        if (c.reader.pending > 0) this.failConn(out, c, "FRAME_TRUNCATED", false, false);
        else this.closeConn(out, c);
      } else {
        c.reader.push(data);
        while (live(c)) {
          let f: Frame | undefined;
          try {
            f = c.reader.next();
          } catch (e) {
            if (!(e instanceof P4Error)) throw e;
            this.failConn(out, c, e.code, c.reader.lastType !== T.ERROR, false);
            break;
          }
          if (f === undefined) break;
          try {
            this.onFrame(out, now, c, f);
          } catch (e) {
            if (!(e instanceof P4Error)) throw e;
            this.failConn(out, c, e.code, true, false);
          }
        }
      }
    }
    this.updateStatus(out);
    this.forget();
    return out;
  }

  private onFrame(out: StepOutput, now: number, c: Conn, f: Frame): void {
    if (f.ignorable) return;
    if (f.type === T.ERROR) {
      const code = f.map?.get(1);
      const name = codeName(typeof code === "bigint" ? Number(code) : 0);
      const resets: MachineEvent[] = [];
      const h = c.peerF;
      if (name === "SES_INCARNATION_STALE" && h !== undefined && (c.state === "OPEN" || c.state === "END_SENT" || c.state === "END_RECEIVED")) {
        // §9 rule 2 (rev 4): the peer found itself stale on this connection
        const hInc = h.inc as Bytes;
        if (equal(hInc, this.peerInc) && !this.retired.some((r) => equal(r, hInc))) {
          this.retire(hInc);
          const hRx = h.rx as bigint;
          const lostOut = equal(h.peer_inc as Bytes, this.inc) && hRx < this.acked ? [hRx + 1n, this.acked] : null;
          resets.push({ event: "SESSION_RESET", kind: "peer_restored", lost_in: null, lost_out: lostOut, renumbered: 0n });
        }
      }
      this.failConn(out, c, name, false, true, resets);
      return;
    }
    if (f.type === T.PONG) {
      const n = f.map?.get(1);
      if (c.pingNonce !== undefined && n instanceof Uint8Array && equal(n, c.pingNonce)) {
        c.pingNonce = undefined;
        this.alive(c, now);
      }
      return;
    }
    this.alive(c, now);
    if (f.type === T.PING) {
      const n = f.map?.get(1);
      if (n instanceof Uint8Array) this.send(out, c, pongFrame(n));
      return;
    }
    if (f.type === T.PADDING) return;
    const m = parseSesFrame(f, c.path); // (2) schema; a non-session frame is UNEXPECTED_MESSAGE
    const s = c.state;
    switch (m.type) {
      case "SES_HELLO":
        if (s !== "HELLO_SENT") throw unexpected(m, s);
        checkHello(m, this.myPub, this.cfg.peerPub, c.generation, c.bl, c.br);
        c.peerHello = f.body;
        c.peerF = m.f;
        this.send(out, c, signAuth(this.cfg.identitySeed, this.cfg.peerPub, c.myHello, f.body).frame);
        c.state = "AUTH_SENT";
        return;
      case "SES_AUTH":
        if (s !== "AUTH_SENT") throw unexpected(m, s);
        verifyAuth(m.f.signature as Bytes, this.myPub, this.cfg.peerPub, c.myHello, c.peerHello as Bytes);
        this.opened_(out, now, c);
        return;
      case "SES_MSG": {
        if (s !== "OPEN" && s !== "END_SENT") throw unexpected(m, s);
        const seq = m.f.seq as bigint;
        if (seq > this.rx + 1n) throw new SessionError("SES_SEQ_GAP", "seq above next");
        if (seq === this.rx + 1n) {
          this.rx = seq;
          this.ev(out, { event: "MESSAGE", inc: this.peerInc, seq, payload: m.f.payload as Bytes });
        }
        return;
      }
      case "SES_ACK": {
        if (s !== "OPEN" && s !== "END_SENT") throw unexpected(m, s);
        const a = m.f.ack as bigint;
        if (a > this.tx) throw new SessionError("SES_ACK_INVALID", "ack above tx");
        if (a <= this.acked) return;
        this.acked = a;
        for (const k of [...this.outbox.keys()]) if (k <= a) this.outbox.delete(k);
        this.pump(out);
        this.ev(out, { event: "ACKED", through: a });
        return;
      }
      case "SES_SIGNAL":
        if (s !== "OPEN" && s !== "END_SENT") throw unexpected(m, s);
        this.ev(out, { event: "SIGNAL", conn: BigInt(c.id), frame: m.f.frame as Bytes });
        return;
      case "SES_END": {
        if (s !== "OPEN" && s !== "END_SENT") throw unexpected(m, s);
        if ((m.f.last as bigint) >= this.rx + 1n) throw new SessionError("SES_SEQ_GAP", "SES_END names an unseen seq");
        if (s === "OPEN") {
          c.state = "END_RECEIVED";
        } else {
          c.drainDeadline = undefined;
          this.endConn(c, "CLOSED", now);
          this.ev(out, { event: "CONNECTION_CLOSED", conn: BigInt(c.id) });
        }
        return;
      }
    }
  }

  private alive(c: Conn, now: number): void {
    c.lastAlive = now;
    c.pongDeadline = undefined;
  }

  /** The peer's SES_AUTH verified: §9, then open (and maybe switch, SES-32). */
  private opened_(out: StepOutput, now: number, c: Conn): void {
    const h = c.peerF as Record<string, bigint | Bytes>;
    const hInc = h.inc as Bytes;
    if (this.retired.some((r) => equal(r, hInc))) throw new SessionError("SES_INCARNATION_CONFLICT", "retired incarnation");
    // p4-04 rev 4, §9 rule 2: judge only our own staleness, from the peer's HELLO and our
    // current counters (never the snapshot in our own HELLO, which the old connection may
    // have overtaken: make-before-break under traffic); the peer's staleness comes by its ERROR
    const hPeerIsMe = equal(h.peer_inc as Bytes, this.inc);
    const hIsPeer = equal(hInc, this.peerInc);
    const hRx = h.rx as bigint, hAcked = h.acked as bigint;
    if ((hPeerIsMe && hRx > this.tx) || (hIsPeer && hAcked > this.rx)) {
      this.inc = this.drawInc();
      let lostIn: bigint[] | null = null;
      if (hIsPeer && this.rx < hAcked) {
        lostIn = [this.rx + 1n, hAcked];
        this.rx = hAcked;
        this.rxDurable = hAcked;
      }
      const msgs = [...this.outbox.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, p]) => p);
      this.outbox.clear();
      msgs.forEach((p, i) => this.outbox.set(BigInt(i + 1), p));
      this.tx = BigInt(msgs.length);
      this.acked = 0n;
      const reset: MachineEvent = { event: "SESSION_RESET", kind: "restored", lost_in: lostIn, lost_out: null, renumbered: BigInt(msgs.length) };
      this.failConn(out, c, "SES_INCARNATION_STALE", true, false, [reset], now);
      return;
    }
    if (!equal(hInc, this.peerInc)) {
      if (!equal(this.peerInc, ZERO16)) {
        this.retire(this.peerInc);
        const lostOut = !hPeerIsMe && this.acked > 0n ? [1n, this.acked] : null;
        this.ev(out, { event: "SESSION_RESET", kind: "peer_new", lost_in: null, lost_out: lostOut, renumbered: 0n });
      }
      this.peerInc = hInc;
      this.rx = hAcked;
      this.rxDurable = hAcked;
    }
    c.state = "OPEN";
    c.handshakeDeadline = undefined;
    c.lastAlive = now;
    const cur = this.active === undefined ? undefined : this.conns.get(this.active);
    const becomesActive = cur === undefined || this.prefers(c, cur);
    this.ev(out, { event: "CONNECTION_OPEN", conn: BigInt(c.id), generation: c.generation, active: becomesActive });
    if (!becomesActive) return;
    this.makeActive(out, c);
    if (cur !== undefined && cur.path === "datachannel") this.switchAway(out, cur, now);
    if (c.path === "tor") this.reconnect(out, "no_direct");
  }

  private switchAway(out: StepOutput, old: Conn, now: number): void {
    this.send(out, old, rawFrame(SES.SES_END, 0, encode(cmap({ 1: old.sentHighest }))));
    if (old.state === "END_RECEIVED") {
      this.endConn(old, "CLOSED", now);
      this.ev(out, { event: "CONNECTION_CLOSED", conn: BigInt(old.id) });
    } else {
      old.state = "END_SENT";
      old.drainDeadline = now + DRAIN_TIMEOUT;
      old.pongDeadline = undefined;
    }
  }

  private retire(inc: Bytes): void {
    this.retired.push(inc);
    while (this.retired.length > MAX_RETIRED) this.retired.shift();
  }

  private endConn(c: Conn, st: "CLOSED" | "FAILED", now: number): void {
    c.state = st;
    c.endedAt = now;
    c.handshakeDeadline = c.drainDeadline = c.pongDeadline = undefined;
  }

  /** SES-51/SES-53: fail a connection (ERROR frame, CONNECTION_FAILED, failover, resets, error). */
  private failConn(out: StepOutput, c: Conn, code: string, sendError: boolean, byPeer: boolean, resets: MachineEvent[] = [], now = 0): void {
    if (sendError) {
      const v = codeValue(code);
      const local = v === undefined || v >> 8 === 0x06 || v >> 8 === 0x07 || code === "SES_OUTBOX_FULL";
      this.send(out, c, errorFrame(local ? ERROR_CODES.INTERNAL_ERROR : (v as number)));
    }
    this.endConn(c, "FAILED", now);
    this.ev(out, { event: "CONNECTION_FAILED", conn: BigInt(c.id), code, by_peer: byPeer });
    this.afterLoss(out, c);
    this.updateStatus(out);
    for (const r of resets) this.ev(out, r);
    out.errors.push(code);
  }

  private closeConn(out: StepOutput, c: Conn): void {
    this.endConn(c, "CLOSED", c.lastAlive);
    this.ev(out, { event: "CONNECTION_CLOSED", conn: BigInt(c.id) });
    this.afterLoss(out, c);
    this.updateStatus(out);
  }

  private afterLoss(out: StepOutput, c: Conn): void {
    if (this.active !== c.id) return;
    this.active = undefined;
    const next = this.preferred();
    if (next === undefined) {
      this.reconnect(out, "dead");
    } else {
      this.makeActive(out, next);
      if (next.path === "tor") this.reconnect(out, "no_direct");
    }
  }

  // ------------------------------------------------------------------ timers

  tick(now: number): StepOutput {
    const out = new StepOutput();
    for (let guard = 0; guard < 10000; guard++) {
      const due = this.nextTimer(now);
      if (due === undefined) break;
      this.fire(out, now, due);
    }
    this.updateStatus(out);
    this.forget();
    return out;
  }

  private busy(c: Conn, at: number): boolean {
    return (this.active === c.id && this.tx > this.acked) || this.probeUntil > at;
  }

  private probeDeadline(c: Conn): number | undefined {
    if ((c.state !== "OPEN" && c.state !== "END_RECEIVED") || c.pongDeadline !== undefined) return undefined;
    const busyAt = c.lastAlive + PROBE_BUSY;
    if (this.busy(c, busyAt)) return busyAt;
    return c.lastAlive + (this.isLow ? PROBE_IDLE : PROBE_IDLE * 1.5);
  }

  private nextTimer(now: number): { at: number; kind: string; conn?: Conn } | undefined {
    const cands: { at: number; kind: string; conn?: Conn; order: number }[] = [];
    if (this.ackDeadline !== undefined && this.ackDeadline <= now) cands.push({ at: this.ackDeadline, kind: "ack", order: -1 });
    for (const c of this.conns.values()) {
      if (!live(c)) continue;
      const add = (at: number | undefined, kind: string): void => {
        if (at !== undefined && at <= now) cands.push({ at, kind, conn: c, order: c.id });
      };
      add(c.handshakeDeadline, "handshake");
      add(c.drainDeadline, "drain");
      add(c.pongDeadline, "pong");
      add(this.probeDeadline(c), "probe");
    }
    cands.sort((a, b) => a.at - b.at || a.order - b.order);
    return cands[0];
  }

  private fire(out: StepOutput, now: number, t: { kind: string; conn?: Conn }): void {
    const c = t.conn;
    switch (t.kind) {
      case "ack":
        if (!this.sendAck(out)) this.ackDeadline = undefined;
        return;
      case "handshake":
      case "pong":
        this.failConn(out, c as Conn, "TIMEOUT", true, false, [], now);
        return;
      case "drain":
        this.endConn(c as Conn, "CLOSED", now);
        this.ev(out, { event: "CONNECTION_CLOSED", conn: BigInt((c as Conn).id) });
        return;
      case "probe":
        this.ping(out, c as Conn, now);
        return;
    }
  }

  /** Keep every live connection and the 8 ended ones opened last. */
  private forget(): void {
    const ended = [...this.conns.values()].filter((c) => !live(c)).sort((a, b) => b.openOrder - a.openOrder);
    for (const c of ended.slice(KEEP_ENDED)) this.conns.delete(c.id);
  }
}

function unexpected(m: SesMsg, s: ConnState): SessionError {
  return new SessionError("UNEXPECTED_MESSAGE", `${m.type} in ${s}`);
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

export { authInput };
