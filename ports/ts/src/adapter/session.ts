/** Session codec ops (p4-04 §13.1). The session machine (§13.2) is not ported yet. */
import { Bytes, toHex } from "../bytes.js";
import type { Path } from "../framing.js";
import { hexField, intField, jsonInt, RequestError, type Json, type Obj } from "./json.js";
import type { Op } from "./codec.js";
import { checkHello, decodeSesFrame, helloOf, signAuth, verifyAuth, SessionError, type SesMsg } from "../session/messages.js";
import { IdentityError } from "../identity.js";

const sesPath = (i: Obj): Path => {
  const v = i.path ?? "datachannel";
  if (v !== "tor" && v !== "datachannel") throw new RequestError("path must be tor or datachannel");
  return v;
};
const sesFields = (m: SesMsg): Json => {
  const o: Record<string, Json> = {};
  for (const [k, v] of Object.entries(m.f)) o[k] = typeof v === "bigint" ? jsonInt(v) : toHex(v);
  return o;
};
const key32 = (b: Bytes): Bytes => {
  if (b.length !== 32) throw new IdentityError("IDENTITY_KEY_INVALID", "key is not 32 bytes");
  return b;
};

export const SESSION_OPS: Record<string, Op> = {
  "session.decode": (_p, i) => {
    const m = decodeSesFrame(hexField(i, "frame"), sesPath(i));
    return { type: m.type, fields: sesFields(m) };
  },
  "session.verify_hello": (_p, i) => {
    const h = helloOf(hexField(i, "frame"), sesPath(i), true).msg as SesMsg;
    checkHello(h, hexField(i, "my_pub"), hexField(i, "peer_pub"), intField(i, "generation"), hexField(i, "binding_local"), hexField(i, "binding_remote"));
    return { hello: sesFields(h) };
  },
  "session.sign_auth": (_p, i) => {
    const path = sesPath(i);
    const mine = helloOf(hexField(i, "hello_mine"), path, false).body;
    const peer = helloOf(hexField(i, "hello_peer"), path, false).body;
    const r = signAuth(key32(hexField(i, "identity_seed")), key32(hexField(i, "peer_pub")), mine, peer);
    return { signature_input: toHex(r.input), frame: toHex(r.frame) };
  },
  "session.verify_auth": (_p, i) => {
    const path = sesPath(i);
    const auth = decodeSesFrame(hexField(i, "frame"), path);
    if (auth.type !== "SES_AUTH") throw new SessionError("UNEXPECTED_MESSAGE", "not a SES_AUTH");
    const mine = helloOf(hexField(i, "hello_mine"), path, false).body;
    const peer = helloOf(hexField(i, "hello_peer"), path, false).body;
    verifyAuth(auth.f.signature as Bytes, key32(hexField(i, "my_pub")), hexField(i, "peer_pub"), mine, peer);
    return {};
  },
};
