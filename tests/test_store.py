"""Profile store: files, modes, atomic replace, strict reads, locking (p4-02 §3.4)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from p4ref.errors import ErrorCode
from p4ref.identity import Identity, device_id
from p4ref.io.store import (
    IDENTITY_FILE,
    LOCK_FILE,
    PEERS_FILE,
    Profile,
    ProfileError,
    default_home,
)

ROOT = Path(__file__).resolve().parent.parent


def rng_from(label: str) -> Callable[[int], bytes]:
    def rng(n: int) -> bytes:
        return hashlib.sha256(label.encode()).digest()[:n]

    return rng


def key(label: str) -> bytes:
    return Identity(hashlib.sha256(b"peer " + label.encode()).digest()).public_key


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "p4home"


@pytest.fixture
def profile(home: Path) -> Profile:
    return Profile.init(home, rng_from("me"))


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def code_of(exc: pytest.ExceptionInfo[ProfileError]) -> ErrorCode:
    return exc.value.code


# --- init / open -----------------------------------------------------------------------------


def test_init_creates_private_files(home: Path) -> None:
    """IDN-15, IDN-16, IDN-18: modes 0700/0600 and the exact identity.key bytes."""
    p = Profile.init(home, rng_from("me"))
    assert mode(home) == 0o700
    assert mode(home / IDENTITY_FILE) == 0o600
    text = (home / IDENTITY_FILE).read_text()
    seed = hashlib.sha256(b"me").digest()
    assert text == f"p4-identity-key 1\nseed {seed.hex()}\ndevice-id {p.identity.device_id}\n"
    assert not (home / PEERS_FILE).exists()
    assert [n for n in os.listdir(home) if n not in (IDENTITY_FILE, LOCK_FILE)] == []
    again = Profile.open(home)
    assert again.identity == p.identity
    assert again.peers() == []


def test_init_under_permissive_umask(home: Path) -> None:
    """IDN-16: the modes do not depend on the umask."""
    old = os.umask(0)
    try:
        Profile.init(home, rng_from("me"))
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    assert mode(home / IDENTITY_FILE) == 0o600
    assert mode(home / LOCK_FILE) == 0o600


def test_init_refuses_existing_profile(home: Path, profile: Profile) -> None:
    """IDN-25."""
    before = (home / IDENTITY_FILE).read_bytes()
    with pytest.raises(ProfileError) as e:
        Profile.init(home, rng_from("other"))
    assert code_of(e) is ErrorCode.PROFILE_EXISTS
    assert (home / IDENTITY_FILE).read_bytes() == before


def test_init_refuses_non_empty_directory(home: Path) -> None:
    home.mkdir(mode=0o755)
    (home / "notes.txt").write_text("mine")
    with pytest.raises(ProfileError) as e:
        Profile.init(home, rng_from("me"))
    assert code_of(e) is ErrorCode.PROFILE_EXISTS
    assert mode(home) == 0o755  # not touched


def test_init_accepts_empty_existing_directory(home: Path) -> None:
    home.mkdir(mode=0o755)
    Profile.init(home, rng_from("me"))
    assert mode(home) == 0o700


def test_open_missing(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as e:
        Profile.open(tmp_path / "nope")
    assert code_of(e) is ErrorCode.PROFILE_NOT_FOUND
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    with pytest.raises(ProfileError) as e:
        Profile.open(empty)
    assert code_of(e) is ErrorCode.PROFILE_NOT_FOUND


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("P4_HOME", str(tmp_path / "x"))
    assert default_home() == tmp_path / "x"
    monkeypatch.setenv("P4_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_home() == tmp_path / ".p4"


# --- identity.key corruption and permissions -------------------------------------------------


def _key_variants(text: str) -> dict[str, bytes]:
    lines = text.split("\n")
    seed_line = lines[1]
    flipped = seed_line[:-1] + ("0" if seed_line[-1] != "0" else "1")
    return {
        "empty": b"",
        "truncated": text.encode()[:40],
        "no-final-newline": text.encode()[:-1],
        "extra-line": (text + "comment\n").encode(),
        "flipped-seed-digit": "\n".join([lines[0], flipped, *lines[2:]]).encode(),
        "upper-hex": "\n".join([lines[0], seed_line.upper().replace("SEED", "seed"),
                                *lines[2:]]).encode(),
        "raw-seed": bytes(32),
        "bad-header": text.replace("p4-identity-key", "p4-identity").encode(),
        "crlf": text.replace("\n", "\r\n").encode(),
    }


@pytest.mark.parametrize(
    "variant",
    ["empty", "truncated", "no-final-newline", "extra-line", "flipped-seed-digit", "upper-hex",
     "raw-seed", "bad-header", "crlf"],
)
def test_corrupt_identity_key(home: Path, profile: Profile, variant: str) -> None:
    """IDN-18, IDN-24: PROFILE_CORRUPT and the file is left exactly as found."""
    path = home / IDENTITY_FILE
    data = _key_variants(path.read_text())[variant]
    path.write_bytes(data)
    with pytest.raises(ProfileError) as e:
        Profile.open(home)
    assert code_of(e) is ErrorCode.PROFILE_CORRUPT
    assert path.read_bytes() == data  # never repaired or replaced
    with pytest.raises(ProfileError) as e2:
        Profile.init(home, rng_from("again"))
    assert code_of(e2) is ErrorCode.PROFILE_EXISTS
    assert path.read_bytes() == data


def test_identity_key_newer_version(home: Path, profile: Profile) -> None:
    path = home / IDENTITY_FILE
    path.write_text(path.read_text().replace("p4-identity-key 1", "p4-identity-key 2"))
    with pytest.raises(ProfileError) as e:
        Profile.open(home)
    assert code_of(e) is ErrorCode.PROFILE_VERSION_UNSUPPORTED


@pytest.mark.parametrize(("target", "bad_mode"), [("key", 0o644), ("key", 0o640),
                                                  ("dir", 0o755), ("dir", 0o710)])
def test_insecure_modes_refused(home: Path, profile: Profile, target: str, bad_mode: int) -> None:
    """IDN-17: refused, and the mode is not changed."""
    path = home / IDENTITY_FILE if target == "key" else home
    os.chmod(path, bad_mode)
    with pytest.raises(ProfileError) as e:
        Profile.open(home)
    assert code_of(e) is ErrorCode.PROFILE_INSECURE
    assert mode(path) == bad_mode  # not "fixed" behind the user's back


def test_symlinked_key_refused(home: Path, profile: Profile, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.key"
    os.replace(home / IDENTITY_FILE, real)
    os.symlink(real, home / IDENTITY_FILE)
    with pytest.raises(ProfileError) as e:
        Profile.open(home)
    assert code_of(e) is ErrorCode.PROFILE_INSECURE


# --- peers -----------------------------------------------------------------------------------


def test_add_rename_forget(home: Path, profile: Profile) -> None:
    """IDN-19, IDN-22."""
    a = profile.add_peer("laptop", key("a"), b"\x01" * 32, "apple river", paired_at=1700000000)
    b = profile.add_peer("phone", key("b"), b"\x02" * 32, "1234", paired_at=1700000001)
    assert mode(home / PEERS_FILE) == 0o600
    assert Profile.open(home).peers() == [a, b]
    assert profile.peer(a.device_id) == a
    assert profile.peer(a.device_id.lower().replace("-", "")) == a
    assert "0101" not in repr(a)  # the pair root key is not printed
    renamed = profile.rename_peer("laptop", "work laptop")
    assert renamed.name == "work laptop" and renamed.identity_key == a.identity_key
    assert [p.name for p in profile.peers()] == ["work laptop", "phone"]
    assert profile.forget_peer(b.device_id) == b
    assert [p.name for p in Profile.open(home).peers()] == ["work laptop"]
    doc = json.loads((home / PEERS_FILE).read_text())
    assert doc["format"] == "p4-peers" and doc["version"] == 1
    assert doc["peers"][0]["device_id"] == device_id(key("a"))


def test_peer_errors(profile: Profile) -> None:
    """IDN-20, IDN-21: failed changes leave peers.json byte-identical."""
    profile.add_peer("laptop", key("a"), bytes(32), "s")
    cases: list[tuple[Callable[[], object], ErrorCode]] = [
        (lambda: profile.add_peer("laptop", key("b"), bytes(32), "s"), ErrorCode.PEER_EXISTS),
        (lambda: profile.add_peer("other", key("a"), bytes(32), "s"), ErrorCode.PEER_EXISTS),
        (lambda: profile.add_peer("me", profile.identity.public_key, bytes(32), "s"),
         ErrorCode.PEER_EXISTS),
        (lambda: profile.add_peer("", key("c"), bytes(32), "s"), ErrorCode.PEER_NAME_INVALID),
        (lambda: profile.add_peer(" x", key("c"), bytes(32), "s"), ErrorCode.PEER_NAME_INVALID),
        (lambda: profile.add_peer("a\nb", key("c"), bytes(32), "s"),
         ErrorCode.PEER_NAME_INVALID),
        (lambda: profile.add_peer("x" * 65, key("c"), bytes(32), "s"),
         ErrorCode.PEER_NAME_INVALID),
        (lambda: profile.add_peer("c", key("c")[:31], bytes(32), "s"),
         ErrorCode.IDENTITY_KEY_INVALID),
        # IDN-21: a small-order or non-canonical key is never stored (p4-02 §3.1.1)
        (lambda: profile.add_peer("c", (1).to_bytes(32, "little"), bytes(32), "s"),
         ErrorCode.IDENTITY_KEY_INVALID),
        (lambda: profile.add_peer("c", b"\xff" * 32, bytes(32), "s"),
         ErrorCode.IDENTITY_KEY_INVALID),
        (lambda: profile.rename_peer("nobody", "x"), ErrorCode.PEER_UNKNOWN),
        (lambda: profile.forget_peer("nobody"), ErrorCode.PEER_UNKNOWN),
        (lambda: profile.peer("nobody"), ErrorCode.PEER_UNKNOWN),
    ]
    profile.add_peer("phone", key("b"), bytes(32), "s")
    cases.append((lambda: profile.rename_peer("phone", "laptop"), ErrorCode.PEER_EXISTS))
    before = (profile.path / PEERS_FILE).read_bytes()
    for fn, code in cases:
        with pytest.raises(ProfileError) as e:
            fn()
        assert e.value.code is code, (code, e.value)
    assert (profile.path / PEERS_FILE).read_bytes() == before


def test_name_is_nfc_normalised(profile: Profile) -> None:
    rec = profile.add_peer("Cafe\u0301", key("a"), bytes(32), "s")
    assert rec.name == "Caf\u00e9"
    assert profile.peer("Caf\u00e9") == rec


# --- peers.json corruption -------------------------------------------------------------------


def _peers_variants(text: str) -> dict[str, bytes]:
    doc = json.loads(text)
    renamed = json.loads(text)
    renamed["peers"][0]["name"] = "mallory"  # checksum not updated
    extra = json.loads(text)
    extra["comment"] = "x"
    wrong_id = json.loads(text)
    wrong_id["peers"][0]["device_id"] = device_id(key("zzz"))
    return {
        "empty": b"",
        "truncated": text.encode()[: len(text) // 2],
        "not-json": b"\x00\x01garbage",
        "checksum": (json.dumps(renamed, indent=2) + "\n").encode(),
        "extra-key": (json.dumps(extra, indent=2) + "\n").encode(),
        "reformatted": (json.dumps(doc) + "\n").encode(),  # valid checksum, not canonical
        "device-id-mismatch": (json.dumps(wrong_id, indent=2) + "\n").encode(),
        "list": b"[]\n",
    }


@pytest.mark.parametrize(
    "variant",
    ["empty", "truncated", "not-json", "checksum", "extra-key", "reformatted",
     "device-id-mismatch", "list"],
)
def test_corrupt_peers_file(home: Path, profile: Profile, variant: str) -> None:
    """IDN-19, IDN-24."""
    profile.add_peer("laptop", key("a"), bytes(32), "s", paired_at=1)
    path = home / PEERS_FILE
    data = _peers_variants(path.read_text())[variant]
    path.write_bytes(data)
    for op in (
        lambda: Profile.open(home),
        profile.peers,
        lambda: profile.add_peer("phone", key("b"), bytes(32), "s"),
        lambda: profile.forget_peer("laptop"),
    ):
        with pytest.raises(ProfileError) as e:
            op()
        assert code_of(e) is ErrorCode.PROFILE_CORRUPT, variant
        assert path.read_bytes() == data  # untouched


@pytest.mark.parametrize(
    ("variant", "data"),
    [
        ("open-brackets", b"[" * 5000),
        ("nested-peers", b'{"format": "p4-peers", "version": 1, "peers": ' + b"[" * 100_000),
        ("nested-closed", b"[" * 3000 + b"]" * 3000 + b"\n"),
        ("huge-sha256", b'{"format": "p4-peers", "version": 1, "peers": [], "sha256": 7'
         + b"7" * 5000 + b"}\n"),
        ("huge-version", b'{"format": "p4-peers", "version": ' + b"9" * 5000 + b"}\n"),
        ("long-version", b'{"format": "p4-peers", "version": 1000000000000000}\n'),
    ],
)
def test_hostile_peers_json_is_corrupt(
    home: Path, profile: Profile, variant: str, data: bytes
) -> None:
    """IDN-30: deep nesting and huge integers are PROFILE_CORRUPT, not RecursionError or
    ValueError (Python refuses int() of more than 4300 digits); a 16-digit version is not
    "version unsupported" either."""
    path = home / PEERS_FILE
    path.write_bytes(data)
    os.chmod(path, 0o600)
    for op in (lambda: Profile.open(home), profile.peers):
        with pytest.raises(ProfileError) as e:
            op()
        assert code_of(e) is ErrorCode.PROFILE_CORRUPT, variant
    assert path.read_bytes() == data


_OPEN = "import sys; from p4ref.io.store import Profile; Profile.open(sys.argv[1]).peers()"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("target", [IDENTITY_FILE, PEERS_FILE])
def test_fifo_is_refused_without_blocking(home: Path, profile: Profile, target: str) -> None:
    """IDN-29: a FIFO in place of a profile file is PROFILE_CORRUPT at once; opening it for
    reading would wait for a writer forever. Run in a child so a regression cannot hang."""
    path = home / target
    if target == IDENTITY_FILE:
        path.unlink()
    os.mkfifo(path, 0o600)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _OPEN, str(home)], cwd=ROOT, capture_output=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"Profile.open blocked on a FIFO {target}")
    assert done.returncode != 0
    assert b"PROFILE_CORRUPT" in done.stderr and b"not a regular file" in done.stderr
    assert stat.S_ISFIFO(os.lstat(path).st_mode)  # left as it is (IDN-24)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_lock_file_is_refused(home: Path, profile: Profile) -> None:
    (home / LOCK_FILE).unlink(missing_ok=True)
    os.mkfifo(home / LOCK_FILE, 0o600)
    with pytest.raises(ProfileError) as e:
        profile.add_peer("laptop", key("a"), bytes(32), "s")
    assert code_of(e) is ErrorCode.PROFILE_CORRUPT


def test_directory_in_place_of_key_is_corrupt(home: Path, profile: Profile) -> None:
    (home / PEERS_FILE).mkdir(mode=0o700)
    with pytest.raises(ProfileError) as e:
        Profile.open(home)
    assert code_of(e) is ErrorCode.PROFILE_CORRUPT


def test_peers_newer_version(home: Path, profile: Profile) -> None:
    profile.add_peer("laptop", key("a"), bytes(32), "s", paired_at=1)
    path = home / PEERS_FILE
    doc = json.loads(path.read_text())
    doc["version"] = 2
    path.write_text(json.dumps(doc))
    with pytest.raises(ProfileError) as e:
        profile.peers()
    assert code_of(e) is ErrorCode.PROFILE_VERSION_UNSUPPORTED


def test_peers_file_mode_checked(home: Path, profile: Profile) -> None:
    profile.add_peer("laptop", key("a"), bytes(32), "s")
    os.chmod(home / PEERS_FILE, 0o644)
    with pytest.raises(ProfileError) as e:
        profile.peers()
    assert code_of(e) is ErrorCode.PROFILE_INSECURE


# --- crash safety ----------------------------------------------------------------------------


def test_replace_failure_leaves_old_file(  # IDN-23
    home: Path, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile.add_peer("laptop", key("a"), bytes(32), "s")
    before = (home / PEERS_FILE).read_bytes()

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        profile.add_peer("phone", key("b"), bytes(32), "s")
    monkeypatch.undo()
    assert (home / PEERS_FILE).read_bytes() == before
    assert sorted(os.listdir(home)) == [IDENTITY_FILE, LOCK_FILE, PEERS_FILE]  # temp removed
    assert [p.name for p in Profile.open(home).peers()] == ["laptop"]


def test_write_failure_leaves_old_file(
    home: Path, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile.add_peer("laptop", key("a"), bytes(32), "s")
    before = (home / PEERS_FILE).read_bytes()

    def fail_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(OSError):
        profile.add_peer("phone", key("b"), bytes(32), "s")
    monkeypatch.undo()
    assert (home / PEERS_FILE).read_bytes() == before
    assert sorted(os.listdir(home)) == [IDENTITY_FILE, LOCK_FILE, PEERS_FILE]


_KILL_BEFORE_REPLACE = textwrap.dedent(
    """
    import os, signal, sys
    from p4ref.io.store import Profile
    p = Profile.open(sys.argv[1])
    def die(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)   # crash after write+fsync, before the rename
    os.replace = die
    p.add_peer("phone", bytes.fromhex(sys.argv[2]), bytes(32), "s")
    """
)


def test_kill_between_write_and_replace(home: Path, profile: Profile) -> None:
    """IDN-23: SIGKILL after write+fsync, before the rename: the old file survives."""
    profile.add_peer("laptop", key("a"), bytes(32), "s")
    before = (home / PEERS_FILE).read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_BEFORE_REPLACE, str(home), key("b").hex()],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert (home / PEERS_FILE).read_bytes() == before
    leftovers = [n for n in os.listdir(home) if n.startswith(".tmp-")]
    assert len(leftovers) == 1  # the complete-but-unrenamed temp file; ignored by readers
    reopened = Profile.open(home, lock_timeout=2)
    assert [p.name for p in reopened.peers()] == ["laptop"]
    reopened.add_peer("phone", key("b"), bytes(32), "s")  # the dead writer's lock is gone
    assert [p.name for p in Profile.open(home).peers()] == ["laptop", "phone"]
    assert not [n for n in os.listdir(home) if n.startswith(".tmp-")]  # cleaned under the lock


def test_kill_during_init_leaves_no_profile(tmp_path: Path) -> None:
    home = tmp_path / "h"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from p4ref.io.store import Profile
        os.link = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        Profile.init(sys.argv[1], lambda n: bytes(n))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(home)], cwd=ROOT,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    with pytest.raises(ProfileError) as e:
        Profile.open(home)
    assert code_of(e) is ErrorCode.PROFILE_NOT_FOUND
    assert [n for n in os.listdir(home) if n.startswith(".tmp-")]  # the seed's temp file
    Profile.init(home, rng_from("me"))  # a retry succeeds: the temp file does not block it
    Profile.open(home)
    assert sorted(os.listdir(home)) == [IDENTITY_FILE, LOCK_FILE]  # and the stale one is gone


# --- locking ---------------------------------------------------------------------------------


def test_lock_timeout(home: Path, profile: Profile) -> None:
    fd = os.open(home / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        profile.lock_timeout = 0.1
        with pytest.raises(ProfileError) as e:
            profile.add_peer("laptop", key("a"), bytes(32), "s")
        assert code_of(e) is ErrorCode.PROFILE_LOCKED
        assert profile.peers() == []  # reads do not need the lock
    finally:
        os.close(fd)
    profile.add_peer("laptop", key("a"), bytes(32), "s")


_ADDER = textwrap.dedent(
    """
    import hashlib, sys
    from p4ref.identity import Identity
    from p4ref.io.store import Profile
    p = Profile.open(sys.argv[1], lock_timeout=30)
    w = sys.argv[2]
    for i in range(int(sys.argv[3])):
        k = Identity(hashlib.sha256(f"{w}-{i}".encode()).digest()).public_key
        p.add_peer(f"{w}-{i}", k, bytes(32), "s")
    """
)


def test_concurrent_writers_lose_nothing(home: Path, profile: Profile) -> None:
    """IDN-26: four processes add 32 peers under the lock; none is lost."""
    workers, each = 4, 8
    procs = [
        subprocess.Popen([sys.executable, "-c", _ADDER, str(home), f"w{w}", str(each)], cwd=ROOT,
                         stderr=subprocess.PIPE)
        for w in range(workers)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    names = sorted(p.name for p in Profile.open(home).peers())
    assert names == sorted(f"w{w}-{i}" for w in range(workers) for i in range(each))
