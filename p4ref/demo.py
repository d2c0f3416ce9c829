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

The network change, two ways:

- **in the network lab** (root, with ``tools/netlab``'s prerequisites; the default then): a lab
  of network namespaces (``tools/netlab``): the laptop and the phone each behind a home NAT
  (port-restricted), a cellular network behind a symmetric NAT, coturn as STUN/TURN on the
  lab's internet, and the private Tor network inside it (``tools/netlab/tor.py``: every relay
  on the lab's internet, each device's tor client in the device's namespace, with a control
  port and a SOCKS port on that namespace's 127.0.0.1, as a system tor has).  Every ``p4``
  command of a device runs in its namespace (``ip netns exec``), ``p4 up`` with ``--tor
  system:9051 --stun … --turn …`` (the lab's coturn).  Part-way through the file the laptop
  moves from Wi-Fi to cellular (a hard move: the Wi-Fi interface goes down before the cellular
  one is up, which kills its direct connection and its tor's circuits); ``p4 up`` sees the
  change (netlink), and the session resumes on a new generation.  The laptop's tor is told at
  once (``DisableNetwork`` 1 → 0, as the lab's test peers do; ``p4 up`` nudges only a tor it
  launched, p4-03 RDV-63, docs/network.md).  The lab (namespaces, coturn, tor processes) is
  removed afterwards by its own teardown and a sweep of its prefix.
- **otherwise** (not root, a prerequisite missing, ``--no-lab``, ``--tornet``): on loopback,
  the peers ask their link for a new generation through ``p4 up``'s CLI-only route ``POST
  /v1/p4cli/new-generation`` (the same switch a network change makes: new ICE, new DTLS, the
  session's messages carried over).

Nothing leaves the machine: on loopback tor listens on 127.0.0.1 only and WebRTC host candidates
are pinned to 127.0.0.1 (``p4 up --host-address 127.0.0.1``); the lab is not connected to the
root namespace at all.
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

__all__ = ["DemoResult", "lab_unavailable", "main", "run_demo"]

P4 = [sys.executable, "-m", "p4ref"]
ROLES = {"laptop": "a", "phone": "b"}  # lab device namespace of each profile
LAB_CONTROL_PORT = 9051  # each lab device's tor: control and SOCKS on its own 127.0.0.1
LAB_SOCKS_PORT = 9050


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
    lab: bool = False  # the network lab was used (else: a forced generation change on loopback)
    lab_prefix: str = ""  # the lab's namespace prefix (``p4nl-…-``)
    moved: bool = False  # the laptop moved from Wi-Fi to cellular during the transfer
    move_from: str = ""  # the laptop's address before and after the move
    move_to: str = ""
    resumed_after: float = 0.0  # s from the move until the new generation carried the session
    path_before: str = ""  # direct / turn / tor
    path_after: str = ""
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
        self.lab: Any = None  # tools.netlab.Lab when the demo runs in the network lab
        self.labtor: Any = None  # its tools.netlab.tor.LabTorNet
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
        if self.lab is not None:  # the device's own tor, in its namespace
            return f"system:{LAB_CONTROL_PORT}"
        return f"testnet:{self.net_dir}:{index}"

    def argv(self, who: str, *args: str) -> list[str]:
        """``p4 --home <who's profile> args…``, inside ``who``'s namespace in the lab."""
        cmd = [*P4, "--home", str(self.prof(who)), *args]
        return self.lab.argv(ROLES[who], *cmd) if self.lab is not None else cmd

    def p4(self, who: str, *args: str, timeout: float = 120, input: str | None = None
           ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(who, *args), capture_output=True,
                           text=True, timeout=timeout, check=False, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise DemoError(f"`p4 {' '.join(args[:2])}` on the {who} failed: {last}")
        return r

    def popen(self, who: str, *args: str, **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen(self.argv(who, *args), **kw)
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
            env = None
            if self.lab is not None:  # STUN/TURN: the lab's coturn; host candidates: all
                from tools.netlab import STUN_IP, STUN_PORT, TURN_PASSWORD, TURN_USER

                where = f"{STUN_IP}:{STUN_PORT}"
                opts = ["--stun", f"stun:{where}", "--turn", f"turn:{where}", "--turn-user",
                        TURN_USER]
                env = dict(os.environ, P4_TURN_PASSWORD=TURN_PASSWORD)
                d.append(f"STUN/TURN: the lab's coturn {where}")
            else:
                opts = ["--host-address", "127.0.0.1"]
            for i, who in enumerate(("laptop", "phone")):
                with open(self.up_log(who), "ab") as log:
                    self.ups[who] = self.popen(
                        who, "up", "--tor", self.tor(i), "--verbose", *opts,
                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True, env=env)
            for who in ("laptop", "phone"):
                self.wait_log(who, " ready", 120)
            end = time.monotonic() + 120
            while True:  # connected on a direct generation (generation 0 is the Tor path)
                docs = [self.status(w) for w in ("laptop", "phone")]
                if all(doc["peers"] and doc["peers"][0]["state"] == "connected"
                       and doc["peers"][0]["path"] in ("direct", "turn") for doc in docs):
                    break
                if time.monotonic() > end:
                    raise DemoError("the two `p4 up` did not connect within 120 s (logs: "
                                    f"{self.up_log('laptop')}, {self.up_log('phone')})")
                time.sleep(0.3)
            p = docs[0]["peers"][0]
            self.result.generation_before = int(p["generation"])
            self.result.path_before = str(p.get("path") or "")
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

    def phone_bytes(self) -> int:
        """Bytes the phone's link has received so far."""
        peers = self.api("phone", "GET", "/v1/p4cli/info").get("peers") or [{}]
        return int(peers[0].get("bytes_received") or 0)

    def move_laptop(self) -> None:
        """The lab's hard move of the laptop, Wi-Fi → cellular, then its tor is told at once
        (``DisableNetwork`` 1 → 0; ``p4 up`` nudges only a tor it launched, RDV-63)."""
        import stem.control

        from p4ref.io.netwatch import nudge_tor_sync

        role = ROLES["laptop"]
        was = ", ".join(sorted(self.lab.addresses(role)))
        self.lab.move(role, "cell")

        def nudge() -> None:  # all of it in the laptop's namespace: stem may reconnect
            with stem.control.Controller.from_port("127.0.0.1", LAB_CONTROL_PORT) as c:
                c.authenticate()
                nudge_tor_sync(c)

        try:
            self.lab.run_in(role, nudge)  # its control port, as `p4 up` there reaches it
        except Exception as exc:
            pids = subprocess.run(["ip", "netns", "pids", self.lab.ns(role)],
                                  capture_output=True, text=True, check=False).stdout.split()
            raise DemoError(f"the laptop's tor did not answer on 127.0.0.1:{LAB_CONTROL_PORT} in"
                            f" its namespace ({exc}; {len(pids)} processes there)") from exc
        self.result.moved = True
        self.result.move_from = f"Wi-Fi ({was})"
        self.result.move_to = f"cellular ({', '.join(sorted(self.lab.addresses(role)))})"

    def send(self) -> Path:
        src = self.home / "holiday-video.bin"
        r = random.Random(4)
        with open(src, "wb") as f:
            left = self.size
            while left:
                n = min(left, 1 << 20)
                f.write(r.randbytes(n))
                left -= n
        self.result.sha256_sent = _sha256(src)
        in_lab = self.lab is not None
        at = 0.25 if in_lab else 0.2
        netchange = ("the laptop moves from Wi-Fi to cellular (hard: Wi-Fi down, then cellular"
                     " up)" if in_lab else "a forced generation change (new ICE + DTLS)")
        self.result.network_change = netchange
        self.say(f"     laptop: `p4 send {src.name} phone` ({_size(self.size)}); at"
                 f" {at * 100:.0f} %: {netchange}")
        t0 = time.monotonic()
        env = dict(os.environ, P4_PROGRESS="1")
        sender = self.popen("laptop", "send", str(src), "phone", stdout=subprocess.PIPE,
                            stderr=None, stdin=subprocess.DEVNULL, text=True, env=env)
        # part-way (the first fifth or quarter is on the wire): the change; then wait for the
        # session on a new generation (in the lab also after the file is through)
        changed = False
        t_change = 0.0
        # "how far" is what reached the phone (its link's byte counter): the laptop's own
        # counter runs ahead, into its durable outbox (all of it, on a fast or loaded machine)
        base = self.phone_bytes()
        before = self.result.generation_before
        switched: float | None = None
        rec: dict[str, Any] = {}
        tid = ""
        while sender.poll() is None or (in_lab and switched is None):
            info = self.api("laptop", "GET", "/v1/p4cli/info")
            recs = info.get("transfers") or []
            if recs:
                rec = recs[0]
                tid = rec["id"]
            running = sender.poll() is None
            frac = min(1.0, (self.phone_bytes() - base) / self.size) if running else 1.0
            if not changed and (frac >= at or not running):
                t_change = time.monotonic()
                if in_lab:
                    before = int(info["peers"][0]["generation"])
                    self.move_laptop()
                else:
                    got = self.api("laptop", "POST", "/v1/p4cli/new-generation",
                                   {"peer": "phone", "why": "forced"})
                    before = int(got.get("generation") or before)
                changed = True
                if in_lab:
                    switched = None
                    self.result.switched_at = frac
            elif changed and switched is None:
                peer = info["peers"][0]
                gen = int(peer["generation"])
                if gen > before and peer["state"] == "connected":
                    switched = frac
                    self.result.generation_after = gen
                    self.result.resumed_after = time.monotonic() - t_change
                    self.result.path_after = str(peer.get("path") or "")
                elif in_lab and time.monotonic() - t_change > 150:
                    raise DemoError("the session did not resume within 150 s of the move"
                                    f" (logs: {self.up_log('laptop')}, {self.up_log('phone')})")
            time.sleep(0.05 if in_lab else 0.1)
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
        if not in_lab:
            self.result.switched_at = switched
        self.result.steps.append((f"file sent ({_size(self.size)}) across the change", took))
        self.n += 1
        pct = f"{self.result.switched_at * 100:.0f} %"
        if in_lab:
            self.line(f"file sent; {self.result.move_from} → {self.result.move_to} at {pct};"
                      f" generation {before} → {self.result.generation_after} after"
                      f" {self.result.resumed_after:.1f} s (path {self.result.path_after}),"
                      f" {self.result.attempts} attempt(s): the transfer went on, no restart",
                      took)
        else:
            self.line(f"file sent; generation {before} → {self.result.generation_after} at"
                      f" {pct}, {self.result.attempts} attempt(s): the transfer went on, no"
                      " restart", took)
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


def _repo_tools() -> str | None:
    """Make the checkout's ``tools/`` importable (the demo runs from the repository: ``p4ref``
    is installed in editable mode, ``tools`` is not installed); None, or why not."""
    import p4ref

    root = Path(p4ref.__file__).resolve().parent.parent
    if not (root / "tools" / "netlab" / "__init__.py").is_file():
        return "tools/netlab is not beside p4ref/ (run the demo from the repository checkout)"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return None


def lab_unavailable() -> str | None:
    """None if the demo can run in the network lab here, else why not (a few words)."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return "not root"
    reason = _repo_tools()
    if reason is None:
        from tools.netlab import check_prerequisites

        reason = check_prerequisites()
    if reason is None and not shutil.which("tor"):
        reason = "`tor` not found (Debian package tor; tools/bootstrap.sh installs it)"
    return reason


def _start_lab(demo: _Demo, home: Path) -> None:
    """The lab and the private Tor network inside it; each device's tor gets a control port
    and a SOCKS port on its namespace's 127.0.0.1 (``p4 … --tor system:9051`` there)."""
    from tools.netlab import Lab, sweep
    from tools.netlab.tor import LabTorNet

    with demo.step("network lab: laptop and phone each behind a home NAT, a cellular network,"
                   " coturn (STUN/TURN)") as d:
        sweep()  # labs whose owner died (a demo killed with SIGKILL)
        demo.lab = Lab({ROLES["laptop"]: "port-restricted", ROLES["phone"]: "port-restricted"})
        demo.result.lab_prefix = demo.lab.prefix
        demo.lab.up()
        demo.result.lab = True
        homes = demo.lab.homes
        d.append(f"laptop {homes['a'].wlan_ip}, phone {homes['b'].wlan_ip} (Wi-Fi behind"
                 f" port-restricted NATs), cellular {demo.lab.routers['rc'].lan_gw}/24"
                 " (symmetric NAT)")
    with demo.step("private Tor network inside the lab (relays on its internet, each"
                   " device's tor in its namespace)") as d:
        demo.labtor = LabTorNet(lab=demo.lab, authorities=1, relays=5, base_dir=str(home / "tor"))
        demo.labtor.start(180)
        for i in range(2):
            c = demo.labtor.controller(i)
            try:
                c.set_options([
                    ("ControlPort", f"unix:{demo.labtor.control_socket(i)}"),
                    ("ControlPort", f"127.0.0.1:{LAB_CONTROL_PORT}"),
                    ("SocksPort", f"unix:{demo.labtor.socks_socket(i)} ExtendedErrors"),
                    ("SocksPort", f"127.0.0.1:{LAB_SOCKS_PORT} ExtendedErrors")])
            finally:
                c.close()
        d.append("1 authority and 5 relays; both devices' tor bootstrapped behind their NATs")


def run_demo(home: Path, *, net_dir: str | None = None, size: int = 8 << 20,
             out: Any = None, lab: bool = False) -> DemoResult:
    """Run the whole demo under ``home`` (which it fills and leaves for the caller to remove).
    ``lab``: in the network lab (root; :func:`lab_unavailable` says whether it can run), the
    laptop moving from Wi-Fi to cellular mid-transfer; else on loopback with a forced
    generation change. ``net_dir``: an already-running private Tor network (``TorNet.dir``,
    loopback only); else one is started and stopped here.  Raises :class:`DemoError` on a
    failed step, after cleaning up (the lab too: its teardown, then a sweep of its prefix)."""
    from .io.tornet import TorNet

    if lab and net_dir is not None:
        raise DemoError("a running private Tor network (--tornet) is on loopback, not in the lab")
    out = out or sys.stdout
    net: TorNet | None = None
    demo = _Demo(home, net_dir or "", size, out)
    t_all = time.monotonic()
    owner = os.getpid()
    try:
        if lab:
            reason = _repo_tools()
            if reason is not None:
                raise DemoError(reason)
            _start_lab(demo, home)
        elif net_dir is None:
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
        src = demo.send()
        demo.verify(src)
    finally:
        if os.getpid() != owner:  # a forked child (pyroute2 forks without exec) never cleans up
            os._exit(1)
        t0 = time.monotonic()
        demo.stop_all()
        if net is not None:
            net.stop()
        if demo.labtor is not None:
            demo.labtor.stop()
        if demo.lab is not None:
            from tools.netlab import sweep

            demo.lab.down()
            sweep(demo.lab.prefix)  # anything its teardown missed
        what = "p4 up, tor stopped" + (", lab removed" if demo.lab is not None else "")
        demo.result.steps.append((f"clean-up ({what})", time.monotonic() - t0))
    demo.result.steps.append(("whole demo", time.monotonic() - t_all))
    return demo.result


_PATHS = {"direct": "directly", "turn": "relayed by the lab's TURN server",
          "tor": "over Tor (no direct path yet)"}


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
    if res.lab:
        where = ("a private Tor network inside a network lab (each device's tor client in its"
                 " own network namespace, behind its home NAT)")
        met = ("Each ran `p4 up` in its namespace; they found each other through their pair's"
               " onion services and connected through their NATs, "
               + _PATHS.get(res.path_before, "directly") + " (STUN/TURN: the lab's coturn).")
        change = (f"The laptop moved from {res.move_from} to {res.move_to} at {pct} of the"
                  f" {_size(res.size)} file (a hard move: its connection and its tor's"
                  f" circuits died with the Wi-Fi; its tor was told at once, as `p4 up` does only"
                  f" for a tor it launched itself); the session resumed on generation"
                  f" {res.generation_after} after {res.resumed_after:.1f} s, "
                  + _PATHS.get(res.path_after, res.path_after or "?") + "; nothing was re-sent"
                  f" from the start ({res.attempts} attempt)." if mid else
                  f"The laptop moved from {res.move_from} to {res.move_to}, but only after the"
                  f" file was through (a fast machine: try `p4 demo --size 200`); the session"
                  f" resumed on generation {res.generation_after} after"
                  f" {res.resumed_after:.1f} s.")
        gone = "Both `p4 up`, every tor and the lab (its namespaces, NATs, coturn) are gone"
    else:
        where = "a private Tor network"
        met = ("Each ran `p4 up`; they found each other through their pair's onion services and"
               " connected directly (WebRTC on this machine).")
        change = (f"While {_size(res.size)} were on the way, the session moved from generation"
                  f" {res.generation_before} to {res.generation_after} (at {pct} of the file)"
                  f" and the transfer carried on without starting over ({res.attempts}"
                  " attempt)." if mid else
                  f"The session moved from generation {res.generation_before} to"
                  f" {res.generation_after}, but only after the file was through (a fast"
                  " machine: try `p4 demo --size 200`).")
        gone = "Both `p4 up` and the Tor network were stopped"
    lines = [
        f"Two devices paired with a short code over {where} and both showed the same check"
        f" code ({res.sas[0]}).",
        met,
        "A chat line from the laptop arrived on the phone.",
        change,
        "The phone checked the file: its SHA-256 matches the original.",
        gone + ("." if keep else "; the temporary profiles are removed."),
    ]
    for ln in lines:
        print("  • " + ln, file=out)


def _no_lab_reason(no_lab: bool, tornet: str | None) -> str | None:
    """Why ``p4 demo`` runs on loopback (None: it runs in the network lab)."""
    if no_lab:
        return "--no-lab"
    if tornet:
        return "--tornet is a loopback Tor network"
    return lab_unavailable()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="p4 demo", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the profiles' directory")
    ap.add_argument("--size", type=int, default=8, metavar="MiB",
                    help="size of the file sent (default: %(default)s MiB)")
    ap.add_argument("--tornet", metavar="DIR",
                    help="use this running private Tor network (tools/tornet.py up --dir DIR;"
                         " loopback, so no network lab)")
    ap.add_argument("--no-lab", action="store_true",
                    help="loopback and a forced generation change even as root (default as"
                         " root: the network lab, the laptop moving from Wi-Fi to cellular)")
    args = ap.parse_args(argv)
    no_lab = _no_lab_reason(args.no_lab, args.tornet)
    home = Path(tempfile.mkdtemp(prefix="p4-demo-"))
    out = sys.stdout

    owner = os.getpid()

    def on_term(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a child forked without exec (pyroute2's netns helpers)
            os._exit(128 + signum)  # must die, not unwind into the demo's clean-up
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    if no_lab is None:
        print("P⁴ demo: two devices on this machine, offline, in a network lab (namespaces,"
              " NATs, a cellular network, coturn; nothing reaches the host's network)\n",
              file=out)
    else:
        print("P⁴ demo: two devices on this machine, offline (loopback only)\n"
              f"(network lab not used: {no_lab}; the network change is a forced generation"
              " change)\n", file=out)
    code = 0
    try:
        res = run_demo(home, net_dir=args.tornet, size=max(1, args.size) << 20, out=out,
                       lab=no_lab is None)
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
          " `p4 pair accept CODE` on the other, `p4 up` on both (with `--stun`/`--turn` when"
          " they are on different networks: docs/network.md), then `p4 send FILE NAME` and"
          " switch the laptop to your phone's hotspot while it runs.", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
