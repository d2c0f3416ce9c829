/** Codec and crypto ops of framing (p4-01 §12), identity (p4-02 §3.6), pairing (§14), rendezvous (p4-03 §14.1). */
import { Bytes, toHex } from "../bytes.js";
import { decodeItem, encode } from "../cbor.js";
import { P4Error } from "../errors.js";
import { decodeFrame, encodeFrame, StreamReader, type Path } from "../framing.js";
import { deviceIdDecode, deviceIdEncode, publicKey, sign, verify } from "../identity.js";
import { parseOnion } from "../onion.js";
import {
  checkPeerElement, commitmentOf, deriveW, finalKeys, identityA, identityB, keyCommitment, keySchedule, kIdentity,
  openIdentity, pakeElement, reduce, scalarBytes, sharedK, transcript, transcriptHash,
} from "../pairing/crypto.js";
import { parseCode, parseUri } from "../pairing/invite.js";
import { decodePairFrame } from "../pairing/messages.js";
import { derive } from "../rendezvous/derive.js";
import {
  checkKeysEpochSignature, decodeRvFrame, replayKey, RendezvousError, SCHEMAS, signMessage,
  type RvMsg, type RvType, type RvValue,
} from "../rendezvous/messages.js";
import { codeValue } from "../errors.js";
import {
  asBigint, cborToJson, hexField, intField, jsonInt, jsonToCbor, jsonToCborChecked, optHex, RequestError, strField, type Json, type Obj,
} from "./json.js";

export type Op = (params: Obj, input: Obj) => Json;

const pathOf = (p: Obj): Path => {
  const v = p.path;
  if (v !== "tor" && v !== "datachannel") throw new RequestError("path must be tor or datachannel");
  return v;
};
const byte = (o: Obj, k: string): number => {
  const n = intField(o, k);
  return n >= -1n && n <= 256n ? Number(n) : -1;
};

const framing: Record<string, Op> = {
  "framing.decode": (p, i) => {
    const f = decodeFrame(hexField(i, "frame"), pathOf(p));
    return { type: f.type, flags: f.flags, body: toHex(f.body), ignorable: f.ignorable };
  },
  "framing.encode": (p, i) => ({ frame: toHex(encodeFrame(byte(i, "type"), byte(i, "flags"), hexField(i, "body"), pathOf(p))) }),
  "framing.stream": (p, i) => {
    const r = new StreamReader(pathOf(p));
    const chunks = i.chunks;
    if (!Array.isArray(chunks)) throw new RequestError("chunks is not a list");
    const frames: Json[] = [];
    for (const c of chunks) {
      for (const f of r.feed(hexField({ c }, "c"))) {
        if (!f.ignorable) frames.push({ type: f.type, flags: f.flags, body: toHex(f.body) });
      }
    }
    return { frames, pending: r.pending };
  },
  "cbor.decode": (_p, i) => cborToJson(decodeItem(hexField(i, "cbor"))),
  "cbor.encode": (_p, i) => ({ cbor: toHex(encode(jsonToCborChecked(i.value))) }),
};

const identity: Record<string, Op> = {
  "identity.device_id_encode": (_p, i) => ({ device_id: deviceIdEncode(hexField(i, "public_key")) }),
  "identity.device_id_decode": (_p, i) => ({ public_key: toHex(deviceIdDecode(strField(i, "text"))) }),
  "identity.keypair": (_p, i) => ({ public_key: toHex(publicKey(hexField(i, "seed"))) }),
  "identity.sign": (_p, i) => ({ signature: toHex(sign(hexField(i, "seed"), hexField(i, "message"))) }),
  "identity.verify": (_p, i) => {
    verify(hexField(i, "public_key"), hexField(i, "message"), hexField(i, "signature"));
    return { valid: true };
  },
};

const role = (o: Obj): "accepter" | "inviter" => {
  const s = strField(o, "sender");
  if (s !== "accepter" && s !== "inviter") throw new P4Error("PAIR_IDENTITY_INVALID", "sender is not a role");
  return s;
};

const pairing: Record<string, Op> = {
  "pairing.parse_code": (_p, i) => {
    const c = parseCode(strField(i, "code"));
    return { canonical: c.canonical, password: toHex(c.password), slot: c.slot, nameplate: c.nameplate, words: c.words, onion_seed: toHex(c.onionSeed) };
  },
  "pairing.parse_uri": (_p, i) => {
    const u = parseUri(strField(i, "uri"));
    return { version: u.version, secret: toHex(u.secret), onion: u.onion, key_commitment: toHex(u.keyCommitment), expires: jsonInt(u.expires), onion_seed: toHex(u.onionSeed) };
  },
  "pairing.spake2": (_p, i) => {
    const password = hexField(i, "password");
    const slot = strField(i, "slot");
    const w = deriveW(password, slot);
    const x = reduce(hexField(i, "x_random"));
    const y = reduce(hexField(i, "y_random"));
    const pA = pakeElement("accepter", x, w);
    const pB = pakeElement("inviter", y, w);
    const K = sharedK(x, checkPeerElement("accepter", pB, w));
    const TT = transcript(slot, pA, pB, K, w);
    const s = keySchedule(TT);
    const h = (b: Bytes): string => toHex(b);
    return {
      A: h(identityA(slot)), B: h(identityB(slot)), w: h(scalarBytes(w)), x: h(scalarBytes(x)), y: h(scalarBytes(y)),
      pA: h(pA), pB: h(pB), K: h(K), TT: h(TT), Ke: h(s.Ke), Ka: h(s.Ka), KcA: h(s.KcA), KcB: h(s.KcB), cA: h(s.cA), cB: h(s.cB),
    };
  },
  "pairing.key_schedule": (_p, i) => {
    const s = keySchedule(hexField(i, "TT"), optHex(i, "aad"));
    return { Ke: toHex(s.Ke), Ka: toHex(s.Ka), KcA: toHex(s.KcA), KcB: toHex(s.KcB), cA: toHex(s.cA), cB: toHex(s.cB) };
  },
  "pairing.kdf": (_p, i) => {
    const Ke = hexField(i, "Ke");
    const TH = transcriptHash(hexField(i, "TT"));
    const pubA = hexField(i, "accepter_identity");
    const pubI = hexField(i, "inviter_identity");
    const nA = hexField(i, "accepter_nonce");
    const nI = hexField(i, "inviter_nonce");
    const commitment = commitmentOf(TH, pubI, nI);
    const f = finalKeys(TH, Ke, pubA, pubI, nA, nI, commitment);
    return {
      TH: toHex(TH), k_identity_accepter: toHex(kIdentity(TH, Ke, "accepter")), k_identity_inviter: toHex(kIdentity(TH, Ke, "inviter")),
      commitment: toHex(commitment), TH2: toHex(f.TH2), pair_root_key: toHex(f.root), sas: f.sas,
      k_done_accepter: toHex(f.kDA), k_done_inviter: toHex(f.kDI), done_accepter: toHex(f.doneA), done_inviter: toHex(f.doneI),
      uri_key_commitment: toHex(keyCommitment(pubI)),
    };
  },
  "pairing.open_identity": (_p, i) => {
    const r = openIdentity(hexField(i, "key"), hexField(i, "TH"), hexField(i, "ciphertext"), role(i));
    return { identity: toHex(r.pub), nonce: toHex(r.nonce) };
  },
  "pairing.decode": (_p, i) => {
    const m = decodePairFrame(hexField(i, "frame"));
    const out: Record<string, Json> = { type: m.type };
    if (m.type === "PAIR_PAKE") {
      out.version = jsonInt(m.version);
      out.element = toHex(m.element);
    } else if (m.type === "PAIR_CONFIRM") {
      out.mac = toHex(m.mac);
      if (m.commitment !== undefined) out.commitment = toHex(m.commitment);
    } else if (m.type === "PAIR_IDENTITY") out.ciphertext = toHex(m.ciphertext);
    else out.mac = toHex(m.mac);
    return out;
  },
};

// ------------------------------------------------------------------ rendezvous

function rvToJson(m: RvMsg): Json {
  const o: Record<string, Json> = { type: m.type };
  for (const d of SCHEMAS[m.type]) {
    const v = m.f[d.name];
    if (v === undefined) continue;
    o[d.name] = typeof v === "bigint" ? jsonInt(v) : typeof v === "string" ? v : toHex(v);
  }
  return o;
}

function jsonToRvFields(message: Obj): { type: RvType; fields: Record<string, RvValue> } {
  const bad = (m: string): never => {
    throw new RendezvousError("MESSAGE_INVALID", m);
  };
  const type = message.type;
  if (typeof type !== "string" || !(type in SCHEMAS)) return bad("unknown message type");
  const defs = SCHEMAS[type as RvType];
  const fields: Record<string, RvValue> = {};
  for (const [k, v] of Object.entries(message)) {
    if (k === "type") continue;
    const d = defs.find((x) => x.name === k);
    if (d === undefined || d.key === 15) return bad("unknown field " + k);
    if (d.kind === "sdp") {
      if (typeof v !== "string") bad("sdp is not a string");
      fields[k] = v as string;
    } else if (d.kind === "uint" || d.kind === "reason") {
      const n = asBigint(v) ?? (typeof v === "string" && d.kind === "reason" && codeValue(v) !== undefined ? BigInt(codeValue(v) as number) : undefined);
      if (n === undefined) return bad(k + " is not an integer");
      fields[k] = n;
    } else {
      if (typeof v !== "string" || !/^(?:[0-9a-f]{2})*$/.test(v)) return bad(k + " is not hex");
      fields[k] = hexField({ v }, "v");
    }
  }
  return { type: type as RvType, fields };
}

const rendezvous: Record<string, Op> = {
  "rendezvous.derive": (_p, i) => {
    const epoch = intField(i, "epoch");
    const d = derive(hexField(i, "pair_root_key"), hexField(i, "my_pub"), hexField(i, "peer_pub"), epoch);
    return {
      my_role: d.myRole, my_onion_seed: toHex(d.myOnionSeed), peer_onion_seed: toHex(d.peerOnionSeed),
      my_expanded_secret_key: toHex(d.myExpandedSecretKey), my_onion_address: d.myOnionAddress, peer_onion_address: d.peerOnionAddress,
      my_client_auth_priv: toHex(d.myClientAuthPriv), my_client_auth_pub: toHex(d.myClientAuthPub), peer_client_auth_pub: toHex(d.peerClientAuthPub),
    };
  },
  "rendezvous.sign": (_p, i) => {
    const seed = hexField(i, "identity_seed");
    const rcpt = hexField(i, "recipient_pub");
    if (seed.length !== 32 || rcpt.length !== 32) throw new RendezvousError("RDV_KEY_INVALID", "key is not 32 bytes");
    const message = i.message;
    if (typeof message !== "object" || message === null || Array.isArray(message)) throw new RendezvousError("MESSAGE_INVALID", "message is not an object");
    const { type, fields } = jsonToRvFields(message as Obj);
    const r = signMessage(type, fields, seed, rcpt);
    return { signature_input: toHex(r.input), frame: toHex(r.frame) };
  },
  "rendezvous.decode": (_p, i) => ({ message: rvToJson(decodeRvFrame(hexField(i, "frame"))) }),
  "rendezvous.verify": (_p, i) => {
    const msg = decodeRvFrame(hexField(i, "frame"));
    const sender = hexField(i, "sender_pub");
    const rcpt = hexField(i, "recipient_pub");
    checkKeysEpochSignature(msg, sender, rcpt, intField(i, "now"));
    const seen = new Set<string>();
    if (Array.isArray(i.seen)) {
      for (const s of i.seen as Obj[]) seen.add(`${intField(s, "epoch")}:${strField(s, "nonce")}`);
    }
    if (seen.has(replayKey(msg))) throw new RendezvousError("RDV_REPLAY", "nonce already seen");
    const hn = optHex(i, "hello_nonce");
    if (hn !== undefined) {
      const bound = msg.type === "RV_HELLO" ? msg.f.echo : msg.f.stream_nonce;
      if (bound !== undefined && toHex(bound as Bytes) !== toHex(hn)) throw new RendezvousError("RDV_REPLAY", "not bound to our HELLO nonce");
    }
    if (i.last_generation !== undefined) {
      const g = intField(i, "last_generation");
      const gen = msg.f.generation as bigint | undefined;
      if (msg.type === "RV_OFFER" && gen !== undefined && gen <= g) throw new RendezvousError("RDV_STALE_GENERATION", "OFFER not new");
      if (msg.type === "RV_ANSWER" && gen !== undefined && gen < g) throw new RendezvousError("RDV_STALE_GENERATION", "ANSWER older");
    }
    return { message: rvToJson(msg) };
  },
  "rendezvous.parse_onion": (_p, i) => ({ public_key: toHex(parseOnion(strField(i, "address"))) }),
};

export const CODEC_OPS: Record<string, Op> = { ...framing, ...identity, ...pairing, ...rendezvous };

