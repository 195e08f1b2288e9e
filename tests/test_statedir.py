"""voice2fa_cli.stores.statedir through the store: the state dir cannot be swapped, nor its files
redirected, between the checks and their use (issue 9, item 1).

The tests run as root in CI, so "another user" is made with os.chown to a uid nobody uses, and
the attacker who swaps state dirs is a separate process that keeps exchanging two directories
with renameat2(RENAME_EXCHANGE).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli
from voice2fa_cli import sessions
from voice2fa_cli.stores import sqlite as store_mod
from voice2fa_cli.errors import StoreError
from voice2fa_cli.stores.sqlite import Store

NUMBER = "+15557654321"
REAL_CODE = "481516"
ATTACKER_CODE = "999999"
STRANGER = 4321  # a uid that is neither root nor the user running the tests
LINK = "is a symbolic link: voice2fa keeps its state in real files"
HINT = "choose a VOICE2FA_STATE_DIR under directories that only you and root can change"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def add(store: Store, session_id: str, code: str) -> None:
    store.create_session(session_id=session_id, number=NUMBER, code=code, ttl=600, call_sid=None, call_status=None)


def refused(state_dir: Path) -> str:
    """Opening the store (to create, and to read) fails with exit 2; the one message."""
    messages = set()
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            Store.open(state_dir, create=create)
        assert info.value.exit_code == 2
        messages.add(info.value.message)
    assert len(messages) == 1
    return messages.pop()


def chown_tree(path: Path, uid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, uid, follow_symlinks=False)


# --- directories voice2fa makes -----------------------------------------------------------------


def test_every_directory_it_creates_is_0700_even_under_umask_000(tmp_path):
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    state_dir = base / "a" / "b" / "state"
    old = os.umask(0)
    try:
        Store.open(state_dir).close()
    finally:
        os.umask(old)
    assert [mode(p) for p in (base / "a", base / "a" / "b", state_dir)] == [0o700, 0o700, 0o700]
    assert {p.name: mode(p) for p in state_dir.iterdir()} == {store_mod.KEY_NAME: 0o600, store_mod.DB_NAME: 0o600}


# --- StrictModes: who can change the directories above ------------------------------------------


@pytest.mark.parametrize("loose", [0o777, 0o770, 0o757, 0o722])
def test_an_ancestor_writable_by_others_is_refused(tmp_path, loose):
    parent = tmp_path / "shared"
    parent.mkdir()
    (parent / "state").mkdir(mode=0o700)
    os.chmod(parent / "state", 0o700)
    os.chmod(parent, loose)
    assert refused(parent / "state") == (
        f"the state dir's ancestor {parent} is writable by other users (mode {loose:o}), who could swap the "
        f"state dir: run `chmod go-w {parent}` or {HINT}"
    )
    assert list((parent / "state").iterdir()) == []


def test_an_ancestor_writable_by_others_is_refused_before_it_is_created_under(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o777)
    with pytest.raises(StoreError):
        Store.open(parent / "new" / "state")
    assert list(parent.iterdir()) == []


def test_a_sticky_ancestor_is_fine(tmp_path):
    parent = tmp_path / "tmp-like"
    parent.mkdir()
    os.chmod(parent, 0o1777)  # like /tmp: nobody renames what another user owns
    with Store.open(parent / "state") as s:
        add(s, "s1", REAL_CODE)
        assert s.check(NUMBER, REAL_CODE).verified


@needs_root
def test_an_ancestor_of_another_user_is_refused_even_when_sticky(tmp_path):
    parent = tmp_path / "theirs"
    parent.mkdir()
    os.chmod(parent, 0o1755)
    os.chown(parent, STRANGER, STRANGER)
    assert refused(parent / "state") == (
        f"the state dir's ancestor {parent} belongs to another user (uid {STRANGER}), who could swap the state dir: "
        f"{HINT}"
    )


@needs_root
def test_a_state_dir_of_another_user_is_refused(tmp_path):
    state_dir = tmp_path / "state"
    Store.open(state_dir).close()
    os.chown(state_dir, STRANGER, STRANGER)
    assert refused(state_dir) == f"the state dir {state_dir} belongs to another user: use a state dir of your own"


def test_verify_refuses_a_swappable_state_dir_in_one_line(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    Store.open(parent / "state").close()
    os.chmod(parent, 0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(parent / "state"), NO_COLOR="1")
    result = run_cli(["verify", NUMBER, "--code", REAL_CODE], env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: the state dir's ancestor {parent} is writable by other users (mode 777), who could swap the "
        f"state dir: run `chmod go-w {parent}` or {HINT}"
    ]


def test_a_symlinked_state_dir_is_refused_but_linked_ancestors_are_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with Store.open(tmp_path / "link" / "state") as s:  # an ancestor that is a link: where it leads is checked
        add(s, "s1", REAL_CODE)
    assert (real / "state" / store_mod.DB_NAME).is_file()
    (tmp_path / "state-link").symlink_to(real / "state")
    assert refused(tmp_path / "state-link") == f"the state dir {tmp_path / 'state-link'} {LINK}"


def test_a_link_above_in_a_directory_others_can_write_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "link").symlink_to(mine)  # anyone could repoint this link
    os.chmod(shared, 0o777)
    assert refused(shared / "link" / "state") == (
        f"the state dir's ancestor {shared} is writable by other users (mode 777), who could swap the "
        f"state dir: run `chmod go-w {shared}` or {HINT}"
    )
    assert list(mine.iterdir()) == []


# --- files redirected through planted links, or not the user's -----------------------------------


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_planted_links_for_sqlite_side_files_are_refused(tmp_path, suffix):
    state_dir = tmp_path / "state"
    with Store.open(state_dir) as s:
        add(s, "s1", REAL_CODE)
    side = state_dir / (store_mod.DB_NAME + suffix)
    side.unlink(missing_ok=True)
    target = tmp_path / "attacker-file"
    target.write_bytes(b"")
    side.symlink_to(target)
    assert refused(state_dir) == f"the database file {side} {LINK}"
    assert target.read_bytes() == b""


def test_verify_refuses_a_planted_wal_link(tmp_path):
    state_dir = tmp_path / "state"
    with Store.open(state_dir) as s:
        add(s, "s1", REAL_CODE)
    wal = state_dir / (store_mod.DB_NAME + "-wal")
    wal.unlink(missing_ok=True)
    wal.symlink_to(tmp_path / "nowhere")
    with pytest.raises(StoreError) as info:
        sessions.check(state_dir, NUMBER, REAL_CODE)
    assert info.value.message == f"the database file {wal} {LINK}"
    assert not (tmp_path / "nowhere").exists()


@needs_root
@pytest.mark.parametrize("name", [store_mod.DB_NAME, f"{store_mod.DB_NAME}-shm"])
def test_database_files_of_another_user_are_refused(tmp_path, name):
    state_dir = tmp_path / "state"
    with Store.open(state_dir) as s:  # open: SQLite keeps its -wal and -shm meanwhile
        add(s, "s1", REAL_CODE)
        os.chown(state_dir / name, STRANGER, STRANGER)
        what = "database" if name == store_mod.DB_NAME else "database file"
        assert refused(state_dir) == f"the {what} {state_dir / name} belongs to another user: use a state dir of your own"


@pytest.mark.parametrize("name", [store_mod.KEY_NAME, store_mod.DB_NAME])
def test_a_fifo_in_place_of_a_state_file_is_refused_without_hanging(tmp_path, name):
    state_dir = tmp_path / "state"
    Store.open(state_dir).close()
    (state_dir / name).unlink()
    os.mkfifo(state_dir / name, 0o600)
    code = (
        "import sys; from pathlib import Path; from voice2fa_cli.stores.sqlite import Store\n"
        "from voice2fa_cli.errors import StoreError\n"
        "try:\n    Store.open(Path(sys.argv[1]))\nexcept StoreError as e:\n    print(e.message)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(state_dir)], capture_output=True, text=True, timeout=60)
    what = "key file" if name == store_mod.KEY_NAME else "database"
    assert done.stdout.strip() == f"the {what} {state_dir / name} is not a regular file: move it away"


# --- the swap: another process exchanges two state dirs while verify runs -----------------------

SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
print("ready", flush=True)
while True:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
"""


def _has_renameat2() -> bool:
    return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "renameat2")


@pytest.fixture
def swapped(tmp_path):
    """A real state dir and an attacker's (their key, their open session for NUMBER with a code
    they chose, owned by them), side by side, exchanged in a loop by another process."""
    parent = tmp_path / "parent"
    parent.mkdir(mode=0o700)
    real, evil = parent / "state", parent / "evil"
    with Store.open(real) as s:
        add(s, "real", REAL_CODE)
    with Store.open(evil) as s:
        for i in range(50):  # many sessions: each verified one is used up
            add(s, f"evil{i}", ATTACKER_CODE)
    if os.geteuid() == 0:
        chown_tree(evil, STRANGER)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(real), str(evil)], stdout=subprocess.PIPE, text=True)
    assert swapper.stdout.readline().strip() == "ready"
    yield real
    swapper.kill()
    swapper.wait(10)


@pytest.mark.skipif(not _has_renameat2(), reason="needs Linux renameat2")
@pytest.mark.skipif(os.geteuid() != 0, reason="the attacker's dir must belong to another user")
def test_swapping_state_dirs_during_verify_never_verifies(swapped, tmp_path):
    outcomes: dict[str, int] = {}
    for _ in range(3000):
        try:
            verdict = sessions.check(swapped, NUMBER, ATTACKER_CODE)
            key = "verified" if verdict.verified else "rejected"
        except StoreError:
            key = "refused"
        outcomes[key] = outcomes.get(key, 0) + 1
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(swapped), NO_COLOR="1")
    for _ in range(20):
        result = run_cli(["verify", NUMBER, "--code", ATTACKER_CODE], env)
        assert result.returncode in (1, 2), result.stderr
        assert "verified:" not in result.stderr
    assert "verified" not in outcomes, outcomes
    assert outcomes.get("refused", 0) > 0, outcomes  # the attacker's dir was met, and refused


@pytest.mark.skipif(not _has_renameat2(), reason="needs Linux renameat2")
def test_swapping_under_a_parent_others_can_write_is_refused_every_time(swapped):
    os.chmod(swapped.parent, 0o777)  # what the attacker needs to rename anything there
    for _ in range(200):
        with pytest.raises(StoreError) as info:
            sessions.check(swapped, NUMBER, ATTACKER_CODE)
        assert info.value.message.startswith(f"the state dir's ancestor {swapped.parent} is writable by other users")


def test_hostile_state_dir_values(tmp_path, monkeypatch):
    assert refused(Path("/")) == "the state dir cannot be /: " + HINT
    afile = tmp_path / "file"
    afile.write_bytes(b"")
    with pytest.raises(StoreError) as info:
        Store.open(afile / "state")
    assert info.value.message == f"the state dir's ancestor {afile} exists and is not a directory"
    monkeypatch.chdir(tmp_path)
    with Store.open(Path("relative") / ".." / "relative" / "state") as s:  # made absolute, then walked
        add(s, "s1", REAL_CODE)
    assert (tmp_path / "relative" / "state" / store_mod.DB_NAME).is_file()
