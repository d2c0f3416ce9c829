"""The ``p4`` command line: drive ``main([...])`` with temporary profiles (p4-02 §3)."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import os
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import qrcode

from p4ref import cli
from p4ref.cli import main, render_qr
from p4ref.cli import pair as pair_cli
from p4ref.errors import ErrorCode, P4Error
from p4ref.identity import Identity, parse_device_id
from p4ref.io.burnt import BURNT_FILE, BurntCodes
from p4ref.io.pair_tor import PairingResult
from p4ref.io.store import IDENTITY_FILE, PEERS_FILE, Profile
from p4ref.pairing import InviteUri, parse_uri

CODE = "7-adroitness-aardvark"

ROOT = Path(__file__).resolve().parent.parent
Cap = pytest.CaptureFixture[str]


def key(label: str) -> bytes:
    return Identity(hashlib.sha256(label.encode()).digest()).public_key


@pytest.fixture
def home(tmp_path: Path) -> str:
    return str(tmp_path / "p4")


def run(capsys: Cap, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_init_then_id(home: str, capsys: Cap) -> None:
    rc, out, err = run(capsys, "--home", home, "init")
    assert rc == 0 and err == ""
    device_id = out.splitlines()[-1].removeprefix("Device ID: ")
    parse_device_id(device_id)
    assert run(capsys, "--home", home, "id") == (0, device_id + "\n", "")
    assert run(capsys, "id", "--home", home) == (0, device_id + "\n", "")  # after the command too
    assert Profile.open(home).identity.device_id == device_id


def test_p4_home_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Cap) -> None:
    monkeypatch.setenv("P4_HOME", str(tmp_path / "env"))
    assert run(capsys, "init")[0] == 0
    assert (tmp_path / "env" / IDENTITY_FILE).exists()
    rc, out, _ = run(capsys, "id")
    assert rc == 0 and out.strip() == Profile.open(tmp_path / "env").identity.device_id


def test_init_refuses_existing(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    before = (Path(home) / IDENTITY_FILE).read_bytes()
    rc, out, err = run(capsys, "--home", home, "init")
    assert rc == 1 and out == ""
    assert err.startswith("p4: error: ") and err.endswith("[PROFILE_EXISTS]\n")
    assert err.count("\n") == 1
    assert (Path(home) / IDENTITY_FILE).read_bytes() == before


def test_errors_are_one_line(home: str, capsys: Cap) -> None:
    rc, _, err = run(capsys, "--home", home, "id")
    assert rc == 1 and err.endswith("[PROFILE_NOT_FOUND]\n") and "Traceback" not in err
    assert "p4 init" in err
    run(capsys, "--home", home, "init")
    (Path(home) / IDENTITY_FILE).write_text("garbage\n")
    rc, _, err = run(capsys, "--home", home, "peers")
    assert rc == 1 and err.count("\n") == 1 and err.endswith("[PROFILE_CORRUPT]\n")


def test_os_error_is_one_line(tmp_path: Path, capsys: Cap) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run(capsys, "--home", str(blocker / "sub"), "init")
    assert rc == 1 and err.startswith("p4: error: ") and err.endswith("[OS_ERROR]\n")


def test_unexpected_exception_is_one_line(
    home: str, capsys: Cap, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise ValueError("boom")

    monkeypatch.setattr(cli, "cmd_id", broken)
    monkeypatch.delenv("P4_DEBUG", raising=False)
    rc, _, err = run(capsys, "--home", home, "id")
    assert rc == 1 and err.count("\n") == 1 and err.endswith("[INTERNAL_ERROR]\n")
    monkeypatch.setenv("P4_DEBUG", "1")
    with pytest.raises(ValueError):
        main(["--home", home, "id"])


def test_usage_errors_exit_2(capsys: Cap) -> None:
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["pair"]) == 2
    assert main(["peers", "rename", "only-one"]) == 2
    capsys.readouterr()
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "p4 0.1.0"
    assert main(["--help"]) == 0


def test_peers_list_rename_forget(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    rc, out, _ = run(capsys, "--home", home, "peers")
    assert rc == 0 and "No paired peers" in out
    p = Profile.open(home)
    a = p.add_peer("laptop", key("a"), bytes(32), "apple", paired_at=1_700_000_000)
    p.add_peer("phone", key("b"), bytes(32), "river", paired_at=1_700_000_060)
    rc, out, _ = run(capsys, "--home", home, "peers")
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("NAME")
    assert lines[1].startswith("laptop") and a.device_id in lines[1]
    assert "2023-11-14 22:13" in lines[1]
    assert run(capsys, "--home", home, "peers", "list")[1] == out

    rc, out, _ = run(capsys, "--home", home, "peers", "rename", "laptop", "work")
    assert rc == 0 and "'work'" in out
    rc, _, err = run(capsys, "--home", home, "peers", "rename", "phone", "work")
    assert rc == 1 and err.endswith("[PEER_EXISTS]\n")
    rc, out, _ = run(capsys, "--home", home, "peers", "forget", a.device_id.lower())
    assert rc == 0 and "Forgot 'work'" in out
    rc, _, err = run(capsys, "--home", home, "peers", "forget", "work")
    assert rc == 1 and err.endswith("[PEER_UNKNOWN]\n")
    assert [x.name for x in Profile.open(home).peers()] == ["phone"]
    assert (Path(home) / PEERS_FILE).exists()


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["pair", "accept", "7-apple"], "PAIR_CODE_MALFORMED"),
        (["pair", "accept", "p4:pair?v=1"], "PAIR_URI_MALFORMED"),
        (["pair", "accept", CODE, "--tor", "testnet:/nonexistent"], "TOR_UNREACHABLE"),
        (["pair", "invite", "--tor", "testnet:/nonexistent"], "TOR_UNREACHABLE"),
    ],
)
def test_pair_errors_are_one_clear_line(home: str, capsys: Cap, argv: list[str],
                                        code: str) -> None:
    assert run(capsys, "--home", home, "init")[0] == 0
    rc, _, err = run(capsys, "--home", home, *argv)
    assert rc == 1
    assert err.startswith("p4: error: ") and err.endswith(f"[{code}]\n"), err
    assert err.count("\n") == 1  # one line, no traceback
    assert Profile.open(home).peers() == []


def test_pair_commands_are_one_function_each(home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []
    def accept(args: argparse.Namespace) -> int:
        seen.append(("acc", args.code))
        return 0

    def invite(args: argparse.Namespace) -> int:
        seen.append(("inv", None))
        return 0

    monkeypatch.setattr(cli, "cmd_pair_accept", accept)
    monkeypatch.setattr(cli, "cmd_pair_invite", invite)
    assert main(["pair", "accept", "p4:xyz"]) == 0
    assert main(["pair", "invite"]) == 0
    assert seen == [("acc", "p4:xyz"), ("inv", None)]


def test_demo_dispatch(monkeypatch: pytest.MonkeyPatch, capsys: Cap) -> None:
    monkeypatch.setitem(sys.modules, "p4ref.demo", None)  # "not installed"
    rc, _, err = run(capsys, "demo")
    assert rc == 2 and "not part of this build" in err
    got: list[list[str]] = []
    fake = types.ModuleType("p4ref.demo")

    def demo_main(argv: list[str]) -> int:
        got.append(argv)
        return 3

    fake.main = demo_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "p4ref.demo", fake)
    monkeypatch.delenv("P4_HOME", raising=False)
    assert main(["--home", "/x", "demo", "--fast", "--home", "two"]) == 3
    assert got == [["--fast", "--home", "two"]]
    assert os.environ["P4_HOME"] == "/x"


# --- QR --------------------------------------------------------------------------------------


def _unrender(art: str, light_background: bool) -> list[list[bool]]:
    """Inverse of render_qr: half-block art back to the dark-module matrix."""
    top = {" ": False, "▀": True, "▄": False, "█": True}
    bottom = {" ": False, "▀": False, "▄": True, "█": True}
    rows: list[list[bool]] = []
    for line in art.splitlines():
        rows.append([top[c] for c in line])
        rows.append([bottom[c] for c in line])
    return [[ink if light_background else not ink for ink in row] for row in rows]


@pytest.mark.parametrize("light", [False, True])
def test_qr_rendering_matches_matrix(light: bool) -> None:
    text = "25NJQAM-CWEFLPM-VKL73J4-SZAHHIT-HOC4XT3-KTCGJNJ-PAINGR5-YHKENAI"
    art = render_qr(text, light_background=light)
    qr = qrcode.QRCode(border=4, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    back = _unrender(art, light)
    assert back[: len(matrix)] == matrix
    assert all(not any(row) for row in back[len(matrix) :])  # padding row is light


def test_qr_ascii_fallback() -> None:
    class Latin1:
        encoding = "ascii"

    art = render_qr("ABC", stream=Latin1())
    assert set(art) <= {"#", " ", "\n"}


def test_id_qr(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    rc, out, _ = run(capsys, "--home", home, "id", "--qr")
    device_id = Profile.open(home).identity.device_id
    assert rc == 0 and out.endswith(device_id + "\n")
    assert "█" in out or "#" in out


def test_python_dash_m(home: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "p4ref", "--home", home, "id"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("p4: error: ") and "Traceback" not in proc.stderr


# --- pairing as a user meets it, before anything reaches Tor (issue 10 §1) -------------------

NO_TOR = ["--tor", "testnet:/nonexistent"]  # any attempt to reach Tor fails TOR_UNREACHABLE


@pytest.mark.parametrize(
    "argv",
    [
        ["pair", "invite", "--tor", "system:abc"],
        ["pair", "invite", "--tor", "system:0"],
        ["pair", "invite", "--tor", "carrier-pigeon"],
        ["pair", "accept", CODE, "--tor", "launch:x"],
        ["pair", "invite", "--timeout", "0"],
        ["pair", "invite", "--timeout", "-5"],
        ["pair", "accept", CODE, "--timeout", "nan"],
        ["pair", "accept", CODE, "--timeout", "soon"],
    ],
)
def test_bad_tor_and_timeout_are_usage_errors(home: str, capsys: Cap, argv: list[str]) -> None:
    rc, out, err = run(capsys, "--home", home, *argv)
    assert rc == 2 and out == ""
    assert "INTERNAL_ERROR" not in err and "Traceback" not in err
    assert "--tor" in err or "--timeout" in err


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "PEER_NAME_INVALID"),
        (" phone", "PEER_NAME_INVALID"),
        ("x" * 65, "PEER_NAME_INVALID"),
        (Identity(bytes(32)).device_id, "PEER_NAME_INVALID"),  # reads as a device ID
        ("laptop", "PEER_EXISTS"),  # taken
    ],
)
@pytest.mark.parametrize("verb", ["invite", "accept"])
def test_name_is_checked_before_dialling(home: str, capsys: Cap, name: str, code: str,
                                         verb: str) -> None:
    run(capsys, "--home", home, "init")
    Profile.open(home).add_peer("laptop", key("a"), bytes(32), "123456")
    argv = ["pair", verb, *([CODE] if verb == "accept" else []), "--name", name, *NO_TOR]
    rc, _, err = run(capsys, "--home", home, *argv)
    assert rc == 1 and err.endswith(f"[{code}]\n") and err.count("\n") == 1, err


def test_code_from_environment_or_stdin(home: str, capsys: Cap,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "--home", home, "init")
    monkeypatch.setenv("P4_CODE", "7-apple")  # a malformed code proves it was read
    rc, _, err = run(capsys, "--home", home, "pair", "accept", *NO_TOR)
    assert rc == 1 and err.endswith("[PAIR_CODE_MALFORMED]\n")
    monkeypatch.setenv("P4_CODE", CODE)
    rc, _, err = run(capsys, "--home", home, "pair", "accept", *NO_TOR)
    assert rc == 1 and err.endswith("[TOR_UNREACHABLE]\n")  # got as far as Tor
    monkeypatch.delenv("P4_CODE")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    rc, _, err = run(capsys, "--home", home, "pair", "accept", *NO_TOR)
    assert rc == 1 and "P4_CODE" in err and err.endswith("[PAIR_CODE_MALFORMED]\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(CODE + "\n"))
    rc, _, err = run(capsys, "--home", home, "pair", "accept", *NO_TOR)
    assert rc == 1 and err.endswith("[TOR_UNREACHABLE]\n")


def test_burnt_code_is_refused_before_dialling(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    p = Profile.open(home)
    burnt = BurntCodes(p.path, p.identity.seed)
    burnt.remember(CODE, ErrorCode.PAIR_CONFIRM_FAILED)
    for typed in (CODE, "  7-Adroitness-AARDVARK "):  # the same code, typed differently
        rc, _, err = run(capsys, "--home", home, "pair", "accept", typed, *NO_TOR)
        assert rc == 1 and err.count("\n") == 1
        assert "wrong code, or someone guessing — get a new code from the other device" in err
        assert err.endswith("[PAIR_CONFIRM_FAILED]\n")
    data = (Path(home) / BURNT_FILE).read_text()
    assert "adroitness" not in data.lower() and "aardvark" not in data.lower()
    assert stat.S_IMODE((Path(home) / BURNT_FILE).stat().st_mode) == 0o600
    # another code is not affected; an expired entry is forgotten
    rc, _, err = run(capsys, "--home", home, "pair", "accept", "8-adroitness-aardvark", *NO_TOR)
    assert err.endswith("[TOR_UNREACHABLE]\n")
    burnt.check(CODE, now=int(time.time()) + 2 * 86400)  # no raise: expired


def test_damaged_burnt_file_is_ignored(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    (Path(home) / BURNT_FILE).write_text("[[[[" * 10000)
    _, _, err = run(capsys, "--home", home, "pair", "accept", CODE, *NO_TOR)
    assert err.endswith("[TOR_UNREACHABLE]\n")


def test_expired_uri_is_refused_before_dialling(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    uri = InviteUri.create(bytes(32), 1_000_000, key("i"))
    rc, _, err = run(capsys, "--home", home, "pair", "accept", str(uri), *NO_TOR)
    assert rc == 1 and "expired — get a new code" in err
    assert err.endswith("[PAIR_INVITATION_EXPIRED]\n")


def test_names_cannot_be_device_ids_and_ids_win(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    p = Profile.open(home)
    a = p.add_peer("laptop", key("a"), bytes(32), "1")
    b = p.add_peer("phone", key("b"), bytes(32), "2")
    rc, _, err = run(capsys, "--home", home, "peers", "rename", "phone", a.device_id)
    assert rc == 1 and err.endswith("[PEER_NAME_INVALID]\n")
    # a record that already carries another device's ID as its name (an older p4 allowed it)
    p.forget_peer("phone")
    p.add_peer(a.device_id.lower(), b.identity_key, bytes(32), "2")
    rc, out, _ = run(capsys, "--home", home, "peers", "forget", a.device_id.lower())
    assert rc == 0 and "Forgot 'laptop'" in out
    assert [x.identity_key for x in Profile.open(home).peers()] == [b.identity_key]


def test_mistyped_device_id_gets_did_you_mean(home: str, capsys: Cap) -> None:
    run(capsys, "--home", home, "init")
    p = Profile.open(home)
    p.add_peer("laptop", key("a"), bytes(32), "1")
    for i in range(20):  # a device ID with an O, an I or a B to confuse
        rec = p.add_peer(f"phone{i}", key(f"b{i}"), bytes(32), "2")
        if any(c in rec.device_id for c in "OIB"):
            break
        p.forget_peer(rec.name)
    real = rec.device_id
    j = next(i for i, c in enumerate(real) if c in "OIB")
    confused = real[:j] + {"O": "0", "I": "1", "B": "8"}[real[j]] + real[j + 1 :]
    k = 3 if real[3] != "Q" else 4
    typo = real[:k] + ("Q" if real[k] != "Q" else "R") + real[k + 1 :]
    for wrong in (confused, typo):
        rc, _, err = run(capsys, "--home", home, "peers", "forget", wrong)
        assert rc == 1 and err.endswith("[PEER_UNKNOWN]\n") and err.count("\n") == 1
        assert f"did you mean {real} ({rec.name!r})?" in err, err
        assert "laptop" not in err
    assert len(Profile.open(home).peers()) == 2  # nothing was deleted
    rc, _, err = run(capsys, "--home", home, "peers", "forget", "lapotp")
    assert rc == 1 and "did you mean 'laptop'?" in err and err.endswith("[PEER_UNKNOWN]\n")


def _invite_args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"light": False, "show_uri": False, **kw})


def _a_uri() -> str:
    return str(InviteUri.create(os.urandom(32), 4_102_444_800, key("i")))


def test_invite_screen_fits_80x24_with_the_code_last() -> None:
    code, uri = "1048576-businessman-christmas", _a_uri()
    when = datetime.datetime(2026, 1, 1, 14, 5)
    screen = pair_cli._screen(code, uri, when, _invite_args())
    lines = screen.splitlines()
    assert len(lines) <= 23, len(lines)  # and the cursor on the 24th
    assert max(len(line) for line in lines) <= 80
    assert lines[-1] == f"  p4 pair accept {code}"
    assert "14:05" in screen and "s=" not in screen.lower()  # the secret is not printed
    qr_rows = [line[: len(lines[0].rstrip())] for line in lines if line[:1] in "█▀▄ "]
    art = "\n".join(r for r in qr_rows if set(r) <= set("█▀▄ ") and len(r) == len(qr_rows[0]))
    matrix = qrcode.QRCode(border=1, error_correction=qrcode.constants.ERROR_CORRECT_L)
    matrix.add_data(uri.upper())
    matrix.make(fit=True)
    assert _unrender(art, False)[: len(matrix.get_matrix())] == matrix.get_matrix()
    assert parse_uri(uri.upper()) == parse_uri(uri)  # the QR's upper case reads the same


def test_invite_screen_shows_the_uri_only_on_request() -> None:
    uri = _a_uri()
    screen = pair_cli._screen("7-adroitness-aardvark", uri, datetime.datetime(2026, 1, 1),
                              _invite_args(show_uri=True))
    assert f"p4 pair accept '{uri}'" in screen  # quoted: & and ? are special to a shell
    assert screen.splitlines()[-1] == "  p4 pair accept 7-adroitness-aardvark"


def _result(identity: bytes, root: bytes = b"\x02" * 32) -> PairingResult:
    return PairingResult(identity, root, "123456", 1.0)


def test_repairing_a_device_that_forgot_us(home: str, capsys: Cap,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "--home", home, "init")
    p = Profile.open(home)
    p.add_peer("phone", key("b"), b"\x01" * 32, "111111")
    args = argparse.Namespace(replace=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: nobody to ask
    with pytest.raises(P4Error) as e:
        pair_cli._store(p, _result(key("b")), None, args)
    assert e.value.code is ErrorCode.PEER_EXISTS and "--replace" in e.value.message
    assert p.peer("phone").pair_root_key == b"\x01" * 32  # kept

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty("n\n"))
    with pytest.raises(P4Error):
        pair_cli._store(p, _result(key("b")), None, args)
    monkeypatch.setattr(sys, "stdin", Tty("y\n"))
    pair_cli._store(p, _result(key("b")), None, args)
    assert p.peer("phone").pair_root_key == b"\x02" * 32  # replaced, name kept
    pair_cli._store(p, _result(key("b"), b"\x03" * 32), "mobile",
                    argparse.Namespace(replace=True))
    assert [(x.name, x.pair_root_key) for x in p.peers()] == [("mobile", b"\x03" * 32)]
    # --replace replaces the same device's record, never another device's
    p.add_peer("laptop", key("a"), b"\x04" * 32, "222222")
    with pytest.raises(P4Error) as e:
        pair_cli._store(p, _result(key("b"), b"\x05" * 32), "laptop",
                        argparse.Namespace(replace=True))
    assert e.value.code is ErrorCode.PEER_EXISTS
    assert [(x.name, x.pair_root_key) for x in p.peers()] == [
        ("mobile", b"\x03" * 32), ("laptop", b"\x04" * 32)]
    out = capsys.readouterr().out
    assert "Paired with mobile" in out


def test_uri_from_a_device_already_paired_asks_before_dialling(
        home: str, capsys: Cap, monkeypatch: pytest.MonkeyPatch) -> None:
    """The URI commits to the inviter's key: re-pairing is settled before anything is stored on
    either side, so no later answer can leave the pair on one side only."""
    run(capsys, "--home", home, "init")
    Profile.open(home).add_peer("laptop", key("i"), bytes(32), "1")
    uri = str(InviteUri.create(os.urandom(32), 4_102_444_800, key("i")))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    rc, _, err = run(capsys, "--home", home, "pair", "accept", uri, *NO_TOR)
    assert rc == 1 and "--replace" in err and err.endswith("[PEER_EXISTS]\n"), err
    rc, _, err = run(capsys, "--home", home, "pair", "accept", uri, "--replace", *NO_TOR)
    assert err.endswith("[TOR_UNREACHABLE]\n"), err
    other = str(InviteUri.create(os.urandom(32), 4_102_444_800, key("j")))
    rc, _, err = run(capsys, "--home", home, "pair", "accept", other, *NO_TOR)
    assert err.endswith("[TOR_UNREACHABLE]\n"), err
