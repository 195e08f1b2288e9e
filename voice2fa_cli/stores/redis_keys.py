"""The shared store's layout and round trips, written once and without I/O.

Every operation of the Redis store is a generator here: it yields the round trips it needs (a
`Script` of redis_scripts, a plain `Command`, or a `Pipeline` of those), receives each reply,
and returns the result (a Session, a Verdict, …) or raises the policy's refusal. The two drivers
only send what it yields: redis.py with a blocking client, redis_async.py awaiting on an event
loop. So the keys, each script's keys and arguments, the reply parsing, the verdicts and the
error messages exist once for both.

Keys: `voice2fa:` (real sessions) or `voice2fa:sandbox:` (the sandbox's), then per number
`{NUMBER}:h` (the CLI's sessions, a hash) and `{NUMBER}:fail` (their failure times), or
`{NUMBER}:SERVICE:h` and `{NUMBER}:SERVICE:fail` (a serve service's own), `{NUMBER}:calls` (the
number's call times, across services); `{calls}` (every call, for the hourly cap) and
`{calls:SERVICE}` (a service's share), `{recent}:z` and `{recent}:seq` (the listing),
`id:SESSION` (a session's number and service), `{rec:KIND}:ID` and `{rec:KIND}:all` (serve's
records). A number's keys share a hash tag, so Redis Cluster runs each script on one node.

Authentication (what a writer of Redis, who lacks the key file, cannot forge): every session and
every record carries a MAC under a key derived from the shared key, which Redis never holds.
A session's MAC binds the hash it lives in (namespace, number, service) and what never changes
(id, digest, times, attempts allowed); a record's binds its Redis key (namespace, kind, id), its
body and its end of life. Scripts decide on the data (Redis cannot check an HMAC under a key it
lacks); what they answer is checked here before it is believed, and a session or record that
does not authenticate is refused as tampering (`tampered`). See the README's security section
for what a writer can still do (delete, roll back what counters hold).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
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
# How long a reading of the server's clock (a TIME, or the time a GET_RECORD answers with)
# stands for it: within it, the server's time is that reading plus the monotonic time since,
# and a write that needs the server's time (a record's end of life) makes no TIME round trip.
CLOCK_FRESH = 5.0
AUTHENTIC_MAX = 4096  # stored texts remembered as authenticated (Layout._authentic)
SCHEMA = "2"  # 2: sessions and records carry MACs, codes are bound to number and service
RETAIN = 86400.0  # how long a session stays listable after it expires
RECENT_KEEP = 1000  # sessions kept in the listing index
RETRIES = 8  # a check whose newest session changed under it is tried again
SCRIPTS = ("CREATE", "SIGN", "RESERVE_NUMBER", "RESERVE_HOUR", "CHECK", "CHECK_PENDING", "RECORD", "PEEK",
           "PURGE", "INDEX", "PUT_RECORD", "SWAP_RECORD", "GET_RECORD")
# What a session's MAC covers beside its hash's name: the fields no script ever changes.
SESSION_SIGNED = ("v", "id", "number", "service", "sandbox", "digest", "created_at", "expires_at", "max_attempts")
SESSION_VERSION = 2


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
        self.mac_key = derive_key(key, b"redis record mac v1")
        self.url = safe_url(url)  # what messages name
        self.sandbox = sandbox
        self.prefix = PREFIX + ("sandbox:" if sandbox else "")
        self.test_clock = clock  # None: the server's clock decides
        # The SHA-256 of each stored text whose MAC was checked already, with the key (or hash)
        # it was read from: the same text from the same place authenticates again without
        # rebuilding its canonical form (at most AUTHENTIC_MAX remembered, then all forgotten).
        self._authentic: dict[bytes, str] = {}
        self.clock_fresh = CLOCK_FRESH
        self._server_clock: tuple[float, float] | None = None  # (its time, time.monotonic()) when read

    # --- keys and arguments ----------------------------------------------------------------

    def number_keys(self, number: str, service: str = "") -> tuple[str, str, str]:
        """The number's sessions and failures in `service` ("" the CLI's), and its calls (all)."""
        tag = f"{self.prefix}{{{number}}}"
        scope = f"{tag}:{service}" if service else tag
        return f"{scope}:h", f"{scope}:fail", f"{tag}:calls"

    def id_key(self, session_id: str) -> str:
        return f"{self.prefix}id:{session_id}"

    def recent_keys(self) -> list[str]:
        tag = f"{self.prefix}{{recent}}"
        return [f"{tag}:z", f"{tag}:seq"]

    def calls_key(self, service: str = "") -> str:
        """Every call of the last hour, or a service's."""
        return f"{self.prefix}{{calls:{service}}}" if service else f"{self.prefix}{{calls}}"

    def record_keys(self, kind: str, record_id: str) -> tuple[str, str]:
        tag = f"{self.prefix}{{rec:{kind}}}"
        return f"{tag}:{record_id}", f"{tag}:all"

    def member_field(self, member: str) -> tuple[str, str]:
        """A listing entry ("NUMBER\nSESSION\nSERVICE") → the hash and field that hold its session."""
        number, session_id, service = [*member.split("\n"), ""][:3]
        return self.number_keys(number, service)[0], f"s:{session_id}"

    def now_arg(self) -> str:
        """The time a script is to use: the test clock's, or "" for the server's own."""
        return "" if self.test_clock is None else f"{self.test_clock():.6f}"

    @staticmethod
    def lock_args() -> list[Any]:
        return [policy.NUMBER_FAILURE_LIMIT, policy.FAILURE_WINDOW, policy.LOCK_SECONDS]

    def digest(self, number: str, session_id: str, service: str, code: str) -> str:
        if not session_id:
            return ""
        return otp.digest(self.key, otp.Binding(number, session_id, service, self.sandbox), code).hex()

    # --- authentication ---------------------------------------------------------------------

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.mac_key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()

    def session_mac(self, h: str, d: dict[str, Any]) -> str:
        return self._mac("session", h, *(str(d.get(name, "")) for name in SESSION_SIGNED))

    def _seen(self, raw: str, where: str) -> tuple[bool, bytes]:
        """Whether `raw` was authenticated as read from `where` before, and its digest."""
        digest = hashlib.sha256(raw.encode()).digest()
        return self._authentic.get(digest) == where, digest

    def _remember(self, digest: bytes, where: str) -> None:
        if len(self._authentic) >= AUTHENTIC_MAX:
            self._authentic.clear()
        self._authentic[digest] = where

    def session(self, h: str, raw: str) -> Session:
        """A session as a script answered it, from the hash `h`, once its MAC is checked."""
        d = json.loads(raw)
        where = "session\x00" + h
        seen, digest = self._seen(raw, where)
        if not seen:
            if d.get("v") != SESSION_VERSION or not hmac.compare_digest(str(d.get("mac", "")), self.session_mac(h, d)):
                raise self.tampered("a session")
            self._remember(digest, where)
        return session_of(d)

    def tampered(self, what: str) -> StoreError:
        return StoreError(f"the store {self.url} holds {what} that does not authenticate (altered, moved or "
                          "forged by a writer of Redis): refused; see the README's security section",
                          kind=Problem.TAMPERED)

    # --- opening and time ------------------------------------------------------------------

    def check_key(self) -> Op[None]:
        """Mark an empty store with this key's fingerprint and the schema; refuse another key's."""
        meta = f"{PREFIX}meta"
        mine = fingerprint_of(self.key)
        theirs, schema = (yield Pipeline([Command(("HSETNX", meta, "key", mine)),
                                          Command(("HSETNX", meta, "schema", SCHEMA)),
                                          Command(("HMGET", meta, "key", "schema"))]))[2]
        if schema == "1":
            raise StoreError(
                f"the store {self.url} was written by an older voice2fa (schema 1), whose sessions and records carry "
                "no MAC: empty it (redis-cli --scan --pattern 'voice2fa:*' | xargs redis-cli unlink), then create "
                "the services and API keys again"
            )
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
        """The store's time: the test clock, or the server's (read at most every clock_fresh
        seconds; in between, the last reading carried forward on the monotonic clock: off by
        at most the reading's round trip and the clocks' drift since)."""
        if self.test_clock is not None:
            return self.test_clock()
        if self._server_clock is not None:
            read, at = self._server_clock
            since = time.monotonic() - at
            if 0 <= since < self.clock_fresh:
                return read + since
        seconds, micros = yield Command(("TIME",))
        return self._read_clock(seconds, micros)

    def _read_clock(self, seconds: Any, micros: Any) -> float:
        """The server's time from a reply (TIME's pair), remembered as the freshest reading."""
        now = int(seconds) + int(micros) / 1e6
        self._server_clock = (now, time.monotonic())
        return now

    # --- sessions --------------------------------------------------------------------------

    def create_session(self, *, session_id: str, number: str, code: str, ttl: float,
                       max_attempts: int = policy.MAX_ATTEMPTS, call_sid: str | None,
                       call_status: str | None, service: str = "") -> Op[Session]:
        """A new session, superseding the number's open ones (in this namespace and service
        only); then its MAC (over the times the server chose), the id's number and the
        listing, in one more round trip."""
        h, _, _ = self.number_keys(number, service)
        raw = yield Script("CREATE", [h], [self.now_arg(), session_id, number,
                                           self.digest(number, session_id, service, code), ttl, max_attempts,
                                           call_sid or "", call_status or "", int(self.sandbox), RETAIN, service,
                                           SESSION_VERSION])
        d = json.loads(raw)
        px = int((ttl + RETAIN) * 1000)
        yield Pipeline([Script("SIGN", [h], [session_id, self.session_mac(h, d)]),
                        Command(("SET", self.id_key(session_id), f"{number}\n{service}", "PX", px)),
                        Script("INDEX", self.recent_keys(), [f"{number}\n{session_id}\n{service}", RECENT_KEEP])])
        return session_of(d)

    def reserve_call(self, number: str, max_per_hour: int, *, service: str = "",
                     service_max: int | None = None) -> Op[str]:
        h, f, c = self.number_keys(number, service)
        member = secrets.token_hex(8)
        reservation = f"{number}\n{member}\n{service}"
        kind, *rest = yield Script("RESERVE_NUMBER", [h, f, c], [self.now_arg(), member, policy.SENDS_PER_NUMBER,
                                                                policy.SEND_WINDOW, *self.lock_args()])
        if kind == "locked":
            raise policy.number_locked_refusal(number, float(rest[0]))
        if kind == "number":
            raise policy.number_limit_refusal(number, int(rest[0]), float(rest[1]))
        now = rest[0]
        kind, *rest = yield Script("RESERVE_HOUR", [self.calls_key()], [now, member, max_per_hour, policy.HOUR])
        if kind == "hour":
            yield from self.release_call(reservation)
            raise policy.hourly_limit_refusal(int(rest[0]), max_per_hour, float(rest[1]))
        if service and service_max is not None:
            kind, *rest = yield Script("RESERVE_HOUR", [self.calls_key(service)], [now, member, service_max,
                                                                                  policy.HOUR])
            if kind == "hour":
                yield from self.release_call(reservation)
                raise policy.service_limit_refusal(service, int(rest[0]), service_max, float(rest[1]))
        return reservation

    def release_call(self, reservation: object) -> Op[None]:
        number, member, service = str(reservation).split("\n")
        _, _, c = self.number_keys(number)
        steps = [Command(("ZREM", c, member)), Command(("ZREM", self.calls_key(), member))]
        if service:
            steps.append(Command(("ZREM", self.calls_key(service), member)))
        yield Pipeline(list(steps))

    def session_hash(self, session_id: str) -> Op[str | None]:
        """The hash that holds a session (by its id's pointer, which the session's MAC checks)."""
        where = yield Command(("GET", self.id_key(session_id)))
        if where is None:
            return None
        number, _, service = where.partition("\n")
        return self.number_keys(number, service)[0]

    def get(self, session_id: str) -> Op[Session | None]:
        h = yield from self.session_hash(session_id)
        if h is None:
            return None
        raw = yield Command(("HGET", h, f"s:{session_id}"))
        return self.session(h, raw) if raw else None

    def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> Op[None]:
        h = yield from self.session_hash(session_id)
        if h is not None:
            yield Script("RECORD", [h], [session_id, state or "", call_status or "", self.now_arg()])

    def peek(self, number: str, service: str = "") -> Op[tuple[Session | None, float | None]]:
        """The number's newest session and the end of its lock (if one is in force)."""
        h, f, _ = self.number_keys(number, service)
        raw, until = yield Script("PEEK", [h, f], [self.now_arg(), *self.lock_args()])
        return (self.session(h, raw) if raw else None), (float(until) if until else None)

    def newest(self, number: str, service: str = "") -> Op[Session | None]:
        return (yield from self.peek(number, service))[0]

    def number_locked_until(self, number: str, service: str = "") -> Op[float | None]:
        return (yield from self.peek(number, service))[1]

    def check(self, number: str, code: str, session_id: str | None = None, service: str = "") -> Op[Verdict]:
        """The CHECK script on the newest session (or the one given); the newest is read first
        (the digest is bound to the session id) and the script tells when it changed meanwhile.
        The session it decided on is checked here before its verdict is believed."""
        h, f, _ = self.number_keys(number, service)
        for _ in range(RETRIES):
            target = session_id if session_id is not None else ((yield Command(("HGET", h, "newest"))) or "")
            reply = yield Script("CHECK", [h, f], [self.now_arg(), session_id or "", target,
                                                   self.digest(number, target, service, code), *self.lock_args()])
            if reply[0] != "retry":
                return self.verdict(h, number, reply)
        raise StoreError(f"the store {self.url} kept changing under the check: try again")

    def check_pending(self, kind: str, record_id: str, number: str, code: str, guess: str,
                      service: str = "") -> Op[tuple[Record, Verdict] | None]:
        """A check through a pending record (serve's check by To) in one round trip when
        `guess`, the session the record names, is right; else the check by the session it names.
        The record (and the session) are checked before either is believed."""
        key, _ = self.record_keys(kind, record_id)
        h, f, _ = self.number_keys(number, service)
        found = yield Script("CHECK_PENDING", [key, h, f], [self.now_arg(), number, guess,
                                                            self.digest(number, guess, service, code),
                                                            *self.lock_args()])
        if found[0] == "gone":
            return None
        record = self.body(key, found[-1])
        if found[0] == "retry":
            return record, (yield from self.check(record["to"], code, record.get("session"), service))
        return record, self.verdict(h, number, found[:5])

    def verdict(self, h: str, number: str, reply: list[Any]) -> Verdict:
        """The CHECK script's answer (on the hash `h`) as the policy's verdict."""
        kind, raw, left, until = reply[:4]
        session = self.session(h, raw) if raw else None
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
        fields = [self.member_field(m) for m in members]
        rows = yield Pipeline([Command(("HGET", *field)) for field in fields])
        return [self.session(field[0], raw) for field, raw in zip(fields, rows, strict=True) if raw]

    def purge(self) -> Op[int]:
        """Drop expired sessions now (Redis's expiry would in time), and the listing's dead
        entries. Returns how many sessions."""
        recent = self.recent_keys()[0]
        members = yield Command(("ZRANGE", recent, 0, -1))
        removed = 0
        for h in sorted({self.member_field(m)[0] for m in members}):
            removed += int((yield Script("PURGE", [h], [self.now_arg()])))
        if members:
            alive = yield Pipeline([Command(("HEXISTS", *self.member_field(m))) for m in members])
            gone = [m for m, ok in zip(members, alive, strict=True) if not ok]
            if gone:
                yield Command(("ZREM", recent, *gone))
        return removed

    # --- records (voice2fa serve: services, API keys, verifications, calls) -----------------

    def envelope(self, key: str, body: Record, expires: float | None) -> str:
        """A record as stored: its body, its end of life, and their MAC bound to its key."""
        signed = canonical({"body": body, "expires_at": expires})
        mac = self._mac("record", key, signed)
        # canonical() of the envelope with its mac, built from the signed part's: "mac" sorts last
        text = f'{signed[:-1]},"mac":"{mac}"}}'
        self._remember(hashlib.sha256(text.encode()).digest(), "record\x00" + key)  # what we MAC'd reads back
        return text

    def body(self, key: str, raw: str) -> Record:
        """A stored record's body, once its MAC (bound to the key it was read from) is checked."""
        body: Record = self.opened(key, raw)["body"]
        return body

    def opened(self, key: str, raw: str) -> dict[str, Any]:
        """A stored record's envelope (its body and end of life), once its MAC is checked."""
        envelope = json.loads(raw)
        mac = envelope.pop("mac", "")
        where = "record\x00" + key
        seen, digest = self._seen(raw, where)
        if not seen:
            if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac("record", key, canonical(envelope))):
                raise self.tampered(f"the record {key.removeprefix(self.prefix)}")
            self._remember(digest, where)
        return envelope

    def live_body(self, key: str, raw: str | None, now: float) -> Record | None:
        """A record's body from its stored envelope, None when absent or past its end of life."""
        if raw is None:
            return None
        envelope = self.opened(key, raw)
        body: Record = envelope["body"]
        expires = envelope.get("expires_at")
        if expires is not None and float(expires) <= now:
            return None
        return body

    def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                   only_new: bool = False) -> Op[bool]:
        """Store `body` as record `record_id` of `kind`, living `ttl` seconds (None: until
        replaced); with `only_new`, only when no live record has that id. The end of life is
        kept in the record (on the store's clock) and Redis drops it later."""
        key, index = self.record_keys(kind, record_id)
        expires = None if ttl is None else (yield from self.clock()) + ttl
        return bool((yield Script("PUT_RECORD", [key, index], [
            record_id, self.envelope(key, body, expires), "1" if only_new else "",
            "" if ttl is None else int((ttl + RETAIN) * 1000), "" if expires is None else f"{expires:.6f}",
            self.now_arg()])))

    def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> Op[bool]:
        """Compare and set: store `body` only when the live record's `rev` is `rev` (none: 0)."""
        key, index = self.record_keys(kind, record_id)
        expires = (yield from self.clock()) + ttl
        return bool((yield Script("SWAP_RECORD", [key, index], [
            record_id, self.envelope(key, body, expires), rev, int((ttl + RETAIN) * 1000), self.now_arg()])))

    def get_record(self, kind: str, record_id: str) -> Op[Record | None]:
        """The live record, or None: the record and the server's time in one round trip."""
        key, _ = self.record_keys(kind, record_id)
        if self.test_clock is not None:
            raw = yield Command(("GET", key))
            return self.live_body(key, raw, self.test_clock())
        found = yield Script("GET_RECORD", [key], [])
        if not found:
            return None
        raw, seconds, micros = found
        return self.live_body(key, raw, self._read_clock(seconds, micros))

    def list_records(self, kind: str) -> Op[list[Record]]:
        """Every live record of `kind`, by id (the index's dead entries dropped)."""
        _, index = self.record_keys(kind, "")
        ids = sorted((yield Command(("ZRANGE", index, 0, -1))))
        if not ids:
            return []
        keys = [self.record_keys(kind, i)[0] for i in ids]
        raws = yield Command(("MGET", *keys))
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            yield Command(("ZREM", index, *gone))
        now = yield from self.clock()
        bodies = (self.live_body(key, raw, now) for key, raw in zip(keys, raws, strict=True))
        return [body for body in bodies if body is not None]


def canonical(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def session_of(d: dict[str, Any]) -> Session:
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
        service=d.get("service", ""),
    )


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
