"""The shared Redis store through redis.asyncio, for `voice2fa serve`'s event loop.

The same namespace, keys, Lua scripts (redis_scripts), error messages and verdicts as the
synchronous RedisStore (which the CLI keeps using): this class holds only the round trips,
awaited on the loop instead of worked from a thread, and borrows the key names, the verdict
mapping and the record envelope from redis.py. Only the methods the server's hot paths use are
here; `OnLoop` sends every other call to the synchronous store's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis

from voice2fa_cli import otp
from voice2fa_cli.errors import StoreError
from voice2fa_cli.sessions import Verdict
from voice2fa_cli.stores import redis_scripts
from voice2fa_cli.stores.base import HOUR, SEND_WINDOW, SENDS_PER_NUMBER, Session
from voice2fa_cli.stores.redis import (
    _RETRIES,
    RECENT_KEEP,
    RETAIN,
    RedisStore,
    _errors,
    _session,
    live_body,
    send_refusal,
    verdict,
)


MAX_CONNECTIONS = 64  # per namespace and server process
MAX_NAMED = 10_000  # pending records whose session check_pending remembers


class AsyncRedisStore:
    """One namespace of a RedisStore, on an asyncio client of its own (same URL and options)."""

    def __init__(self, sync: RedisStore, url: str, options: dict) -> None:
        self._sync = sync
        # At most MAX_CONNECTIONS commands in flight (so as many connections): beyond, a command
        # waits for a slot. The slots are an asyncio.Semaphore in front of a plain pool
        # (redis.asyncio's BlockingConnectionPool costs about 9 µs more per command), and the
        # store's timeout is one asyncio.timeout around each round trip (_io) rather than
        # redis-py's socket_timeout, which wraps every send in a task of its own (asyncio.wait_for).
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._wait = options.get("socket_timeout") or 3.0
        options = {**options, "socket_timeout": None}
        try:
            pool = aredis.ConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, **options)
            self._r = aredis.Redis(connection_pool=pool)
        except ValueError as exc:
            raise StoreError(f"VOICE2FA_STORE {sync.url} is not a Redis URL: {exc}") from None
        self.url = sync.url
        self.sandbox = sync.sandbox
        self._clock = sync._clock
        self._scripts = {name: self._r.register_script(getattr(redis_scripts, name))
                         for name in ("CREATE", "RESERVE_NUMBER", "RESERVE_HOUR", "CHECK", "RECORD", "INDEX",
                                      "PUT_RECORD", "SWAP_RECORD", "GET_RECORD", "CHECK_PENDING")}
        # The session each pending record last named (check_pending's guess: the digest is bound
        # to the session id, so it is made before the round trip; the script tells a stale guess).
        self._named: dict[str, str] = {}

    async def aclose(self) -> None:
        await self._r.aclose()

    @contextlib.asynccontextmanager
    async def _io(self) -> AsyncIterator[None]:
        """Around every round trip: the store's timeout (for the wait for a slot too), a slot,
        and any failure as the sync store's one-line StoreError (a timeout: "did not answer in
        time"). A command cut off by the timeout drops its connection (redis-py does)."""
        with _errors(self.url):
            async with asyncio.timeout(self._wait), self._slots:
                yield

    async def _run(self, name: str, keys: list[str], args: list) -> Any:
        async with self._io():
            return await self._scripts[name](keys=keys, args=args)

    async def clock(self) -> float:
        if self._clock is not None:
            return self._clock()
        async with self._io():
            seconds, micros = await self._r.time()
        return seconds + micros / 1e6

    async def derive_key(self, label: bytes) -> bytes:
        return self._sync.derive_key(label)

    # --- sessions --------------------------------------------------------------------------

    async def check(self, number: str, code: str, session_id: str | None = None) -> Verdict:
        s = self._sync
        h, f, _ = s._number_keys(number)
        for _ in range(_RETRIES):
            if session_id is None:
                async with self._io():
                    target = await self._r.hget(h, "newest") or ""
            else:
                target = session_id
            digest = otp.digest(s._key, target, code).hex() if target else ""
            kind, raw, left, until, _now = await self._run(
                "CHECK", [h, f], [s._now_arg(), session_id or "", target, digest, *s._lock_args()]
            )
            if kind != "retry":
                break
        else:
            raise StoreError(f"the store {self.url} kept changing under the check: try again")
        return verdict(number, self.sandbox, kind, raw, left, until)

    async def check_pending(self, kind: str, record_id: str, number: str, code: str
                            ) -> tuple[dict, Verdict] | None:
        """A check by number through its pending record (`kind`, `record_id`): None when there
        is no live record of status pending, else the record's body and the verdict of `check`
        on the session it names. One round trip when the session named is the one last seen
        here; else two, the second `check` itself."""
        s = self._sync
        key, _ = s._record_keys(kind, record_id)
        h, f, _ = s._number_keys(number)
        guess = self._named.get(key, "")
        digest = otp.digest(s._key, guess, code).hex() if guess else ""
        found = await self._run("CHECK_PENDING", [key, h, f],
                                [s._now_arg(), number, guess, digest, *s._lock_args()])
        if found[0] == "gone":
            return None
        raw = found[-1]
        record = json.loads(raw)["body"]
        if len(self._named) >= MAX_NAMED:
            self._named.clear()
        session = record.get("session")
        if isinstance(session, str):
            self._named[key] = session
        if found[0] == "retry":
            return record, await self.check(record["to"], code, session)
        kind, raw_session, left, until, _now = found[:5]
        return record, verdict(number, self.sandbox, kind, raw_session, left, until)

    async def create_session(self, *, session_id: str, number: str, code: str, ttl: float, max_attempts: int = 5,
                             call_sid: str | None, call_status: str | None) -> Session:
        s = self._sync
        h, _, _ = s._number_keys(number)
        digest = otp.digest(s._key, session_id, code).hex()
        raw = await self._run(
            "CREATE", [h],
            [s._now_arg(), session_id, number, digest, ttl, max_attempts, call_sid or "", call_status or "",
             int(self.sandbox), RETAIN],
        )
        session = _session(raw)
        async with self._io():  # the id's number and the listing: one round trip
            pipe = self._r.pipeline(transaction=False)
            pipe.set(s._id_key(session_id), number, px=int((ttl + RETAIN) * 1000))
            await self._scripts["INDEX"](keys=s._recent_keys(), args=[f"{number}\n{session_id}", RECENT_KEEP], client=pipe)
            await pipe.execute()
        return session

    async def reserve_call(self, number: str, max_per_hour: int) -> str:
        s = self._sync
        h, f, c = s._number_keys(number)
        member = secrets.token_hex(8)
        kind, *rest = await self._run(
            "RESERVE_NUMBER", [h, f, c], [s._now_arg(), member, SENDS_PER_NUMBER, SEND_WINDOW, *s._lock_args()]
        )
        if refused := send_refusal(number, kind, rest, max_per_hour):
            raise refused
        kind, *rest = await self._run("RESERVE_HOUR", [f"{s._prefix}{{calls}}"], [rest[0], member, max_per_hour, HOUR])
        if refused := send_refusal(number, kind, rest, max_per_hour):
            await self.release_call(f"{number}\n{member}")
            raise refused
        return f"{number}\n{member}"

    async def release_call(self, reservation: str) -> None:
        s = self._sync
        number, member = reservation.split("\n")
        _, _, c = s._number_keys(number)
        async with self._io():
            pipe = self._r.pipeline(transaction=False)
            pipe.zrem(c, member)
            pipe.zrem(f"{s._prefix}{{calls}}", member)
            await pipe.execute()

    async def get(self, session_id: str) -> Session | None:
        s = self._sync
        async with self._io():
            number = await self._r.get(s._id_key(session_id))
            if number is None:
                return None
            raw = await self._r.hget(s._number_keys(number)[0], f"s:{session_id}")
        return _session(raw) if raw else None

    async def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> None:
        s = self._sync
        async with self._io():
            number = await self._r.get(s._id_key(session_id))
        if number is None:
            return
        h, _, _ = s._number_keys(number)
        await self._run("RECORD", [h], [session_id, state or "", call_status or "", s._now_arg()])

    # --- records ---------------------------------------------------------------------------

    def _envelope(self, body: dict, expires: float | None) -> str:
        return json.dumps({"body": body, "expires_at": expires}, separators=(",", ":"), sort_keys=True)

    async def get_record(self, kind: str, record_id: str) -> dict | None:
        """The live record, or None: the record and the server's time in one round trip."""
        key, _ = self._sync._record_keys(kind, record_id)
        if self._clock is not None:
            async with self._io():
                raw = await self._r.get(key)
            now = self._clock()
        else:
            found = await self._run("GET_RECORD", [key], [])
            if found is None:
                return None
            raw, seconds, micros = found
            now = int(seconds) + int(micros) / 1e6
        return live_body(raw, lambda: now)

    async def put_record(self, kind: str, record_id: str, body: dict, *, ttl: float | None = None,
                         only_new: bool = False) -> bool:
        s = self._sync
        key, index = s._record_keys(kind, record_id)
        expires = None if ttl is None else await self.clock() + ttl
        return bool(await self._run(
            "PUT_RECORD", [key, index],
            [record_id, self._envelope(body, expires), "1" if only_new else "",
             "" if ttl is None else int((ttl + RETAIN) * 1000), "" if expires is None else f"{expires:.6f}",
             s._now_arg()],
        ))

    async def swap_record(self, kind: str, record_id: str, body: dict, *, rev: int, ttl: float) -> bool:
        s = self._sync
        key, index = s._record_keys(kind, record_id)
        expires = await self.clock() + ttl
        return bool(await self._run(
            "SWAP_RECORD", [key, index],
            [record_id, self._envelope(body, expires), rev, int((ttl + RETAIN) * 1000), s._now_arg()],
        ))


ON_LOOP = frozenset({"check", "create_session", "reserve_call", "release_call", "get", "record_call", "get_record",
                     "put_record", "swap_record", "derive_key"})


class OnLoop:
    """A StoreThread's interface (`run`, `apply`, `store`) whose hot methods are awaited on the
    event loop through an AsyncRedisStore; every other call goes to the thread."""

    def __init__(self, thread, aio: AsyncRedisStore) -> None:
        self.thread = thread
        self.aio = aio
        self.store = thread.store

    async def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method in ON_LOOP:
            return await getattr(self.aio, method)(*args, **kwargs)
        return await self.thread.run(method, *args, **kwargs)

    async def check_pending(self, *args: Any) -> tuple[dict, Verdict] | None:
        return await self.aio.check_pending(*args)

    async def apply(self, function, *args: Any, **kwargs: Any) -> Any:
        return await self.thread.apply(function, *args, **kwargs)

    async def __aenter__(self) -> OnLoop:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aio.aclose()
