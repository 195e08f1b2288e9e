"""The shared store: sessions in Redis (or Valkey), for several operators on several machines.

The same guarantees as the SQLite store, kept by the server: every check-and-update is one Lua
script (see redis_scripts), the keys of one number share a hash tag (Redis Cluster works), and
expiry is Redis's own (nothing to purge by hand). The HMAC key never reaches Redis: each machine
reads it from its settings, the store keeps only a fingerprint of it, and a machine with another
key is refused before it writes anything. Any failure of the server is a StoreError naming the
store and the cause: never a success without the server's word.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

from voice2fa_cli import otp
from voice2fa_cli.errors import PolicyRefused, StoreError
from voice2fa_cli.sessions import Verdict, no_session
from voice2fa_cli.stores.base import (
    CLOCK_BACK,
    CLOSED_REASONS,
    FAILURE_WINDOW,
    HOUR,
    LOCK_SECONDS,
    MAX_ATTEMPTS,
    NUMBER_FAILURE_LIMIT,
    SEND_WINDOW,
    SENDS_PER_NUMBER,
    Session,
    clock_text,
)
from voice2fa_cli.stores import redis_scripts

PREFIX = "voice2fa:"
SCHEMA = "1"
RETAIN = 86400.0  # how long a session stays listable after it expires
RECENT_KEEP = 1000  # sessions kept in the listing index
_RETRIES = 8  # a check whose newest session changed under it is tried again


def safe_url(url: str) -> str:
    """The store's URL with any password masked, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def fingerprint_of(key: bytes) -> str:
    """What the store keeps of the key: enough to tell two keys apart, nothing to guess with."""
    return hmac.new(key, b"voice2fa key fingerprint v1", hashlib.sha256).hexdigest()[:16]


class RedisStore:
    """One store namespace (real or sandbox) on one Redis server."""

    def __init__(
        self,
        client: redis.Redis,
        key: bytes,
        url: str,
        *,
        sandbox: bool,
        clock: Callable[[], float] | None,
    ) -> None:
        self._r = client
        self._key = key
        self.url = safe_url(url)
        self.path = self.url  # what messages name
        self.sandbox = sandbox
        self._prefix = PREFIX + ("sandbox:" if sandbox else "")
        self._clock = clock
        self._connect: tuple[str, dict] | None = None  # the URL and options it was opened with
        self._scripts = {
            name: client.register_script(getattr(redis_scripts, name))
            for name in ("CREATE", "RESERVE_NUMBER", "RESERVE_HOUR", "CHECK", "RECORD", "PEEK", "PURGE", "INDEX",
                         "PUT_RECORD", "SWAP_RECORD")
        }

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        key: bytes,
        *,
        sandbox: bool = False,
        timeout: float = 3.0,
        clock: Callable[[], float] | None = None,
        ssl_ca_certs: str | None = None,
    ) -> RedisStore:
        options: dict = dict(socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True)
        if url.startswith("rediss://") and ssl_ca_certs:
            options["ssl_ca_certs"] = ssl_ca_certs
        try:
            client = redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise StoreError(f"VOICE2FA_STORE {safe_url(url)} is not a Redis URL: {exc}") from None
        with _errors(safe_url(url)):
            if client.info("cluster").get("cluster_enabled"):
                # A node of a Redis Cluster: talk to the cluster (it routes each number's
                # script to the node holding the number's hash tag).
                from redis.cluster import RedisCluster

                client.close()
                client = RedisCluster.from_url(url, **options)
        store = cls(client, key, url, sandbox=sandbox, clock=clock)
        store._connect = (url, options)
        with store._errors():
            store._check_key()
        return store

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint of this machine's key (what the store keeps of it)."""
        return fingerprint_of(self._key)

    def _check_key(self) -> None:
        meta = f"{PREFIX}meta"
        mine = fingerprint_of(self._key)
        self._r.hsetnx(meta, "key", mine)
        self._r.hsetnx(meta, "schema", SCHEMA)
        theirs, schema = self._r.hmget(meta, "key", "schema")
        if schema != SCHEMA:
            raise StoreError(
                f"the store {self.url} was written by another voice2fa (schema {schema}): upgrade voice2fa"
            )
        if not hmac.compare_digest(theirs or "", mine):
            raise StoreError(
                f"the store {self.url} was set up with another key (fingerprint {theirs}, this machine's "
                f"is {mine}): give every machine the same key with VOICE2FA_KEY_FILE"
            )

    def close(self) -> None:
        self._r.close()

    def asyncio(self):
        """The same namespace through redis.asyncio, for an event loop (voice2fa serve): an
        AsyncRedisStore, or None on a Redis Cluster or a store not opened from a URL."""
        from redis.cluster import RedisCluster

        if self._connect is None or isinstance(self._r, RedisCluster):
            return None
        from voice2fa_cli.stores.redis_async import AsyncRedisStore

        return AsyncRedisStore(self, *self._connect)

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _errors(self):
        return _errors(self.url)

    # --- keys and time ---------------------------------------------------------------------

    def _number_keys(self, number: str) -> tuple[str, str, str]:
        tag = f"{self._prefix}{{{number}}}"
        return f"{tag}:h", f"{tag}:fail", f"{tag}:calls"

    def _now_arg(self) -> str:
        return "" if self._clock is None else f"{self._clock():.6f}"

    def clock(self) -> float:
        """The store's time: the test clock, or the server's."""
        if self._clock is not None:
            return self._clock()
        with self._errors():
            seconds, micros = self._r.time()
        return seconds + micros / 1e6

    def _lock_args(self) -> list:
        return [NUMBER_FAILURE_LIMIT, FAILURE_WINDOW, LOCK_SECONDS]

    def _run(self, name: str, keys: list[str], args: list) -> object:
        with self._errors():
            return self._scripts[name](keys=keys, args=args)

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
    ) -> Session:
        """Store a new session for a call that was placed, superseding the number's open ones
        (in this namespace only: real and sandbox sessions never meet)."""
        h, _, _ = self._number_keys(number)
        digest = otp.digest(self._key, session_id, code).hex()
        raw = self._run(
            "CREATE", [h],
            [self._now_arg(), session_id, number, digest, ttl, max_attempts, call_sid or "", call_status or "",
             int(self.sandbox), RETAIN],
        )
        session = _session(raw)
        with self._errors():
            self._r.set(self._id_key(session_id), number, px=int((ttl + RETAIN) * 1000))
            self._scripts["INDEX"](keys=self._recent_keys(), args=[f"{number}\n{session_id}", RECENT_KEEP])
        return session

    def _recent_keys(self) -> list[str]:
        tag = f"{self._prefix}{{recent}}"
        return [f"{tag}:z", f"{tag}:seq"]

    def _id_key(self, session_id: str) -> str:
        return f"{self._prefix}id:{session_id}"

    def reserve_call(self, number: str, max_per_hour: int) -> str:
        h, f, c = self._number_keys(number)
        member = secrets.token_hex(8)
        kind, *rest = self._run(
            "RESERVE_NUMBER", [h, f, c], [self._now_arg(), member, SENDS_PER_NUMBER, SEND_WINDOW, *self._lock_args()]
        )
        if refused := send_refusal(number, kind, rest, max_per_hour):
            raise refused
        kind, *rest = self._run("RESERVE_HOUR", [f"{self._prefix}{{calls}}"], [rest[0], member, max_per_hour, HOUR])
        if refused := send_refusal(number, kind, rest, max_per_hour):
            self.release_call(f"{number}\n{member}")
            raise refused
        return f"{number}\n{member}"

    def release_call(self, reservation: str) -> None:
        number, member = reservation.split("\n")
        _, _, c = self._number_keys(number)
        with self._errors():
            self._r.zrem(c, member)
            self._r.zrem(f"{self._prefix}{{calls}}", member)

    def get(self, session_id: str) -> Session | None:
        with self._errors():
            number = self._r.get(self._id_key(session_id))
            if number is None:
                return None
            raw = self._r.hget(self._number_keys(number)[0], f"s:{session_id}")
        return _session(raw) if raw else None

    def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> None:
        with self._errors():
            number = self._r.get(self._id_key(session_id))
        if number is None:
            return
        h, _, _ = self._number_keys(number)
        self._run("RECORD", [h], [session_id, state or "", call_status or "", self._now_arg()])

    def _peek(self, number: str) -> tuple[Session | None, float | None]:
        h, f, _ = self._number_keys(number)
        raw, until = self._run("PEEK", [h, f], [self._now_arg(), *self._lock_args()])
        return (_session(raw) if raw else None), (float(until) if until else None)

    def newest(self, number: str) -> Session | None:
        return self._peek(number)[0]

    def number_locked_until(self, number: str) -> float | None:
        return self._peek(number)[1]

    def check(self, number: str, code: str, session_id: str | None = None) -> Verdict:
        h, f, _ = self._number_keys(number)
        for _ in range(_RETRIES):
            if session_id is None:
                with self._errors():
                    target = self._r.hget(h, "newest") or ""
            else:
                target = session_id
            digest = otp.digest(self._key, target, code).hex() if target else ""
            kind, raw, left, until, now = self._run(
                "CHECK", [h, f], [self._now_arg(), session_id or "", target, digest, *self._lock_args()]
            )
            if kind != "retry":
                break
        else:
            raise StoreError(f"the store {self.url} kept changing under the check: try again")
        return verdict(number, self.sandbox, kind, raw, left, until)

    def recent(self, limit: int = 50) -> list[Session]:
        with self._errors():
            members = self._r.zrevrange(self._recent_keys()[0], 0, limit - 1)
            pipe = self._r.pipeline(transaction=False)
            for member in members:
                number, session_id = member.split("\n")
                pipe.hget(self._number_keys(number)[0], f"s:{session_id}")
            rows = pipe.execute() if members else []
        return [_session(raw) for raw in rows if raw]

    def purge(self) -> int:
        """Drop expired sessions now (Redis's expiry would in time). Returns how many."""
        removed = 0
        recent = self._recent_keys()[0]
        with self._errors():
            members = self._r.zrange(recent, 0, -1)
        numbers = {m.split("\n")[0] for m in members}
        for number in sorted(numbers):
            h, _, _ = self._number_keys(number)
            removed += int(self._run("PURGE", [h], [self._now_arg()]))
        with self._errors():
            pipe = self._r.pipeline(transaction=False)
            for member in members:
                number, session_id = member.split("\n")
                pipe.hexists(self._number_keys(number)[0], f"s:{session_id}")
            alive = pipe.execute() if members else []
            gone = [m for m, ok in zip(members, alive) if not ok]
            if gone:
                self._r.zrem(recent, *gone)
        return removed

    # --- records (voice2fa serve: services, API keys, verifications) -------------------------

    def _record_keys(self, kind: str, record_id: str) -> tuple[str, str]:
        tag = f"{self._prefix}{{rec:{kind}}}"
        return f"{tag}:{record_id}", f"{tag}:all"

    def put_record(self, kind: str, record_id: str, body: dict, *, ttl: float | None = None,
                   only_new: bool = False) -> bool:
        """Store `body` (JSON-able) as record `record_id` of `kind`, living `ttl` seconds (None:
        until replaced). With `only_new`, only when no live record has that id. True when stored.
        The end of life is kept in the record (on the store's clock) and Redis drops it later."""
        key, index = self._record_keys(kind, record_id)
        expires = None if ttl is None else self.clock() + ttl
        text = json.dumps({"body": body, "expires_at": expires}, separators=(",", ":"), sort_keys=True)
        return bool(self._run(
            "PUT_RECORD", [key, index],
            [record_id, text, "1" if only_new else "", "" if ttl is None else int((ttl + RETAIN) * 1000),
             "" if expires is None else f"{expires:.6f}", self._now_arg()],
        ))

    def swap_record(self, kind: str, record_id: str, body: dict, *, rev: int, ttl: float) -> bool:
        """Compare and set: store `body` only when the live record's `rev` field is `rev` (no
        live record: 0). True when stored. One script on the server."""
        key, index = self._record_keys(kind, record_id)
        expires = self.clock() + ttl
        text = json.dumps({"body": body, "expires_at": expires}, separators=(",", ":"), sort_keys=True)
        return bool(self._run(
            "SWAP_RECORD", [key, index],
            [record_id, text, rev, int((ttl + RETAIN) * 1000), self._now_arg()],
        ))

    def derive_key(self, label: bytes) -> bytes:
        """A key for `label` derived from the store's HMAC key (which Redis never holds)."""
        return hmac.new(self._key, b"voice2fa derived key\x00" + label, hashlib.sha256).digest()

    def _live(self, raw: str | None) -> dict | None:
        return live_body(raw, self.clock)

    def get_record(self, kind: str, record_id: str) -> dict | None:
        """The live record, or None."""
        key, _ = self._record_keys(kind, record_id)
        with self._errors():
            raw = self._r.get(key)
        return self._live(raw)

    def list_records(self, kind: str) -> list[dict]:
        """Every live record of `kind`, by id."""
        _, index = self._record_keys(kind, "")
        with self._errors():
            ids = sorted(self._r.zrange(index, 0, -1))
            raws = self._r.mget([self._record_keys(kind, i)[0] for i in ids]) if ids else []
            gone = [i for i, raw in zip(ids, raws) if raw is None]
            if gone:
                self._r.zrem(index, *gone)
        return [body for body in map(self._live, raws) if body is not None]

    # --- for doctor ------------------------------------------------------------------------

    def persistence(self) -> tuple[bool, bool]:
        """(AOF on, RDB snapshots configured), as the server says."""
        with self._errors():
            info = self._r.info("persistence")
            aof = bool(info.get("aof_enabled"))
            try:
                save = self._r.config_get("save").get("save", "")
            except redis.exceptions.ResponseError:  # CONFIG may be refused to this ACL user
                save = ""
        return aof, bool(save.strip())


@contextmanager
def _errors(url: str) -> Iterator[None]:
    """Any failure of the server or the connection as a StoreError naming the store and the
    cause, in one line."""
    try:
        yield
    except redis.exceptions.AuthenticationError:
        raise StoreError(f"the store {url} refused the credentials: check the user and password in VOICE2FA_STORE") from None
    except (redis.exceptions.TimeoutError, TimeoutError):
        raise StoreError(f"the store {url} did not answer in time: is the server overloaded or unreachable?") from None
    except redis.exceptions.ConnectionError as exc:
        raise StoreError(f"the store {url} cannot be reached: {_cause(exc)}") from None
    except redis.exceptions.ReadOnlyError:
        raise StoreError(f"the store {url} is read-only (a replica?): point VOICE2FA_STORE at the primary") from None
    except redis.exceptions.ResponseError as exc:
        text = str(exc)
        if text.startswith("OOM") or "maxmemory" in text:
            msg = f"the store {url} is full (maxmemory reached): free memory on the server"
        elif text.startswith(("NOPERM", "NOAUTH", "WRONGPASS")):
            msg = f"the store {url} refused the credentials or the command: check the ACL user in VOICE2FA_STORE"
        else:
            msg = f"the store {url} answered an error: {_cause(exc)}"
        raise StoreError(msg) from None
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise StoreError(f"the store {url} failed: {_cause(exc)}") from None


def send_refusal(number: str, kind: str, rest: list, max_per_hour: int) -> PolicyRefused | None:
    """What RESERVE_NUMBER or RESERVE_HOUR answered, as the refusal the operator reads (None:
    the call is counted)."""
    if kind == "locked":
        return PolicyRefused(f"{number} is locked after too many wrong codes: no calls until {clock_text(float(rest[0]))}")
    if kind == "number":
        return PolicyRefused(
            f"send limit reached: {rest[0]} calls to {number} in the last "
            f"{SEND_WINDOW / 60:g} minutes; try again after {clock_text(float(rest[1]))}"
        )
    if kind == "hour":
        return PolicyRefused(
            f"send limit reached: {rest[0]} calls in the last hour (VOICE2FA_MAX_CALLS_PER_HOUR="
            f"{max_per_hour}); try again after {clock_text(float(rest[1]))}"
        )
    return None


def _session(raw: str) -> Session:
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


def verdict(number: str, sandbox: bool, kind: str, raw: str | None, left, until) -> Verdict:
    """The CHECK script's answer as a Verdict: one mapping for the sync store and the asyncio one."""
    session = _session(raw) if raw else None
    if kind == "locked":
        return Verdict(False, f"locked: too many wrong codes for {number}; try again after {clock_text(float(until))}", session)
    if kind == "none":
        return no_session(number, sandbox)
    if kind == "closed":
        return Verdict(False, CLOSED_REASONS[session.state], session)
    if kind == "expired":
        return Verdict(False, f"expired at {clock_text(session.expires_at)}: send a new code", session)
    if kind == "clock-back":
        return Verdict(False, CLOCK_BACK, session)
    if kind == "verified":
        return Verdict(True, "verified", session, int(left))
    left = int(left)
    if left == 0:
        reason = "wrong code; locked: too many wrong codes; send a new one"
    else:
        reason = f"wrong code ({left} attempt{'s' if left != 1 else ''} left)"
    return Verdict(False, reason, session, left)


def live_body(raw: str | None, clock: Callable[[], float]) -> dict | None:
    """A record's body from its stored envelope, None when absent or past its end of life
    (`clock` is asked only then: the store's time)."""
    if raw is None:
        return None
    envelope = json.loads(raw)
    expires = envelope.get("expires_at")
    if expires is not None and float(expires) <= clock():
        return None
    return envelope["body"]


def _cause(exc: Exception) -> str:
    """A server or socket error as one line (never holds a code: codes never reach Redis)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
