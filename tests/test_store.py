"""The stores, through their public API only: the behaviour tests run against both backends
(the embedded SQLite store and the shared Redis store, on a real redis-server), the file tests
against SQLite (test_store_redis.py has the Redis-only ones).

Every test drives the store with a clock it controls (never sleeping) and re-reads what was
stored through a fresh store, as another voice2fa process (or machine) would see it. The races
use real processes started together behind a barrier.
"""

from __future__ import annotations

import asyncio

import itertools
import json
import multiprocessing
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.helpers import voice2fa_command
from tests.redis_server import REDIS_SERVER, RedisServer
from voice2fa_cli.stores import sqlite as store_mod
from voice2fa_cli.errors import EXIT_USAGE, StoreError
from voice2fa_cli import policy
from voice2fa_cli.policy import clock_text
from voice2fa_cli.stores.base import NoStore
from voice2fa_cli.stores.sqlite import Store
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec

NUMBER = "+15551234567"
OTHER = "+15557654321"
T0 = 1_700_000_000.0
CODE = "481516"
TTL = 600.0

USED = "this code was already used: send a new one"
LOCKED = "locked: too many wrong codes; send a new one"
WRONG_THEN_LOCKED = "wrong code; locked: too many wrong codes; send a new one"
SUPERSEDED = "superseded by a newer code: use the newest one"
UNDELIVERED = "no open session: the last call did not deliver the code; send a new one"


def no_session(number: str) -> str:
    return f"no open session for {number}: run `voice2fa send {number}` first"


def wrong(left: int) -> str:
    return f"wrong code ({left} attempt{'s' if left != 1 else ''} left)"


def number_locked(number: str, until: float) -> str:
    return f"locked: too many wrong codes for {number}; try again after {clock_text(until)}"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, name → bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def add(store: Store, session_id: str = "s1", number: str = NUMBER, code: str = CODE, *, ttl: float = TTL,
        max_attempts: int = policy.MAX_ATTEMPTS, call_sid: str | None = None,
        call_status: str | None = None):
    return store.create_session(session_id=session_id, number=number, code=code, ttl=ttl,
                                max_attempts=max_attempts, call_sid=call_sid, call_status=call_status)


@pytest.fixture
def clock() -> list[float]:
    """The store's time: tests move it by assigning clock[0]."""
    return [T0]


@pytest.fixture(params=["sqlite", "redis", "redis-asyncio"])
def where(request, state_dir, tmp_path) -> StoreSpec:
    """The store under test: SQLite in the state dir, or a real Redis (emptied) with a shared
    key file, through the sync client or (redis-asyncio: `store` only) the asyncio one that
    `voice2fa serve` uses. Every behaviour test runs against each."""
    if request.param == "sqlite":
        return StoreSpec(state_dir=state_dir)
    pytest.importorskip("redis")
    server = request.getfixturevalue("redis_server")
    server.flush()
    key_file = tmp_path / "shared.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    return StoreSpec(state_dir=state_dir, url=server.url, key_file=key_file)


class OnLoopStore:
    """The asyncio Redis store (stores/redis_async.py) driven from these synchronous tests, on a
    loop of its own: every method of the store's interface is the asyncio driver's, awaited
    there; only what the interface lacks (the tests' own probes) is the blocking store's."""

    def __init__(self, sync) -> None:
        from voice2fa_cli.stores.base import AsyncSessionStore
        from voice2fa_cli.stores.redis_async import AsyncRedisStore

        self._sync = sync
        self._aio = AsyncRedisStore.like(sync)
        self._interface = {name for name in vars(AsyncSessionStore) if not name.startswith("_")}
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str):
        if name in self._interface:
            method = getattr(self._aio, name)
            return lambda *args, **kwargs: self._loop.run_until_complete(method(*args, **kwargs))
        return getattr(self._sync, name)

    def close(self) -> None:
        self._loop.run_until_complete(self._aio.aclose())
        self._loop.close()
        self._sync.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def store(request, where, clock):
    s = open_store(where, clock=lambda: clock[0])
    if request.node.callspec.params.get("where") == "redis-asyncio":
        s = OnLoopStore(s)
    yield s
    s.close()


def fresh(where: StoreSpec | Path, clock: list[float] | None = None):
    """Another view of the same store, as a second process (or machine) would open it."""
    return open_store(where, create=False, clock=None if clock is None else (lambda: clock[0]))


# --- creating, reading back -------------------------------------------------------------------


def assert_refused(state_dir, message: str) -> None:
    """Opening the store, to create or to read, fails with exactly `message` and exit 2."""
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            Store.open(state_dir, create=create)
        assert info.value.message == message
        assert info.value.exit_code == 2


def test_create_session_stores_what_was_given(store, where, clock):
    created = add(store, "s1", call_sid="CA1", call_status="queued", max_attempts=3)

    with fresh(where) as other:
        stored = other.get("s1")
    assert stored == created
    assert stored == store_mod.Session(
        id="s1", number=NUMBER, created_at=T0, expires_at=T0 + TTL, attempts=0, max_attempts=3,
        state="calling", call_sid="CA1", call_status="queued", sandbox=False,
    )
    assert stored.attempts_left == 3


def test_get_newest_and_recent(store, where, clock):
    add(store, "a", NUMBER)
    clock[0] = T0 + 1
    add(store, "b", OTHER)
    clock[0] = T0 + 2
    add(store, "c", NUMBER)
    add(store, "d", NUMBER)  # same instant as c: insertion order decides

    with fresh(where) as other:
        assert other.get("nope") is None
        assert other.newest(NUMBER).id == "d"
        assert other.newest(OTHER).id == "b"
        assert other.newest("+15550000000") is None
        assert [s.id for s in other.recent()] == ["d", "c", "b", "a"]
        assert [s.id for s in other.recent(limit=2)] == ["d", "c"]
        assert {s.id: s.state for s in other.recent()} == {
            "a": "superseded", "b": "calling", "c": "superseded", "d": "calling",
        }


def test_key_is_kept_across_opens(state_dir, clock):
    with Store.open(state_dir, clock=lambda: clock[0]) as s:
        add(s, "s1")
    key = (state_dir / store_mod.KEY_NAME).read_bytes()

    with Store.open(state_dir, create=True, clock=lambda: clock[0]) as s:
        pass
    assert (state_dir / store_mod.KEY_NAME).read_bytes() == key
    with fresh(state_dir, clock) as other:
        verdict = other.check(NUMBER, CODE)
    assert (verdict.verified, verdict.reason) == (True, "verified")


# --- checking one session ---------------------------------------------------------------------


def test_right_code_verifies_once(store, where, clock):
    add(store, "s1")
    clock[0] = T0 + 30

    first = store.check(NUMBER, CODE)
    assert (first.verified, first.reason, first.attempts_left) == (True, "verified", 5)
    assert first.session.state == "verified"

    with fresh(where, clock) as other:
        again = other.check(NUMBER, CODE)
        assert (again.verified, again.reason) == (False, USED)
        stored = other.get("s1")
    assert (stored.state, stored.attempts) == ("verified", 0)
    by_id = store.check(NUMBER, CODE, session_id="s1")
    assert (by_id.verified, by_id.reason) == (False, USED)


def test_code_is_good_until_just_before_expires_at_and_expired_at_it(store, where, clock):
    add(store, "s1")
    add(store, "s2", OTHER)

    clock[0] = T0 + TTL - 0.001
    before = store.check(OTHER, CODE)
    assert (before.verified, before.reason) == (True, "verified")

    clock[0] = T0 + TTL
    at = store.check(NUMBER, CODE)
    assert (at.verified, at.reason) == (False, f"expired at {clock_text(T0 + TTL)}: send a new code")

    clock[0] = T0 + TTL + 3600
    later = store.check(NUMBER, CODE)
    assert (later.verified, later.reason) == (False, f"expired at {clock_text(T0 + TTL)}: send a new code")
    with fresh(where, clock) as other:
        assert other.get("s1").state != "verified"


def test_wrong_codes_count_down_then_lock_the_session(store, where, clock):
    add(store, "s1")
    got = []
    for i in range(5):
        clock[0] = T0 + i
        v = store.check(NUMBER, "000000")
        got.append((v.verified, v.reason, v.attempts_left))
    assert got == [
        (False, "wrong code (4 attempts left)", 4),
        (False, "wrong code (3 attempts left)", 3),
        (False, "wrong code (2 attempts left)", 2),
        (False, "wrong code (1 attempt left)", 1),
        (False, WRONG_THEN_LOCKED, 0),
    ]

    right = store.check(NUMBER, CODE)
    assert (right.verified, right.reason) == (False, LOCKED)
    with fresh(where, clock) as other:
        assert (other.check(NUMBER, CODE).reason) == LOCKED
        stored = other.get("s1")
    assert (stored.state, stored.attempts, stored.attempts_left) == ("locked", 5, 0)


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 4, 5])
def test_max_attempts(store, where, clock, max_attempts):
    add(store, "s1", max_attempts=max_attempts)
    reasons = [store.check(NUMBER, f"00000{i}").reason for i in range(max_attempts)]
    assert reasons == [wrong(left) for left in range(max_attempts - 1, 0, -1)] + [WRONG_THEN_LOCKED]
    assert store.check(NUMBER, CODE).reason == LOCKED
    with fresh(where, clock) as other:
        stored = other.get("s1")
    assert (stored.state, stored.attempts, stored.max_attempts) == ("locked", max_attempts, max_attempts)


def test_right_code_after_some_wrong_ones_verifies(store, where, clock):
    add(store, "s1")
    assert store.check(NUMBER, "111111").reason == wrong(4)
    assert store.check(NUMBER, "222222").reason == wrong(3)
    v = store.check(NUMBER, CODE)
    assert (v.verified, v.reason, v.attempts_left) == (True, "verified", 3)
    with fresh(where, clock) as other:
        stored = other.get("s1")
    assert (stored.state, stored.attempts) == ("verified", 2)


def test_newer_session_supersedes_older_open_ones(store, where, clock):
    add(store, "s1", code="111111")
    add(store, "s2", code="222222")
    add(store, "o1", OTHER, code="333333")
    clock[0] = T0 + 5
    add(store, "s3", code="444444")

    with fresh(where, clock) as other:
        states = {s.id: s.state for s in other.recent()}
    assert states == {"s1": "superseded", "s2": "superseded", "o1": "calling", "s3": "calling"}

    old = store.check(NUMBER, "222222")  # against the newest session: a wrong code
    assert (old.verified, old.reason, old.session.id) == (False, wrong(4), "s3")
    by_id = store.check(NUMBER, "111111", session_id="s1")
    assert (by_id.verified, by_id.reason, by_id.session.id) == (False, SUPERSEDED, "s1")
    assert store.check(NUMBER, "222222", session_id="s2").reason == SUPERSEDED
    assert store.check(OTHER, "333333").verified is True
    v = store.check(NUMBER, "444444", session_id="s3")
    assert (v.verified, v.reason) == (True, "verified")


def _write_lock_free(db: Path) -> bool:
    """Whether another connection could start a write transaction right now."""
    raw = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        raw.close()


def test_sessions_created_concurrently_keep_newest_and_open_in_agreement(state_dir):
    """Two sends for one number at once: A reads the time first, B creates its session in
    between. Whatever the order, the one session left open must be the newest (the one that
    `check` uses), so that its code verifies. The interleaving is forced through A's clock,
    and only when A does not yet hold the write lock (a store that reads its clock inside the
    transaction makes the interleaving impossible, which is what this test wants)."""
    Store.open(state_dir).close()
    b = Store.open(state_dir, clock=lambda: T0 + 1)
    fired = []

    def a_clock() -> float:
        if not fired:
            fired.append(True)
            if _write_lock_free(state_dir / store_mod.DB_NAME):
                add(b, "b", code="222222")
        return T0

    a = Store.open(state_dir, clock=a_clock)
    try:
        add(a, "a", code="111111")
    finally:
        a.close()
        b.close()

    with fresh(state_dir, [T0 + 2]) as other:
        sessions = other.recent()
        open_ = [s.id for s in sessions if s.state in ("calling", "delivered")]
        assert len(open_) == 1
        assert other.newest(NUMBER).id == open_[0]
        code = {"a": "111111", "b": "222222"}[open_[0]]
        v = other.check(NUMBER, code)
        assert (v.verified, v.reason) == (True, "verified")


def test_new_session_does_not_reopen_closed_ones(store, where, clock):
    add(store, "s1", code="111111")
    assert store.check(NUMBER, "111111").verified
    add(store, "s2", code="222222")
    with fresh(where, clock) as other:
        assert other.get("s1").state == "verified"
        assert other.get("s2").state == "calling"


def test_undelivered_session_is_closed(store, where, clock):
    add(store, "s1")
    store.record_call("s1", state="undelivered", call_status="busy")
    v = store.check(NUMBER, CODE)
    assert (v.verified, v.reason) == (False, UNDELIVERED)
    with fresh(where, clock) as other:
        stored = other.get("s1")
        assert other.check(NUMBER, CODE).reason == UNDELIVERED
    assert (stored.state, stored.call_status, stored.attempts) == ("undelivered", "busy", 0)


def test_delivered_session_stays_open(store, where, clock):
    add(store, "s1", call_status="queued")
    store.record_call("s1", state="delivered")
    store.record_call("s1", call_status="completed")
    with fresh(where, clock) as other:
        stored = other.get("s1")
    assert (stored.state, stored.call_status) == ("delivered", "completed")
    v = store.check(NUMBER, CODE)
    assert (v.verified, v.reason) == (True, "verified")


def test_record_call_never_reopens_a_closed_session(store, where, clock):
    add(store, "s1")
    assert store.check(NUMBER, CODE).verified
    store.record_call("s1", state="delivered", call_status="completed")
    store.record_call("s1", state="undelivered")
    with fresh(where, clock) as other:
        stored = other.get("s1")
    assert (stored.state, stored.call_status) == ("verified", "completed")
    assert store.check(NUMBER, CODE).reason == USED


def test_no_session(store, clock):
    v = store.check(NUMBER, CODE)
    assert (v.verified, v.reason, v.session) == (False, no_session(NUMBER), None)
    assert no_session(NUMBER) == "no open session for +15551234567: run `voice2fa send +15551234567` first"


def test_a_session_of_another_number_does_not_count(store, clock):
    add(store, "o1", OTHER)
    assert store.check(NUMBER, CODE).reason == no_session(NUMBER)
    by_id = store.check(NUMBER, CODE, session_id="o1")
    assert (by_id.verified, by_id.reason) == (False, no_session(NUMBER))
    assert store.check(OTHER, CODE).verified


def test_code_of_one_session_does_not_open_another(store, clock):
    add(store, "s1", code="111111")
    add(store, "o1", OTHER, code="222222")
    assert store.check(OTHER, "111111").reason == wrong(4)
    assert store.check(NUMBER, "222222").reason == wrong(4)


@pytest.mark.parametrize("entered", ["481517", "481506", "381516", "615184", "000000", "4815160"])
def test_near_misses_are_wrong(store, entered):
    add(store, "s1")
    v = store.check(NUMBER, entered)
    assert (v.verified, v.reason) == (False, wrong(4))


_numbers = itertools.count()


def test_property_check_accepts_exactly_the_right_code(where):
    clock = [T0]
    s = open_store(where, clock=lambda: clock[0])
    @settings(max_examples=60, deadline=None)
    @given(st.integers(6, 10).flatmap(lambda n: st.tuples(
        st.text(alphabet="0123456789", min_size=n, max_size=n),
        st.lists(st.text(alphabet="0123456789", min_size=n, max_size=n), min_size=1, max_size=4, unique=True),
    )))
    def check(case):
        code, wrongs = case
        assume(code not in wrongs)
        k = next(_numbers)
        number = f"+1555{k:07d}"
        add(s, f"p{k}", number, code, max_attempts=len(wrongs) + 1)
        for i, w in enumerate(wrongs):
            v = s.check(number, w)
            assert (v.verified, v.reason) == (False, wrong(len(wrongs) - i))
        v = s.check(number, code)
        assert (v.verified, v.reason) == (True, "verified")
        assert s.check(number, code).reason == USED

    try:
        check()
    finally:
        s.close()


# --- per-number failures across sessions --------------------------------------------------------


def test_ten_wrong_codes_in_an_hour_lock_the_number(store, where, clock):
    # 10 failures spread over four sessions and 50 minutes.
    plan = [("a", 3), ("b", 3), ("c", 3), ("d", 1)]
    t = T0
    for sid, n in plan:
        add(store, sid, code="111111", ttl=3 * 3600)
        for _ in range(n):
            assert store.check(NUMBER, "999999").verified is False
            t += 300
            clock[0] = t
    tenth = t - 300
    assert tenth - T0 == 2700
    until = tenth + policy.LOCK_SECONDS

    assert store.number_locked_until(NUMBER) == until
    assert store.number_locked_until(OTHER) is None
    v = store.check(NUMBER, "111111")
    assert (v.verified, v.reason) == (False, number_locked(NUMBER, until))

    # A new session does not reset the count; checks while locked neither count nor extend it.
    clock[0] = t + 60
    add(store, "e", code="222222", ttl=3 * 3600)
    for entered in ("222222", "000000", "222222"):
        v = store.check(NUMBER, entered)
        assert (v.verified, v.reason) == (False, number_locked(NUMBER, until))
    with fresh(where, clock) as other:
        assert other.number_locked_until(NUMBER) == until
        e = other.get("e")
        assert (e.state, e.attempts) == ("calling", 0)
        assert other.check(NUMBER, "222222").reason == number_locked(NUMBER, until)

    clock[0] = until - 0.001
    assert store.number_locked_until(NUMBER) == until
    assert store.check(NUMBER, "222222").reason == number_locked(NUMBER, until)

    clock[0] = until
    assert store.number_locked_until(NUMBER) is None
    v = store.check(NUMBER, "222222")
    assert (v.verified, v.reason, v.session.id) == (True, "verified", "e")


def test_other_numbers_are_not_locked_by_one_number(store, clock):
    for k in range(2):
        add(store, f"s{k}", code="111111")
        for _ in range(5):
            store.check(NUMBER, "999999")
    assert store.number_locked_until(NUMBER) is not None
    add(store, "o1", OTHER)
    assert store.number_locked_until(OTHER) is None
    assert store.check(OTHER, CODE).verified


def test_nine_failures_do_not_lock(store, clock):
    add(store, "a", code="111111")
    for _ in range(5):
        store.check(NUMBER, "999999")
    add(store, "b", code="222222")
    for _ in range(4):
        store.check(NUMBER, "999999")
    assert store.number_locked_until(NUMBER) is None
    v = store.check(NUMBER, "222222")
    assert (v.verified, v.reason) == (True, "verified")


def test_failures_older_than_the_window_do_not_count(store, where, clock):
    add(store, "a", code="111111")
    for _ in range(5):
        store.check(NUMBER, "999999")
    add(store, "b", code="222222", ttl=3 * 3600)
    for _ in range(4):
        store.check(NUMBER, "999999")

    clock[0] = T0 + policy.FAILURE_WINDOW + 1
    tenth = store.check(NUMBER, "999999")  # the tenth failure, but the first nine are over an hour old
    assert (tenth.verified, tenth.reason) == (False, WRONG_THEN_LOCKED)
    assert store.number_locked_until(NUMBER) is None
    with fresh(where, clock) as other:
        assert other.number_locked_until(NUMBER) is None
    add(store, "c", code="333333")
    v = store.check(NUMBER, "333333")
    assert (v.verified, v.reason) == (True, "verified")


# --- files: permissions, key, nothing readable --------------------------------------------------


def test_files_are_private_even_with_a_permissive_umask(tmp_path, clock):
    state_dir = tmp_path / "deep" / "state"
    old = os.umask(0)
    try:
        s = Store.open(state_dir, clock=lambda: clock[0])
        add(s, "s1")
        assert s.check(NUMBER, "000000").reason == wrong(4)
        names = sorted(p.name for p in state_dir.iterdir())
        modes = {p.name: mode(p) for p in state_dir.iterdir()}
        dir_mode = mode(state_dir)
        key_size = (state_dir / store_mod.KEY_NAME).stat().st_size
    finally:
        os.umask(old)
        s.close()
    db = store_mod.DB_NAME
    assert names == sorted([store_mod.KEY_NAME, db, f"{db}-wal", f"{db}-shm"])
    assert dir_mode == 0o700
    assert modes == {name: 0o600 for name in names}
    assert key_size == store_mod.KEY_BYTES == 32


def test_an_existing_private_dir_is_used_as_it_is(tmp_path, clock):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    os.chmod(state_dir, 0o700)
    with Store.open(state_dir, clock=lambda: clock[0]) as s:
        add(s, "s1")
    assert mode(state_dir) == 0o700
    assert mode(state_dir / store_mod.KEY_NAME) == 0o600
    assert mode(state_dir / store_mod.DB_NAME) == 0o600


@pytest.mark.parametrize("loose", [0o755, 0o750, 0o701, 0o777])
def test_state_dir_open_to_others_is_refused(tmp_path, loose):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chmod(state_dir, loose)
    with pytest.raises(StoreError) as info:
        Store.open(state_dir)
    assert info.value.message == (
        f"the state dir {state_dir} is open to other users (mode {loose:o}): run `chmod 700 {state_dir}`"
    )
    assert info.value.exit_code == EXIT_USAGE == 2
    assert list(state_dir.iterdir()) == []
    assert mode(state_dir) == loose


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o666])
def test_key_file_open_to_others_is_refused(state_dir, loose):
    Store.open(state_dir).close()
    key_path = state_dir / store_mod.KEY_NAME
    key = key_path.read_bytes()
    os.chmod(key_path, loose)
    assert_refused(state_dir, f"the key file {key_path} is open to other users (mode {loose:o}): run `chmod 600 {key_path}`")
    assert key_path.read_bytes() == key


@pytest.mark.parametrize("loose", [0o644, 0o660])
def test_database_open_to_others_is_refused(state_dir, loose):
    with Store.open(state_dir) as s:
        add(s, "s1")
    db = state_dir / store_mod.DB_NAME
    before = db.read_bytes()
    os.chmod(db, loose)
    assert_refused(state_dir, f"the database {db} is open to other users (mode {loose:o}): run `chmod 600 {db}`")
    assert db.read_bytes() == before


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_file_of_the_wrong_length_is_damaged(state_dir, size):
    Store.open(state_dir).close()
    key_path = state_dir / store_mod.KEY_NAME
    write_private(key_path, b"k" * size)
    assert_refused(state_dir, f"the key file {key_path} is damaged ({size} bytes, not 32)")
    assert key_path.read_bytes() == b"k" * size


def test_symlinked_key_file_is_refused(state_dir, tmp_path):
    Store.open(state_dir).close()
    key_path = state_dir / store_mod.KEY_NAME
    elsewhere = tmp_path / "elsewhere-key"
    write_private(elsewhere, key_path.read_bytes())
    key_path.unlink()
    key_path.symlink_to(elsewhere)
    assert_refused(state_dir, f"the key file {key_path} is a symbolic link: voice2fa keeps its state in real files")
    assert key_path.is_symlink()


def test_dangling_symlinked_key_file_is_refused_and_not_followed(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    os.chmod(state_dir, 0o700)
    target = tmp_path / "planted-key"
    (state_dir / store_mod.KEY_NAME).symlink_to(target)
    with pytest.raises(StoreError) as info:
        Store.open(state_dir)
    assert info.value.message == (
        f"the key file {state_dir / store_mod.KEY_NAME} is a symbolic link: voice2fa keeps its state in real files"
    )
    assert info.value.exit_code == 2
    assert not target.exists()


def test_symlinked_database_is_refused(state_dir, tmp_path):
    with Store.open(state_dir) as s:
        add(s, "s1")
    db = state_dir / store_mod.DB_NAME
    moved = tmp_path / "moved.sqlite3"
    shutil.move(db, moved)
    db.symlink_to(moved)
    before = moved.read_bytes()
    assert_refused(state_dir, f"the database {db} is a symbolic link: voice2fa keeps its state in real files")
    assert moved.read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_key_file_of_another_user_is_refused(state_dir):
    Store.open(state_dir).close()
    key_path = state_dir / store_mod.KEY_NAME
    os.chown(key_path, 65534, 65534)
    with pytest.raises(StoreError) as info:
        Store.open(state_dir)
    assert info.value.message == f"the key file {key_path} belongs to another user: use a state dir of your own"
    assert info.value.exit_code == 2


def test_state_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "state"
    path.write_bytes(b"not a dir")
    with pytest.raises(StoreError) as info:
        Store.open(path)
    assert info.value.message == f"the state dir {path} exists and is not a directory"
    assert info.value.exit_code == 2
    assert path.read_bytes() == b"not a dir"


def test_open_without_create_on_an_empty_dir_raises_nostore_and_creates_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoStore):
        Store.open(empty, create=False)
    assert list(empty.iterdir()) == []

    missing = tmp_path / "missing" / "state"
    with pytest.raises(NoStore):
        Store.open(missing, create=False)
    assert not (tmp_path / "missing").exists()


def _scan(directory: Path, secrets_: list[str]) -> list[tuple[str, str, str]]:
    found = []
    for name, data in snapshot(directory).items():
        for secret in secrets_:
            for encoding in ("ascii", "utf-16-le", "utf-16-be"):
                if secret.encode(encoding) in data:
                    found.append((name, secret, encoding))
    return found


def test_no_code_is_readable_at_rest(state_dir, clock):
    code, wrong_code, later_code = "4815162342", "9081726354", "7345129860"
    s = Store.open(state_dir, clock=lambda: clock[0])
    try:
        add(s, "sess-a", code=code, max_attempts=5)
        assert s.check(NUMBER, wrong_code).reason == wrong(4)
        assert s.check(NUMBER, code).verified
        add(s, "sess-b", code=later_code)
        s.record_call("sess-b", state="delivered", call_status="completed")
        names = set(snapshot(state_dir))
        db = store_mod.DB_NAME
        assert {store_mod.KEY_NAME, db, f"{db}-wal", f"{db}-shm"} <= names
        assert _scan(state_dir, [code, wrong_code, later_code]) == []
    finally:
        s.close()
    # After the last connection closes (WAL checkpointed into the database file).
    assert _scan(state_dir, [code, wrong_code, later_code]) == []
    with sqlite3.connect(state_dir / store_mod.DB_NAME) as raw:
        dump = "\n".join(raw.iterdump())
    raw.close()
    for secret in (code, wrong_code, later_code):
        assert secret not in dump


# --- damage --------------------------------------------------------------------------------------


def _make_store(state_dir: Path) -> Path:
    """A valid state dir (key and all); returns the database path."""
    with Store.open(state_dir) as s:
        add(s, "s1")
    return state_dir / store_mod.DB_NAME


def _foreign_db(path: Path, application_id: int = 0) -> None:
    path.unlink(missing_ok=True)
    raw = sqlite3.connect(path)
    raw.executescript(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
        "INSERT INTO notes (body) VALUES ('shopping list'), ('call mum');"
    )
    if application_id:
        raw.execute(f"PRAGMA application_id = {application_id}")
    raw.commit()
    raw.close()
    os.chmod(path, 0o600)


@pytest.mark.parametrize("create", [True, False])
def test_garbage_database_is_refused_and_left_alone(state_dir, create):
    db = _make_store(state_dir)
    garbage = bytes(range(256)) * 16
    write_private(db, garbage)
    before = snapshot(state_dir)
    with pytest.raises(StoreError) as info:
        Store.open(state_dir, create=create)
    assert info.value.message == f"the database {db} is damaged or not voice2fa's: move it away to start afresh"
    assert info.value.exit_code == 2
    assert db.read_bytes() == garbage
    assert snapshot(state_dir) == before


@pytest.mark.parametrize("create", [True, False])
@pytest.mark.parametrize("application_id", [0, 0x12345678])
def test_foreign_sqlite_database_is_refused_and_left_alone(state_dir, create, application_id):
    db = _make_store(state_dir)
    _foreign_db(db, application_id)
    before = db.read_bytes()
    with pytest.raises(StoreError) as info:
        Store.open(state_dir, create=create)
    assert info.value.message == (
        f"the database {db} is not voice2fa's: move it away or choose another VOICE2FA_STATE_DIR"
    )
    assert info.value.exit_code == 2
    assert db.read_bytes() == before
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("SELECT body FROM notes ORDER BY id").fetchall() == [("shopping list",), ("call mum",)]
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        raw.close()


@pytest.mark.parametrize("create", [True, False])
def test_database_of_a_newer_schema_is_refused_and_left_alone(state_dir, create):
    db = _make_store(state_dir)
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {store_mod.SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    before = db.read_bytes()
    with pytest.raises(StoreError) as info:
        Store.open(state_dir, create=create)
    assert info.value.message == (
        f"the database {db} was written by a newer voice2fa (schema {store_mod.SCHEMA_VERSION + 1}): upgrade voice2fa"
    )
    assert info.value.exit_code == 2
    assert db.read_bytes() == before


# --- a read-only state dir ------------------------------------------------------------------------
#
# Root writes through any mode bits, so when the tests run as root the attempt runs in a child
# whose capabilities to override file permissions are dropped (util-linux `setpriv`): there the
# 0500 directory is really read-only.

_UNPRIVILEGED = r"""
import json, os, sys
from pathlib import Path
from voice2fa_cli.stores import sqlite as store
from voice2fa_cli.errors import StoreError
state_dir, action, number = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
code = sys.stdin.readline().strip()
out = {"writable": os.access(state_dir, os.W_OK)}
try:
    s = store.Store.open(state_dir, create=(action == "open-create"))
    if action == "check":
        v = s.check(number, code)
        out.update(result="verdict", verified=v.verified, reason=v.reason)
    else:
        out.update(result="opened")
except StoreError as exc:
    out.update(result="StoreError", message=exc.message, exit_code=exc.exit_code)
print(json.dumps(out))
"""


def _unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a directory read-only")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _read_only_attempt(state_dir: Path, action: str, code: str = CODE) -> dict:
    proc = subprocess.run(
        _unprivileged_prefix() + [sys.executable, "-c", _UNPRIVILEGED, str(state_dir), action, NUMBER],
        input=code + "\n", capture_output=True, text=True, timeout=30,
    )
    if proc.returncode != 0 and not proc.stdout:
        pytest.skip(f"cannot drop the privileges to test a read-only dir: {proc.stderr.strip()[-300:]}")
    out = json.loads(proc.stdout)
    if out["writable"]:
        pytest.skip("a 0500 directory is still writable here")
    return out


def test_read_only_fresh_state_dir(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chmod(state_dir, 0o500)
    try:
        out = _read_only_attempt(state_dir, "open-create")
        assert out["result"] == "StoreError"
        assert out["exit_code"] == 2
        assert out["message"] == f"cannot create {state_dir / store_mod.KEY_NAME}: Permission denied"
        assert list(state_dir.iterdir()) == []
    finally:
        os.chmod(state_dir, 0o700)


def test_read_only_state_dir_with_a_store(state_dir, clock):
    db = _make_store(state_dir)
    before = snapshot(state_dir)
    os.chmod(state_dir, 0o500)
    try:
        checked = _read_only_attempt(state_dir, "check")
        assert checked == {
            "writable": False, "result": "StoreError", "exit_code": 2,
            "message": f"the database {db} is read-only: check the permissions of its directory",
        }
        opened = _read_only_attempt(state_dir, "open-create")
        assert opened["result"] == "StoreError"
        assert opened["exit_code"] == 2
        assert str(state_dir) in opened["message"]
        assert snapshot(state_dir) == before
    finally:
        os.chmod(state_dir, 0o700)
    # Nothing was consumed: the code still verifies once the directory is writable again.
    with Store.open(state_dir, create=False) as s:
        assert s.get("s1").attempts == 0
        v = s.check(NUMBER, CODE)
    assert (v.verified, v.reason) == (True, "verified")


def test_verify_in_a_read_only_state_dir_exits_2(state_dir):
    db = _make_store(state_dir)
    os.chmod(state_dir, 0o500)
    try:
        probe = _read_only_attempt(state_dir, "check")  # skips where the dir cannot be made read-only
        assert probe["result"] == "StoreError"
        env = {**os.environ, "VOICE2FA_STATE_DIR": str(state_dir), "NO_COLOR": "1"}
        proc = subprocess.run(
            _unprivileged_prefix() + voice2fa_command() + ["verify", NUMBER],
            input=CODE + "\n", capture_output=True, text=True, env=env, timeout=30,
        )
    finally:
        os.chmod(state_dir, 0o700)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"error: the database {db} is read-only: check the permissions of its directory"
    )
    assert CODE not in proc.stderr + proc.stdout


# --- real races between processes -----------------------------------------------------------------

RACERS = 12


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _race_check(where: StoreSpec | str, number: str, code: str, barrier, results) -> None:
    try:
        s = open_store(where if isinstance(where, StoreSpec) else Path(where), create=False)
        barrier.wait(20)
        v = s.check(number, code)
        s.close()
        results.put((v.verified, v.reason))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc)))


def _race_create(where: StoreSpec | str, session_id: str, number: str, code: str, barrier, results) -> None:
    try:
        barrier.wait(20)
        s = open_store(where if isinstance(where, StoreSpec) else Path(where), create=True)
        created = s.create_session(session_id=session_id, number=number, code=code, ttl=TTL,
                                   call_sid=None, call_status=None)
        s.close()
        results.put((created.id, created.state))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc)))


def _run_race(target, argss: list[tuple]) -> list[tuple]:
    ctx = _context()
    barrier = ctx.Barrier(len(argss))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for args in argss]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=30) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return got


def test_race_right_code_succeeds_once(where):
    with open_store(where) as s:
        add(s, "s1")
    got = _run_race(_race_check, [(where, NUMBER, CODE)] * RACERS)
    assert sorted(got) == sorted([(True, "verified")] + [(False, USED)] * (RACERS - 1))
    with fresh(where) as other:
        stored = other.get("s1")
    assert (stored.state, stored.attempts) == ("verified", 0)


def test_race_wrong_codes_never_exceed_max_attempts(where):
    with open_store(where) as s:
        add(s, "s1", max_attempts=5)
    wrongs = [f"{100000 + i}" for i in range(RACERS)]
    got = _run_race(_race_check, [(where, NUMBER, w) for w in wrongs])
    assert all(v is False for v, _ in got), got
    reasons = sorted(r for _, r in got)
    assert reasons == sorted(
        [wrong(4), wrong(3), wrong(2), wrong(1), WRONG_THEN_LOCKED] + [LOCKED] * (RACERS - 5)
    )
    assert sum(r.startswith("wrong code") for r in reasons) == 5
    with fresh(where) as other:
        stored = other.get("s1")
        assert other.number_locked_until(NUMBER) is None  # 5 failures, under the per-number limit
    assert (stored.state, stored.attempts) == ("locked", 5)


def test_race_create_sessions_for_different_numbers(where):
    with open_store(where):
        pass
    numbers = [f"+1555000{i:04d}" for i in range(RACERS)]
    got = _run_race(_race_create, [(where, f"s{i}", n, f"{200000 + i}") for i, n in enumerate(numbers)])
    assert sorted(got) == sorted((f"s{i}", "calling") for i in range(RACERS))
    with fresh(where) as other:
        assert sorted((s.id, s.number, s.state) for s in other.recent()) == sorted(
            (f"s{i}", n, "calling") for i, n in enumerate(numbers)
        )
        for i, n in enumerate(numbers):
            assert other.check(n, f"{200000 + i}").verified


@pytest.mark.parametrize("round_", range(3))
def test_race_create_sessions_on_first_use(tmp_path, round_):
    """Several first-ever sends at once (fresh state dir): one key, one schema, every session
    kept. Run in a few rounds: the window is narrow."""
    state_dir = tmp_path / "first" / "state"
    numbers = [f"+1555000{i:04d}" for i in range(RACERS)]
    got = _run_race(_race_create, [(str(state_dir), f"s{i}", n, f"{300000 + i}") for i, n in enumerate(numbers)])
    assert sorted(got) == sorted((f"s{i}", "calling") for i in range(RACERS))
    with fresh(state_dir) as other:
        assert len(other.recent()) == RACERS
        for i, n in enumerate(numbers):
            assert other.check(n, f"{300000 + i}").verified  # every process used the same key


def test_race_create_sessions_for_one_number_leaves_one_open(where):
    with open_store(where):
        pass
    got = _run_race(_race_create, [(where, f"s{i}", NUMBER, f"{400000 + i}") for i in range(RACERS)])
    # Each process got its session back (it may already be superseded by a faster one).
    assert sorted(sid for sid, _ in got) == sorted(f"s{i}" for i in range(RACERS))
    assert {state for _, state in got} <= {"calling", "superseded"}
    with fresh(where) as other:
        sessions = other.recent()
        assert len(sessions) == RACERS
        open_ = [s for s in sessions if s.state == "calling"]
        assert len(open_) == 1
        assert {s.state for s in sessions if s is not open_[0]} == {"superseded"}
        # The one open session is the newest, so its code (and only its code) verifies.
        assert other.newest(NUMBER).id == open_[0].id
        code = f"{400000 + int(open_[0].id[1:])}"
        v = other.check(NUMBER, code)
        assert (v.verified, v.reason) == (True, "verified")


def test_race_cli_verify_succeeds_once(state_dir):
    with Store.open(state_dir) as s:
        add(s, "s1")
        s.record_call("s1", state="delivered")
    env = {**os.environ, "VOICE2FA_STATE_DIR": str(state_dir), "NO_COLOR": "1"}
    procs = [
        subprocess.Popen(voice2fa_command() + ["verify", NUMBER], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(RACERS)
    ]
    try:
        # Off a terminal verify prints no prompt (issue 10): the processes race from their start.
        for p in procs:
            p.stdin.write(CODE + "\n")
            p.stdin.flush()
        for p in procs:
            p.stdin.close()
        codes = [p.wait(30) for p in procs]
        errs = [p.stderr.read() for p in procs]
        outs = [p.stdout.read() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for stream in (p.stdout, p.stderr):
                stream.close()
    assert sorted(codes) == [0] + [1] * (RACERS - 1)
    assert sorted(errs) == sorted(
        [f"verified: {NUMBER}\n"] + [f"error: {USED}\n"] * (RACERS - 1)
    )
    assert outs == [""] * RACERS
    with fresh(state_dir) as other:
        assert other.get("s1").state == "verified"


# --- the clock (issue 9): a sequence orders sessions; a clock step never lengthens a code's life ---

CLOCK_BACK = "expired: the code is older than its lifetime (the system clock was set back); send a new code"


class Clocks:
    """The wall clock (which an administrator or NTP can step) and the boot clock (which only
    runs forward, and restarts at a reboot with a new boot id), moved by the test."""

    def __init__(self) -> None:
        self.wall, self.up, self.boot = T0, 1000.0, "boot-1"

    def run(self, seconds: float) -> None:  # time passes
        self.wall += seconds
        self.up += seconds

    def step(self, seconds: float) -> None:  # the wall clock is set
        self.wall += seconds

    def reboot(self, boot: str) -> None:
        self.boot, self.up = boot, 5.0

    def open(self, where: StoreSpec | Path):
        """SQLite also reads the boot clock; Redis has only the server's time (here the test's)."""
        if isinstance(where, StoreSpec) and where.shared:
            return open_store(where, clock=lambda: self.wall)
        state_dir = where.state_dir if isinstance(where, StoreSpec) else where
        return Store.open(state_dir, clock=lambda: self.wall, uptime=lambda: (self.boot, self.up))


def test_a_clock_step_back_of_120_s_keeps_the_newest_session_the_newest(where):
    clocks = Clocks()
    with clocks.open(where) as s:
        add(s, "first", code="111111")
        clocks.run(5)
        clocks.step(-120)
        add(s, "second", code="222222")
        assert [x.id for x in s.recent()] == ["second", "first"]
        assert s.newest(NUMBER).id == "second"
        v = s.check(NUMBER, "222222")
        assert (v.verified, v.reason, v.session.id) == (True, "verified", "second")
        assert s.get("first").state == "superseded"


@pytest.mark.parametrize("back", [120, 3600])
def test_a_clock_step_back_never_revives_an_expired_code(where, back):
    clocks = Clocks()
    with clocks.open(where) as s:
        add(s, "s1")
        clocks.run(TTL + 100)
        assert s.check(NUMBER, CODE).reason == f"expired at {clock_text(T0 + TTL)}: send a new code"
        clocks.step(-back)  # the wall clock now says the code has life left
        v = s.check(NUMBER, CODE)
        assert (v.verified, v.reason) == (False, CLOCK_BACK)
    with clocks.open(where) as other:  # another process sees the same
        assert other.check(NUMBER, CODE).verified is False


def test_a_clock_step_back_in_the_middle_never_lengthens_the_ttl(state_dir):
    clocks = Clocks()
    with clocks.open(state_dir) as s:
        add(s, "s1")
        clocks.run(500)
        clocks.step(-400)  # the wall clock says 100 s have passed
        clocks.run(TTL - 500)  # the TTL is over: the wall clock says only 300 s
        v = s.check(NUMBER, CODE)
        assert (v.verified, v.reason) == (False, CLOCK_BACK)


def test_a_code_sent_after_a_clock_step_back_lives_its_whole_ttl(where):
    clocks = Clocks()
    with clocks.open(where) as s:
        add(s, "old", code="111111")
        clocks.run(10)
        clocks.step(-3600)
        add(s, "new", code="222222")
        clocks.run(TTL - 1)
        assert s.check(NUMBER, "222222").verified


def test_across_a_reboot_a_clock_behind_its_highest_reading_ends_the_code(state_dir):
    clocks = Clocks()
    with clocks.open(state_dir) as s:
        add(s, "s1", code="111111")
        add(s, "s2", OTHER, code="222222")
        clocks.run(TTL + 100)
        assert s.check(NUMBER, "000000").verified is False  # the store sees the time past the TTL
    clocks.reboot("boot-2")
    clocks.step(-(TTL + 100) + 60)  # the machine comes back with a clock that says 60 s have passed
    with clocks.open(state_dir) as s:
        v = s.check(OTHER, "222222")
        assert (v.verified, v.reason) == (False, CLOCK_BACK)


def test_across_a_reboot_a_clock_set_before_the_creation_ends_the_code(state_dir):
    clocks = Clocks()
    with clocks.open(state_dir) as s:
        add(s, "s1")
    clocks.reboot("boot-2")
    clocks.step(-3600)
    with clocks.open(state_dir) as s:
        assert s.check(NUMBER, CODE).reason == CLOCK_BACK


def test_across_a_reboot_the_wall_clock_still_counts(state_dir):
    clocks = Clocks()
    with clocks.open(state_dir) as s:
        add(s, "s1")
    clocks.reboot("boot-2")
    clocks.step(60)
    with clocks.open(state_dir) as s:
        assert s.check(NUMBER, CODE).verified


# --- real and sandbox sessions apart (issue 9) ----------------------------------------------------


def test_sandbox_sessions_live_in_their_own_database(where, clock):
    with open_store(where, clock=lambda: clock[0]) as real:
        add(real, "real", code="111111")
        reservation = real.reserve_call(NUMBER, 30)
        assert reservation
    with open_store(where, sandbox=True, clock=lambda: clock[0]) as sandbox:
        add(sandbox, "sim", code="222222")  # never supersedes the real session
        assert sandbox.sandbox and sandbox.get("sim").sandbox
        assert sandbox.get("real") is None
        for i in range(policy.NUMBER_FAILURE_LIMIT):  # failures in the sandbox…
            if i % policy.MAX_ATTEMPTS == 0:
                add(sandbox, f"sim{i}", code="333333")
            sandbox.check(NUMBER, "000000")
        assert sandbox.number_locked_until(NUMBER) is not None
    with open_store(where, clock=lambda: clock[0]) as real:
        assert real.get("sim") is None
        assert real.get("real").state == "calling" and not real.get("real").sandbox
        assert real.number_locked_until(NUMBER) is None  # …never lock the real number
        assert real.check(NUMBER, "222222").reason == wrong(4)
        assert real.check(NUMBER, "111111").verified
    if not where.shared:  # SQLite: a database of their own
        assert sorted(p.name for p in where.state_dir.iterdir() if p.suffix == ".sqlite3") == [
            store_mod.SANDBOX_DB_NAME, store_mod.DB_NAME
        ]
        assert store_mod.SANDBOX_DB_NAME == "sandbox.sqlite3"


def test_sessions_checks_real_or_sandbox_and_lists_both(where):
    import time

    from voice2fa_cli import sessions

    now = time.time()  # sessions.check reads the real clock
    with open_store(where, clock=lambda: now) as real:
        add(real, "real", code="111111")
    with open_store(where, sandbox=True, clock=lambda: now + 1) as sandbox:
        add(sandbox, "sim", code="222222")
    _, listed = sessions.recent_sessions(where, 10)
    assert [(s.id, s.sandbox) for s in listed] == [("sim", True), ("real", False)]
    assert sessions.check(where, NUMBER, "222222").reason == wrong(4)
    assert sessions.check(where, NUMBER, "111111", sandbox=True).reason == wrong(4)
    assert sessions.check(where, NUMBER, "222222", sandbox=True).verified
    assert sessions.check(where, NUMBER, "111111").verified


def test_a_version_1_database_loses_its_sandbox_sessions_and_keeps_its_order(state_dir):
    state_dir.mkdir(mode=0o700)
    os.chmod(state_dir, 0o700)
    write_private(state_dir / store_mod.KEY_NAME, b"k" * 32)
    db = state_dir / store_mod.DB_NAME
    conn = sqlite3.connect(db)
    conn.executescript(store_mod._SCHEMA[0])
    for i, (sid, sandbox) in enumerate([("r1", 0), ("sim", 1)]):
        conn.execute(
            "INSERT INTO sessions (id, number, created_at, expires_at, digest, max_attempts, state, sandbox)"
            " VALUES (?, ?, ?, ?, x'00', 5, 'calling', ?)", (sid, NUMBER, T0 + i, T0 + i + TTL, sandbox),
        )
    conn.execute(f"PRAGMA application_id = {store_mod.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    os.chmod(db, 0o600)
    with Store.open(state_dir, clock=lambda: T0 + 2) as s:
        assert [x.id for x in s.recent()] == ["r1"]
        add(s, "r2")
        assert [x.id for x in s.recent()] == ["r2", "r1"]


# --- a full disk (issue 9) -----------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (root, where mount is allowed), unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir(mode=0o700)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", where],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", where], check=True)


def _fill(where: Path) -> None:
    with open(where / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 1024)
        except OSError:
            pass


def test_a_full_disk_says_so(tiny_disk):
    state_dir = tiny_disk / "state"
    Store.open(state_dir).close()
    _fill(tiny_disk)
    full = f"the disk holding {state_dir / store_mod.DB_NAME} is full: free some space and try again"
    for _ in range(2):
        with pytest.raises(StoreError) as info:
            with Store.open(state_dir) as s:
                add(s, "s1")
        assert (info.value.message, info.value.exit_code) == (full, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(state_dir), NO_COLOR="1")
    result = subprocess.run(voice2fa_command() + ["verify", NUMBER, "--code", CODE], env=env,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr.splitlines()) == (2, [f"error: {full}"])
    (tiny_disk / "filler").unlink()
    with Store.open(state_dir) as s:
        add(s, "s1")
        assert s.check(NUMBER, CODE).verified


def test_verify_sandbox_without_a_sandbox_session_says_so(where):
    from voice2fa_cli import sessions

    with open_store(where) as real:
        add(real, "real")
    v = sessions.check(where, NUMBER, CODE, sandbox=True)
    assert (v.verified, v.reason) == (
        False, f"no sandbox session for {NUMBER}: run `voice2fa send --sandbox {NUMBER}` first"
    )
    if not where.shared:
        assert not (where.state_dir / store_mod.SANDBOX_DB_NAME).exists()  # checking creates nothing
    with open_store(where, sandbox=True) as sandbox:  # a sandbox store that holds another number only
        add(sandbox, "other", OTHER)
    assert sessions.check(where, NUMBER, CODE, sandbox=True).reason == (
        f"no sandbox session for {NUMBER}: run `voice2fa send --sandbox {NUMBER}` first"
    )


# --- records (voice2fa serve: services, API keys, verifications) -----------------------------


def test_records_are_stored_read_back_and_listed_by_id(store, where, clock):
    assert store.get_record("service", "VA1") is None
    assert store.list_records("service") == []
    assert store.put_record("service", "VA2", {"name": "two", "n": 2}) is True
    assert store.put_record("service", "VA1", {"name": "one", "n": 1}) is True
    assert store.put_record("key", "VA1", {"other": "kind"}) is True
    with fresh(where, clock) as other:
        assert other.get_record("service", "VA1") == {"name": "one", "n": 1}
        assert other.list_records("service") == [{"name": "one", "n": 1}, {"name": "two", "n": 2}]
        assert other.list_records("key") == [{"other": "kind"}]


def test_a_record_is_replaced_unless_only_new(store, where, clock):
    assert store.put_record("key", "SK1", {"v": 1}, only_new=True) is True
    assert store.put_record("key", "SK1", {"v": 2}, only_new=True) is False
    assert store.get_record("key", "SK1") == {"v": 1}
    assert store.put_record("key", "SK1", {"v": 3}) is True
    with fresh(where, clock) as other:
        assert other.get_record("key", "SK1") == {"v": 3}


def test_a_record_with_a_ttl_ends_on_the_stores_clock(store, where, clock):
    store.put_record("verification", "VE1", {"v": 1}, ttl=60)
    clock[0] = T0 + 59.9
    with fresh(where, clock) as other:
        assert other.get_record("verification", "VE1") == {"v": 1}
        assert other.list_records("verification") == [{"v": 1}]
    clock[0] = T0 + 60
    with fresh(where, clock) as other:
        assert other.get_record("verification", "VE1") is None
        assert other.list_records("verification") == []
        assert other.put_record("verification", "VE1", {"v": 2}, ttl=60, only_new=True) is True
        assert other.get_record("verification", "VE1") == {"v": 2}


def test_sandbox_records_are_apart_from_real_ones(where, clock):
    with open_store(where, clock=lambda: clock[0]) as real, open_store(where, sandbox=True, clock=lambda: clock[0]) as sb:
        real.put_record("service", "VA1", {"real": True})
        assert sb.get_record("service", "VA1") is None
        assert sb.list_records("service") == []


def test_swap_record_is_compare_and_set_on_rev(store, where, clock):
    assert store.swap_record("call", "c1", {"rev": 1, "x": "a"}, rev=1, ttl=60) is False  # nothing there: rev 0
    assert store.swap_record("call", "c1", {"rev": 1, "x": "a"}, rev=0, ttl=60) is True
    assert store.swap_record("call", "c1", {"rev": 1, "x": "b"}, rev=0, ttl=60) is False  # lost the race
    with fresh(where, clock) as other:
        assert other.swap_record("call", "c1", {"rev": 2, "x": "c"}, rev=1, ttl=60) is True
    assert store.get_record("call", "c1") == {"rev": 2, "x": "c"}
    clock[0] = T0 + 60  # expired: counts as absent again
    assert store.swap_record("call", "c1", {"rev": 1, "x": "d"}, rev=2, ttl=60) is False
    assert store.swap_record("call", "c1", {"rev": 1, "x": "d"}, rev=0, ttl=60) is True


def test_derived_keys_agree_across_opens_and_differ_by_label(store, where, clock):
    one = store.derive_key(b"calls")
    with fresh(where, clock) as other:
        assert other.derive_key(b"calls") == one
        assert other.derive_key(b"other") != one
    assert len(one) == 32
