"""``p4 demo``: two devices on this machine, as a user would run them, end to end.

1. start the project's private Tor network on loopback (real ``tor`` processes);
2. ``p4 init`` two device profiles, "laptop" and "phone";
3. ``p4 pair invite`` on the laptop, ``p4 pair accept CODE`` on the phone: pairing by short code
   over Tor (both sides store the pair and show the same SAS);
4. ``p4 up`` on both (two long-running processes): each publishes its per-pair rendezvous onion,
   they find each other and open a direct WebRTC session (loopback);
5. ``p4 chat``: a line from the laptop arrives on the phone;
6. ``p4 send FILE phone`` with its progress bar; part-way through, the session moves to a new
   generation (a new direct connection) and the transfer goes on where it was;
7. ``p4 recv`` on the phone: the file's SHA-256 matches the original;
8. a plain-language summary with timings; everything (``p4 up`` processes, Tor, the temporary
   profiles) is stopped and removed, on success, failure and Ctrl-C alike.

The network change: the peers ask their link for a new generation through ``p4 up``'s CLI-only
route ``POST /v1/p4cli/new-generation`` (the same switch a network change makes: new ICE, new
DTLS, the session's messages carried over).  Moving a peer between network namespaces of
``tools/netlab`` (root) is not wired into the demo yet; it says so when run as root.

Nothing leaves the machine: tor listens on 127.0.0.1 only, and WebRTC host candidates are pinned
to 127.0.0.1 (``p4 up --host-address 127.0.0.1``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoResult", "main", "run_demo"]

P4 = [sys.executable, "-m", "p4ref"]


class DemoError(Exception):
    """A step failed: one line saying which and why."""


@dataclass
class DemoResult:
    """What the demo observed (the test asserts on these, not on timings)."""

    paired: bool = False
    sas: tuple[str, str] = ("", "")
    chat_arrived: bool = False
    generation_before: int = 0
    generation_after: int = 0
    switched_at: float = 0.0  # fraction of the file sent when the new generation opened
    attempts: int = 0
    resumed_from: int = 0
    size: int = 0
    sha256_sent: str = ""
    sha256_received: str = ""
    network_change: str = ""
    steps: list[tuple[str, float]] = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class _Demo:
    def __init__(self, home: Path, net_dir: str, size: int, out: Any) -> None:
        self.home = home
        self.net_dir = net_dir
        self.size = size
        self.out = out
        self.procs: list[subprocess.Popen[Any]] = []
        self.ups: dict[str, subprocess.Popen[Any]] = {}
        self.result = DemoResult(size=size)
        self.n = 0

    # ------------------------------------------------------------------ plumbing

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """One numbered line per step, with its timing; the body may append details."""
        self.n += 1
        t0 = time.monotonic()
        detail: list[str] = []
        yield detail
        took = time.monotonic() - t0
        self.result.steps.append((title, took))
        self.line(title + (" — " + "; ".join(detail) if detail else ""), took)

    def line(self, text: str, took: float) -> None:
        self.say(f" {self.n:>2}. [{took:5.1f} s] {text}")

    def prof(self, name: str) -> Path:
        return self.home / name

    def tor(self, index: int) -> str:
        return f"testnet:{self.net_dir}:{index}"

    def p4(self, who: str, *args: str, timeout: float = 120, input: str | None = None
           ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*P4, "--home", str(self.prof(who)), *args], capture_output=True,
                           text=True, timeout=timeout, check=False, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise DemoError(f"`p4 {' '.join(args[:2])}` on the {who} failed: {last}")
        return r

    def popen(self, who: str, *args: str, **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen([*P4, "--home", str(self.prof(who)), *args], **kw)
        self.procs.append(p)
        return p

    def api(self, who: str, method: str, path: str, body: dict[str, Any] | None = None
            ) -> Any:
        """One request to the ``p4 up`` of ``who`` through the CLI's local API client."""
        from .cli._client import Client

        async def go() -> Any:
            async with Client(self.prof(who)) as c:
                return await (c.get(path) if method == "GET" else c.post(path, body or {}))

        return asyncio.run(go())

    def status(self, who: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.p4(who, "status", "--json").stdout)
        return doc

    def up_log(self, who: str) -> Path:
        return self.home / f"{who}.up.log"

    def wait_log(self, who: str, needle: str, timeout: float) -> None:
        proc, log = self.ups[who], self.up_log(who)
        end = time.monotonic() + timeout
        while needle not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise DemoError(f"`p4 up` on the {who} exited: {' | '.join(tail)}")
            if time.monotonic() > end:
                raise DemoError(f"`p4 up` on the {who} not {needle.strip()} after {timeout:.0f} s"
                                f" (log: {log})")
            time.sleep(0.1)

    # ------------------------------------------------------------------ the steps

    def profiles(self) -> None:
        with self.step("two devices: `p4 init` for a laptop and a phone") as d:
            procs = {who: self.popen(who, "init", stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                     for who in ("laptop", "phone")}  # both at once
            for who, proc in procs.items():
                out, err = proc.communicate(timeout=60)
                if proc.returncode != 0:
                    raise DemoError(f"`p4 init` on the {who} failed: {err.strip()}")
                dev = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                            if ln.startswith("Device ID:")), "?")
                d.append(f"{who} {dev[:15]}…")

    def pair(self) -> None:
        with self.step("pairing by short code over Tor") as d:
            inv = self.popen("laptop", "pair", "invite", "--tor", self.tor(0), "--name", "phone",
                             "--timeout", "180", stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            assert inv.stdout is not None
            code = ""
            for line in inv.stdout:
                if line.strip().startswith("p4 pair accept "):
                    code = line.split()[-1]
                    break
            if not code:
                err = inv.stderr.read() if inv.stderr else ""
                raise DemoError(f"`p4 pair invite` showed no code: {err.strip()}")
            d.append(f"laptop: `p4 pair invite` → {code}; phone: `p4 pair accept {code}`")
            acc = self.p4("phone", "pair", "accept", code, "--tor", self.tor(1), "--name",
                          "laptop", timeout=180)
            rest, err = inv.communicate(timeout=60)
            if inv.returncode != 0:
                raise DemoError(f"`p4 pair invite` failed: {err.strip()}")
            sas_l = next((ln.split(":")[-1].strip() for ln in rest.splitlines()
                          if ln.startswith("Compare this code")), "?")
            sas_p = next((ln.split(":")[-1].strip() for ln in acc.stdout.splitlines()
                          if ln.startswith("Compare this code")), "?")
            self.result.sas = (sas_l, sas_p)
            self.result.paired = sas_l == sas_p != "?"
            d.append(f"both show the check code {sas_l}" if self.result.paired
                     else f"SAS differ: {sas_l} / {sas_p}")

    def up(self) -> None:
        with self.step("`p4 up` on both (onion rendezvous, then direct WebRTC)") as d:
            for i, who in enumerate(("laptop", "phone")):
                with open(self.up_log(who), "ab") as log:
                    self.ups[who] = self.popen(
                        who, "up", "--tor", self.tor(i), "--host-address", "127.0.0.1",
                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True)
            for who in ("laptop", "phone"):
                self.wait_log(who, " ready", 120)
            end = time.monotonic() + 120
            while True:
                docs = [self.status(w) for w in ("laptop", "phone")]
                if all(doc["peers"] and doc["peers"][0]["state"] == "connected"
                       for doc in docs):
                    break
                if time.monotonic() > end:
                    raise DemoError("the two `p4 up` did not connect within 120 s (logs: "
                                    f"{self.up_log('laptop')}, {self.up_log('phone')})")
                time.sleep(0.3)
            p = docs[0]["peers"][0]
            self.result.generation_before = int(p["generation"])
            rtt = f", RTT {p['rtt_ms']:.1f} ms" if p.get("rtt_ms") is not None else ""
            d.append(f"connected, generation {p['generation']}, path {p['path']}{rtt}")

    def chat(self) -> None:
        line = "hello from the laptop 👋"
        with self.step("a chat line") as d:
            self.p4("laptop", "chat", "phone", input=line + "\n")
            reader = self.popen("phone", "chat", "laptop", "--json", "--linger", "60",
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
            assert reader.stdout is not None
            try:
                for out in reader.stdout:
                    with contextlib.suppress(ValueError):
                        if json.loads(out).get("text") == line:
                            self.result.chat_arrived = True
                            break
            finally:
                reader.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    reader.communicate(timeout=10)
            if not self.result.chat_arrived:
                raise DemoError("the chat line did not arrive on the phone")
            d.append(f"laptop: `p4 chat phone`; the phone's `p4 chat` shows {line!r}")

    def send(self, netchange: str) -> Path:
        src = self.home / "holiday-video.bin"
        r = random.Random(4)
        with open(src, "wb") as f:
            left = self.size
            while left:
                n = min(left, 1 << 20)
                f.write(r.randbytes(n))
                left -= n
        self.result.sha256_sent = _sha256(src)
        self.result.network_change = netchange
        self.say(f"     laptop: `p4 send {src.name} phone` ({_size(self.size)}); at 20 %:"
                 f" {netchange}")
        t0 = time.monotonic()
        env = dict(os.environ, P4_PROGRESS="1")
        sender = self.popen("laptop", "send", str(src), "phone", stdout=subprocess.PIPE,
                            stderr=None, stdin=subprocess.DEVNULL, text=True, env=env)
        # part-way: the first quarter is on the wire; then ask for a new generation
        forced = False
        before = self.result.generation_before
        switched: float | None = None
        rec: dict[str, Any] = {}
        tid = ""
        while sender.poll() is None:
            info = self.api("laptop", "GET", "/v1/p4cli/info")
            recs = info.get("transfers") or []
            if recs:
                rec = recs[0]
                tid = rec["id"]
            if not forced and rec and rec.get("sent", 0) >= self.size // 5:
                got = self.api("laptop", "POST", "/v1/p4cli/new-generation",
                               {"peer": "phone", "why": "forced"})
                before = int(got.get("generation") or before)
                forced = True
            elif forced and switched is None:
                gen = int(info["peers"][0]["generation"])
                if gen > before:
                    switched = rec.get("sent", self.size) / self.size if rec else 1.0
                    self.result.generation_after = gen
            time.sleep(0.1)
        took = time.monotonic() - t0
        out = sender.communicate()[0]
        if sender.returncode != 0:
            raise DemoError("`p4 send` failed (see above)")
        if out.strip():
            self.say("     " + out.strip())
        if tid:
            self.result.attempts = int(
                self.api("laptop", "GET", f"/v1/p4cli/transfers/{tid}")["attempts"])
        self.result.generation_before = before
        if switched is None:  # the file was through before the new generation opened
            gen = int(self.status("laptop")["peers"][0]["generation"])
            self.result.generation_after = gen
            switched = 1.0
        self.result.switched_at = switched
        self.result.steps.append((f"file sent ({_size(self.size)}) across the change", took))
        self.n += 1
        pct = f"{switched * 100:.0f} %"
        self.line(f"file sent; generation {before} → {self.result.generation_after} at {pct},"
                  f" {self.result.attempts} attempt(s): the transfer went on, no restart", took)
        return src

    def verify(self, src: Path) -> None:
        with self.step("`p4 recv` on the phone: the file, verified") as d:
            r = self.p4("phone", "recv", "--wait", "--timeout", "60", "--json", timeout=90)
            recs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
            got = next((x for x in recs if x["name"] == src.name), None)
            if got is None:
                raise DemoError("the phone's inbox has no " + src.name)
            self.result.resumed_from = int(got.get("resumed_from") or 0)
            self.result.sha256_received = _sha256(Path(got["path"]))
            same = self.result.sha256_received == self.result.sha256_sent
            d.append(f"SHA-256 {self.result.sha256_received[:16]}… "
                     + ("matches the original" if same else "DIFFERS from the original"))
            if not same:
                raise DemoError("the received file differs from the one sent")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    p.kill()
                p.wait()


def _netchange_kind() -> str:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ("a forced generation change (new ICE + DTLS; as root, too: moving a peer"
                " in tools/netlab is not wired into the demo yet)")
    return "a forced generation change (new ICE + DTLS; not root, so no network lab)"


def run_demo(home: Path, *, net_dir: str | None = None, size: int = 8 << 20,
             out: Any = None) -> DemoResult:
    """Run the whole demo under ``home`` (which it fills and leaves for the caller to remove).
    ``net_dir``: an already-running private Tor network (``TorNet.dir``); else one is started
    and stopped here.  Raises :class:`DemoError` on a failed step, after cleaning up."""
    from .io.tornet import TorNet

    out = out or sys.stdout
    net: TorNet | None = None
    demo = _Demo(home, net_dir or "", size, out)
    t_all = time.monotonic()
    try:
        if net_dir is None:
            with demo.step("private Tor network on 127.0.0.1 (authorities, relays, clients)"
                           ) as d:
                net = TorNet()
                net.start(timeout=180)
                demo.net_dir = net.dir
                d.append(f"{len(net.clients)} clients bootstrapped")
        demo.profiles()
        demo.pair()
        demo.up()
        demo.chat()
        src = demo.send(_netchange_kind())
        demo.verify(src)
    finally:
        t0 = time.monotonic()
        demo.stop_all()
        if net is not None:
            net.stop()
        demo.result.steps.append(("clean-up (p4 up, tor stopped)", time.monotonic() - t0))
    demo.result.steps.append(("whole demo", time.monotonic() - t_all))
    return demo.result


def _summary(res: DemoResult, out: Any, keep: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="What just happened", title_justify="left", show_lines=False)
    t.add_column("step")
    t.add_column("time", justify="right")
    for name, seconds in res.steps:
        t.add_row(name, f"{seconds:.1f} s")
    Console(file=out).print(t)
    pct = f"{res.switched_at * 100:.0f} %"
    mid = res.switched_at < 1.0
    lines = [
        f"Two devices paired with a short code over a private Tor network and both showed"
        f" the same check code ({res.sas[0]}).",
        "Each ran `p4 up`; they found each other through their pair's onion services and"
        " connected directly (WebRTC on this machine).",
        "A chat line from the laptop arrived on the phone.",
        (f"While {_size(res.size)} were on the way, the session moved from generation"
         f" {res.generation_before} to {res.generation_after} (at {pct} of the file) and the"
         f" transfer carried on without starting over ({res.attempts} attempt)."
         if mid else
         f"The session moved from generation {res.generation_before} to"
         f" {res.generation_after}, but only after the file was through (a fast machine:"
         " try `p4 demo --size 200`)."),
        "The phone checked the file: its SHA-256 matches the original.",
        "Both `p4 up` and the Tor network were stopped" + (
            "." if keep else "; the temporary profiles are removed."),
    ]
    for ln in lines:
        print("  • " + ln, file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="p4 demo", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the profiles' directory")
    ap.add_argument("--size", type=int, default=8, metavar="MiB",
                    help="size of the file sent (default: %(default)s MiB)")
    ap.add_argument("--tornet", metavar="DIR",
                    help="use this running private Tor network (tools/tornet.py up --dir DIR)")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="p4-demo-"))
    out = sys.stdout

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    print("P⁴ demo: two devices on this machine, offline (loopback only)\n", file=out)
    code = 0
    try:
        res = run_demo(home, net_dir=args.tornet, size=max(1, args.size) << 20, out=out)
    except DemoError as exc:
        print(f"p4 demo: failed: {exc}" + ("" if args.keep else " (`p4 demo --keep` keeps"
              " the logs)"), file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("p4 demo: interrupted; everything stopped", file=sys.stderr)
        code = 130
    except Exception as exc:  # a step's tool failed unexpectedly: still one line
        if os.environ.get("P4_DEBUG"):
            raise
        print(f"p4 demo: failed: {type(exc).__name__}: {exc} (P4_DEBUG=1 for a traceback)",
              file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, old)
        if args.keep:
            print(f"profiles and logs kept in {home}", file=out)
        else:
            shutil.rmtree(home, ignore_errors=True)
    if code:
        return code
    print(file=out)
    _summary(res, out, args.keep)
    print("\nNext, on two real machines: `p4 init` on each, `p4 pair invite` on one and"
          " `p4 pair accept CODE` on the other, `p4 up` on both, then `p4 send FILE NAME`.",
          file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
