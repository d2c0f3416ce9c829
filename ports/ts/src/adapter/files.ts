/** File-transfer ops (p4-06 §14.1). */
import { toHex } from "../bytes.js";
import { codeName, codeValue } from "../errors.js";
import { chains, checkName, decodeRecord, encodeRecord, FileError, leaves, validBlockSize, type FileRecord } from "../files/records.js";
import { asBigint, hexField, jsonInt, strField, type Json, type Obj } from "./json.js";
import type { Op } from "./codec.js";

const bad = (m: string): never => {
  throw new FileError("MESSAGE_INVALID", m);
};

function recordJson(r: FileRecord): Json {
  switch (r.type) {
    case "FILE_OFFER":
      return { type: r.type, name: r.name, size: jsonInt(r.size), block_size: jsonInt(r.blockSize), root: toHex(r.root) };
    case "FILE_ACCEPT":
      return { type: r.type, offset: jsonInt(r.offset) };
    case "FILE_REFUSE":
    case "FILE_CANCEL":
      return { type: r.type, code: codeName(Number(r.code)) };
    case "FILE_HASHES":
      return { type: r.type, first: jsonInt(r.first), hashes: r.hashes.map(toHex) };
    case "FILE_DATA":
      return { type: r.type, data: toHex(r.data) };
    case "FILE_COMPLETE":
      return { type: r.type };
  }
}

const FIELDS: Record<string, string[]> = {
  FILE_OFFER: ["name", "size", "block_size", "root"], FILE_ACCEPT: ["offset"], FILE_REFUSE: ["code"], FILE_CANCEL: ["code"],
  FILE_HASHES: ["first", "hashes"], FILE_DATA: ["data"], FILE_COMPLETE: [],
};

function recordOf(o: Obj): FileRecord {
  const type = o.type;
  if (typeof type !== "string" || !(type in FIELDS)) return bad("unknown record type");
  const want = FIELDS[type] as string[];
  const keys = Object.keys(o).filter((k) => k !== "type");
  if (keys.length !== want.length || !want.every((k) => keys.includes(k))) bad("fields do not match the record");
  const u = (k: string): bigint => asBigint(o[k]) ?? bad(k + " is not an integer");
  const hex = (v: unknown, k: string): Uint8Array => (typeof v === "string" && /^(?:[0-9a-f]{2})*$/.test(v) ? hexField({ v }, "v") : bad(k + " is not hex"));
  const cd = (): bigint => {
    const c = o.code;
    if (typeof c !== "string") return bad("code is not a string");
    const v = /^0x[0-9a-f]{4}$/.test(c) ? parseInt(c.slice(2), 16) : codeValue(c);
    return v === undefined ? bad("unknown code name") : BigInt(v);
  };
  switch (type) {
    case "FILE_OFFER":
      return { type, name: typeof o.name === "string" ? o.name : bad("name"), size: u("size"), blockSize: u("block_size"), root: hex(o.root, "root") };
    case "FILE_ACCEPT":
      return { type, offset: u("offset") };
    case "FILE_REFUSE":
    case "FILE_CANCEL":
      return { type, code: cd() };
    case "FILE_HASHES":
      return { type, first: u("first"), hashes: Array.isArray(o.hashes) ? o.hashes.map((h) => hex(h, "hashes")) : bad("hashes") };
    case "FILE_DATA":
      return { type, data: hex(o.data, "data") };
    default:
      return { type: "FILE_COMPLETE" };
  }
}

const blockSizeOf = (i: Obj): number => {
  const b = asBigint(i.block_size);
  return b !== undefined && validBlockSize(b) ? Number(b) : bad("block size");
};

export const FILE_OPS: Record<string, Op> = {
  "files.encode": (_p, i) => {
    const r = i.record;
    if (typeof r !== "object" || r === null || Array.isArray(r)) return bad("record is not an object");
    return { record: toHex(encodeRecord(recordOf(r as Obj))) };
  },
  "files.decode": (_p, i) => ({ record: recordJson(decodeRecord(hexField(i, "record"))) }),
  "files.check_name": (_p, i) => {
    checkName(strField(i, "name"));
    return {};
  },
  "files.block_hashes": (_p, i) => {
    const bs = blockSizeOf(i);
    return { leaves: leaves(hexField(i, "data"), bs).map(toHex) };
  },
  "files.root": (_p, i) => {
    const bs = blockSizeOf(i);
    const c = chains(hexField(i, "data"), bs);
    return { root: toHex(c[c.length - 1] as Uint8Array), chains: c.map(toHex) };
  },
};
