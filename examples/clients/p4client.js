#!/usr/bin/env node
// A small client of the P⁴ local API (docs/local-api.md, docs/openapi.yaml) for Node >= 18,
// using only Node's built-in modules: HTTP over the profile's Unix socket (or 127.0.0.1 where
// there is none), and the WebSocket stream with a minimal RFC 6455 client below (text frames,
// ping/pong, close; enough for this API — a production app may prefer the `ws` package).
//
//   const { P4Client } = require("./p4client.js");
//   const p4 = P4Client.fromProfile(process.env.P4_HOME, process.env.P4_TOKEN);
//   await p4.send("phone", "notes/todo", "buy milk");          // resolves once durable
//   const s = await p4.stream({ credit: 16 });
//   s.on("message", async (m) => { console.log(m.channel, m.data.toString()); await s.confirm([m.id]); });
//
// Run as a program it is the demo the tests drive:  P4_HOME=… P4_TOKEN=… node p4client.js demo PEER CHANNEL
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { EventEmitter } = require("node:events");

class P4Error extends Error {
  constructor(code, message, status) {
    super(`${code}: ${message}`);
    this.code = code;
    this.status = status;
  }
}

class P4Client {
  /** endpoint: {transport: "unix", path} or {transport: "tcp", host, port}; token: "p4tok_…". */
  constructor(endpoint, token) {
    this.endpoint = endpoint;
    this.token = token;
  }

  /** The endpoint from <home>/api/endpoint.json, written by the running `p4 up`. */
  static fromProfile(home, token) {
    const file = path.join(home, "api", "endpoint.json");
    return new P4Client(JSON.parse(fs.readFileSync(file, "utf8")), token);
  }

  _options(method, urlPath, headers) {
    const ep = this.endpoint;
    const base = ep.transport === "unix"
      ? { socketPath: ep.path, headers: { Host: "localhost" } }
      : { host: ep.host, port: ep.port, headers: { Host: `${ep.host}:${ep.port}` } };
    // the token goes in a header, never in the URL
    return { ...base, method, path: urlPath,
      headers: { ...base.headers, Authorization: `Bearer ${this.token}`, ...headers } };
  }

  request(method, urlPath, body, headers = {}) {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
      const h = data ? { "Content-Type": "application/json", "Content-Length": data.length } : {};
      const req = http.request(this._options(method, urlPath, { ...h, ...headers }), (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          let obj;
          try { obj = JSON.parse(Buffer.concat(chunks).toString("utf8")); } catch (e) { obj = {}; }
          if (res.statusCode >= 400) {
            const err = obj.error || { code: "HTTP_" + res.statusCode, message: "" };
            reject(new P4Error(err.code, err.message, res.statusCode));
          } else {
            resolve({ status: res.statusCode, body: obj });
          }
        });
      });
      req.on("error", reject);
      if (data) req.write(data);
      req.end();
    });
  }

  async whoami() { return (await this.request("GET", "/v1/whoami")).body; }
  async peers() { return (await this.request("GET", "/v1/peers")).body.peers; }
  async status() { return (await this.request("GET", "/v1/status")).body.peers; }

  /** Send one message (a string is sent as UTF-8); resolves once it is durable in the outbox.
   *  Retry with the same `key` after a failure: the server answers the first message's id. */
  async send(peer, channel, message, key = crypto.randomUUID()) {
    const body = { peer, channel };
    if (typeof message === "string") body.text = message;
    else body.data = Buffer.from(message).toString("base64");
    const r = await this.request("POST", "/v1/send", body, { "Idempotency-Key": key });
    return r.body; // {status: "accepted", id, replayed, peer, channel}
  }

  /** Long poll: up to `max` items, waiting up to `waitMs`; each `data` is a Buffer. */
  async receive({ max = 16, waitMs = 0, leaseMs = 60000 } = {}) {
    const r = await this.request("POST", "/v1/receive", { max, wait_ms: waitMs, lease_ms: leaseMs });
    return r.body.messages.map(decodeItem);
  }

  async confirm(ids) { return (await this.request("POST", "/v1/confirm", { ids })).body; }
  async close(peer, channel) { return (await this.request("POST", "/v1/close", { peer, channel })).body; }

  /** Open the WebSocket stream; grants `credit` messages at once (more with stream.credit(n)). */
  async stream({ credit = 16, events = false } = {}) {
    const socket = await wsConnect(this._options("GET", "/v1/stream", {}));
    const s = new Stream(socket);
    await s.ready;
    if (events) await s.request({ type: "events", on: true });
    if (credit) s.credit(credit);
    return s;
  }
}

function decodeItem(m) {
  return m.data === undefined ? m : { ...m, data: Buffer.from(m.data, "base64") };
}

// --- the stream: JSON frames, refs matched to answers, credit -------------------------------

class Stream extends EventEmitter {
  constructor(socket) {
    super();
    this.ws = new WsConnection(socket);
    this.nextRef = 1;
    this.pending = new Map();
    this.ready = new Promise((resolve) => this.once("hello", resolve));
    this.ws.on("text", (text) => this._frame(JSON.parse(text)));
    this.ws.on("close", (code) => {
      for (const { reject } of this.pending.values()) reject(new P4Error("CLOSED", `closed ${code}`));
      this.pending.clear();
      this.emit("close", code);
    });
  }

  _frame(f) {
    if (f.type === "hello") { this.hello = f; this.emit("hello", f); return; }
    if (f.type === "message" || f.type === "closed") { this.emit(f.type, decodeItem(f)); return; }
    if (f.type === "event") { this.emit("event", f); return; }
    const waiter = f.ref !== undefined ? this.pending.get(f.ref) : undefined;
    if (waiter) {
      this.pending.delete(f.ref);
      if (f.type === "error") waiter.reject(new P4Error(f.code, f.message));
      else waiter.resolve(f);
    } else if (f.type === "error") {
      this.emit("error", new P4Error(f.code, f.message));
    }
  }

  request(frame) {
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      this.ws.sendText(JSON.stringify({ ...frame, ref }));
    });
  }

  credit(messages) { this.ws.sendText(JSON.stringify({ type: "credit", messages })); }

  /** Resolves with {type: "accepted", id, replayed} once the message is durable. Keep at most
   *  hello.send_window sends unanswered. */
  send(peer, channel, message, key = crypto.randomUUID()) {
    const frame = { type: "send", key, peer, channel };
    if (typeof message === "string") frame.text = message;
    else frame.data = Buffer.from(message).toString("base64");
    return this.request(frame);
  }

  confirm(ids) { return this.request({ type: "confirm", ids }); }
  closeChannel(peer, channel) { return this.request({ type: "close", peer, channel }); }
  close() { this.ws.close(1000); }
}

// --- a minimal RFC 6455 client --------------------------------------------------------------

function wsConnect(options) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString("base64");
    const req = http.request({ ...options, headers: { ...options.headers,
      Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": key } });
    req.on("upgrade", (res, socket, head) => {
      const expected = crypto.createHash("sha1")
        .update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
      if (res.headers["sec-websocket-accept"] !== expected) {
        socket.destroy();
        reject(new Error("bad Sec-WebSocket-Accept"));
        return;
      }
      if (head && head.length) socket.unshift(head);
      resolve(socket);
    });
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        let err = { code: "HTTP_" + res.statusCode, message: "" };
        try { err = JSON.parse(Buffer.concat(chunks).toString()).error; } catch (e) { /* keep */ }
        reject(new P4Error(err.code, err.message, res.statusCode));
      });
    });
    req.on("error", reject);
    req.end();
  });
}

class WsConnection extends EventEmitter {
  constructor(socket) {
    super();
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.parts = [];
    socket.on("data", (d) => { this.buf = Buffer.concat([this.buf, d]); this._parse(); });
    socket.on("close", () => this.emit("close", this.closeCode || 1006));
    socket.on("error", () => {});
  }

  _parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const op = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (b.length < off + len) return; // the server never masks
      const payload = b.subarray(off, off + len);
      this.buf = b.subarray(off + len);
      if (op === 0x8) {
        this.closeCode = len >= 2 ? payload.readUInt16BE(0) : 1005;
        this._send(0x8, payload.subarray(0, 2));
        this.socket.end();
      } else if (op === 0x9) {
        this._send(0xa, payload);
      } else if (op === 0x1 || op === 0x0) {
        this.parts.push(payload);
        if (fin) {
          const text = Buffer.concat(this.parts).toString("utf8");
          this.parts = [];
          this.emit("text", text);
        }
      }
    }
  }

  _send(op, payload) {
    const mask = crypto.randomBytes(4);
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | op, 0x80 | n])
      : n < 65536 ? Buffer.from([0x80 | op, 0x80 | 126, n >> 8, n & 0xff])
      : Buffer.concat([Buffer.from([0x80 | op, 0x80 | 127]), bigU64(n)]);
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3];
    if (!this.socket.destroyed) this.socket.write(Buffer.concat([head, mask, body]));
  }

  sendText(text) { this._send(0x1, Buffer.from(text, "utf8")); }

  close(code) {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code, 0);
    this._send(0x8, p);
  }
}

function bigU64(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

// --- the demo: what an app does ------------------------------------------------------------

async function demo(peer, channel) {
  const p4 = P4Client.fromProfile(process.env.P4_HOME, process.env.P4_TOKEN);
  const out = (obj) => console.log(JSON.stringify(obj));
  out({ step: "whoami", app: (await p4.whoami()).app });
  out({ step: "peers", peers: (await p4.peers()).map((p) => p.name) });
  const st = await p4.status();
  out({ step: "status", states: st.map((s) => [s.name, s.state, s.generation, s.path]) });
  // 1. request/response: send durably, then long-poll for what comes back
  const key = crypto.randomUUID();
  const sent = await p4.send(peer, channel, "hello over HTTP", key);
  const again = await p4.send(peer, channel, "hello over HTTP", key);
  out({ step: "send", id: sent.id, replayed: again.replayed, same: again.id === sent.id });
  const got = await p4.receive({ waitMs: 5000 });
  out({ step: "receive", texts: got.map((m) => m.data.toString("utf8")) });
  out({ step: "confirm", ...(await p4.confirm(got.map((m) => m.id))) });
  // 2. the stream: send with credit both ways, receive, confirm, grant one more
  const s = await p4.stream({ credit: 4 });
  out({ step: "hello", send_window: s.hello.send_window });
  const arrived = new Promise((resolve) => s.once("message", resolve));
  const acc = await s.send(peer, channel, Buffer.from([0x70, 0x34, 0x00, 0xff]));
  const m = await arrived;
  out({ step: "stream", accepted: acc.type, bytes: [...m.data] });
  const conf = await s.confirm([m.id]);
  s.credit(1);
  out({ step: "stream-confirm", confirmed: conf.confirmed.length });
  try {
    await s.send(peer, "not-mine/x", "nope");
  } catch (e) {
    out({ step: "refused", code: e.code });
  }
  s.close();
  await new Promise((resolve) => s.once("close", resolve));
  out({ step: "done" });
}

module.exports = { P4Client, P4Error };

if (require.main === module) {
  const [cmd, peer, channel] = process.argv.slice(2);
  if (cmd !== "demo" || !peer || !channel || !process.env.P4_HOME || !process.env.P4_TOKEN) {
    console.error("usage: P4_HOME=DIR P4_TOKEN=p4tok_… node p4client.js demo PEER CHANNEL");
    process.exit(2);
  }
  demo(peer, channel).catch((e) => {
    console.error(`p4client: ${e.code || "ERROR"}: ${e.message}`);
    process.exit(1);
  });
}
