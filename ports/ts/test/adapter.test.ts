// The adapter process speaks the contract: hello first, unknown ops unsupported, errors by registry name.
import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const adapter = fileURLToPath(new URL("../../dist/adapter.js", import.meta.url));

test("adapter: hello, probe, framing.decode", () => {
  const input = [
    JSON.stringify({ id: 1, op: "p4probe.no_such_op_ab12", params: {}, input: {} }),
    JSON.stringify({ id: 2, op: "framing.decode", params: { path: "datachannel" }, input: { frame: "0102" } }),
    JSON.stringify({ id: 3, op: "cbor.decode", params: {}, input: { cbor: "1bffffffffffffffff" } }),
  ].join("\n") + "\n";
  const r = spawnSync(process.execPath, [adapter], { input, encoding: "utf8" });
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines[0]?.p4adapter, 1);
  assert.deepEqual(lines[1], { id: 1, status: "unsupported" });
  assert.equal(lines[2]?.error, "FRAME_TRUNCATED");
  assert.deepEqual(lines[3], { id: 3, status: "ok", value: { int: "18446744073709551615" } });
});
