/** machine.new / machine.step / machine.drop (conformance/README.md §3.4) for `pairing` and `rendezvous`. */
import { Bytes, fromHex, toHex } from "../bytes.js";
import { P4Error } from "../errors.js";
import { ListRng, type Machine, type StepOutput } from "../machine.js";
import { parseCode, parseUri, type Invitation } from "../pairing/invite.js";
import { PairingMachine, type PairRole } from "../pairing/machine.js";
import { RendezvousMachine, type RdvStreamRole } from "../rendezvous/machine.js";
import { SessionMachine, type StoredState } from "../session/machine.js";
import { ChannelsMachine } from "../channels/machine.js";
import { FileMachine } from "../files/machine.js";
import { checkName, validBlockSize } from "../files/records.js";
import { publicKey } from "../identity.js";
import { asBigint, field, intField, objField, RequestError, strField, toJson, type Json, type Obj } from "./json.js";
import type { Op } from "./codec.js";

export class Unsupported extends Error {}

const invalidConfig = (m: string): never => {
  throw new P4Error("MESSAGE_INVALID", m);
};
const isHex = (v: unknown): v is string => typeof v === "string" && /^(?:[0-9a-f]{2})*$/.test(v);

function newPairing(role: string, cfg: Obj, rng: ListRng): Machine {
  // PAIR-68 order: role, unknown key, code/uri, JSON types, timeout_ms > 0 → MESSAGE_INVALID
  if (role !== "inviter" && role !== "accepter") invalidConfig("role");
  const known = ["code", "uri", "identity_seed", "expires_at", "timeout_ms"];
  for (const k of Object.keys(cfg)) if (!known.includes(k)) invalidConfig("unknown config key " + k);
  if (("code" in cfg) === ("uri" in cfg)) invalidConfig("exactly one of code, uri");
  if ("code" in cfg && typeof cfg.code !== "string") invalidConfig("code is not a string");
  if ("uri" in cfg && typeof cfg.uri !== "string") invalidConfig("uri is not a string");
  if (!isHex(cfg.identity_seed)) invalidConfig("identity_seed is not hex");
  const expiresAt = cfg.expires_at === undefined ? undefined : asBigint(cfg.expires_at) ?? invalidConfig("expires_at");
  const timeout = cfg.timeout_ms === undefined ? undefined : asBigint(cfg.timeout_ms) ?? invalidConfig("timeout_ms");
  if (timeout !== undefined && timeout <= 0n) invalidConfig("timeout_ms must be > 0");
  const invitation: Invitation = typeof cfg.code === "string" ? parseCode(cfg.code) : parseUri(cfg.uri as string);
  const seed = fromHex(cfg.identity_seed as string);
  if (seed.length !== 32) throw new P4Error("IDENTITY_KEY_INVALID", "identity_seed is not 32 bytes");
  return new PairingMachine(
    { role: role as PairRole, invitation, identitySeed: seed, expiresAt: expiresAt === undefined ? undefined : Number(expiresAt), timeoutMs: timeout === undefined ? undefined : Number(timeout) },
    rng,
  );
}

function newRendezvous(role: string, cfg: Obj, rng: ListRng): Machine {
  // RDV-58 order
  if (role !== "dialer" && role !== "acceptor") invalidConfig("role");
  const known = ["identity_seed", "peer_pub", "last_generation", "incarnation", "peer_incarnation", "peer_generation"];
  for (const k of Object.keys(cfg)) if (!known.includes(k)) invalidConfig("unknown config key " + k);
  if (!("identity_seed" in cfg) || !("peer_pub" in cfg)) invalidConfig("missing required key");
  for (const k of ["identity_seed", "peer_pub", "incarnation", "peer_incarnation"])
    if (k in cfg && !isHex(cfg[k])) invalidConfig(k + " is not hex");
  const u64 = (k: string): bigint | undefined => {
    if (cfg[k] === undefined) return undefined;
    return asBigint(cfg[k]) ?? invalidConfig(k + " is not an integer");
  };
  const lastGeneration = u64("last_generation");
  const peerGeneration = u64("peer_generation");
  for (const g of [lastGeneration, peerGeneration])
    if (g !== undefined && (g < 0n || g > (1n << 64n) - 1n)) invalidConfig("generation out of range");
  const inc16 = (k: string): Bytes | undefined => {
    if (cfg[k] === undefined) return undefined;
    const b = fromHex(cfg[k] as string);
    return b.length === 16 ? b : invalidConfig(k + " is not 16 bytes");
  };
  const incarnation = inc16("incarnation");
  const peerIncarnation = inc16("peer_incarnation");
  const seed = fromHex(cfg.identity_seed as string);
  const peerPub = fromHex(cfg.peer_pub as string);
  if (seed.length !== 32 || peerPub.length !== 32) throw new P4Error("RDV_KEY_INVALID", "key is not 32 bytes");
  return new RendezvousMachine(
    { role: role as RdvStreamRole, identitySeed: seed, peerPub, lastGeneration, incarnation, peerIncarnation, peerGeneration }, rng);
}

function newSession(role: string, cfg: Obj, rng: ListRng): Machine {
  // p4-04 §13.2 order (the role first, as p4-02 and p4-03 do)
  if (role !== "peer" && role !== "low" && role !== "high") invalidConfig("role");
  const known = ["identity_seed", "peer_pub", "state", "dc_window", "tor_window", "max_outbox"];
  for (const k of Object.keys(cfg)) if (!known.includes(k)) invalidConfig("unknown config key " + k);
  if (!("identity_seed" in cfg) || !("peer_pub" in cfg)) invalidConfig("missing required key");
  if (!isHex(cfg.identity_seed) || !isHex(cfg.peer_pub)) invalidConfig("not hex");
  const u64 = (v: unknown, k: string): bigint => {
    const n = asBigint(v);
    return n !== undefined && n >= 0n && n < 1n << 64n ? n : invalidConfig(k + " is not a uint64");
  };
  const opt = (k: string): bigint | undefined => (cfg[k] === undefined ? undefined : u64(cfg[k], k));
  const dcWindow = opt("dc_window");
  const torWindow = opt("tor_window");
  const maxOutbox = opt("max_outbox");
  let state: StoredState | undefined;
  if (cfg.state !== undefined) {
    const st = cfg.state;
    if (typeof st !== "object" || st === null || Array.isArray(st)) return invalidConfig("state is not an object");
    const o = st as Obj;
    const sk = ["inc", "tx", "acked", "outbox", "peer_inc", "rx", "retired", "generation"];
    for (const k of Object.keys(o)) if (!sk.includes(k)) invalidConfig("unknown state key " + k);
    const hex16 = (v: unknown, k: string): Bytes => (isHex(v) && v.length === 32 ? fromHex(v) : invalidConfig(k + " is not 16 bytes"));
    if (!("inc" in o)) invalidConfig("state without inc");
    const outbox: [bigint, Bytes][] = [];
    if (o.outbox !== undefined) {
      if (!Array.isArray(o.outbox)) invalidConfig("outbox is not a list");
      for (const e of o.outbox as unknown[]) {
        if (!Array.isArray(e) || e.length !== 2 || !isHex(e[1])) invalidConfig("bad outbox entry");
        const pair = e as [unknown, string];
        outbox.push([u64(pair[0], "outbox seq"), fromHex(pair[1])]);
      }
    }
    const retired: Bytes[] = [];
    if (o.retired !== undefined) {
      if (!Array.isArray(o.retired)) invalidConfig("retired is not a list");
      for (const r of o.retired as unknown[]) retired.push(hex16(r, "retired"));
    }
    const n = (k: string): bigint => (o[k] === undefined ? 0n : u64(o[k], k));
    state = {
      inc: hex16(o.inc, "inc"), tx: n("tx"), acked: n("acked"), outbox, rx: n("rx"), retired, generation: n("generation"),
      peerInc: o.peer_inc === undefined ? new Uint8Array(16) : hex16(o.peer_inc, "peer_inc"),
    };
  }
  const seed = fromHex(cfg.identity_seed as string);
  const peerPub = fromHex(cfg.peer_pub as string);
  if (seed.length !== 32 || peerPub.length !== 32) throw new P4Error("IDENTITY_KEY_INVALID", "key is not 32 bytes");
  const myPub = publicKey(seed);
  if (toHex(myPub) === toHex(peerPub)) throw new P4Error("IDENTITY_KEY_INVALID", "peer_pub is our own key");
  const low = toHex(myPub) < toHex(peerPub);
  if ((role === "low" && !low) || (role === "high" && low)) invalidConfig("role contradicts the keys");
  return new SessionMachine({ identitySeed: seed, peerPub, state, dcWindow, torWindow, maxOutbox }, rng);
}

function newChannels(role: string, cfg: Obj): Machine {
  if (role !== "low" && role !== "high") invalidConfig("role");
  for (const k of Object.keys(cfg)) if (k !== "window" && k !== "max_channels") invalidConfig("unknown config key " + k);
  const u = (k: string, min: bigint): bigint | undefined => {
    if (cfg[k] === undefined) return undefined;
    const n = asBigint(cfg[k]);
    return n !== undefined && n >= min && n < 1n << 64n ? n : invalidConfig(k + " out of range");
  };
  return new ChannelsMachine({ role: role as "low" | "high", window: u("window", 1n), maxChannels: u("max_channels", 1n) });
}

function newFiles(role: string, cfg: Obj): Machine {
  // FIL-44 order
  if (role !== "sender" && role !== "receiver") invalidConfig("role");
  const known = role === "sender" ? ["name", "size", "block_size", "root"] : ["max_size"];
  for (const k of Object.keys(cfg)) if (!known.includes(k)) invalidConfig("unknown config key " + k);
  if (role === "sender" && !known.every((k) => k in cfg)) invalidConfig("missing required key");
  if (role === "sender") {
    if (typeof cfg.name !== "string" || !isHex(cfg.root)) invalidConfig("wrong JSON type");
    const size = asBigint(cfg.size) ?? invalidConfig("size");
    const bs = asBigint(cfg.block_size) ?? invalidConfig("block_size");
    if (size < 0n || size > (1n << 63n) - 1n || !validBlockSize(bs) || (cfg.root as string).length !== 64) invalidConfig("value not allowed");
    checkName(cfg.name as string);
    return new FileMachine({ role: "sender", name: cfg.name as string, size, blockSize: bs, root: fromHex(cfg.root as string) });
  }
  let maxSize: bigint | undefined;
  if (cfg.max_size !== undefined) {
    maxSize = asBigint(cfg.max_size) ?? invalidConfig("max_size");
    if (maxSize < 0n || maxSize > (1n << 63n) - 1n) invalidConfig("max_size out of range");
  }
  return new FileMachine({ role: "receiver", maxSize });
}

const FACTORIES: Record<string, (role: string, cfg: Obj, rng: ListRng) => Machine> = {
  pairing: newPairing,
  rendezvous: newRendezvous,
  session: newSession,
  channels: (role, cfg) => newChannels(role, cfg),
  files: (role, cfg) => newFiles(role, cfg),
};

const machines = new Map<string, Machine>();
let nextHandle = 1;

function stepJson(m: Machine, o: StepOutput): Json {
  const out: Json[] = [];
  o.sends.forEach((s, i) => {
    const c = o.sendConns[i];
    out.push(c === undefined ? { send: toHex(s) } : { send: toHex(s), conn: c });
  });
  for (const e of o.events) {
    const ev: Record<string, Json> = {};
    for (const [k, v] of Object.entries(e)) ev[k] = toJson(v);
    out.push(ev);
  }
  if (o.error !== undefined) out.push({ error: o.error });
  for (const e of o.errors) out.push({ error: e });
  return { out, state: m.state };
}

export const MACHINE_OPS: Record<string, Op> = {
  "machine.new": (p, i) => {
    const kind = strField(p, "machine");
    const factory = FACTORIES[kind];
    if (factory === undefined) throw new Unsupported(kind);
    const role = strField(p, "role");
    const cfg = p.config === undefined ? {} : objField(p, "config");
    const rngList = i.rng === undefined ? [] : field(i, "rng");
    if (!Array.isArray(rngList) || !rngList.every(isHex)) throw new RequestError("rng is not a list of hex");
    const m = factory(role, cfg, new ListRng((rngList as string[]).map((h): Bytes => fromHex(h))));
    const handle = `${kind}-${nextHandle++}`;
    machines.set(handle, m);
    return { handle };
  },
  "machine.step": (p, i) => {
    const handle = strField(p, "handle");
    const m = machines.get(handle);
    if (m === undefined) throw new RequestError("unknown handle " + handle);
    const now = Number(intField(i, "now"));
    const inp = objField(i, "in");
    let o: StepOutput;
    if ("recv" in inp) {
      const r = inp.recv;
      if (!isHex(r)) throw new RequestError("recv is not hex");
      if ("conn" in inp) {
        const c = asBigint(inp.conn);
        if (c === undefined || m.recvOn === undefined) throw new RequestError("bad conn");
        o = m.recvOn(now, Number(c), fromHex(r));
      } else o = m.recv(now, fromHex(r));
    } else if ("cmd" in inp) {
      const { cmd, ...args } = inp;
      if (typeof cmd !== "string") throw new RequestError("cmd is not a string");
      o = m.command(now, cmd, args);
    } else if (inp.tick === true) {
      o = m.tick(now);
    } else throw new RequestError("unknown input item");
    return stepJson(m, o);
  },
  "machine.drop": (p) => {
    machines.delete(String(p.handle));
    return {};
  },
};
