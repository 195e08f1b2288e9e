"""Sessions in SQLite under the state directory.

Only a keyed hash of each code is stored (HMAC-SHA256 under a per-install key kept in a 0600
file). Every check-and-update runs in one `BEGIN IMMEDIATE` transaction, so racing processes
see one success. The directory is 0700 and every file 0600, created that way, and all of them
are opened through one checked descriptor of the state dir (stores/statedir.py).

Real and sandbox sessions live in two databases side by side (`sessions.sqlite3`,
`sandbox.sqlite3`): a sandbox send never supersedes, counts toward or is counted by anything real.

Time: sessions are ordered by a sequence the store assigns, never by the wall clock. A code's
life is measured on the boot clock (CLOCK_BOOTTIME, which no one can set) when the session was
created in this boot; otherwise on the wall clock, where a clock set back before the session was
created, or behind the highest time the store has seen past its expiry, ends it. A clock step
can shorten a code's life, never lengthen it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from voice2fa_cli import otp, policy
from voice2fa_cli.errors import StoreError
from voice2fa_cli.policy import FAILURE_WINDOW, HOUR, LOCK_SECONDS, OPEN_STATES, SEND_WINDOW, Session, Verdict
from voice2fa_cli.stores.base import KEY_BYTES, NoStore, Record
from voice2fa_cli.stores.statedir import DB_NAME, KEY_NAME, SANDBOX_DB_NAME, Missing, StateDir, open_descriptors

APPLICATION_ID = 0x56324641  # "V2FA"
SCHEMA_VERSION = 4
# SQLite's primary result codes (sqlite3 names them only from Python 3.11)
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _NOTADB = 5, 6, 8, 10, 11, 13, 26

_SCHEMA = [
    # version 1
    """
    CREATE TABLE sessions (
        id           TEXT PRIMARY KEY,
        number       TEXT NOT NULL,
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        digest       BLOB NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        state        TEXT NOT NULL,
        call_sid     TEXT,
        call_status  TEXT,
        sandbox      INTEGER NOT NULL DEFAULT 0,
        closed_at    REAL
    );
    CREATE INDEX sessions_by_number ON sessions (number, created_at);
    CREATE TABLE failures (number TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX failures_by_number ON failures (number, at);
    CREATE TABLE calls (number TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX calls_by_time ON calls (at);
    """,
    # version 2: a sequence the store assigns orders sessions; the boot clock at creation; the
    # highest wall-clock time seen; sandbox sessions move to their own database.
    """
    ALTER TABLE sessions ADD COLUMN seq INTEGER;
    UPDATE sessions SET seq = rowid;
    ALTER TABLE sessions ADD COLUMN boot TEXT;
    ALTER TABLE sessions ADD COLUMN uptime REAL;
    CREATE INDEX sessions_by_seq ON sessions (number, seq);
    CREATE TABLE meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
    DELETE FROM sessions WHERE sandbox = 1;
    """,
    # version 3: the records of `voice2fa serve` (services, API keys, verifications): a JSON
    # body by kind and id, with an optional end of life.
    """
    CREATE TABLE records (
        kind       TEXT NOT NULL,
        id         TEXT NOT NULL,
        body       TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (kind, id)
    );
    """,
    # version 4: a service dimension (serve's services have their own sessions, failures and
    # hourly share; "" is the CLI's); codes bound to number, namespace, service and session, so
    # the open sessions of before cannot be checked any more: retired.
    """
    ALTER TABLE sessions ADD COLUMN service TEXT NOT NULL DEFAULT '';
    UPDATE sessions SET state = 'retired' WHERE state IN ('calling', 'delivered');
    ALTER TABLE failures ADD COLUMN service TEXT NOT NULL DEFAULT '';
    ALTER TABLE calls ADD COLUMN service TEXT NOT NULL DEFAULT '';
    DROP INDEX sessions_by_seq;
    CREATE INDEX sessions_by_seq ON sessions (number, service, seq);
    DROP INDEX failures_by_number;
    CREATE INDEX failures_by_number ON failures (number, service, at);
    CREATE INDEX calls_by_service ON calls (service, at);
    """,
]

Uptime = Callable[[], "tuple[str, float] | None"]


def boot_clock() -> Uptime:
    """This boot's id and a clock nobody can set (Linux CLOCK_BOOTTIME, counting suspend);
    a callable answering None where the system has neither."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, AttributeError, ValueError):
        return lambda: None
    return lambda: (boot, time.clock_gettime(time.CLOCK_BOOTTIME))


@dataclass(frozen=True)
class _Now:
    wall: float  # the clock as it is
    high: float  # the highest wall-clock time the store has seen (≥ wall)
    up: tuple[str, float] | None  # (boot id, boot clock)


def _expired(now: _Now, created_at: float, expires_at: float, boot: str | None, uptime: float | None) -> bool:
    """A clock step shortens a code's life, never lengthens it."""
    if now.wall >= expires_at:
        return True
    if now.up is not None and boot is not None and uptime is not None and now.up[0] == boot:
        elapsed = now.up[1] - uptime  # this boot: the boot clock cannot be set back
        return not 0 <= elapsed < expires_at - created_at
    return now.wall < created_at or now.high >= expires_at


_COLUMNS = "id, number, created_at, expires_at, attempts, max_attempts, state, call_sid, call_status, sandbox, service"


def _session(row: tuple) -> Session:
    return Session(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], sandbox=bool(row[9]),
                   service=row[10])


# --- the store -----------------------------------------------------------------------------


def _disk_full(path: Path) -> bool:
    """After an I/O error: is the file system holding `path` out of space? (SQLite reports a
    full disk met while growing its -shm as an I/O error.)"""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _load_key(state: StateDir, create: bool) -> bytes:
    if create and not state.exists(KEY_NAME):
        state.create_file(KEY_NAME, secrets.token_bytes(KEY_BYTES))
    try:
        key = state.read_file(KEY_NAME, "key file", 1 << 16)
    except Missing as exc:
        raise StoreError(f"cannot read the key file {exc}: No such file or directory") from None
    if len(key) != KEY_BYTES:
        raise StoreError(f"the key file {state.path / KEY_NAME} is damaged ({len(key)} bytes, not {KEY_BYTES})")
    return key


def _open_database(state: StateDir, name: str) -> int:
    try:
        return state.open_file(name, "database", os.O_RDWR)
    except Missing as exc:
        raise StoreError(f"cannot read the database {exc}: No such file or directory") from None


class Store:
    def __init__(self, conn: sqlite3.Connection, key: bytes, path: Path, clock: Callable[[], float],
                 sandbox: bool = False, uptime: Uptime | None = None, state: StateDir | None = None):
        self._conn = conn
        self._key = key
        self._state = state
        self.path = path
        self.clock = clock
        self.uptime = uptime or boot_clock()
        self.sandbox = sandbox

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        create: bool = True,
        sandbox: bool = False,
        clock: Callable[[], float] = time.time,
        uptime: Uptime | None = None,
        busy_timeout: float = 30.0,
    ) -> Store:
        """The real sessions, or with `sandbox` the sandbox's (a database of their own)."""
        name = SANDBOX_DB_NAME if sandbox else DB_NAME
        try:
            state = StateDir.open(state_dir, create=create, needs=name)
        except Missing:
            raise NoStore(str(state_dir)) from None
        try:
            db = state.path / name
            key = _load_key(state, create)
            if create and not state.exists(name):
                state.create_file(name)
            state.check_side_files(name)
            fd = _open_database(state, name)
            try:
                checked = os.fstat(fd)
            finally:
                # Before SQLite opens it: closing any descriptor of a file drops every POSIX
                # lock this process holds on it, SQLite's included.
                os.close(fd)
            before = open_descriptors()
            try:
                conn = sqlite3.connect(state.sqlite_path(name), isolation_level=None, timeout=busy_timeout,
                                       check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the database {db}: {exc}") from None
            store = cls(conn, key, db, clock, sandbox, uptime, state)
            try:
                with store._errors():
                    store._prepare(busy_timeout)  # this opens the -wal and the -shm too
                state.check_opened(name, before, checked)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            state.close()
            raise
        return store

    def close(self) -> None:
        self._conn.close()
        if self._state is not None:
            self._state.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code == _FULL or "full" in text or ((code == _IOERR or "I/O error" in text) and _disk_full(self.path)):
                msg = f"the disk holding {self.path} is full: free some space and try again"
            elif code in (_NOTADB, _CORRUPT) or "not a database" in text or "malformed" in text:
                msg = f"the database {self.path} is damaged or not voice2fa's: move it away to start afresh"
            elif code == _READONLY or "readonly" in text or "read-only" in text:
                msg = f"the database {self.path} is read-only: check the permissions of its directory"
            elif code in (_BUSY, _LOCKED) or "locked" in text or "busy" in text:
                msg = f"the database {self.path} stayed locked by another voice2fa: try again"
            else:
                msg = f"the database {self.path} cannot be used: {text}"
            raise StoreError(msg) from None

    def _end(self) -> None:
        """Roll back whatever SQLite left open (after an error it may have rolled back itself)."""
        if self._conn.in_transaction:
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._end()  # the first error is the one that tells what happened
                raise

    def _now(self, c: sqlite3.Connection) -> _Now:
        """The time, inside a write transaction: also raises the store's high-water mark."""
        wall = self.clock()
        row = c.execute("SELECT value FROM meta WHERE name = 'clock'").fetchone()
        if row is None or wall > row[0]:
            c.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('clock', ?)", (wall,))
            return _Now(wall, wall, self.uptime())
        return _Now(wall, row[0], self.uptime())

    def _header(self) -> tuple[int, int, int]:
        """application_id, user_version and the number of schema objects, read together."""
        c = self._conn
        return (
            c.execute("PRAGMA application_id").fetchone()[0],
            c.execute("PRAGMA user_version").fetchone()[0],
            c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0],
        )

    def _validate(self, app_id: int, version: int, objects: int) -> None:
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and objects):
            raise StoreError(
                f"the database {self.path} is not voice2fa's: move it away or choose another VOICE2FA_STATE_DIR"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} was written by a newer voice2fa (schema {version}): upgrade voice2fa"
            )

    def _switch_to_wal(self, busy_timeout: float) -> None:
        """The switch needs an exclusive lock and SQLite does not wait for it through the busy
        handler: when other processes open a new store at the same moment, retry (≤ the busy timeout)."""
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005 + secrets.randbelow(20) / 1000)

    def _prepare(self, busy_timeout: float) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        c.execute("BEGIN")  # one consistent read: another process may be creating the schema
        try:
            header = self._header()
            c.execute("COMMIT")
        except BaseException:
            self._end()  # the first error is the one that tells what happened
            raise
        self._validate(*header)
        if c.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._switch_to_wal(busy_timeout)
        c.execute("PRAGMA synchronous = NORMAL")
        if header[1] < SCHEMA_VERSION:
            with self._tx():
                # Again inside the write lock: another process may have migrated meanwhile.
                app_id, version, objects = self._header()
                self._validate(app_id, version, objects)
                for step in range(version, SCHEMA_VERSION):
                    for statement in _SCHEMA[step].split(";"):
                        if statement.strip():
                            c.execute(statement)
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # --- sessions --------------------------------------------------------------------------

    def create_session(
        self,
        *,
        session_id: str,
        number: str,
        code: str,
        ttl: float,
        max_attempts: int = policy.MAX_ATTEMPTS,
        call_sid: str | None,
        call_status: str | None,
        service: str = "",
    ) -> Session:
        """Store a new session for a call that was placed, superseding the number's open ones
        of the same service (in this store only: real and sandbox sessions never meet)."""
        digest = otp.digest(self._key, self._binding(number, session_id, service), code)
        with self._tx() as c:
            now = self._now(c)  # inside the write lock: the newest session is the last committed
            boot, uptime = now.up if now.up is not None else (None, None)
            c.execute(
                "UPDATE sessions SET state = 'superseded', closed_at = ? "
                f"WHERE number = ? AND service = ? AND state IN {OPEN_STATES}",
                (now.wall, number, service),
            )
            c.execute(
                "INSERT INTO sessions (id, number, created_at, expires_at, digest, max_attempts, state,"
                " call_sid, call_status, sandbox, seq, boot, uptime, service) VALUES (?, ?, ?, ?, ?, ?, 'calling',"
                " ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM sessions), ?, ?, ?)",
                (session_id, number, now.wall, now.wall + ttl, digest, max_attempts, call_sid, call_status,
                 int(self.sandbox), boot, uptime, service),
            )
        return self.get(session_id)  # type: ignore[return-value]

    def _binding(self, number: str, session_id: str, service: str) -> otp.Binding:
        return otp.Binding(number, session_id, service, self.sandbox)

    def reserve_call(self, number: str, max_per_hour: int, *, service: str = "",
                     service_max: int | None = None) -> int:
        """Check the number's lock (the service's) and the send limits (the number's, across
        services; the hourly cap; the service's share of it) and, in the same transaction, count
        this call; raises PolicyRefused (exit 5). Returns the reservation, to release if the
        platform refuses the call (then nothing was dialed)."""
        with self._tx() as c:
            now = self._now(c).wall
            until = _lock_end(c, number, service, now)
            if until is not None:
                raise policy.number_locked_refusal(number, until)
            recent = [r[0] for r in c.execute(
                "SELECT at FROM calls WHERE number = ? AND at > ? ORDER BY at", (number, now - SEND_WINDOW)
            )]
            retry = policy.retry_after(recent, policy.SENDS_PER_NUMBER, SEND_WINDOW)
            if retry is not None:
                raise policy.number_limit_refusal(number, len(recent), retry)
            hourly = [r[0] for r in c.execute("SELECT at FROM calls WHERE at > ? ORDER BY at", (now - HOUR,))]
            retry = policy.retry_after(hourly, max_per_hour, HOUR)
            if retry is not None:
                raise policy.hourly_limit_refusal(len(hourly), max_per_hour, retry)
            if service_max is not None:
                mine = [r[0] for r in c.execute("SELECT at FROM calls WHERE service = ? AND at > ? ORDER BY at",
                                                (service, now - HOUR))]
                retry = policy.retry_after(mine, service_max, HOUR)
                if retry is not None:
                    raise policy.service_limit_refusal(service, len(mine), service_max, retry)
            reservation = c.execute("INSERT INTO calls (number, at, service) VALUES (?, ?, ?)",
                                    (number, now, service)).lastrowid
            assert reservation is not None  # an INSERT's row
            return reservation

    def release_call(self, reservation: int | str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM calls WHERE rowid = ?", (reservation,))

    def purge(self) -> int:
        """Remove expired sessions and calls older than any limit; keep the failures
        the number lockout needs. Returns how many sessions were removed."""
        with self._tx() as c:
            now = self._now(c).wall
            removed = c.execute(
                "DELETE FROM sessions WHERE expires_at <= ?", (now,)
            ).rowcount
            c.execute("DELETE FROM calls WHERE at <= ?", (now - HOUR,))
            c.execute("DELETE FROM failures WHERE at <= ?", (now - FAILURE_WINDOW - LOCK_SECONDS,))
        return removed

    def get(self, session_id: str) -> Session | None:
        with self._errors():
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return _session(row) if row else None

    def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> None:
        """Record a change of the call: delivered, or its final status. Never per callback."""
        with self._tx() as c:
            if state is not None:
                closed = self.clock() if state not in OPEN_STATES else None
                c.execute(
                    f"UPDATE sessions SET state = ?, closed_at = ? WHERE id = ? AND state IN {OPEN_STATES}",
                    (state, closed, session_id),
                )
            if call_status is not None:
                c.execute("UPDATE sessions SET call_status = ? WHERE id = ?", (call_status, session_id))

    def newest(self, number: str, service: str = "") -> Session | None:
        with self._errors():
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE number = ? AND service = ? ORDER BY seq DESC LIMIT 1",
                (number, service),
            ).fetchone()
        return _session(row) if row else None

    def number_locked_until(self, number: str, service: str = "") -> float | None:
        with self._errors():
            return _lock_end(self._conn, number, service, self.clock())

    def check(self, number: str, code: str, session_id: str | None = None, service: str = "") -> Verdict:
        """Check `code` against the newest session of `number` in `service` (or against
        `session_id`, one of them), atomically."""
        with self._tx() as c:
            clock = self._now(c)
            now = clock.wall
            until = _lock_end(c, number, service, now)
            if session_id is None:
                row = c.execute(
                    f"SELECT {_COLUMNS}, boot, uptime, digest FROM sessions WHERE number = ? AND service = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (number, service),
                ).fetchone()
            else:
                row = c.execute(
                    f"SELECT {_COLUMNS}, boot, uptime, digest FROM sessions "
                    "WHERE number = ? AND service = ? AND id = ?",
                    (number, service, session_id),
                ).fetchone()
            session = _session(row) if row else None
            if until is not None:
                return policy.number_locked(number, until, session)
            if session is None:
                return policy.no_session(number, self.sandbox)
            if not session.is_open:
                return policy.closed(session)
            if now >= session.expires_at:
                return policy.expired(session)
            if _expired(clock, session.created_at, session.expires_at, row[-3], row[-2]):
                return policy.clock_back(session)
            if otp.matches(self._key, self._binding(number, session.id, service), code, row[-1]):
                c.execute("UPDATE sessions SET state = 'verified', closed_at = ? WHERE id = ?", (now, session.id))
                return policy.verified(self._reread(c, session.id), session.attempts_left)
            attempts = session.attempts + 1
            left = max(0, session.max_attempts - attempts)
            state = "locked" if left == 0 else session.state
            c.execute(
                "UPDATE sessions SET attempts = ?, state = ?, closed_at = ? WHERE id = ?",
                (attempts, state, now if state == "locked" else None, session.id),
            )
            c.execute("INSERT INTO failures (number, at, service) VALUES (?, ?, ?)", (number, now, service))
            return policy.wrong(self._reread(c, session.id), left)

    @staticmethod
    def _reread(c: sqlite3.Connection, session_id: str) -> Session:
        return _session(c.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone())

    def recent(self, limit: int = 50) -> list[Session]:
        with self._errors():
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM sessions ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_session(r) for r in rows]


    # --- records (voice2fa serve: services, API keys, verifications) -------------------------

    def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                   only_new: bool = False) -> bool:
        """Store `body` (JSON-able) as record `record_id` of `kind`, living `ttl` seconds (None:
        until replaced). With `only_new`, only when no live record has that id. True when stored."""
        text = json.dumps(body, separators=(",", ":"), sort_keys=True)
        with self._tx() as c:
            now = self._now(c).wall
            if only_new:
                row = c.execute("SELECT expires_at FROM records WHERE kind = ? AND id = ?",
                                (kind, record_id)).fetchone()
                if row is not None and (row[0] is None or row[0] > now):
                    return False
            c.execute(
                "INSERT OR REPLACE INTO records (kind, id, body, expires_at) VALUES (?, ?, ?, ?)",
                (kind, record_id, text, None if ttl is None else now + ttl),
            )
        return True

    def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> bool:
        """Compare and set: store `body` only when the live record's `rev` field is `rev` (no
        live record: 0). True when stored."""
        text = json.dumps(body, separators=(",", ":"), sort_keys=True)
        with self._tx() as c:
            now = self._now(c).wall
            row = c.execute("SELECT body, expires_at FROM records WHERE kind = ? AND id = ?",
                            (kind, record_id)).fetchone()
            live = row is not None and (row[1] is None or row[1] > now)
            if (json.loads(row[0]).get("rev", 0) if live else 0) != rev:
                return False
            c.execute(
                "INSERT OR REPLACE INTO records (kind, id, body, expires_at) VALUES (?, ?, ?, ?)",
                (kind, record_id, text, now + ttl),
            )
        return True

    def derive_key(self, label: bytes) -> bytes:
        """A key for `label` derived from this store's HMAC key (which never leaves the process)."""
        return hmac.new(self._key, b"voice2fa derived key\x00" + label, hashlib.sha256).digest()

    def get_record(self, kind: str, record_id: str) -> Record | None:
        """The live record, or None."""
        with self._errors():
            row = self._conn.execute(
                "SELECT body, expires_at FROM records WHERE kind = ? AND id = ?", (kind, record_id)
            ).fetchone()
        if row is None or (row[1] is not None and row[1] <= self.clock()):
            return None
        return json.loads(row[0])

    def list_records(self, kind: str) -> list[Record]:
        """Every live record of `kind`, by id."""
        now = self.clock()
        with self._errors():
            rows = self._conn.execute(
                "SELECT body FROM records WHERE kind = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY id",
                (kind, now),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]


def _lock_end(c: sqlite3.Connection, number: str, service: str, now: float) -> float | None:
    """When the number's lockout in `service` ends, if one is in force at `now`."""
    rows = c.execute(
        "SELECT at FROM failures WHERE number = ? AND service = ? AND at > ?",
        (number, service, now - FAILURE_WINDOW - LOCK_SECONDS),
    ).fetchall()
    return policy.locked_until([r[0] for r in rows], now)


def install_key(state_dir: Path) -> bytes:
    """This install's HMAC key from the state dir, made on first use (the shared store's key
    when no VOICE2FA_KEY_FILE is set)."""
    with StateDir.open(state_dir, create=True) as state:
        return _load_key(state, True)
