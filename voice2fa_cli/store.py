"""Sessions in SQLite under the state directory.

Only a keyed hash of each code is stored (HMAC-SHA256 under a per-install key kept in a 0600
file). Every check-and-update runs in one `BEGIN IMMEDIATE` transaction, so racing processes
see one success. The directory is 0700 and every file 0600, created that way.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from voice2fa_cli import otp
from voice2fa_cli.config import DB_NAME, KEY_NAME
from voice2fa_cli.errors import PolicyRefused, StoreError
from voice2fa_cli.sessions import Verdict

APPLICATION_ID = 0x56324641  # "V2FA"
SCHEMA_VERSION = 1
KEY_BYTES = 32
MAX_ATTEMPTS = 5

# Per-number failures across sessions (NIST 800-63B): this many in FAILURE_WINDOW locks the
# number for LOCK_SECONDS. A new session never resets the count.
NUMBER_FAILURE_LIMIT = 10
FAILURE_WINDOW = 3600.0
LOCK_SECONDS = 3600.0

OPEN_STATES = ("calling", "delivered")
CLOSED_REASONS = {
    "verified": "this code was already used: send a new one",
    "locked": "locked: too many wrong codes; send a new one",
    "superseded": "superseded by a newer code: use the newest one",
    "undelivered": "no open session: the last call did not deliver the code; send a new one",
}

# Send limits against toll fraud and call bombing (Twilio Verify's defaults).
SENDS_PER_NUMBER = 5
SEND_WINDOW = 600.0
HOUR = 3600.0

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
]


@dataclass(frozen=True)
class Session:
    id: str
    number: str
    created_at: float
    expires_at: float
    attempts: int
    max_attempts: int
    state: str
    call_sid: str | None
    call_status: str | None
    sandbox: bool

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


_COLUMNS = "id, number, created_at, expires_at, attempts, max_attempts, state, call_sid, call_status, sandbox"


def _session(row: tuple) -> Session:
    return Session(*row[:9], sandbox=bool(row[9]))


def clock_text(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


# --- files ---------------------------------------------------------------------------------


def _check_private(path: Path, what: str, want: int) -> None:
    try:
        st = path.lstat()
    except OSError as exc:
        raise StoreError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"the {what} {path} is a symbolic link: voice2fa keeps its state in real files")
    if st.st_uid != os.getuid():
        raise StoreError(f"the {what} {path} belongs to another user: use a state dir of your own")
    if st.st_mode & 0o077:
        raise StoreError(
            f"the {what} {path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}): "
            f"run `chmod {want:o} {path}`"
        )


def _ensure_dir(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not path.is_dir():
            raise StoreError(f"the state dir {path} exists and is not a directory") from None
    except OSError as exc:
        raise StoreError(f"cannot create the state dir {path}: {exc.strerror}") from None
    _check_private(path, "state dir", 0o700)


def _create_private(path: Path, content: bytes = b"") -> bool:
    """Create `path` 0600 with `content`, atomically; False if it already exists."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _load_key(path: Path, create: bool) -> bytes:
    if create and not path.exists():
        _create_private(path, secrets.token_bytes(KEY_BYTES))
    _check_private(path, "key file", 0o600)
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read the key file {path}: {exc.strerror}") from None
    if len(key) != KEY_BYTES:
        raise StoreError(f"the key file {path} is damaged ({len(key)} bytes, not {KEY_BYTES})")
    return key


# --- the store -----------------------------------------------------------------------------


class NoStore(Exception):
    """The state dir holds no database yet (only raised when not asked to create one)."""


class Store:
    def __init__(self, conn: sqlite3.Connection, key: bytes, path: Path, clock: Callable[[], float]):
        self._conn = conn
        self._key = key
        self.path = path
        self.clock = clock

    @classmethod
    def open(cls, state_dir: Path, *, create: bool = True, clock: Callable[[], float] = time.time) -> Store:
        db = state_dir / DB_NAME
        if not create and not db.exists():
            raise NoStore(str(state_dir))
        _ensure_dir(state_dir)
        key = _load_key(state_dir / KEY_NAME, create)
        if create and not db.exists():
            _create_private(db)
        _check_private(db, "database", 0o600)
        try:
            conn = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {db}: {exc}") from None
        store = cls(conn, key, db, clock)
        with store._errors():
            store._prepare()
        return store

    def close(self) -> None:
        self._conn.close()

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
            if "not a database" in text or "malformed" in text:
                msg = f"the database {self.path} is damaged or not voice2fa's: move it away to start afresh"
            elif "readonly" in text or "read-only" in text:
                msg = f"the database {self.path} is read-only: check the permissions of its directory"
            elif "full" in text:
                msg = f"the disk holding {self.path} is full: free some space and try again"
            elif "locked" in text or "busy" in text:
                msg = f"the database {self.path} stayed locked by another voice2fa: try again"
            else:
                msg = f"the database {self.path} cannot be used: {text}"
            raise StoreError(msg) from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

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

    def _switch_to_wal(self) -> None:
        """The switch needs an exclusive lock and SQLite does not wait for it through the busy
        handler: when other processes open a new store at the same moment, retry (≤ 30 s)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005 + secrets.randbelow(20) / 1000)

    def _prepare(self) -> None:
        c = self._conn
        c.execute("PRAGMA busy_timeout = 30000")
        c.execute("BEGIN")  # one consistent read: another process may be creating the schema
        try:
            header = self._header()
        finally:
            c.execute("COMMIT")
        self._validate(*header)
        if c.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._switch_to_wal()
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
        max_attempts: int = MAX_ATTEMPTS,
        call_sid: str | None,
        call_status: str | None,
        sandbox: bool,
    ) -> Session:
        """Store a new session for a call that was placed, superseding the number's open ones."""
        digest = otp.digest(self._key, session_id, code)
        with self._tx() as c:
            now = self.clock()  # inside the write lock: the newest session is the last committed
            c.execute(
                "UPDATE sessions SET state = 'superseded', closed_at = ? "
                f"WHERE number = ? AND state IN {OPEN_STATES}",
                (now, number),
            )
            c.execute(
                "INSERT INTO sessions (id, number, created_at, expires_at, digest, max_attempts, state,"
                " call_sid, call_status, sandbox) VALUES (?, ?, ?, ?, ?, ?, 'calling', ?, ?, ?)",
                (session_id, number, now, now + ttl, digest, max_attempts, call_sid, call_status, int(sandbox)),
            )
        return self.get(session_id)  # type: ignore[return-value]

    def reserve_call(self, number: str, max_per_hour: int) -> int:
        """Check the number's lock and the send limits and, in the same transaction, count this
        call; raises PolicyRefused (exit 5). Returns the reservation, to release if the
        platform refuses the call (then nothing was dialed)."""
        with self._tx() as c:
            now = self.clock()
            until = _lock_end(c, number, now)
            if until is not None:
                raise PolicyRefused(
                    f"{number} is locked after too many wrong codes: no calls until {clock_text(until)}"
                )
            recent = [r[0] for r in c.execute(
                "SELECT at FROM calls WHERE number = ? AND at > ? ORDER BY at", (number, now - SEND_WINDOW)
            )]
            if len(recent) >= SENDS_PER_NUMBER:
                retry = recent[len(recent) - SENDS_PER_NUMBER] + SEND_WINDOW
                raise PolicyRefused(
                    f"send limit reached: {len(recent)} calls to {number} in the last "
                    f"{SEND_WINDOW / 60:g} minutes; try again after {clock_text(retry)}"
                )
            hourly = [r[0] for r in c.execute("SELECT at FROM calls WHERE at > ? ORDER BY at", (now - HOUR,))]
            if len(hourly) >= max_per_hour:
                retry = hourly[len(hourly) - max_per_hour] + HOUR
                raise PolicyRefused(
                    f"send limit reached: {len(hourly)} calls in the last hour (VOICE2FA_MAX_CALLS_PER_HOUR="
                    f"{max_per_hour}); try again after {clock_text(retry)}"
                )
            return c.execute("INSERT INTO calls (number, at) VALUES (?, ?)", (number, now)).lastrowid

    def release_call(self, reservation: int) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM calls WHERE rowid = ?", (reservation,))

    def purge(self) -> int:
        """Remove expired sessions and calls older than any limit; keep the failures
        the number lockout needs. Returns how many sessions were removed."""
        with self._tx() as c:
            now = self.clock()
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

    def newest(self, number: str) -> Session | None:
        with self._errors():
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE number = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (number,),
            ).fetchone()
        return _session(row) if row else None

    def number_locked_until(self, number: str) -> float | None:
        with self._errors():
            return _lock_end(self._conn, number, self.clock())

    def check(self, number: str, code: str, session_id: str | None = None) -> Verdict:
        """Check `code` against the newest session of `number` (or against `session_id`, one of
        its sessions), atomically."""
        with self._tx() as c:
            now = self.clock()
            until = _lock_end(c, number, now)
            if session_id is None:
                row = c.execute(
                    f"SELECT {_COLUMNS}, digest FROM sessions WHERE number = ?"
                    " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    (number,),
                ).fetchone()
            else:
                row = c.execute(
                    f"SELECT {_COLUMNS}, digest FROM sessions WHERE number = ? AND id = ?", (number, session_id)
                ).fetchone()
            session = _session(row) if row else None
            if until is not None:
                return Verdict(False, f"locked: too many wrong codes for {number}; try again after {clock_text(until)}", session)
            if session is None:
                return Verdict(False, f"no open session for {number}: run `voice2fa send {number}` first", None)
            if session.state in CLOSED_REASONS:
                return Verdict(False, CLOSED_REASONS[session.state], session)
            if now >= session.expires_at:
                return Verdict(False, f"expired at {clock_text(session.expires_at)}: send a new code", session)
            if otp.matches(self._key, session.id, code, row[-1]):
                c.execute("UPDATE sessions SET state = 'verified', closed_at = ? WHERE id = ?", (now, session.id))
                return Verdict(True, "verified", self._reread(c, session.id), session.attempts_left)
            attempts = session.attempts + 1
            left = max(0, session.max_attempts - attempts)
            state = "locked" if left == 0 else session.state
            c.execute(
                "UPDATE sessions SET attempts = ?, state = ?, closed_at = ? WHERE id = ?",
                (attempts, state, now if state == "locked" else None, session.id),
            )
            c.execute("INSERT INTO failures (number, at) VALUES (?, ?)", (number, now))
            if left == 0:
                reason = "wrong code; locked: too many wrong codes; send a new one"
            else:
                reason = f"wrong code ({left} attempt{'s' if left != 1 else ''} left)"
            return Verdict(False, reason, self._reread(c, session.id), left)

    @staticmethod
    def _reread(c: sqlite3.Connection, session_id: str) -> Session:
        return _session(c.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone())

    def recent(self, limit: int = 50) -> list[Session]:
        with self._errors():
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM sessions ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_session(r) for r in rows]


def _lock_end(c: sqlite3.Connection, number: str, now: float) -> float | None:
    """When the number's lockout ends, if one is in force at `now`."""
    rows = c.execute(
        "SELECT at FROM failures WHERE number = ? AND at > ?", (number, now - FAILURE_WINDOW - LOCK_SECONDS)
    ).fetchall()
    return _locked_until([r[0] for r in rows], now)


def _locked_until(failure_times: list[float], now: float) -> float | None:
    """Failure times (any order) → the end of a lock in force at `now`, or None.
    NUMBER_FAILURE_LIMIT failures within FAILURE_WINDOW lock the number for LOCK_SECONDS
    from the failure that reached the limit."""
    times = sorted(failure_times)
    for i in range(NUMBER_FAILURE_LIMIT - 1, len(times)):
        if times[i] - times[i - NUMBER_FAILURE_LIMIT + 1] <= FAILURE_WINDOW:
            until = times[i] + LOCK_SECONDS
            if until > now:
                return until
    return None


def install_key(state_dir: Path) -> bytes:
    """This install's HMAC key from the state dir, made on first use."""
    _ensure_dir(state_dir)
    return _load_key(state_dir / KEY_NAME, True)
