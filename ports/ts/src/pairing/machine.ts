/** The pairing state machine of p4-02 §8 (inviter and accepter), sans-I/O. */
import { Bytes, ctEqual, equal } from "../bytes.js";
import { codeName, ERROR_CODES, P4Error, type ErrorName } from "../errors.js";
import { errorFrame, pongFrame, StreamReader, T, type Frame } from "../framing.js";
import { publicKey } from "../identity.js";
import { StepOutput, type Machine, type Rng } from "../machine.js";
import {
  checkPeerElement, commitmentOf, deriveW, finalKeys, keySchedule, kIdentity, openIdentity,
  pakeElement, reduce, sealIdentity, sharedK, transcript, transcriptHash, type Final, type Schedule,
} from "./crypto.js";
import { keyCommitment, type Invitation } from "./invite.js";
import { confirmFrame, doneFrame, identityFrame, isPairType, pakeFrame, parsePairBody, type PairMsg } from "./messages.js";

export type PairRole = "inviter" | "accepter";
export type PairState = "IDLE" | "WAIT_PAKE" | "WAIT_CONFIRM" | "WAIT_IDENTITY" | "WAIT_DONE" | "PAIRED" | "FAILED";

export interface PairingConfig {
  readonly role: PairRole;
  readonly invitation: Invitation;
  readonly identitySeed: Bytes;
  /** ms on the machine's clock; undefined: the §14 default. */
  readonly expiresAt?: number;
  readonly timeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 60000;
export const DEFAULT_LIFETIME_MS = 600000;

/** Thrown inside a step: the check's code, and whether an ERROR frame is sent for it. */
class Fail extends P4Error {
  constructor(code: ErrorName, message?: string) {
    super(code, message);
  }
}

export class PairingMachine implements Machine {
  state: PairState = "IDLE";
  private readonly pub: Bytes;
  private readonly w: bigint;
  private reader = new StreamReader("tor");
  private streamIgnored = false;
  private expiresAt: number | undefined;
  private expiryDeadline: number | undefined;
  private pairingDeadline: number | undefined;
  private endedByExpiry = false;
  // attempt secrets
  private scalar = 0n;
  private myElement: Bytes = new Uint8Array(0);
  private sched: Schedule | undefined;
  private TH: Bytes = new Uint8Array(0);
  private myNonce: Bytes = new Uint8Array(0);
  private commitment: Bytes = new Uint8Array(0);
  private final: Final | undefined;
  private peerPub: Bytes = new Uint8Array(0);

  constructor(readonly cfg: PairingConfig, private readonly rng: Rng) {
    this.pub = publicKey(cfg.identitySeed);
    this.w = deriveW(cfg.invitation.password, cfg.invitation.slot);
    this.expiresAt = cfg.expiresAt;
    if (this.expiresAt === undefined && cfg.invitation.expires !== undefined)
      this.expiresAt = Number(cfg.invitation.expires) * 1000;
  }

  private get role(): PairRole {
    return this.cfg.role;
  }
  private get timeoutMs(): number {
    return this.cfg.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }
  private get terminal(): boolean {
    return this.state === "PAIRED" || this.state === "FAILED";
  }

  // ------------------------------------------------------------------ inputs

  command(now: number, name: string, _args: Record<string, unknown>): StepOutput {
    if (name !== "start" || this.state !== "IDLE") throw new P4Error("UNEXPECTED_MESSAGE", `command ${name} in ${this.state}`);
    const out = new StepOutput();
    if (this.role === "inviter" && this.expiresAt === undefined) this.expiresAt = now + DEFAULT_LIFETIME_MS;
    if (this.expiresAt !== undefined && now >= this.expiresAt) {
      this.fail(out, "PAIR_INVITATION_EXPIRED", false);
      return out;
    }
    if (this.role === "inviter") {
      this.expiryDeadline = this.expiresAt;
      this.state = "WAIT_PAKE";
    } else {
      this.scalar = this.drawScalar();
      this.myElement = pakeElement("accepter", this.scalar, this.w);
      out.sends.push(pakeFrame(this.myElement));
      this.pairingDeadline = now + this.timeoutMs;
      this.state = "WAIT_PAKE";
    }
    return out;
  }

  tick(now: number): StepOutput {
    const out = new StepOutput();
    const timers: [number, "expiry" | "pairing"][] = [];
    if (this.expiryDeadline !== undefined && this.expiryDeadline <= now) timers.push([this.expiryDeadline, "expiry"]);
    if (this.pairingDeadline !== undefined && this.pairingDeadline <= now) timers.push([this.pairingDeadline, "pairing"]);
    timers.sort((a, b) => a[0] - b[0]);
    for (const [, which] of timers) {
      if (this.terminal) break;
      if (which === "expiry" && this.expiryDeadline !== undefined) {
        this.fail(out, "PAIR_INVITATION_EXPIRED", false);
      } else if (which === "pairing" && this.pairingDeadline !== undefined) {
        const code: ErrorName = this.role === "accepter" && this.state === "WAIT_DONE" ? "PAIR_OUTCOME_UNKNOWN" : "TIMEOUT";
        this.fail(out, code, true, "TIMEOUT");
      }
    }
    return out;
  }

  recv(now: number, data: Bytes): StepOutput {
    const out = new StepOutput();
    if (data.length === 0) {
      this.connectionLost(out);
      return out;
    }
    // PAIR-69: bytes before start are refused like a command in the wrong state
    if (this.state === "IDLE") throw new P4Error("UNEXPECTED_MESSAGE", "bytes before start (PAIR-69)");
    if (this.streamIgnored) return out;
    this.reader.push(data);
    while (!this.streamIgnored) {
      let f: Frame | undefined;
      try {
        f = this.reader.next();
      } catch (e) {
        if (!(e instanceof P4Error)) throw e;
        this.framingError(out, e.code, this.reader.lastType);
        break;
      }
      if (f === undefined) break;
      this.onFrame(now, out, f);
    }
    return out;
  }

  // ------------------------------------------------------------------ stream handling

  private connectionLost(out: StepOutput): void {
    this.reader = new StreamReader("tor");
    this.streamIgnored = false;
    if (this.terminal || this.state === "IDLE") return;
    if (this.role === "inviter" && this.state === "WAIT_PAKE") return;
    const code: ErrorName = this.role === "accepter" && this.state === "WAIT_DONE" ? "PAIR_OUTCOME_UNKNOWN" : "PROTOCOL_VIOLATION";
    this.fail(out, code, false);
  }

  /** A framing or CBOR error on the stream (PAIR-60 step 1, §8.3). */
  private framingError(out: StepOutput, code: ErrorName, typeByte: number): void {
    this.streamIgnored = true; // frame boundaries are lost
    if (this.terminal) return; // PAIR-44: discard silently
    const answer = typeByte !== T.ERROR;
    if (this.role === "inviter" && this.state === "WAIT_PAKE") {
      if (answer) out.sends.push(errorFrame(ERROR_CODES[code]));
      return;
    }
    if (this.state === "IDLE") return;
    this.fail(out, code, answer);
  }

  private endStreamWithError(out: StepOutput, code: ErrorName): void {
    out.sends.push(errorFrame(ERROR_CODES[code]));
    this.streamIgnored = true;
  }

  private onFrame(now: number, out: StepOutput, f: Frame): void {
    if (f.ignorable || f.type === T.PADDING || f.type === T.PONG) return;
    if (this.terminal) {
      if (this.role === "inviter" && f.type === T.PAIR_PAKE) {
        this.endStreamWithError(out, this.endedByExpiry ? "PAIR_INVITATION_EXPIRED" : "PAIR_INVITATION_BURNT");
      }
      return;
    }
    if (f.type === T.PING) {
      const nonce = f.map?.get(1);
      if (nonce instanceof Uint8Array) out.sends.push(pongFrame(nonce));
      return;
    }
    if (f.type === T.ERROR) {
      this.streamIgnored = true;
      const c = f.map?.get(1);
      const peerCode = codeName(typeof c === "bigint" ? Number(c) : 0);
      if (this.state === "IDLE" || (this.role === "inviter" && this.state === "WAIT_PAKE")) return;
      this.failWith(out, peerCode);
      return;
    }
    if (this.state === "IDLE") return;
    const wp = this.role === "inviter" && this.state === "WAIT_PAKE";
    try {
      let msg: PairMsg | undefined;
      if (isPairType(f.type) && f.map !== undefined) {
        msg = parsePairBody(f.type, f.map);
        if (msg.type === "PAIR_CONFIRM") {
          const fromInviter = this.role === "accepter";
          if (fromInviter !== (msg.commitment !== undefined))
            throw new Fail("MESSAGE_INVALID", "PAIR_CONFIRM key 2 from the wrong role");
        }
      }
      if (msg === undefined || !this.expects(msg.type)) throw new Fail("UNEXPECTED_MESSAGE");
      this.act(now, out, msg);
    } catch (e) {
      if (!(e instanceof P4Error)) throw e;
      if (wp && e.code !== "PAIR_INVITATION_EXPIRED") {
        this.endStreamWithError(out, e.code);
        return;
      }
      this.fail(out, e.code, true);
    }
  }

  private expects(t: PairMsg["type"]): boolean {
    const want: Record<string, PairMsg["type"]> = {
      WAIT_PAKE: "PAIR_PAKE", WAIT_CONFIRM: "PAIR_CONFIRM", WAIT_IDENTITY: "PAIR_IDENTITY", WAIT_DONE: "PAIR_DONE",
    };
    return want[this.state] === t;
  }

  // ------------------------------------------------------------------ actions

  private act(now: number, out: StepOutput, msg: PairMsg): void {
    if (this.role === "inviter") this.actInviter(now, out, msg);
    else this.actAccepter(out, msg);
  }

  private actInviter(now: number, out: StepOutput, msg: PairMsg): void {
    switch (msg.type) {
      case "PAIR_PAKE": {
        if (this.expiresAt !== undefined && now >= this.expiresAt) throw new Fail("PAIR_INVITATION_EXPIRED");
        const q = checkPeerElement("inviter", msg.element, this.w);
        this.scalar = this.drawScalar();
        this.myNonce = this.rng.draw(32);
        this.myElement = pakeElement("inviter", this.scalar, this.w);
        const K = sharedK(this.scalar, q);
        const TT = transcript(this.cfg.invitation.slot, msg.element, this.myElement, K, this.w);
        this.sched = keySchedule(TT);
        this.TH = transcriptHash(TT);
        this.commitment = commitmentOf(this.TH, this.pub, this.myNonce);
        out.sends.push(pakeFrame(this.myElement), confirmFrame(this.sched.cB, this.commitment));
        this.expiryDeadline = undefined;
        this.pairingDeadline = now + this.timeoutMs;
        this.state = "WAIT_CONFIRM";
        return;
      }
      case "PAIR_CONFIRM":
        if (!ctEqual(msg.mac, this.sched?.cA ?? new Uint8Array(0))) throw new Fail("PAIR_CONFIRM_FAILED");
        this.state = "WAIT_IDENTITY";
        return;
      case "PAIR_IDENTITY": {
        const s = this.sched as Schedule;
        const peer = openIdentity(kIdentity(this.TH, s.Ke, "accepter"), this.TH, msg.ciphertext, "accepter");
        if (equal(peer.pub, this.pub)) throw new Fail("PAIR_IDENTITY_INVALID");
        this.peerPub = peer.pub;
        this.final = finalKeys(this.TH, s.Ke, peer.pub, this.pub, peer.nonce, this.myNonce, this.commitment);
        out.sends.push(identityFrame(sealIdentity(kIdentity(this.TH, s.Ke, "inviter"), this.TH, "inviter", this.cfg.identitySeed, this.myNonce)));
        this.state = "WAIT_DONE";
        return;
      }
      case "PAIR_DONE": {
        const fk = this.final as Final;
        if (!ctEqual(msg.mac, fk.doneA)) throw new Fail("PAIR_CONFIRM_FAILED");
        out.sends.push(doneFrame(fk.doneI));
        this.succeed(out);
        return;
      }
    }
  }

  private actAccepter(out: StepOutput, msg: PairMsg): void {
    switch (msg.type) {
      case "PAIR_PAKE": {
        const q = checkPeerElement("accepter", msg.element, this.w);
        const K = sharedK(this.scalar, q);
        const TT = transcript(this.cfg.invitation.slot, this.myElement, msg.element, K, this.w);
        this.sched = keySchedule(TT);
        this.TH = transcriptHash(TT);
        this.state = "WAIT_CONFIRM";
        return;
      }
      case "PAIR_CONFIRM": {
        const s = this.sched as Schedule;
        if (!ctEqual(msg.mac, s.cB)) throw new Fail("PAIR_CONFIRM_FAILED");
        this.commitment = msg.commitment ?? new Uint8Array(0);
        this.myNonce = this.rng.draw(32);
        out.sends.push(confirmFrame(s.cA),
          identityFrame(sealIdentity(kIdentity(this.TH, s.Ke, "accepter"), this.TH, "accepter", this.cfg.identitySeed, this.myNonce)));
        this.state = "WAIT_IDENTITY";
        return;
      }
      case "PAIR_IDENTITY": {
        const s = this.sched as Schedule;
        const peer = openIdentity(kIdentity(this.TH, s.Ke, "inviter"), this.TH, msg.ciphertext, "inviter");
        if (!ctEqual(commitmentOf(this.TH, peer.pub, peer.nonce), this.commitment))
          throw new Fail("PAIR_IDENTITY_INVALID", "commitment not opened");
        const kc = this.cfg.invitation.keyCommitment;
        if (kc !== undefined && !equal(keyCommitment(peer.pub), kc)) throw new Fail("PAIR_INVITER_MISMATCH");
        if (equal(peer.pub, this.pub)) throw new Fail("PAIR_IDENTITY_INVALID");
        this.peerPub = peer.pub;
        this.final = finalKeys(this.TH, s.Ke, this.pub, peer.pub, this.myNonce, peer.nonce, this.commitment);
        out.sends.push(doneFrame(this.final.doneA));
        this.state = "WAIT_DONE";
        return;
      }
      case "PAIR_DONE": {
        const fk = this.final as Final;
        if (!ctEqual(msg.mac, fk.doneI)) throw new Fail("PAIR_CONFIRM_FAILED");
        this.succeed(out);
        return;
      }
    }
  }

  // ------------------------------------------------------------------ outcomes

  private drawScalar(): bigint {
    for (;;) {
      const s = reduce(this.rng.draw(64));
      if (s !== 0n) return s;
    }
  }

  private succeed(out: StepOutput): void {
    const fk = this.final as Final;
    this.state = "PAIRED";
    this.pairingDeadline = undefined;
    this.expiryDeadline = undefined;
    out.events.push({ event: "PAIRED", peer_identity: this.peerPub, pair_root_key: fk.root, sas: fk.sas });
  }

  /** Enter FAILED: ERROR frame (if sent), PAIRING_FAILED, then the `error` item. */
  private fail(out: StepOutput, code: ErrorName, sendError: boolean, frameCode: ErrorName = code): void {
    if (sendError) {
      out.sends.push(errorFrame(ERROR_CODES[frameCode]));
      this.streamIgnored = true;
    }
    this.failWith(out, code);
  }

  private failWith(out: StepOutput, code: string): void {
    if (code === "PAIR_INVITATION_EXPIRED") this.endedByExpiry = true;
    this.state = "FAILED";
    this.pairingDeadline = undefined;
    this.expiryDeadline = undefined;
    out.events.push({ event: "PAIRING_FAILED", code });
    out.error = code;
  }
}

