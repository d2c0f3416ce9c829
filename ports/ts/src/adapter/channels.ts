/** Channel item ops (p4-05 §13.1). */
import { Bytes, toHex } from "../bytes.js";
import { ChannelError, decodeItem, encodeItem, type Item } from "../channels/items.js";
import { asBigint, hexField, jsonInt, strField, type Json, type Obj } from "./json.js";
import type { Op } from "./codec.js";

const FIELDS: Record<string, string[]> = {
  OPEN: ["chan", "name"], DATA: ["chan", "offset", "end_of_message", "data"], CREDIT: ["chan", "limit"],
  CLOSE: ["chan", "final"], RESET: ["chan", "code"],
};

function itemJson(it: Item): Json {
  switch (it.type) {
    case "OPEN":
      return { type: it.type, fields: { chan: jsonInt(it.chan), name: it.name } };
    case "DATA":
      return { type: it.type, fields: { chan: jsonInt(it.chan), offset: jsonInt(it.offset), end_of_message: it.eom, data: toHex(it.data) } };
    case "CREDIT":
      return { type: it.type, fields: { chan: jsonInt(it.chan), limit: jsonInt(it.limit) } };
    case "CLOSE":
      return { type: it.type, fields: { chan: jsonInt(it.chan), final: jsonInt(it.final) } };
    case "RESET":
      return { type: it.type, fields: { chan: jsonInt(it.chan), code: jsonInt(it.code) } };
  }
}

function itemOf(type: string, f: Obj): Item {
  const bad = (m: string): never => {
    throw new ChannelError("MESSAGE_INVALID", m);
  };
  const want = FIELDS[type] ?? bad("unknown item type " + type);
  const keys = Object.keys(f);
  if (keys.length !== want.length || !want.every((k) => keys.includes(k))) bad("fields do not match the item");
  const u = (k: string): bigint => {
    const n = asBigint(f[k]);
    return n !== undefined && n >= 0n && n < 1n << 64n ? n : bad(k + " is not a uint64");
  };
  const chan = u("chan");
  switch (type) {
    case "OPEN":
      return { type, chan, name: typeof f.name === "string" ? f.name : bad("name is not a string") };
    case "DATA": {
      if (typeof f.end_of_message !== "boolean") bad("end_of_message is not a bool");
      const d = f.data;
      if (typeof d !== "string" || !/^(?:[0-9a-f]{2})*$/.test(d)) bad("data is not hex");
      return { type, chan, offset: u("offset"), eom: f.end_of_message as boolean, data: hexField({ d }, "d") as Bytes };
    }
    case "CREDIT":
      return { type, chan, limit: u("limit") };
    case "CLOSE":
      return { type, chan, final: u("final") };
    default:
      return { type: "RESET", chan, code: u("code") };
  }
}

export const CHANNEL_OPS: Record<string, Op> = {
  "channels.decode_item": (_p, i) => itemJson(decodeItem(hexField(i, "item"))),
  "channels.encode_item": (_p, i) => {
    const f = i.fields;
    if (typeof f !== "object" || f === null || Array.isArray(f)) throw new ChannelError("MESSAGE_INVALID", "fields is not an object");
    return { item: toHex(encodeItem(itemOf(strField(i, "type"), f as Obj))) };
  },
};
