/**
 * A small Tor control-port driver (control-spec: AUTHENTICATE with the cookie, ADD_ONION) and
 * the onion listener the Node peer's signalling uses: the peer dials the onion address through
 * its own tor's SOCKS port and the signed RV frames travel on that stream, both ways.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { readFile } from "node:fs/promises";

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
    if (!last.startsWith("250")) throw new Error(`tor: ${cmd.split(" ")[0]} failed: ${reply.join(" | ")}`);
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

  close(): void {
    this.sock.end();
  }
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

/** Listen on 127.0.0.1 for the onion service's streams. */
export async function listenLocal(onStream: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onStream);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as { port: number }).port };
}
