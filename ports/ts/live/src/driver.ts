/**
 * The TS session driver for live interop (Node and browser alike): the port's SessionMachine
 * (p4-04) and ChannelsMachine (p4-05) over W3C-style RTCPeerConnection / RTCDataChannel objects.
 *
 * - Each generation is a fresh RTCPeerConnection with the `p4` data channel (p4-04 §5.2),
 *   offered or answered. The SDPs travel either in bare signed RV frames that the test carries
 *   (`offer`/`onRv`: made and checked by the port's codec, `stream_nonce` zero because there is
 *   no RV_HELLO stream) or through the port's rendezvous machine on an onion stream
 *   (`rdv-stream.ts`, p4-03 §9), which calls `prepareOffer`/`acceptAnswer`/`answerOffer`.
 * - A generation whose data channel does not open (ICE/DTLS failure, CONNECT_TIMEOUT) is
 *   abandoned and its offerer offers the next one (`watch`, p4-04 §5.2 RECONNECT_NEEDED).
 * - Channel bindings (p4-04 §7, SES-1): local = SHA-256 fingerprint of this side's certificate
 *   (the `a=fingerprint:sha-256` of the local SDP), remote = the `a=fingerprint:sha-256` of the
 *   remote SDP, which the DTLS stack checked against the certificate the peer presented.
 * - State is kept in memory (`snapshot()` returns it as JSON-able data): every MESSAGE is
 *   committed (`inbox_committed`) right after the channel layer took it.
 * - Timers: the machine fires timers only on `tick`; the driver ticks every 10 ms.
 */
import { concat, fromHex, toHex, u64be, type Bytes } from "../../dist/bytes.js";
import { publicKey } from "../../dist/identity.js";
import { SessionMachine } from "../../dist/session/machine.js";
import { ChannelsMachine } from "../../dist/channels/machine.js";
import { epochOf } from "../../dist/rendezvous/derive.js";
import { checkKeysEpochSignature, decodeRvFrame, signMessage } from "../../dist/rendezvous/messages.js";
import type { StepOutput, MachineEvent, Rng } from "../../dist/machine.js";
import { sha256 } from "@noble/hashes/sha2";

export type Emit = (ev: string, fields?: Record<string, unknown>) => void;

/** The subset of RTCDataChannel this driver uses. */
export interface DataChannelLike {
  binaryType: string;
  readonly readyState: string;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
}

/** The subset of RTCPeerConnection this driver uses. */
export interface PeerConnectionLike {
  readonly iceGatheringState: string;
  readonly localDescription: { sdp: string } | null;
  readonly connectionState: string;
  ondatachannel: ((ev: { channel: DataChannelLike }) => void) | null;
  setRemoteDescription(d: { type: "offer" | "answer"; sdp: string }): Promise<void>;
  createAnswer(): Promise<{ type: string; sdp?: string }>;
  createOffer(): Promise<{ type: string; sdp?: string }>;
  createDataChannel(label: string, init?: { ordered?: boolean }): DataChannelLike;
  setLocalDescription(d?: { type: string; sdp?: string }): Promise<void>;
  close(): void;
}

const ZERO16 = new Uint8Array(16);
const FP_RE = /^a=fingerprint:sha-256 ([0-9A-Fa-f:]{95})\s*$/im;

/** The SHA-256 certificate fingerprint an SDP declares (p4-04 §7: the channel binding). */
export function fingerprintOf(sdp: string): Bytes {
  const m = FP_RE.exec(sdp);
  if (m === null || m[1] === undefined) throw new Error("SDP has no a=fingerprint:sha-256");
  return fromHex(m[1].replace(/:/g, "").toLowerCase());
}

export function randomRng(getRandom: (b: Uint8Array) => void): Rng {
  return { draw: (n: number) => { const b = new Uint8Array(n); getRandom(b); return b; } };
}

/** Message `i` of channel `name` (the same generator as tests/ts_live_peer.py). */
export function payload(name: string, i: number, fixed?: number): Bytes {
  const size = fixed ?? 1 + ((i * 7919 + name.length * 131) % 40000);
  const block = sha256(new TextEncoder().encode(`${name}:${i}`));
  const outb = new Uint8Array(size);
  for (let j = 0; j < size; j++) outb[j] = block[j % 32] as number;
  return outb;
}

interface Gen {
  readonly number: number;
  readonly pc: PeerConnectionLike;
  dc?: DataChannelLike;
  opened: boolean;
  early: Bytes[];
  localSdp: string;
  remoteSdp: string;
  readonly offerer: boolean;
  readonly started: number;
  answered?: number;
}

interface RecvChan { name: string; hash: ReturnType<typeof sha256.create>; count: number }
interface SendChan { limit: bigint; sent: bigint }

export class LivePeer {
  readonly myPub: Bytes;
  readonly session: SessionMachine;
  readonly mux: ChannelsMachine;
  private readonly gens = new Map<number, Gen>();
  private readonly recvChans = new Map<bigint, RecvChan>();
  private readonly sendChans = new Map<bigint, SendChan>();
  private creditWaiters: (() => void)[] = [];
  private status = "";
  private readonly t0 = Date.now();
  private readonly pendingOffers = new Map<number, Bytes>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private highest = 0;
  private stopped = false;
  /** Consecutive generations whose data channel did not open (p4-03 RDV-67's `j`). */
  private directFailures = 0;
  /** How long a generation may take from its answer to an open data channel (p4-04 CONNECT_TIMEOUT). */
  connectTimeoutMs = 15000;
  /** Called with the next generation number when a generation this side offered failed. */
  onRetry: ((next: number) => void) | undefined;

  constructor(
    private readonly seed: Bytes,
    private readonly peerPub: Bytes,
    private readonly rng: Rng,
    private readonly makePc: () => PeerConnectionLike,
    private readonly emit: Emit,
  ) {
    this.myPub = publicKey(seed);
    this.session = new SessionMachine({ identitySeed: seed, peerPub }, rng);
    const low = toHex(this.myPub) < toHex(peerPub);
    this.mux = new ChannelsMachine({ role: low ? "low" : "high" });
    this.timer = setInterval(() => this.handle(this.session.tick(this.now())), 10);
  }

  now(): number {
    return Date.now() - this.t0;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const g of this.gens.values()) g.pc.close();
  }

  /** JSON-able copy of what a store would hold (the in-memory durable state). */
  snapshot(): Record<string, unknown> {
    return { state: this.session.state, channels: this.mux.state };
  }

  // ------------------------------------------------------------------ session plumbing

  private handle(out: StepOutput): void {
    out.sends.forEach((frame, i) => {
      const conn = out.sendConns[i];
      const g = conn === undefined ? undefined : this.gens.get(conn);
      if (g?.dc !== undefined && g.dc.readyState === "open") g.dc.send(frame);
    });
    for (const e of out.events) this.onSessionEvent(e);
    const st = this.session.state.split(" ")[0] ?? "";
    if (st !== this.status) {
      this.status = st;
      this.emit("status", { status: st });
    }
  }

  private onSessionEvent(e: MachineEvent): void {
    switch (e.event) {
      case "MESSAGE": {
        const seq = e.seq as bigint;
        const p = e.payload as Bytes;
        const body = concat(u64be(seq), p);
        this.handleMux(this.mux.recv(this.now(), concat(Uint8Array.of(1, 0x33, 0, body.length >> 8, body.length & 0xff), body)));
        this.handle(this.session.command(this.now(), "inbox_committed", { through: { int: seq.toString() } }));
        return;
      }
      case "CONNECTION_OPEN":
        this.emit("open", { gen: Number(e.generation), conn: Number(e.conn), active: e.active });
        if (e.active === true) this.handleMux(this.mux.command(this.now(), "resync", {}));
        return;
      case "CONNECTION_CLOSED":
      case "CONNECTION_FAILED": {
        const id = Number(e.conn);
        this.emit(e.event === "CONNECTION_CLOSED" ? "closed" : "failed", { conn: id, code: e.code ?? null });
        const g = this.gens.get(id);
        this.gens.delete(id);
        if (g !== undefined) setTimeout(() => g.pc.close(), e.event === "CONNECTION_CLOSED" ? 500 : 0);
        return;
      }
      case "ACKED":
      case "STATUS":
        return;
      default:
        this.emit("session", { name: e.event });
    }
  }

  private handleMux(out: StepOutput): void {
    for (const f of out.sends) {
      // the channel machine's output frame is `01 33 00 len seq(8) item`: the item is one session message
      this.handle(this.session.command(this.now(), "send", { payload: toHex(f.subarray(13)) }));
    }
    for (const e of out.events) {
      const chan = e.chan as bigint;
      switch (e.event) {
        case "CHANNEL_OPENED":
          this.recvChans.set(chan, { name: e.name as string, hash: sha256.create(), count: 0 });
          this.emit("chopen", { name: e.name });
          break;
        case "CHANNEL_DATA": {
          const c = this.recvChans.get(chan);
          const data = e.data as Bytes;
          if (c === undefined) break;
          c.hash.update(data);
          if (e.end_of_message === true) {
            c.count++;
            this.emit("chrecv", { name: c.name, n: c.count, digest: toHex(c.hash.clone().digest()) });
          }
          this.handleMux(this.mux.command(this.now(), "consumed", { chan: { int: chan.toString() }, nbytes: data.length }));
          break;
        }
        case "CREDIT_GRANTED": {
          const s = this.sendChans.get(chan);
          if (s !== undefined) s.limit = e.limit as bigint;
          const w = this.creditWaiters;
          this.creditWaiters = [];
          for (const f of w) f();
          break;
        }
        default:
          this.emit("channel", { name: e.event });
      }
    }
  }

  // ------------------------------------------------------------------ signalling + generations

  private async gathered(pc: PeerConnectionLike): Promise<string> {
    const deadline = Date.now() + 5000;
    while (pc.iceGatheringState !== "complete" && Date.now() < deadline) await sleep(10);
    return pc.localDescription?.sdp ?? "";
  }

  /**
   * Generation mechanics, independent of how the RV frames travel: `prepareOffer` makes the
   * RTCPeerConnection and its gathered offer, `acceptAnswer` applies the peer's answer,
   * `answerOffer` makes the answering RTCPeerConnection. The bare path below signs the frames
   * itself (the test carries them); `rdv-stream.ts` hands the same SDPs to the port's
   * rendezvous machine on an onion stream (p4-03 §9).
   */
  async prepareOffer(number: number): Promise<{ sdp: string; fingerprint: Bytes }> {
    const pc = this.makePc();
    const g: Gen = { number, pc, opened: false, early: [], localSdp: "", remoteSdp: "", offerer: true, started: Date.now() };
    this.gens.set(number, g);
    const dc = pc.createDataChannel("p4", { ordered: true });
    await pc.setLocalDescription(await pc.createOffer());
    g.localSdp = await this.gathered(pc);
    this.attach(g, dc);
    this.watch(g);
    return { sdp: g.localSdp, fingerprint: fingerprintOf(g.localSdp) };
  }

  async acceptAnswer(number: number, sdp: string, signedFp: Bytes): Promise<void> {
    const g = this.gens.get(number);
    if (g === undefined) throw new Error(`answer for generation ${number}, which this side no longer has`);
    if (toHex(fingerprintOf(sdp)) !== toHex(signedFp)) throw new Error("answer SDP fingerprint differs from the signed one");
    g.remoteSdp = sdp;
    g.answered = Date.now();
    await g.pc.setRemoteDescription({ type: "answer", sdp });
  }

  async answerOffer(number: number, sdp: string, signedFp: Bytes): Promise<{ sdp: string; fingerprint: Bytes }> {
    if (toHex(fingerprintOf(sdp)) !== toHex(signedFp)) throw new Error("offer SDP fingerprint differs from the signed one");
    const pc = this.makePc();
    const g: Gen = { number, pc, opened: false, early: [], localSdp: "", remoteSdp: sdp, offerer: false, started: Date.now() };
    this.gens.set(number, g);
    pc.ondatachannel = (ev) => this.attach(g, ev.channel);
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    g.localSdp = await this.gathered(pc);
    g.answered = Date.now();
    this.watch(g);
    return { sdp: g.localSdp, fingerprint: fingerprintOf(g.localSdp) };
  }

  /** The highest generation this side has started (offered or answered). */
  get highestGeneration(): number {
    return this.highest;
  }

  /**
   * A generation whose data channel does not open `connectTimeoutMs` after its answer (ICE or
   * DTLS failed: under CPU load a DTLS handshake can fail outright) is abandoned: its
   * RTCPeerConnection is closed, `gen_failed` is emitted and, when this side offered it, a new
   * generation is offered (p4-04 §5.2 RECONNECT_NEEDED, SES-55) after p4-03 RDV-67's backoff.
   * (The usual cause here is a libdatachannel race, not load as such: as offerer it may start
   * DTLS when the answerer's ICE checks arrive, before the answer, i.e. the remote fingerprint,
   * is applied, and then refuses the peer's certificate with a fatal `unknown_ca` alert;
   * paullouisageneau/libdatachannel PR #1612. CPU load delays the answer enough to lose the
   * race.) The session machine never saw
   * the failed generation (it is `open`ed only with its data channel), so nothing is lost.
   */
  private watch(g: Gen): void {
    if (g.number > this.highest) this.highest = g.number;
    const check = (): void => {
      if (g.opened || this.stopped || this.gens.get(g.number) !== g) return;
      const failed = g.pc.connectionState === "failed" || g.pc.connectionState === "closed";
      const since = g.answered ?? g.started;
      if (!failed && Date.now() - since < this.connectTimeoutMs) {
        setTimeout(check, 100);
        return;
      }
      this.gens.delete(g.number);
      g.pc.close();
      this.emit("gen_failed", { gen: g.number, offerer: g.offerer, state: failed ? g.pc.connectionState : "timeout" });
      if (g.offerer && g.number === this.highest && this.onRetry !== undefined) {
        // p4-03 RDV-67: the next generation waits d − floor(d·r/131072) ms, d = min(2 s · 2^j, 300 s)
        const d = Math.min(2000 * 2 ** this.directFailures, 300000);
        const r = new DataView(this.rng.draw(2).buffer).getUint16(0);
        this.directFailures++;
        const retry = this.onRetry;
        setTimeout(() => { if (!this.stopped) retry(this.highest + 1); }, d - Math.floor((d * r) / 131072));
      }
    };
    setTimeout(check, 100);
  }

  /** Start generation `number` as the offerer: a signed RV_OFFER (emitted as an `rv` event). */
  async offer(number: number): Promise<void> {
    const { sdp, fingerprint } = await this.prepareOffer(number);
    const nonce = this.rng.draw(16);
    const fields = {
      epoch: epochOf(Date.now()), nonce, generation: BigInt(number), sdp,
      fingerprint, last_rx: 0n, stream_nonce: ZERO16,
    };
    const { frame } = signMessage("RV_OFFER", fields, this.seed, this.peerPub);
    this.pendingOffers.set(number, nonce);
    this.emit("rv", { frame: toHex(frame), kind: "offer", gen: number });
  }

  /** An RV frame from the peer (hex), bare (no stream machine): checked (schema, keys, epoch,
   * signature), then answered. */
  async onRv(frameHex: string): Promise<void> {
    const msg = decodeRvFrame(fromHex(frameHex));
    checkKeysEpochSignature(msg, this.peerPub, this.myPub, Date.now());
    if (msg.type === "RV_ANSWER") {
      const number = Number(msg.f.generation as bigint);
      const nonce = this.pendingOffers.get(number);
      if (nonce === undefined || toHex(nonce) !== toHex(msg.f.offer_nonce as Bytes)) throw new Error(`RV_ANSWER for no OFFER of ours (${number})`);
      this.pendingOffers.delete(number);
      await this.acceptAnswer(number, msg.f.sdp as string, msg.f.fingerprint as Bytes);
      return;
    }
    if (msg.type !== "RV_OFFER") throw new Error(`unexpected ${msg.type}`);
    const number = Number(msg.f.generation as bigint);
    const { sdp, fingerprint } = await this.answerOffer(number, msg.f.sdp as string, msg.f.fingerprint as Bytes);
    const fields = {
      epoch: epochOf(Date.now()), nonce: this.rng.draw(16), generation: BigInt(number), sdp,
      fingerprint, last_rx: 0n, offer_nonce: msg.f.nonce as Bytes, stream_nonce: ZERO16,
    };
    const { frame } = signMessage("RV_ANSWER", fields, this.seed, this.peerPub);
    this.emit("rv", { frame: toHex(frame), kind: "answer", gen: number });
  }

  private attach(g: Gen, dc: DataChannelLike): void {
    g.dc = dc;
    dc.binaryType = "arraybuffer";
    dc.onmessage = (ev) => {
      const d = ev.data;
      const bytes = d instanceof ArrayBuffer ? new Uint8Array(d) : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : undefined;
      if (bytes === undefined || bytes.length === 0) return;
      if (!g.opened) g.early.push(bytes.slice());
      else this.handle(this.session.recvOn(this.now(), g.number, bytes.slice()));
    };
    dc.onclose = () => {
      if (g.opened && this.gens.get(g.number) === g) this.handle(this.session.recvOn(this.now(), g.number, new Uint8Array(0)));
    };
    const onOpen = (): void => {
      if (g.opened) return;
      const bl = fingerprintOf(g.localSdp), br = fingerprintOf(g.remoteSdp);
      this.emit("gen_open", { gen: g.number });
      this.directFailures = 0; // RDV-67: a data channel opened
      this.handle(this.session.command(this.now(), "open", {
        conn: g.number, generation: g.number, path: "datachannel", binding_local: toHex(bl), binding_remote: toHex(br),
      }));
      g.opened = true;
      for (const b of g.early.splice(0)) this.handle(this.session.recvOn(this.now(), g.number, b));
    };
    // the answerer's channel may already be open when it is announced
    if (dc.readyState === "open") {
      // wait until our answer (localSdp) is known
      const w = (): void => { if (g.localSdp !== "" && g.remoteSdp !== "") onOpen(); else setTimeout(w, 5); };
      w();
    } else {
      dc.onopen = () => { const w = (): void => { if (g.localSdp !== "" && g.remoteSdp !== "") onOpen(); else setTimeout(w, 5); }; w(); };
    }
  }

  // ------------------------------------------------------------------ channels

  async chsend(name: string, count: number, size?: number): Promise<void> {
    const out = this.mux.command(this.now(), "open", { name });
    const id = this.nextOwnId(); // p4-05 §6.1: own ids are 0, 2, 4 … (LOW) or 1, 3, 5 … (HIGH), in order
    this.sendChans.set(id, { limit: 16384n, sent: 0n });
    this.handleMux(out);
    const all = sha256.create();
    for (let i = 0; i < count; i++) {
      const data = payload(name, i, size);
      all.update(data);
      let pos = 0;
      while (pos < data.length) {
        const s = this.sendChans.get(id) as SendChan;
        const credit = Number(s.limit - s.sent);
        if (credit <= 0) {
          await new Promise<void>((r) => this.creditWaiters.push(r));
          continue;
        }
        const piece = data.subarray(pos, pos + credit);
        pos += piece.length;
        s.sent += BigInt(piece.length);
        this.handleMux(this.mux.command(this.now(), "write", { chan: { int: id.toString() }, data: toHex(piece), end_of_message: pos === data.length }));
      }
      if (i % 8 === 7) await sleep(0);
      while (this.outboxSize() > 256) await sleep(5);
    }
    this.emit("csent_all", { name, n: count, digest: toHex(all.digest()) });
  }

  private ownIds: bigint[] = [];
  private nextOwnId(): bigint {
    const low = toHex(this.myPub) < toHex(this.peerPub);
    const next = this.ownIds.length === 0 ? (low ? 0n : 1n) : (this.ownIds[this.ownIds.length - 1] as bigint) + 2n;
    this.ownIds.push(next);
    return next;
  }

  private outboxSize(): number {
    // the machine keeps unacknowledged messages in a private map; its size bounds memory here
    return (this.session as unknown as { outbox: Map<bigint, Bytes> }).outbox.size;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
