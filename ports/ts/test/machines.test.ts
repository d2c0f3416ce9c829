// Two TS machines against each other through a tiny relay (any split, in order).
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { sha256, sha512 } from "@noble/hashes/sha2";
import { toHex } from "../src/bytes.js";
import { ListRng, type Machine, type MachineEvent, type StepOutput } from "../src/machine.js";
import { parseCode } from "../src/pairing/invite.js";
import { PairingMachine } from "../src/pairing/machine.js";
import { publicKey } from "../src/identity.js";
import { RendezvousMachine } from "../src/rendezvous/machine.js";
import { SessionMachine } from "../src/session/machine.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function run(a: Machine, b: Machine, first: StepOutput, now: number, split = 0): { a: MachineEvent[]; b: MachineEvent[] } {
  const ev = { a: [] as MachineEvent[], b: [] as MachineEvent[] };
  let queue: [Machine, Uint8Array][] = first.sends.map((f) => [b, f]);
  ev.a.push(...first.events);
  while (queue.length > 0) {
    const [to, frame] = queue.shift() as [Machine, Uint8Array];
    const pieces = split > 0 ? Array.from({ length: Math.ceil(frame.length / split) }, (_, i) => frame.subarray(i * split, (i + 1) * split)) : [frame];
    for (const p of pieces) {
      const o = to.recv(now, p);
      (to === a ? ev.a : ev.b).push(...o.events);
      queue = queue.concat(o.sends.map((f): [Machine, Uint8Array] => [to === a ? b : a, f]));
    }
  }
  return ev;
}

test("pairing: inviter and accepter agree (short code), any split", () => {
  for (const split of [0, 1, 7]) {
    const invitation = parseCode("7-guitarist-revenge");
    const inv = new PairingMachine({ role: "inviter", invitation, identitySeed: sha256(enc("inviter")) },
      new ListRng([sha512(enc("p4 vector pairing y")), sha256(enc("p4 vector pairing nonce y"))]));
    const acc = new PairingMachine({ role: "accepter", invitation, identitySeed: sha256(enc("accepter")) },
      new ListRng([sha512(enc("p4 vector pairing x")), sha256(enc("p4 vector pairing nonce x"))]));
    inv.command(0, "start", {});
    const ev = run(acc, inv, acc.command(0, "start", {}), 5, split);
    assert.equal(inv.state, "PAIRED");
    assert.equal(acc.state, "PAIRED");
    const pi = ev.b.find((e) => e.event === "PAIRED");
    const pa = ev.a.find((e) => e.event === "PAIRED");
    // p4-02 §13: root and SAS of the worked example
    assert.equal(toHex(pi?.pair_root_key as Uint8Array), "fe867b1aa103d2bfc6188407487156453261ba29021f487a5e03162b2706c928");
    assert.equal(pa?.sas, "301706");
    assert.equal(toHex(pa?.peer_identity as Uint8Array), toHex(publicKey(sha256(enc("inviter")))));
  }
});

test("pairing: a wrong code fails with PAIR_CONFIRM_FAILED on the accepter", () => {
  const inv = new PairingMachine({ role: "inviter", invitation: parseCode("7-guitarist-revenge"), identitySeed: sha256(enc("i")) },
    new ListRng([sha512(enc("y")), sha256(enc("nI"))]));
  const acc = new PairingMachine({ role: "accepter", invitation: parseCode("7-guitarist-treadmill"), identitySeed: sha256(enc("a")) },
    new ListRng([sha512(enc("x")), sha256(enc("nA"))]));
  inv.command(0, "start", {});
  const ev = run(acc, inv, acc.command(0, "start", {}), 5);
  assert.equal(acc.state, "FAILED");
  assert.equal(inv.state, "FAILED");
  assert.deepEqual(ev.a.at(-1), { event: "PAIRING_FAILED", code: "PAIR_CONFIRM_FAILED" });
});

test("rendezvous: HELLO exchange, OFFER/ANSWER, BYE", () => {
  const s1 = sha256(enc("low?"));
  const s2 = sha256(enc("high?"));
  const nonces = (n: number, tag: string): Uint8Array[] => Array.from({ length: n }, (_, i) => sha256(enc(tag + i)).subarray(0, 16));
  const now = 1764000000000;
  const d = new RendezvousMachine({ role: "dialer", identitySeed: s1, peerPub: publicKey(s2), lastGeneration: 3n }, new ListRng(nonces(5, "d")));
  const a = new RendezvousMachine({ role: "acceptor", identitySeed: s2, peerPub: publicKey(s1) }, new ListRng(nonces(5, "a")));
  a.command(now, "start", {});
  const ev = run(d, a, d.command(now, "start", {}), now + 10, 3);
  assert.equal(d.state, "READY");
  assert.equal(a.state, "READY");
  assert.equal(ev.b[0]?.event, "PEER_AUTHENTICATED");
  assert.equal(ev.b[0]?.peer_generation, 3n);
  // RDV-60: the acceptor adopted the dialer's mark, so generation 3 is stale there
  assert.throws(() => a.command(now + 20, "send_offer", { sdp: "v=0", fingerprint: "00".repeat(32), generation: 3, last_rx: 0 }), /G/);
  const ev2 = run(a, d, a.command(now + 20, "send_offer", { sdp: "v=0", fingerprint: "00".repeat(32), generation: 4, last_rx: 0 }), now + 30);
  assert.equal(ev2.b[0]?.event, "OFFER_RECEIVED");
  const ev3 = run(d, a, d.command(now + 40, "send_answer", { sdp: "v=0 answer", fingerprint: "11".repeat(32), last_rx: 2 }), now + 50);
  assert.equal(ev3.b[0]?.event, "ANSWER_RECEIVED");
  const ev4 = run(d, a, d.command(now + 60, "send_bye", {}), now + 70);
  assert.deepEqual(ev4.b[0], { event: "BYE", code: "NO_ERROR" });
  assert.equal(a.state, "CLOSED");
});

test("session: handshake on one data channel, a message, its ACK", () => {
  const s1 = sha256(enc("s1"));
  const s2 = sha256(enc("s2"));
  const r = (tag: string): ListRng => new ListRng(Array.from({ length: 8 }, (_, i) => sha256(enc(tag + i)).subarray(0, 16)));
  const a = new SessionMachine({ identitySeed: s1, peerPub: publicKey(s2) }, r("a"));
  const b = new SessionMachine({ identitySeed: s2, peerPub: publicKey(s1) }, r("b"));
  const fpA = "aa".repeat(32);
  const fpB = "bb".repeat(32);
  const oa = a.command(0, "open", { conn: 1, generation: 1, path: "datachannel", binding_local: fpA, binding_remote: fpB });
  const ob = b.command(0, "open", { conn: 1, generation: 1, path: "datachannel", binding_local: fpB, binding_remote: fpA });
  const events: Record<string, MachineEvent[]> = { a: [], b: [] };
  let q: [SessionMachine, Uint8Array][] = [...oa.sends.map((f): [SessionMachine, Uint8Array] => [b, f]), ...ob.sends.map((f): [SessionMachine, Uint8Array] => [a, f])];
  const drain = (): void => {
    while (q.length > 0) {
      const [to, f] = q.shift() as [SessionMachine, Uint8Array];
      const o = to.recvOn(10, 1, f);
      events[to === a ? "a" : "b"]?.push(...o.events);
      q = q.concat(o.sends.map((x): [SessionMachine, Uint8Array] => [to === a ? b : a, x]));
    }
  };
  drain();
  assert.equal(a.state, "connected 1:OPEN");
  assert.equal(b.state, "connected 1:OPEN");
  q = a.command(20, "send", { payload: "68656c6c6f" }).sends.map((f): [SessionMachine, Uint8Array] => [b, f]);
  drain();
  const msg = events.b?.find((e) => e.event === "MESSAGE");
  assert.equal(toHex(msg?.payload as Uint8Array), "68656c6c6f");
  q = b.command(30, "inbox_committed", { through: 1 }).sends.map((f): [SessionMachine, Uint8Array] => [a, f]);
  q = q.concat(b.tick(60).sends.map((f): [SessionMachine, Uint8Array] => [a, f]));
  drain();
  assert.ok(events.a?.some((e) => e.event === "ACKED" && e.through === 1n));
});
