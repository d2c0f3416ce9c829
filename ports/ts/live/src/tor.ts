/**
 * A small Tor control-port driver (control-spec: AUTHENTICATE with the cookie, ADD_ONION) and
 * the onion listener the Node peer's signalling uses: the peer dials the onion address through
 * its own tor's SOCKS port and the signed RV frames travel on that stream, both ways.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";

export class TorControl {
  private buf = "";
  private waiters: ((lines: string[]) => void)[] = [];
  private lines: string[] = [];

  private constructor(private readonly sock: Socket) {
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => this.onData(d));
  }

  static async open(port: number, host = "127.0.0.1"): Promise<TorControl> {
    const sock = connect(port, host);
    await new Promise<void>((res, rej) => {
      sock.once("connect", () => res());
      sock.once("error", rej);
    });
    return new TorControl(sock);
  }

  private onData(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf("\r\n")) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      if (line.startsWith("650")) {
        const m = /^650 HS_DESC UPLOADED ([a-z2-7]{56}) /.exec(line);
        if (m?.[1] !== undefined) this.uploadWaiters.get(m[1])?.();
        continue;
      }
      this.lines.push(line);
      // a reply ends with "NNN " (space after the status code); "NNN-" and "NNN+" continue it
      if (/^\d{3} /.test(line)) {
        const reply = this.lines;
        this.lines = [];
        this.waiters.shift()?.(reply);
      }
    }
  }

  /** Send one command; resolve with its reply lines; reject unless the status is 250. */
  async command(cmd: string): Promise<string[]> {
    const p = new Promise<string[]>((res) => this.waiters.push(res));
    this.sock.write(cmd + "\r\n");
    const reply = await p;
    const last = reply[reply.length - 1] ?? "";
    // 250 OK; 251/252: ONION_CLIENT_AUTH_ADD replaced a key / decrypted a cached descriptor
    if (!/^25[0-2]/.test(last)) throw new Error(`tor: ${cmd.split(" ")[0]} failed: ${reply.join(" | ")}`);
    return reply;
  }

  async authenticateCookie(cookiePath: string): Promise<void> {
    const cookie = await readFile(cookiePath);
    await this.command(`AUTHENTICATE ${cookie.toString("hex")}`);
  }

  /** A new v3 onion service (key discarded) forwarding virtual port 80 to 127.0.0.1:`target`. */
  async addOnion(target: number): Promise<string> {
    const reply = await this.command(`ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:${target}`);
    const id = reply.map((l) => /^250-ServiceID=([a-z2-7]{56})$/.exec(l)?.[1]).find((x) => x !== undefined);
    if (id === undefined) throw new Error("tor: ADD_ONION gave no ServiceID");
    return `${id}.onion`;
  }

  /**
   * Publish the onion service of a derived key (p4-03 §4.2, §5.4, RDV-13): `ADD_ONION
   * ED25519-V3:<base64 of tor's 64-byte expanded secret key>` with exactly one authorised client
   * (`ClientAuthV3=<base32 x25519 public key>`, the peer's client-authorization key), virtual
   * port `vport` forwarded to 127.0.0.1:`target`. Checks that tor's ServiceID is the derived
   * address, then waits until tor reports at least one descriptor upload (HS_DESC UPLOADED).
   */
  async addOnionKey(expandedKey: Uint8Array, target: number, clientAuthPub: Uint8Array, expected: string, vport = 80, timeoutMs = 60000): Promise<string> {
    const uploaded = this.waitUpload(expected, timeoutMs);
    const blob = Buffer.from(expandedKey).toString("base64");
    const auth = base32(clientAuthPub);
    const reply = await this.command(`ADD_ONION ED25519-V3:${blob} Flags=DiscardPK,V3Auth Port=${vport},127.0.0.1:${target} ClientAuthV3=${auth}`);
    const id = reply.map((l) => /^250-ServiceID=([a-z2-7]{56})$/.exec(l)?.[1]).find((x) => x !== undefined);
    if (id !== expected) throw new Error(`tor: ServiceID ${String(id)} is not the derived onion ${expected}`);
    await uploaded;
    return id;
  }

  /** Dial side (p4-03 §4.2): `ONION_CLIENT_AUTH_ADD <address> x25519:<base64 private key>`. */
  async addClientAuth(address: string, priv: Uint8Array): Promise<void> {
    await this.command(`ONION_CLIENT_AUTH_ADD ${address} x25519:${Buffer.from(priv).toString("base64")}`);
  }

  async delOnion(address: string): Promise<void> {
    await this.command(`DEL_ONION ${address}`);
  }

  private uploadWaiters = new Map<string, () => void>();
  private eventsOn = false;

  private async waitUpload(address: string, timeoutMs: number): Promise<void> {
    if (!this.eventsOn) {
      this.eventsOn = true;
      await this.command("SETEVENTS HS_DESC");
    }
    return new Promise<void>((res, rej) => {
      const t = setTimeout(() => { this.uploadWaiters.delete(address); rej(new Error(`tor: no descriptor upload of ${address} within ${timeoutMs} ms`)); }, timeoutMs);
      this.uploadWaiters.set(address, () => { clearTimeout(t); this.uploadWaiters.delete(address); res(); });
    });
  }

  close(): void {
    this.sock.end();
  }
}

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/** RFC 4648 base32, upper case, no padding (tor's `ClientAuthV3=` form). */
export function base32(b: Uint8Array): string {
  let out = "", acc = 0, bits = 0;
  for (const x of b) {
    acc = ((acc << 8) | x) & 0xffff;
    bits += 8;
    while (bits >= 5) { out += B32[(acc >> (bits - 5)) & 31]; bits -= 5; }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

/** Cut P⁴ frames (5-byte header: version, type, flags, 16-bit length) from a byte stream. */
export function frameCutter(onFrame: (f: Uint8Array) => void): (d: Uint8Array) => void {
  let buf = new Uint8Array(0);
  return (d) => {
    const n = new Uint8Array(buf.length + d.length);
    n.set(buf);
    n.set(d, buf.length);
    buf = n;
    while (buf.length >= 5) {
      const len = (((buf[3] ?? 0) << 8) | (buf[4] ?? 0)) + 5;
      if (buf.length < len) break;
      onFrame(buf.slice(0, len));
      buf = buf.slice(len);
    }
  };
}

/**
 * SOCKS5 CONNECT (RFC 1928, domain name) to `host`:`port` through tor's SOCKS port on
 * 127.0.0.1; resolves with the connected socket, rejects with the SOCKS reply code (tor's
 * 0xF0–0xF7 extended errors name onion-service failures). It authenticates with a username
 * (RFC 1929) that no other call used, so tor puts the stream on a circuit of its own (p4-03
 * RDV-79: a redial must not reuse the dead rendezvous circuit of the stream it replaces).
 */
export function socks5Connect(socksPort: number, host: string, port: number,
  isolation: string = randomBytes(8).toString("hex")): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const sock = connect(socksPort, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let stage: "method" | "auth" | "connect" = "method";
    const fail = (e: Error): void => { sock.destroy(); reject(e); };
    sock.once("error", fail);
    sock.on("connect", () => sock.write(Buffer.from([5, 1, 2])));
    const request = (): void => {
      const name = Buffer.from(host, "ascii");
      sock.write(Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 0xff])]));
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (stage === "method" && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 2) return fail(new Error("SOCKS: username authentication refused"));
        buf = buf.subarray(2);
        stage = "auth";
        const user = Buffer.from(isolation, "ascii");
        sock.write(Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([2]), Buffer.from("p4", "ascii")]));
      }
      if (stage === "auth" && buf.length >= 2) {
        if (buf[1] !== 0) return fail(new Error("SOCKS: username authentication failed"));
        buf = buf.subarray(2);
        stage = "connect";
        request();
      }
      if (stage === "connect" && buf.length >= 5) {
        if (buf[1] !== 0) return fail(new Error(`SOCKS reply 0x${(buf[1] ?? 0).toString(16)}`));
        const alen = buf[3] === 1 ? 4 : buf[3] === 4 ? 16 : 1 + (buf[4] ?? 0);
        if (buf.length < 4 + alen + 2) return;
        sock.off("data", onData);
        sock.off("error", fail);
        const rest = buf.subarray(4 + alen + 2);
        if (rest.length > 0) sock.unshift(rest);
        resolve(sock);
      }
    };
    sock.on("data", onData);
  });
}

/** Listen on 127.0.0.1 for the onion service's streams. */
export async function listenLocal(onStream: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onStream);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as { port: number }).port };
}
