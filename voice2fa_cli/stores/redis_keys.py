"""The shared store's layout and round trips, written once and without I/O.

Every operation of the Redis store is a generator here: it yields the round trips it needs (a
`Script` of redis_scripts, a plain `Command`, or a `Pipeline` of those), receives each reply,
and returns the result (a Session, a Verdict, …) or raises the policy's refusal. The two drivers
only send what it yields: redis.py with a blocking client, redis_async.py awaiting on an event
loop. So the keys, each script's keys and arguments, the reply parsing, the verdicts and the
error messages exist once for both.

Keys: `voice2fa:` (real sessions) or `voice2fa:sandbox:` (the sandbox's), then per number
`{NUMBER}:h` (its sessions, a hash), `{NUMBER}:fail` (failure times), `{NUMBER}:calls` (its call
times); `{calls}` (every call, for the hourly cap), `{recent}:z` and `{recent}:seq` (the listing),
`id:SESSION` (a session's number), `{rec:KIND}:ID` and `{rec:KIND}:all` (serve's records). A
number's keys share a hash tag, so Redis Cluster runs each script on one node.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.exceptions as rexc

from voice2fa_cli import otp, policy
from voice2fa_cli.errors import Problem, StoreError
from voice2fa_cli.policy import Session, Verdict
from voice2fa_cli.stores.base import Record, safe_url

PREFIX = "voice2fa:"
SCHEMA = "1"
RETAIN = 86400.0  # how long a session stays listable after it expires
RECENT_KEEP = 1000  # sessions kept in the listing index
RETRIES = 8  # a check whose newest session changed under it is tried again
SCRIPTS = ("CREATE", "RESERVE_NUMBER", "RESERVE_HOUR", "CHECK", "CHECK_PENDING", "RECORD", "PEEK", "PURGE",
           "INDEX", "PUT_RECORD", "SWAP_RECORD", "GET_RECORD")


@dataclass(frozen=True)
class Script:
    """One of redis_scripts' scripts by name, with its keys and arguments."""

    name: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True)
class Command:
    """A plain Redis command, e.g. Command(("HGET", key, field))."""

    args: tuple[Any, ...]


@dataclass(frozen=True)
class Pipeline:
    """Steps sent together in one round trip (no transaction); the reply is their replies."""

    steps: list[Script | Command] = field(default_factory=list)


Step = Script | Command | Pipeline
T = TypeVar("T")
Op = Generator[Step, Any, T]


def fingerprint_of(key: bytes) -> str:
    """What the store keeps of the key: enough to tell two keys apart, nothing to guess with."""
    return hmac.new(key, b"voice2fa key fingerprint v1", hashlib.sha256).hexdigest()[:16]


def derive_key(key: bytes, label: bytes) -> bytes:
    """A key for `label` derived from the store's HMAC key (which Redis never holds)."""
    return hmac.new(key, b"voice2fa derived key\x00" + label, hashlib.sha256).digest()


class Layout:
    """One namespace (real or sandbox) of the shared store: its keys and its operations."""

    def __init__(self, key: bytes, url: str, *, sandbox: bool, clock: Callable[[], float] | None) -> None:
        self.key = key
        self.url = safe_url(url)  # what messages name
        self.sandbox = sandbox
        self.prefix = PREFIX + ("sandbox:" if sandbox else "")
        self.test_clock = clock  # None: the server's clock decides

    # --- keys and arguments ----------------------------------------------------------------

    def number_keys(self, number: str) -> tuple[str, str, str]:
        tag = f"{self.prefix}{{{number}}}"
        return f"{tag}:h", f"{tag}:fail", f"{tag}:calls"

    def id_key(self, session_id: str) -> str:
        return f"{self.prefix}id:{session_id}"

    def recent_keys(self) -> list[str]:
        tag = f"{self.prefix}{{recent}}"
        return [f"{tag}:z", f"{tag}:seq"]

    def calls_key(self) -> str:
        return f"{self.prefix}{{calls}}"

    def record_keys(self, kind: str, record_id: str) -> tuple[str, str]:
        tag = f"{self.prefix}{{rec:{kind}}}"
        return f"{tag}:{record_id}", f"{tag}:all"

    def member_field(self, member: str) -> tuple[str, str]:
        """A listing entry ("NUMBER\nSESSION") → the hash and field that hold its session."""
        number, session_id = member.split("\n")
        return self.number_keys(number)[0], f"s:{session_id}"

    def now_arg(self) -> str:
        """The time a script is to use: the test clock's, or "" for the server's own."""
        return "" if self.test_clock is None else f"{self.test_clock():.6f}"

    @staticmethod
    def lock_args() -> list[Any]:
        return [policy.NUMBER_FAILURE_LIMIT, policy.FAILURE_WINDOW, policy.LOCK_SECONDS]

    def digest(self, session_id: str, code: str) -> str:
        return otp.digest(self.key, session_id, code).hex() if session_id else ""

    # --- opening and time ------------------------------------------------------------------

    def check_key(self) -> Op[None]:
        """Mark an empty store with this key's fingerprint and the schema; refuse another key's."""
        meta = f"{PREFIX}meta"
        mine = fingerprint_of(self.key)
        theirs, schema = (yield Pipeline([Command(("HSETNX", meta, "key", mine)),
                                          Command(("HSETNX", meta, "schema", SCHEMA)),
                                          Command(("HMGET", meta, "key", "schema"))]))[2]
        if schema != SCHEMA:
            raise StoreError(
                f"the store {self.url} was written by another voice2fa (schema {schema}): upgrade voice2fa"
            )
        if not hmac.compare_digest(theirs or "", mine):
            raise StoreError(
                f"the store {self.url} was set up with another key (fingerprint {theirs}, this machine's "
                f"is {mine}): give every machine the same key with VOICE2FA_KEY_FILE",
                kind=Problem.WRONG_KEY,
            )

    def clock(self) -> Op[float]:
        """The store's time: the test clock, or the server's."""
        if self.test_clock is not None:
            return self.test_clock()
        seconds, micros = yield Command(("TIME",))
        return int(seconds) + int(micros) / 1e6

    # --- sessions --------------------------------------------------------------------------

    def create_session(self, *, session_id: str, number: str, code: str, ttl: float,
                       max_attempts: int = policy.MAX_ATTEMPTS, call_sid: str | None,
                       call_status: str | None) -> Op[Session]:
        """A new session, superseding the number's open ones (in this namespace only); then
        the id's number and the listing, in one more round trip."""
        h, _, _ = self.number_keys(number)
        raw = yield Script("CREATE", [h], [self.now_arg(), session_id, number, self.digest(session_id, code), ttl,
                                           max_attempts, call_sid or "", call_status or "", int(self.sandbox),
                                           RETAIN])
        session = session_from(raw)
        yield Pipeline([Command(("SET", self.id_key(session_id), number, "PX", int((ttl + RETAIN) * 1000))),
                        Script("INDEX", self.recent_keys(), [f"{number}\n{session_id}", RECENT_KEEP])])
        return session

    def reserve_call(self, number: str, max_per_hour: int) -> Op[str]:
        h, f, c = self.number_keys(number)
        member = secrets.token_hex(8)
        reservation = f"{number}\n{member}"
        kind, *rest = yield Script("RESERVE_NUMBER", [h, f, c], [self.now_arg(), member, policy.SENDS_PER_NUMBER,
                                                                policy.SEND_WINDOW, *self.lock_args()])
        if kind == "locked":
            raise policy.number_locked_refusal(number, float(rest[0]))
        if kind == "number":
            raise policy.number_limit_refusal(number, int(rest[0]), float(rest[1]))
        kind, *rest = yield Script("RESERVE_HOUR", [self.calls_key()], [rest[0], member, max_per_hour, policy.HOUR])
        if kind == "hour":
            yield from self.release_call(reservation)
            raise policy.hourly_limit_refusal(int(rest[0]), max_per_hour, float(rest[1]))
        return reservation

    def release_call(self, reservation: object) -> Op[None]:
        number, member = str(reservation).split("\n")
        _, _, c = self.number_keys(number)
        yield Pipeline([Command(("ZREM", c, member)), Command(("ZREM", self.calls_key(), member))])

    def get(self, session_id: str) -> Op[Session | None]:
        number = yield Command(("GET", self.id_key(session_id)))
        if number is None:
            return None
        raw = yield Command(("HGET", self.number_keys(number)[0], f"s:{session_id}"))
        return session_from(raw) if raw else None

    def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> Op[None]:
        number = yield Command(("GET", self.id_key(session_id)))
        if number is None:
            return
        h, _, _ = self.number_keys(number)
        yield Script("RECORD", [h], [session_id, state or "", call_status or "", self.now_arg()])

    def peek(self, number: str) -> Op[tuple[Session | None, float | None]]:
        """The number's newest session and the end of its lock (if one is in force)."""
        h, f, _ = self.number_keys(number)
        raw, until = yield Script("PEEK", [h, f], [self.now_arg(), *self.lock_args()])
        return (session_from(raw) if raw else None), (float(until) if until else None)

    def newest(self, number: str) -> Op[Session | None]:
        return (yield from self.peek(number))[0]

    def number_locked_until(self, number: str) -> Op[float | None]:
        return (yield from self.peek(number))[1]

    def check(self, number: str, code: str, session_id: str | None = None) -> Op[Verdict]:
        """The CHECK script on the newest session (or the one given); the newest is read first
        (the digest is bound to the session id) and the script tells when it changed meanwhile."""
        h, f, _ = self.number_keys(number)
        for _ in range(RETRIES):
            target = session_id if session_id is not None else ((yield Command(("HGET", h, "newest"))) or "")
            reply = yield Script("CHECK", [h, f], [self.now_arg(), session_id or "", target,
                                                   self.digest(target, code), *self.lock_args()])
            if reply[0] != "retry":
                return self.verdict(number, reply)
        raise StoreError(f"the store {self.url} kept changing under the check: try again")

    def check_pending(self, kind: str, record_id: str, number: str, code: str,
                      guess: str) -> Op[tuple[Record, Verdict] | None]:
        """A check through a pending record (serve's check by To) in one round trip when
        `guess`, the session the record names, is right; else the check by the session it names."""
        key, _ = self.record_keys(kind, record_id)
        h, f, _ = self.number_keys(number)
        found = yield Script("CHECK_PENDING", [key, h, f], [self.now_arg(), number, guess, self.digest(guess, code),
                                                            *self.lock_args()])
        if found[0] == "gone":
            return None
        record = json.loads(found[-1])["body"]
        if found[0] == "retry":
            return record, (yield from self.check(record["to"], code, record.get("session")))
        return record, self.verdict(number, found[:5])

    def verdict(self, number: str, reply: list[Any]) -> Verdict:
        """The CHECK script's answer as the policy's verdict."""
        kind, raw, left, until = reply[:4]
        session = session_from(raw) if raw else None
        if kind == "locked":
            return policy.number_locked(number, float(until), session)
        if session is None:
            return policy.no_session(number, self.sandbox)
        if kind == "closed":
            return policy.closed(session)
        if kind == "expired":
            return policy.expired(session)
        if kind == "clock-back":
            return policy.clock_back(session)
        if kind == "verified":
            return policy.verified(session, int(left))
        return policy.wrong(session, int(left))

    def recent(self, limit: int = 50) -> Op[list[Session]]:
        members = yield Command(("ZREVRANGE", self.recent_keys()[0], 0, limit - 1))
        if not members:
            return []
        rows = yield Pipeline([Command(("HGET", *self.member_field(m))) for m in members])
        return [session_from(raw) for raw in rows if raw]

    def purge(self) -> Op[int]:
        """Drop expired sessions now (Redis's expiry would in time), and the listing's dead
        entries. Returns how many sessions."""
        recent = self.recent_keys()[0]
        members = yield Command(("ZRANGE", recent, 0, -1))
        removed = 0
        for number in sorted({m.split("\n")[0] for m in members}):
            removed += int((yield Script("PURGE", [self.number_keys(number)[0]], [self.now_arg()])))
        if members:
            alive = yield Pipeline([Command(("HEXISTS", *self.member_field(m))) for m in members])
            gone = [m for m, ok in zip(members, alive, strict=True) if not ok]
            if gone:
                yield Command(("ZREM", recent, *gone))
        return removed

    # --- records (voice2fa serve: services, API keys, verifications, calls) -----------------

    @staticmethod
    def envelope(body: Record, expires: float | None) -> str:
        return json.dumps({"body": body, "expires_at": expires}, separators=(",", ":"), sort_keys=True)

    def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                   only_new: bool = False) -> Op[bool]:
        """Store `body` as record `record_id` of `kind`, living `ttl` seconds (None: until
        replaced); with `only_new`, only when no live record has that id. The end of life is
        kept in the record (on the store's clock) and Redis drops it later."""
        key, index = self.record_keys(kind, record_id)
        expires = None if ttl is None else (yield from self.clock()) + ttl
        return bool((yield Script("PUT_RECORD", [key, index], [
            record_id, self.envelope(body, expires), "1" if only_new else "",
            "" if ttl is None else int((ttl + RETAIN) * 1000), "" if expires is None else f"{expires:.6f}",
            self.now_arg()])))

    def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> Op[bool]:
        """Compare and set: store `body` only when the live record's `rev` is `rev` (none: 0)."""
        key, index = self.record_keys(kind, record_id)
        expires = (yield from self.clock()) + ttl
        return bool((yield Script("SWAP_RECORD", [key, index], [
            record_id, self.envelope(body, expires), rev, int((ttl + RETAIN) * 1000), self.now_arg()])))

    def get_record(self, kind: str, record_id: str) -> Op[Record | None]:
        """The live record, or None: the record and the server's time in one round trip."""
        key, _ = self.record_keys(kind, record_id)
        if self.test_clock is not None:
            raw = yield Command(("GET", key))
            return live_body(raw, self.test_clock())
        found = yield Script("GET_RECORD", [key], [])
        if not found:
            return None
        raw, seconds, micros = found
        return live_body(raw, int(seconds) + int(micros) / 1e6)

    def list_records(self, kind: str) -> Op[list[Record]]:
        """Every live record of `kind`, by id (the index's dead entries dropped)."""
        _, index = self.record_keys(kind, "")
        ids = sorted((yield Command(("ZRANGE", index, 0, -1))))
        if not ids:
            return []
        raws = yield Command(("MGET", *[self.record_keys(kind, i)[0] for i in ids]))
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            yield Command(("ZREM", index, *gone))
        now = yield from self.clock()
        return [body for body in (live_body(raw, now) for raw in raws) if body is not None]


def session_from(raw: str) -> Session:
    d = json.loads(raw)
    return Session(
        id=d["id"],
        number=d["number"],
        created_at=float(d["created_at"]),
        expires_at=float(d["expires_at"]),
        attempts=int(d["attempts"]),
        max_attempts=int(d["max_attempts"]),
        state=d["state"],
        call_sid=d["call_sid"] or None,
        call_status=d["call_status"] or None,
        sandbox=bool(d["sandbox"]),
    )


def live_body(raw: str | None, now: float) -> Record | None:
    """A record's body from its stored envelope, None when absent or past its end of life."""
    if raw is None:
        return None
    envelope = json.loads(raw)
    expires = envelope.get("expires_at")
    if expires is not None and float(expires) <= now:
        return None
    body: Record = envelope["body"]
    return body


@contextmanager
def errors(url: str) -> Iterator[None]:
    """Any failure of the server or the connection as a StoreError naming the store and the
    cause, in one line (the same for both drivers)."""
    try:
        yield
    except rexc.AuthenticationError:
        raise StoreError(
            f"the store {url} refused the credentials: check the user and password in VOICE2FA_STORE"
        ) from None
    except (rexc.TimeoutError, TimeoutError):
        raise StoreError(f"the store {url} did not answer in time: is the server overloaded or unreachable?",
                         kind=Problem.UNREACHABLE) from None
    except rexc.ConnectionError as exc:
        raise StoreError(f"the store {url} cannot be reached: {cause(exc)}", kind=Problem.UNREACHABLE) from None
    except rexc.ReadOnlyError:
        raise StoreError(f"the store {url} is read-only (a replica?): point VOICE2FA_STORE at the primary") from None
    except rexc.ResponseError as exc:
        text = str(exc)
        if text.startswith("OOM") or "maxmemory" in text:
            msg = f"the store {url} is full (maxmemory reached): free memory on the server"
        elif text.startswith(("NOPERM", "NOAUTH", "WRONGPASS")):
            msg = f"the store {url} refused the credentials or the command: check the ACL user in VOICE2FA_STORE"
        else:
            msg = f"the store {url} answered an error: {cause(exc)}"
        raise StoreError(msg) from None
    except (rexc.RedisError, rexc.RedisClusterException) as exc:
        raise StoreError(f"the store {url} failed: {cause(exc)}") from None


def cause(exc: Exception) -> str:
    """A server or socket error as one line (never holds a code: codes never reach Redis)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
