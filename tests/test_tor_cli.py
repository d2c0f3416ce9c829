"""`p4 pair invite` / `p4 pair accept` as a person runs them: two processes, two profiles on disk,
two tor clients of the private network (``--tor testnet:DIR:N``)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from p4ref.framing import Frame, FrameType, encode_cbor, encode_frame
from p4ref.framing import Path as FramePath
from p4ref.io.store import Profile
from p4ref.io.tor import TorConfig, TorDriver
from p4ref.pairing import parse_code, parse_uri
from p4ref.pairing._invite import EVEN_WORDS
from p4ref.rendezvous._onion import onion_address_from_seed

P4 = [sys.executable, "-m", "p4ref"]
CODE_LINE = re.compile(r"^  p4 pair accept (\d+-[a-z]+-[a-z]+)$")
URI_LINE = re.compile(r"^  p4 pair accept '(p4:pair\?[^']+)'$")
SAS = re.compile(r"Compare this code with the other device: (\d{6})")


def _p4(home: Path, *args: str, timeout: float = 200,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*P4, "--home", str(home), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def _clean(stderr: str) -> None:
    """Whatever happened, no traceback and no asyncio complaint reached the user."""
    assert "Traceback" not in stderr and "Task exception" not in stderr, stderr
    assert "never retrieved" not in stderr and "INTERNAL_ERROR" not in stderr, stderr


class Inviter:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.screen: list[str] = []
        self.code = self.uri = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            self.screen.append(line.rstrip("\n"))
            if m := URI_LINE.match(self.screen[-1]):
                self.uri = m.group(1)
            if m := CODE_LINE.match(self.screen[-1]):
                self.code = m.group(1)
                break
        assert self.code, "\n".join(self.screen) + (proc.stderr.read() if proc.stderr else "")

    def finish(self, timeout: float = 200) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "\n".join(self.screen) + "\n" + out, err


@contextmanager
def inviting(home: Path, tornet: Any, *args: str) -> Iterator[Inviter]:
    with subprocess.Popen(
        [*P4, "--home", str(home), "pair", "invite", "--tor", f"testnet:{tornet.dir}:0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    ) as proc:
        try:
            yield Inviter(proc)
        finally:
            if proc.poll() is None:
                proc.kill()


def _profiles(tmp_path: Path) -> tuple[Path, Path]:
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    assert _p4(laptop, "init").returncode == 0
    assert _p4(phone, "init").returncode == 0
    return laptop, phone


def test_pair_invite_and_accept_commands_over_tor(tornet: Any, tmp_path: Path) -> None:
    laptop, phone = _profiles(tmp_path)
    with inviting(laptop, tornet, "--name", "phone", "--timeout", "180") as inv:
        # the code comes from the environment, not the command line (shell history)
        accepted = _p4(phone, "pair", "accept", "--tor", f"testnet:{tornet.dir}:1",
                       "--name", "laptop", env={"P4_CODE": inv.code})
        rc, out, err = inv.finish()
    assert accepted.returncode == 0, accepted.stderr
    assert rc == 0, err
    _clean(err + accepted.stderr)
    assert "█" in out and "s=" not in out.lower()  # a QR, and never the URI's secret
    screen = inv.screen
    assert len(screen) <= 23 and max(len(line) for line in screen) <= 80
    assert "publishing the invitation" in err
    assert "connecting to the other device" in accepted.stderr
    sas_a, sas_b = SAS.search(out), SAS.search(accepted.stdout)
    assert sas_a and sas_b and sas_a.group(1) == sas_b.group(1)
    assert "phone" in _p4(laptop, "peers").stdout
    assert "laptop" in _p4(phone, "peers").stdout

    # The phone forgets the laptop and they pair again: the laptop replaces its stale record.
    assert _p4(phone, "peers", "forget", "laptop").returncode == 0
    with inviting(laptop, tornet, "--replace", "--timeout", "180") as inv:
        again = _p4(phone, "pair", "accept", "--tor", f"testnet:{tornet.dir}:1",
                    "--name", "laptop", env={"P4_CODE": inv.code})
        rc, out, err = inv.finish()
    assert again.returncode == 0 and rc == 0, again.stderr + err
    a, b = Profile.open(laptop).peers(), Profile.open(phone).peers()
    assert [x.name for x in a] == ["phone"] and [x.name for x in b] == ["laptop"]
    assert a[0].pair_root_key == b[0].pair_root_key


async def _junk_streams(tornet: Any, onions: list[str]) -> None:
    """What anyone can send to a short code's onion (its key is public) without a guess."""
    junk = [
        b"",
        b"GET / HTTP/1.1\r\n\r\n",
        encode_frame(Frame(FrameType.PAIR_PAKE, 0, encode_cbor({1: 1, 2: bytes(32)})),
                     FramePath.TOR),  # a PAIR_PAKE whose element is not a group element
        encode_frame(Frame(FrameType.PAIR_PAKE, 0, encode_cbor({1: 1, 2: b"x"})),
                     FramePath.TOR),  # a malformed PAIR_PAKE
    ]
    tor = TorDriver(TorConfig.testnet(tornet.clients[1]))
    await tor.start()
    try:
        for onion in onions:
            for data in junk:
                r, w = await tor.open_stream(onion, 80, timeout=60, fresh_circuit=True)
                w.write(data)
                await w.drain()
                if data:
                    await asyncio.wait_for(r.read(4096), 30)  # the inviter's ERROR, or EOF
                w.close()
    finally:
        await tor.close()


def test_junk_streams_do_not_stop_a_real_accepter(tornet: Any, tmp_path: Path) -> None:
    """Issue 8 §1.3: streams that guess nothing neither burn nor stall the invitation."""
    laptop, phone = _profiles(tmp_path)
    with inviting(laptop, tornet, "--show-uri", "--timeout", "240") as inv:
        onions = [onion_address_from_seed(parse_code(inv.code).onion_seed),
                  onion_address_from_seed(parse_uri(inv.uri).onion_seed)]
        asyncio.run(asyncio.wait_for(_junk_streams(tornet, onions), 200))
        accepted = _p4(phone, "pair", "accept", inv.code, "--tor", f"testnet:{tornet.dir}:1")
        rc, _, err = inv.finish()
    assert accepted.returncode == 0, accepted.stderr
    assert rc == 0, err
    _clean(err + accepted.stderr)
    assert SAS.search(accepted.stdout)


def test_wrong_code_burns_the_code_not_the_qr(tornet: Any, tmp_path: Path) -> None:
    """Issue 8 §1.5 + §1.3: a wrong guess spends the short code (on both devices: retyping it is
    refused before dialling) while the QR/URI invitation keeps working."""
    laptop, phone = _profiles(tmp_path)
    tor1 = f"testnet:{tornet.dir}:1"
    with inviting(laptop, tornet, "--show-uri", "--timeout", "240") as inv:
        c = parse_code(inv.code)
        wrong = f"{c.nameplate}-{c.words[0]}-{next(w for w in EVEN_WORDS if w != c.words[1])}"
        t0 = time.monotonic()
        guess = _p4(phone, "pair", "accept", wrong, "--tor", tor1)
        t_wrong = time.monotonic() - t0
        t0 = time.monotonic()
        again = _p4(phone, "pair", "accept", wrong, "--tor", tor1)
        t_again = time.monotonic() - t0
        t0 = time.monotonic()
        used = _p4(phone, "pair", "accept", inv.code, "--tor", tor1)  # right, but spent
        t_used = time.monotonic() - t0
        accepted = _p4(phone, "pair", "accept", "--tor", tor1, env={"P4_CODE": inv.uri})
        rc, _, err = inv.finish()
    print(f"\nwrong code: {t_wrong:.1f} s; retyped: {t_again:.1f} s; used: {t_used:.1f} s")
    for p in (guess, again):
        assert p.returncode == 1
        assert "wrong code, or someone guessing — get a new code from the other device" in (
            p.stderr)
        assert p.stderr.endswith("[PAIR_CONFIRM_FAILED]\n")
    assert "connecting" not in again.stderr  # refused before dialling
    assert used.returncode == 1 and "already used" in used.stderr, used.stderr
    assert used.stderr.endswith("[PAIR_INVITATION_BURNT]\n")
    assert "the QR code still works" in err
    assert accepted.returncode == 0, accepted.stderr
    assert rc == 0, err
    _clean(err + guess.stderr + again.stderr + used.stderr + accepted.stderr)
    assert t_again < 5 and t_wrong < 60


def test_unserved_code_and_expired_invitation_fail_clearly(tornet: Any, tmp_path: Path) -> None:
    """Issue 10 §1: a code nobody serves fails in about 30 s; an invitation nobody uses ends
    with one line (never "Task exception was never retrieved")."""
    laptop, phone = _profiles(tmp_path)
    with inviting(laptop, tornet, "--timeout", "5") as inv:
        t0 = time.monotonic()
        nobody = _p4(phone, "pair", "accept", "4242-adroitness-aardvark", "--tor",
                     f"testnet:{tornet.dir}:1")
        t_nobody = time.monotonic() - t0
        rc, _, err = inv.finish()
    print(f"\ncode nobody serves: {t_nobody:.1f} s")
    assert nobody.returncode == 1 and "no device is offering this code" in nobody.stderr
    assert nobody.stderr.count("\n") <= 3  # progress lines, then one error line
    assert 20 < t_nobody < 45
    assert rc == 1 and err.endswith("[PAIR_INVITATION_EXPIRED]\n"), err
    assert "nobody used the invitation" in err
    _clean(err + nobody.stderr)
