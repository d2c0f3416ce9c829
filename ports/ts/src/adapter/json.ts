/** JSON conventions of conformance/README.md §3.1: hex bytes, lossless integers, the CBOR JSON form. */
import { Bytes, fromHex, toHex } from "../bytes.js";
import { CborMap, type CborValue } from "../cbor.js";
import { LocalProtocolError, P4Error } from "../errors.js";
import type { EventValue } from "../machine.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A malformed request (not a protocol input): answered INTERNAL_ERROR (README §3.3). */
export class RequestError extends P4Error {
  constructor(message: string) {
    super("INTERNAL_ERROR", message);
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Bare number within ±(2^53 − 1), the lossless form beyond. */
export function jsonInt(n: bigint): Json {
  return n <= MAX_SAFE && n >= -MAX_SAFE ? Number(n) : { int: n.toString() };
}

export function asBigint(v: unknown): bigint | undefined {
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (Object.keys(o).length === 1 && typeof o.int === "string" && /^-?(0|[1-9][0-9]*)$/.test(o.int) && o.int !== "-0")
      return BigInt(o.int);
  }
  return undefined;
}

export type Obj = Record<string, unknown>;

export function field(o: Obj, k: string): unknown {
  if (!(k in o)) throw new RequestError(`missing field ${k}`);
  return o[k];
}
export function hexField(o: Obj, k: string): Bytes {
  const v = field(o, k);
  if (typeof v !== "string") throw new RequestError(`${k} is not a hex string`);
  try {
    return fromHex(v);
  } catch {
    throw new RequestError(`${k} is not lowercase hex`);
  }
}
export function optHex(o: Obj, k: string): Bytes | undefined {
  return o[k] === undefined ? undefined : hexField(o, k);
}
export function strField(o: Obj, k: string): string {
  const v = field(o, k);
  if (typeof v !== "string") throw new RequestError(`${k} is not a string`);
  return v;
}
export function intField(o: Obj, k: string): bigint {
  const v = asBigint(field(o, k));
  if (v === undefined) throw new RequestError(`${k} is not an integer`);
  return v;
}
export function objField(o: Obj, k: string): Obj {
  const v = field(o, k);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new RequestError(`${k} is not an object`);
  return v as Obj;
}

/** Machine events and op values: bytes → hex, bigint → lossless int. */
export function toJson(v: EventValue): Json {
  if (v instanceof Uint8Array) return toHex(v);
  if (typeof v === "bigint") return jsonInt(v);
  if (Array.isArray(v)) return v.map(jsonInt);
  return v;
}

// ------------------------------------------------------------------ CBOR JSON form

export function cborToJson(v: CborValue): Json {
  if (typeof v === "bigint") return { int: v.toString() };
  if (v instanceof Uint8Array) return { bytes: toHex(v) };
  if (typeof v === "string") return { text: v };
  if (typeof v === "boolean") return { bool: v };
  if (v === null) return { null: true };
  if (Array.isArray(v)) return { array: v.map(cborToJson) };
  return { map: v.entries.map(([k, x]) => [{ int: k.toString() }, cborToJson(x)]) };
}

/** The CBOR JSON form to a value; a map key that is not an unsigned integer is CBOR_FORBIDDEN. */
/** p4-01 FRM-54, first pass over the whole value: a map key that is an array or a map is
 *  CBOR_FORBIDDEN and a key named twice in one map is CBOR_DUPLICATE_KEY, before any other check. */
function prescan(j: unknown): void {
  if (typeof j !== "object" || j === null || Array.isArray(j)) return;
  const o = j as Obj;
  if (Array.isArray(o["array"])) {
    for (const e of o["array"] as unknown[]) prescan(e);
    return;
  }
  if (!Array.isArray(o["map"])) return;
  const seen = new Set<string>();
  for (const pair of o["map"] as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) return;
    const k: unknown = pair[0];
    prescan(k);
    const ko = (typeof k === "object" && k !== null ? k : {}) as Obj;
    if ("array" in ko || "map" in ko) throw new LocalProtocolError("CBOR_FORBIDDEN", "a map key that is a container");
    const n = "int" in ko ? asBigint(ko) : undefined;
    const id = n !== undefined ? `i:${n}` : JSON.stringify(k);
    if (seen.has(id)) throw new LocalProtocolError("CBOR_DUPLICATE_KEY", "duplicate key");
    seen.add(id);
    prescan(pair[1]);
  }
}

/** cbor.encode's reading of a JSON form (p4-01 §12, FRM-54). */
export function jsonToCborChecked(j: unknown): CborValue {
  prescan(j);
  return jsonToCbor(j);
}

export function jsonToCbor(j: unknown, depth = 1): CborValue {
  if (typeof j !== "object" || j === null || Array.isArray(j)) throw new RequestError("not a CBOR JSON form");
  const o = j as Obj;
  const keys = Object.keys(o);
  if (keys.length !== 1) throw new RequestError("not a CBOR JSON form");
  const k = keys[0] as string;
  const x = o[k];
  switch (k) {
    case "int": {
      const n = asBigint(o);
      if (n === undefined) throw new RequestError("bad int");
      if (n > (1n << 64n) - 1n || n < -(1n << 64n)) throw new LocalProtocolError("MESSAGE_INVALID", "integer out of range");
      return n;
    }
    case "bytes":
      return hexField(o, "bytes");
    case "text":
      return strField(o, "text");
    case "bool":
      if (typeof x !== "boolean") throw new RequestError("bad bool");
      return x;
    case "null":
      return null;
    case "array":
      if (!Array.isArray(x)) throw new RequestError("bad array");
      if (depth > 16) throw new LocalProtocolError("CBOR_TOO_DEEP", "too deep");
      return x.map((e) => jsonToCbor(e, depth + 1));
    case "map": {
      if (!Array.isArray(x)) throw new RequestError("bad map");
      if (depth > 16) throw new LocalProtocolError("CBOR_TOO_DEEP", "too deep");
      const entries: [bigint, CborValue][] = [];
      for (const pair of x) {
        if (!Array.isArray(pair) || pair.length !== 2) throw new RequestError("bad map entry");
        const key = jsonToCbor(pair[0], depth + 1);
        if (typeof key !== "bigint" || key < 0n) throw new LocalProtocolError("CBOR_FORBIDDEN", "map key is not an unsigned integer");
        entries.push([key, jsonToCbor(pair[1], depth + 1)]);
      }
      const seen = new Set(entries.map(([kk]) => kk));
      if (seen.size !== entries.length) throw new LocalProtocolError("CBOR_DUPLICATE_KEY", "duplicate key");
      return new CborMap(entries);
    }
    default:
      throw new RequestError("not a CBOR JSON form");
  }
}
