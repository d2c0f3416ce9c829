#!/usr/bin/env node
/** The conformance adapter (conformance/README.md §2): JSON Lines on stdin/stdout, logs on stderr. */
import { createInterface } from "node:readline";
import { P4Error } from "./errors.js";
import { CODEC_OPS, type Op } from "./adapter/codec.js";
import type { Obj } from "./adapter/json.js";
import { MACHINE_OPS, Unsupported } from "./adapter/machines.js";
import { SESSION_OPS } from "./adapter/session.js";
import { CHANNEL_OPS } from "./adapter/channels.js";
import { FILE_OPS } from "./adapter/files.js";

export const OPS: Record<string, Op> = { ...CODEC_OPS, ...SESSION_OPS, ...CHANNEL_OPS, ...FILE_OPS, ...MACHINE_OPS };

/** Answer one request object, as an adapter would (usable in-process by tests). */
export function handle(req: Obj): Obj {
  const id = req.id ?? null;
  const op = typeof req.op === "string" ? req.op : "";
  const fn = Object.prototype.hasOwnProperty.call(OPS, op) ? OPS[op] : undefined;
  if (fn === undefined) return { id, status: "unsupported" };
  const asObj = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});
  try {
    return { id, status: "ok", value: fn(asObj(req.params), asObj(req.input)) };
  } catch (e) {
    if (e instanceof Unsupported) return { id, status: "unsupported" };
    if (e instanceof P4Error) return { id, status: "error", error: e.code, message: e.message };
    process.stderr.write(`adapter: ${op}: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    return { id, status: "error", error: "INTERNAL_ERROR", message: String(e) };
  }
}

export function hello(): Obj {
  return { p4adapter: 1, impl: "p4-ts", version: "0.1.0", ops: Object.keys(OPS).sort(), machines: ["pairing", "rendezvous", "session", "channels", "files"] };
}

function main(): void {
  const write = (o: Obj): void => {
    process.stdout.write(JSON.stringify(o) + "\n");
  };
  write(hello());
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on("line", (line) => {
    if (line.trim() === "") return;
    let req: Obj;
    try {
      req = JSON.parse(line) as Obj;
    } catch {
      write({ id: null, status: "error", error: "INTERNAL_ERROR", message: "unparsable request" });
      return;
    }
    write(handle(req));
  });
  // at EOF the process exits by itself once every queued answer is written
}

main();
