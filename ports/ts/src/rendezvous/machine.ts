/** The rendezvous machine of one onion stream (p4-03 §9), sans-I/O. */
import { sha256 } from "@noble/hashes/sha2";
import { Bytes, equal, hexOrUndefined, toHex } from "../bytes.js";
import { codeName, codeValue, ERROR_CODES, P4Error, type ErrorName } from "../errors.js";
import { errorFrame, pongFrame, StreamReader, T, type Frame } from "../framing.js";
import { publicKey } from "../identity.js";
import { StepOutput, type Machine, type Rng } from "../machine.js";
import { checkPairKeys, epochOf, roleOf, type RdvRole } from "./derive.js";
import {
  checkKeysEpochSignature, MAX_SDP_BYTES, parseRvFrame, replayKey, RendezvousError, rvTypeName, signMessage,
  type RvMsg, type RvType, type RvValue,
} from "./messages.js";

export type RdvStreamRole = "dialer" | "acceptor";
export type RdvState =
  | "IDLE" | "LISTENING" | "HELLO_SENT" | "HELLO_ECHOED" | "READY" | "OFFER_SENT" | "OFFER_RECEIVED" | "ANSWERED"
  | "CLOSED" | "ERROR";

export const HELLO_TIMEOUT_MS = 30000;
export const ANSWER_TIMEOUT_MS = 30000;
const U64_MAX = (1n << 64n) - 1n;

export interface RendezvousConfig {
  readonly role: RdvStreamRole;
  readonly identitySeed: Bytes;
  readonly peerPub: Bytes;
  readonly lastGeneration?: bigint;
  /** This endpoint's 16-byte session incarnation (default 16 zero bytes). */
  readonly incarnation?: Bytes;
  /** What was stored about the peer (RDV-61). */
  readonly peerIncarnation?: Bytes;
  readonly peerGeneration?: bigint;
}

export const INC_LEN = 16;

/**
 * One replay cache per peer, shared by every stream of the pair (RDV-27); it keeps the SHA-256 of
 * each accepted body so that an exact copy can be told from a replay (RDV-69).
 */
export class ReplayCache {
  private readonly seen = new Map<string, string>();
  has(k: string): boolean {
    return this.seen.has(k);
  }
  add(k: string, body: Bytes): void {
    this.seen.set(k, toHex(sha256(body)));
  }
  isCopy(k: string, body: Bytes): boolean {
    return this.seen.get(k) === toHex(sha256(body));
  }
}

type Input = "HELLO_NO_ECHO" | "HELLO_ECHO" | "OFFER" | "ANSWER" | "BYE";

const RECV_OK: Record<Input, readonly RdvState[]> = {
  HELLO_NO_ECHO: ["LISTENING"],
  HELLO_ECHO: ["HELLO_SENT", "HELLO_ECHOED"],
  OFFER: ["READY", "ANSWERED", "OFFER_RECEIVED", "OFFER_SENT"],
  ANSWER: ["OFFER_SENT"],
  BYE: ["READY", "OFFER_SENT", "OFFER_RECEIVED", "ANSWERED"],
};

const LIVE_AFTER_HELLO: readonly RdvState[] = ["READY", "OFFER_SENT", "OFFER_RECEIVED", "ANSWERED"];

export class RendezvousMachine implements Machine {
  state: RdvState;
  readonly myPub: Bytes;
  readonly rdvRole: RdvRole;
  private G: bigint;
  private reader = new StreamReader("tor");
  private myHelloNonce: Bytes | undefined;
  private peerHelloNonce: Bytes | undefined;
  private helloDeadline: number | undefined;
  private answerDeadline: number | undefined;
  private outstanding: { nonce: Bytes; generation: bigint; gBefore: bigint } | undefined;
  private received: { nonce: Bytes; generation: bigint } | undefined;

  constructor(readonly cfg: RendezvousConfig, private readonly rng: Rng, readonly replay = new ReplayCache()) {
    this.myPub = publicKey(cfg.identitySeed);
    checkPairKeys(undefined, this.myPub, cfg.peerPub);
    this.rdvRole = roleOf(this.myPub, cfg.peerPub);
    this.G = cfg.lastGeneration ?? 0n;
    this.state = cfg.role === "dialer" ? "IDLE" : "LISTENING";
  }

  private get terminal(): boolean {
    return this.state === "CLOSED" || this.state === "ERROR";
  }

  // ------------------------------------------------------------------ commands

  command(now: number, name: string, args: Record<string, unknown>): StepOutput {
    const out = new StepOutput();
    const refuse = (code: ErrorName, m: string): never => {
      throw new RendezvousError(code, m);
    };
    switch (name) {
      case "start":
        if (this.state === "IDLE") {
          this.helloDeadline = now + HELLO_TIMEOUT_MS;
          this.myHelloNonce = this.send(out, now, "RV_HELLO", this.helloFields(now, undefined));
          this.state = "HELLO_SENT";
        } else if (this.state === "LISTENING") {
          this.helloDeadline = now + HELLO_TIMEOUT_MS;
        } else refuse("UNEXPECTED_MESSAGE", "start in " + this.state);
        return out;
      case "send_offer": {
        const a = offerArgs(args, true);
        if (this.state !== "READY" && this.state !== "ANSWERED") refuse("UNEXPECTED_MESSAGE", "send_offer in " + this.state);
        if (a.generation <= this.G) refuse("RDV_STALE_GENERATION", "generation not above G");
        offerSchema(a);
        const gBefore = this.G;
        const nonce = this.send(out, now, "RV_OFFER", {
          generation: a.generation, sdp: a.sdp, fingerprint: a.fingerprint, last_rx: a.last_rx,
          stream_nonce: this.peerHelloNonce as Bytes,
        });
        this.G = a.generation;
        this.outstanding = { nonce, generation: a.generation, gBefore };
        this.answerDeadline = now + ANSWER_TIMEOUT_MS;
        this.state = "OFFER_SENT";
        return out;
      }
      case "send_answer": {
        const a = offerArgs(args, false);
        if (this.state !== "OFFER_RECEIVED" || this.received === undefined) refuse("UNEXPECTED_MESSAGE", "send_answer in " + this.state);
        offerSchema(a);
        const r = this.received as { nonce: Bytes; generation: bigint };
        this.send(out, now, "RV_ANSWER", {
          generation: r.generation, sdp: a.sdp, fingerprint: a.fingerprint, last_rx: a.last_rx,
          offer_nonce: r.nonce, stream_nonce: this.peerHelloNonce as Bytes,
        });
        this.state = "ANSWERED";
        return out;
      }
      case "send_bye": {
        if (!LIVE_AFTER_HELLO.includes(this.state)) refuse("UNEXPECTED_MESSAGE", "send_bye in " + this.state);
        const reason = byeReason(args);
        this.send(out, now, "RV_BYE", { reason, stream_nonce: this.peerHelloNonce as Bytes });
        this.clearTimers();
        this.state = "CLOSED";
        return out;
      }
      default:
        return refuse("UNEXPECTED_MESSAGE", "unknown command " + name);
    }
  }

  private helloFields(now: number, echo: Bytes | undefined): Record<string, RvValue> {
    const f: Record<string, RvValue> = {
      timestamp_ms: BigInt(now), sender_pub: this.myPub, recipient_pub: this.cfg.peerPub,
      generation: this.cfg.lastGeneration ?? 0n, incarnation: this.cfg.incarnation ?? new Uint8Array(INC_LEN),
    };
    if (echo !== undefined) f.echo = echo;
    return f;
  }

  /** Draw a nonce, sign, queue; returns the nonce. */
  private send(out: StepOutput, now: number, type: RvType, fields: Record<string, RvValue>): Bytes {
    const nonce = this.rng.draw(16);
    const { frame } = signMessage(type, { epoch: epochOf(now), nonce, ...fields }, this.cfg.identitySeed, this.cfg.peerPub);
    out.sends.push(frame);
    return nonce;
  }

  // ------------------------------------------------------------------ timers

  tick(now: number): StepOutput {
    const out = new StepOutput();
    const due = [this.helloDeadline, this.answerDeadline].filter((d): d is number => d !== undefined && d <= now);
    if (due.length > 0 && !this.terminal) this.fail(out, "TIMEOUT", true, false);
    return out;
  }

  private clearTimers(): void {
    this.helloDeadline = undefined;
    this.answerDeadline = undefined;
  }

  // ------------------------------------------------------------------ receiving

  recv(now: number, data: Bytes): StepOutput {
    const out = new StepOutput();
    if (this.terminal) return out;
    if (data.length === 0) {
      const code: ErrorName = this.reader.pending > 0 ? "FRAME_TRUNCATED" : "PROTOCOL_VIOLATION";
      this.fail(out, code, false, true);
      return out;
    }
    this.reader.push(data);
    while (!this.terminal) {
      let f: Frame | undefined;
      try {
        f = this.reader.next();
      } catch (e) {
        if (!(e instanceof P4Error)) throw e;
        this.fail(out, e.code, this.reader.lastType !== T.ERROR, false);
        break;
      }
      if (f === undefined) break;
      try {
        this.onFrame(now, out, f);
      } catch (e) {
        if (!(e instanceof P4Error)) throw e;
        this.fail(out, e.code, true, false);
      }
    }
    return out;
  }

  private onFrame(now: number, out: StepOutput, f: Frame): void {
    if (f.ignorable || f.type === T.PADDING || f.type === T.PONG) return;
    if (f.type === T.PING) {
      const nonce = f.map?.get(1);
      if (nonce instanceof Uint8Array) out.sends.push(pongFrame(nonce));
      return;
    }
    if (f.type === T.ERROR) {
      const c = f.map?.get(1);
      this.fail(out, codeName(typeof c === "bigint" ? Number(c) : 0), false, true);
      return;
    }
    if (rvTypeName(f.type) === undefined) throw new RendezvousError("UNEXPECTED_MESSAGE", "not a rendezvous frame");
    const msg = parseRvFrame(f); // (2) schema
    if ((msg.type === "RV_OFFER" || msg.type === "RV_ANSWER") && this.replay.isCopy(replayKey(msg), f.body)) return; // RDV-69
    const input: Input =
      msg.type === "RV_HELLO" ? (msg.f.echo === undefined ? "HELLO_NO_ECHO" : "HELLO_ECHO")
        : msg.type === "RV_OFFER" ? "OFFER" : msg.type === "RV_ANSWER" ? "ANSWER" : "BYE";
    if (!RECV_OK[input].includes(this.state)) throw new RendezvousError("UNEXPECTED_MESSAGE", `${input} in ${this.state}`); // (3)
    checkKeysEpochSignature(msg, this.cfg.peerPub, this.myPub, now); // (4)–(6)
    const rk = replayKey(msg); // (7)
    if (this.replay.has(rk)) throw new RendezvousError("RDV_REPLAY", "nonce already seen");
    if (input === "HELLO_ECHO") {
      if (!equal(msg.f.echo as Bytes, this.myHelloNonce ?? new Uint8Array(0))) throw new RendezvousError("RDV_REPLAY", "echo is not our nonce");
    } else if (input !== "HELLO_NO_ECHO") {
      if (!equal(msg.f.stream_nonce as Bytes, this.myHelloNonce ?? new Uint8Array(0))) throw new RendezvousError("RDV_REPLAY", "stream_nonce is not our HELLO nonce");
    }
    this.checkGeneration(msg, input); // (8)
    this.replay.add(rk, f.body);
    this.act(now, out, msg, input);
  }

  private checkGeneration(msg: RvMsg, input: Input): void {
    const gen = msg.f.generation as bigint;
    if (input === "OFFER") {
      const floor = this.state === "OFFER_SENT" && this.outstanding ? this.outstanding.gBefore : this.G;
      if (gen <= floor) throw new RendezvousError("RDV_STALE_GENERATION", "OFFER generation not new");
    } else if (input === "ANSWER") {
      const o = this.outstanding;
      if (o === undefined) throw new RendezvousError("UNEXPECTED_MESSAGE", "no OFFER outstanding");
      if (gen < o.generation) throw new RendezvousError("RDV_STALE_GENERATION", "ANSWER to an older OFFER");
      if (gen !== o.generation || !equal(msg.f.offer_nonce as Bytes, o.nonce))
        throw new RendezvousError("MESSAGE_INVALID", "ANSWER names another OFFER");
    }
  }

  private act(now: number, out: StepOutput, msg: RvMsg, input: Input): void {
    const f = msg.f;
    switch (input) {
      case "HELLO_NO_ECHO":
        this.peerHelloNonce = f.nonce as Bytes;
        this.myHelloNonce = this.send(out, now, "RV_HELLO", this.helloFields(now, f.nonce as Bytes));
        this.state = "HELLO_ECHOED";
        return;
      case "HELLO_ECHO":
        if (this.state === "HELLO_SENT") {
          this.peerHelloNonce = f.nonce as Bytes;
          this.send(out, now, "RV_HELLO", this.helloFields(now, f.nonce as Bytes));
        }
        this.helloDeadline = undefined;
        this.state = "READY";
        this.authenticated(out, f);
        return;
      case "OFFER": {
        const gen = f.generation as bigint;
        let glare = false;
        if (this.state === "OFFER_SENT") {
          const mine = (this.outstanding as { generation: bigint }).generation;
          const theirsWins = gen > mine || (gen === mine && this.rdvRole === "high");
          if (!theirsWins) return; // drop_offer: ours wins, keep waiting for the ANSWER
          glare = true;
          this.outstanding = undefined;
          this.answerDeadline = undefined;
        }
        if (gen > this.G) this.G = gen;
        this.received = { nonce: f.nonce as Bytes, generation: gen };
        this.state = "OFFER_RECEIVED";
        out.events.push({ event: "OFFER_RECEIVED", generation: gen, sdp: f.sdp as string, fingerprint: f.fingerprint as Bytes, last_rx: f.last_rx as bigint, glare });
        return;
      }
      case "ANSWER":
        this.outstanding = undefined;
        this.answerDeadline = undefined;
        this.state = "ANSWERED";
        out.events.push({ event: "ANSWER_RECEIVED", generation: f.generation as bigint, sdp: f.sdp as string, fingerprint: f.fingerprint as Bytes, last_rx: f.last_rx as bigint });
        return;
      case "BYE":
        this.clearTimers();
        this.state = "CLOSED";
        out.events.push({ event: "BYE", code: codeName(Number(f.reason as bigint)) });
        return;
    }
  }

  /** RDV-55, RDV-60, RDV-61: report the peer, adopt its announced mark, compare with what was stored. */
  private authenticated(out: StepOutput, f: Readonly<Record<string, RvValue>>): void {
    const gen = f.generation as bigint;
    const inc = f.incarnation as Bytes;
    if (gen > this.G) this.G = gen;
    out.events.push({
      event: "PEER_AUTHENTICATED", peer_pub: this.cfg.peerPub, epoch: f.epoch as bigint, role: this.rdvRole,
      peer_generation: gen, peer_incarnation: inc,
    });
    const genBack = gen < (this.cfg.peerGeneration ?? 0n);
    const incChanged = this.cfg.peerIncarnation !== undefined && !equal(inc, this.cfg.peerIncarnation);
    if (genBack || incChanged)
      out.events.push({ event: "PEER_RESET", cause: genBack && incChanged ? "both" : genBack ? "generation" : "incarnation" });
  }

  /** Enter ERROR (RDV-43, RDV-45, RDV-47, RDV-54). */
  private fail(out: StepOutput, code: string, sendError: boolean, byPeer: boolean): void {
    if (sendError) {
      const v = codeValue(code);
      const local = v !== undefined && (v >> 8 === 0x06 || v >> 8 === 0x07);
      out.sends.push(errorFrame(local || v === undefined ? ERROR_CODES.INTERNAL_ERROR : v));
    }
    this.clearTimers();
    this.state = "ERROR";
    out.events.push({ event: "RENDEZVOUS_FAILED", code, by_peer: byPeer });
    out.error = code;
  }
}

// ------------------------------------------------------------------ command arguments

function argUint(v: unknown, name: string): bigint {
  const n = toBigint(v);
  if (n === undefined || n < 0n || n > U64_MAX) throw new RendezvousError("MESSAGE_INVALID", name + " is not a uint64");
  return n;
}

export function toBigint(v: unknown): bigint | undefined {
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const s = (v as Record<string, unknown>).int;
    if (Object.keys(v).length === 1 && typeof s === "string" && /^-?(0|[1-9][0-9]*)$/.test(s) && s !== "-0") return BigInt(s);
  }
  return undefined;
}

type OfferArgs = { sdp: string; fingerprint: Bytes; generation: bigint; last_rx: bigint };

/** RDV-74 step (1): a missing or ill-typed argument (before the state). */
function offerArgs(args: Record<string, unknown>, withGen: boolean): OfferArgs {
  const bad = (m: string): never => {
    throw new RendezvousError("MESSAGE_INVALID", m);
  };
  const sdp = args.sdp;
  if (typeof sdp !== "string") return bad("sdp is not text");
  const fingerprint = hexOrUndefined(args.fingerprint);
  if (fingerprint === undefined) return bad("fingerprint is not hex");
  const generation = withGen ? argUint(args.generation, "generation") : 0n;
  const last_rx = argUint(args.last_rx, "last_rx");
  return { sdp, fingerprint, generation, last_rx };
}

/** RDV-74 step (4): the arguments against §6.2 (after the state and the generation). */
function offerSchema(a: OfferArgs): void {
  const n = new TextEncoder().encode(a.sdp).length;
  if (n < 1 || n > MAX_SDP_BYTES) throw new RendezvousError("MESSAGE_INVALID", "sdp must be 1 … 8192 bytes");
  if (a.fingerprint.length !== 32) throw new RendezvousError("MESSAGE_INVALID", "fingerprint is not 32 bytes");
}

function byeReason(args: Record<string, unknown>): bigint {
  const r = args.reason;
  if (r === undefined) return 0n;
  if (typeof r === "string") {
    const v = codeValue(r);
    if (v !== undefined) return BigInt(v);
    if (/^0x[0-9a-f]{4}$/.test(r)) return BigInt(parseInt(r.slice(2), 16));
  }
  throw new RendezvousError("MESSAGE_INVALID", "reason is not a registry code");
}
