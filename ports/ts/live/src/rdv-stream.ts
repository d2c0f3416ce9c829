/**
 * p4-03 rendezvous for the Node peer, as spec/p4-03-rendezvous-v1.md says a peer does it:
 *
 * - Publishing (§5.3–§5.5, RDV-13, RDV-14): the pair's derived epoch onion of this peer's role
 *   (`derive()` of the port: the onion seed's expanded key, the peer's client-authorization
 *   public key as the one authorised client), for the current epoch and, during the first
 *   `PREVIOUS_GRACE` of an epoch, the previous one; through the TS control-port driver.
 * - Every stream that reaches the onion runs the port's `RendezvousMachine` as acceptor (§9):
 *   RV_HELLO exchange with nonces, then RV_OFFER / RV_ANSWER bound to the HELLO nonces
 *   (`stream_nonce`), the pair's one replay cache (RDV-27) and the high-water mark
 *   `last_generation` (RDV-52: advanced before an OFFER or ANSWER of a higher generation is
 *   sent; kept in memory here — this peer has no store), PING answered, timers on a 100 ms tick.
 * - The session layer above is the `LivePeer` driver: an `OFFER_RECEIVED` makes it answer a
 *   generation (`send_answer`), `offer(n)` sends an OFFER on the kept stream (RDV-40) and its
 *   `ANSWER_RECEIVED` completes the generation.
 *
 * Either side of RDV-65: `publish` (the peer is dial-only and dials this onion) or `dial`
 * (this peer is dial-only: it publishes nothing and dials the peer's derived onion through
 * its tor's SOCKS port, with its client-authorization key). Both at once, with stream glare
 * (RDV-39), is not implemented.
 */
import type { Socket } from "node:net";
import { toHex, type Bytes } from "../../dist/bytes.js";
import { derive, epochOf, EPOCH_MS } from "../../dist/rendezvous/derive.js";
import { RendezvousMachine, ReplayCache } from "../../dist/rendezvous/machine.js";
import type { Rng, StepOutput } from "../../dist/machine.js";
import type { Emit, LivePeer } from "./driver.js";
import { listenLocal, socks5Connect, TorControl } from "./tor.js";

const PREVIOUS_GRACE_MS = 3600 * 1000;
const ONION_PORT = 80; // p4-03 RDV-77

interface StreamState {
  readonly m: RendezvousMachine;
  readonly sock: Socket;
  readonly id: number;
  tick: ReturnType<typeof setInterval>;
}

export class RendezvousPeer {
  private readonly replay = new ReplayCache();
  private lastGeneration = 0n;
  private streams: StreamState[] = [];
  private kept: StreamState | undefined;
  private nextId = 0;
  readonly published: string[] = [];

  constructor(
    private readonly peer: LivePeer,
    private readonly seed: Bytes,
    private readonly peerPub: Bytes,
    private readonly root: Bytes,
    private readonly rng: Rng,
    private readonly emit: Emit,
    private readonly incarnation: Bytes,
  ) {}

  /** The epochs whose own onion this peer publishes now (RDV-14). */
  static epochsToPublish(nowMs: number): bigint[] {
    const e = epochOf(nowMs);
    return nowMs - Number(e) * EPOCH_MS < PREVIOUS_GRACE_MS && e > 0n ? [e, e - 1n] : [e];
  }

  async publish(tor: TorControl): Promise<string[]> {
    const { port } = await listenLocal((sock) => this.accept(sock));
    for (const epoch of RendezvousPeer.epochsToPublish(Date.now())) {
      const k = derive(this.root, this.peer.myPub, this.peerPub, epoch);
      const onion = await tor.addOnionKey(k.myExpandedSecretKey, port, k.peerClientAuthPub, k.myOnionAddress, ONION_PORT);
      this.published.push(onion);
      this.emit("onion", { address: onion, epoch: Number(epoch), role: k.myRole, derived: true });
    }
    return this.published;
  }

  /** A stream reached the onion: an acceptor machine, started at once (RDV-76). */
  private accept(sock: Socket): void {
    this.run(sock, "acceptor");
  }

  /**
   * Dial-only (RDV-65): dial the peer's derived onion, current epoch first, then the previous
   * and the next (RDV-14), with this peer's client-authorization key (RDV-13), port 80
   * (RDV-77), retrying while the descriptor is not found yet; run the dialer machine on the
   * stream.
   */
  async dial(tor: TorControl, socksPort: number, timeoutMs = 90000): Promise<string> {
    const e = epochOf(Date.now());
    const epochs = [e, e - 1n, e + 1n].filter((x) => x >= 0n);
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      for (const epoch of epochs) {
        const k = derive(this.root, this.peer.myPub, this.peerPub, epoch);
        await tor.addClientAuth(k.peerOnionAddress, k.myClientAuthPriv);
        this.emit("tor_dial", { onion: k.peerOnionAddress, port: ONION_PORT, epoch: Number(epoch) });
        try {
          const sock = await socks5Connect(socksPort, `${k.peerOnionAddress}.onion`, ONION_PORT);
          this.run(sock, "dialer");
          return k.peerOnionAddress;
        } catch (err) {
          last = err;
        }
      }
      if (Date.now() > deadline) throw new Error(`no epoch's onion was reachable: ${String(last)}`);
      this.emit("tor_retry", { detail: String(last) });
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  private run(sock: Socket, role: "acceptor" | "dialer"): void {
    const m = new RendezvousMachine({
      role, identitySeed: this.seed, peerPub: this.peerPub,
      lastGeneration: this.lastGeneration, incarnation: this.incarnation,
    }, this.rng, this.replay);
    const st: StreamState = { m, sock, id: ++this.nextId, tick: setInterval(() => this.step(st, m.tick(Date.now())), 100) };
    this.streams.push(st);
    this.emit("tor_stream", { stream: st.id, role });
    sock.on("data", (d: Buffer) => this.step(st, m.recv(Date.now(), new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice())));
    sock.on("end", () => this.step(st, m.recv(Date.now(), new Uint8Array(0))));
    sock.on("error", () => undefined);
    sock.on("close", () => this.ended(st));
    this.step(st, m.command(Date.now(), "start", {}));
  }

  private ended(st: StreamState): void {
    clearInterval(st.tick);
    this.streams = this.streams.filter((s) => s !== st);
    if (this.kept === st) this.kept = undefined;
  }

  /** Write what the machine queued, then act on its events. */
  private step(st: StreamState, out: StepOutput): void {
    for (const f of out.sends) {
      if (!st.sock.destroyed) st.sock.write(f);
      this.emit("rdv_sent", { stream: st.id, type: rvName(f[1] ?? 0), state: st.m.state });
    }
    for (const e of out.events) {
      switch (e.event) {
        case "PEER_AUTHENTICATED":
          this.kept = st; // one peer, one dial-only dialer: the newest authenticated stream is kept
          if ((e.peer_generation as bigint) > this.lastGeneration) this.emit("rdv_peer_mark", { generation: Number(e.peer_generation) });
          this.emit("rdv_authenticated", { stream: st.id, epoch: Number(e.epoch), role: e.role, peer_generation: Number(e.peer_generation), peer_incarnation: toHex(e.peer_incarnation as Bytes) });
          break;
        case "OFFER_RECEIVED":
          this.emit("rdv_offer", { stream: st.id, gen: Number(e.generation), glare: e.glare });
          void this.answer(st, Number(e.generation), e.sdp as string, e.fingerprint as Bytes);
          break;
        case "ANSWER_RECEIVED":
          this.emit("rdv_answer", { stream: st.id, gen: Number(e.generation) });
          this.peer.acceptAnswer(Number(e.generation), e.sdp as string, e.fingerprint as Bytes)
            .catch((err: unknown) => this.emit("error", { detail: String(err) }));
          break;
        case "BYE":
          this.emit("rdv_bye", { stream: st.id, code: e.code });
          st.sock.end();
          break;
        case "RENDEZVOUS_FAILED":
          this.emit("rdv_failed", { stream: st.id, code: e.code, by_peer: e.by_peer });
          st.sock.end();
          break;
        default:
          this.emit("rdv_event", { stream: st.id, name: e.event });
      }
    }
  }

  private async answer(st: StreamState, gen: number, sdp: string, fp: Bytes): Promise<void> {
    try {
      const a = await this.peer.answerOffer(gen, sdp, fp);
      if (BigInt(gen) > this.lastGeneration) this.lastGeneration = BigInt(gen); // RDV-52, before the ANSWER
      this.step(st, st.m.command(Date.now(), "send_answer", { sdp: a.sdp, fingerprint: toHex(a.fingerprint), last_rx: 0 }));
      this.emit("rv_sent", { kind: "answer", gen, path: "stream" });
    } catch (err) {
      this.emit("error", { detail: String(err instanceof Error ? err.stack : err) });
    }
  }

  /** Offer generation `gen` on the kept stream (RDV-40). */
  async offer(gen: number): Promise<void> {
    const st = this.kept;
    if (st === undefined) throw new Error("no authenticated onion stream to offer on");
    const o = await this.peer.prepareOffer(gen);
    if (BigInt(gen) > this.lastGeneration) this.lastGeneration = BigInt(gen); // RDV-52, before the OFFER
    this.step(st, st.m.command(Date.now(), "send_offer", { sdp: o.sdp, fingerprint: toHex(o.fingerprint), generation: gen, last_rx: 0 }));
    this.emit("rv_sent", { kind: "offer", gen, path: "stream" });
  }

  get ready(): boolean {
    return this.kept !== undefined;
  }

  close(reason = "NO_ERROR"): void {
    for (const st of this.streams) {
      if (["READY", "OFFER_SENT", "OFFER_RECEIVED", "ANSWERED"].includes(st.m.state)) this.step(st, st.m.command(Date.now(), "send_bye", { reason }));
      st.sock.end();
      clearInterval(st.tick);
    }
  }
}

function rvName(t: number): string {
  return ({ 0x20: "RV_HELLO", 0x21: "RV_OFFER", 0x22: "RV_ANSWER", 0x23: "RV_BYE", 0x01: "ERROR", 0x03: "PONG" } as Record<number, string>)[t] ?? `0x${t.toString(16)}`;
}
