"""The shared Redis store through redis.asyncio, for `voice2fa serve`'s event loop.

The same namespace, keys, Lua scripts, error messages and verdicts as the blocking RedisStore:
both send redis_keys.Layout's operations, this one awaiting each round trip on the loop. It
implements the whole AsyncSessionStore (stores.base); on a Redis Cluster serve works the
blocking store from threads instead (stores.onloop.StoreThread).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TypeVar

import redis.asyncio as aredis

from voice2fa_cli import policy
from voice2fa_cli.errors import StoreError
from voice2fa_cli.policy import Session, Verdict
from voice2fa_cli.stores import redis_scripts
from voice2fa_cli.stores.base import Record, Reservation
from voice2fa_cli.stores.redis import RedisStore
from voice2fa_cli.stores.redis_keys import SCRIPTS, Command, Layout, Op, Pipeline, Script, derive_key, errors

MAX_CONNECTIONS = 64  # per namespace and server process
MAX_NAMED = 10_000  # pending records whose session check_pending remembers
T = TypeVar("T")

if sys.version_info >= (3, 11):
    _deadline = asyncio.timeout
else:  # Python 3.10: redis-py depends on async-timeout there
    from async_timeout import timeout as _deadline


class AsyncRedisStore:
    """One namespace of the shared store on an asyncio client (the URL and options of a
    blocking RedisStore that was opened, and so checked, first)."""

    def __init__(self, layout: Layout, url: str, options: dict[str, Any]) -> None:
        self.layout = layout
        self.url = layout.url
        self.sandbox = layout.sandbox
        # At most MAX_CONNECTIONS commands in flight (so as many connections): beyond, a command
        # waits for a slot. The slots are an asyncio.Semaphore in front of a plain pool
        # (redis.asyncio's BlockingConnectionPool costs about 9 µs more per command), and the
        # store's timeout is one deadline around each round trip (_step) rather than redis-py's
        # socket_timeout, which wraps every send in a task of its own (asyncio.wait_for).
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._wait = options.get("socket_timeout") or 3.0
        options = {**options, "socket_timeout": None}
        try:
            pool = aredis.ConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, **options)
            self._r = aredis.Redis(connection_pool=pool)
        except ValueError as exc:
            raise StoreError(f"VOICE2FA_STORE {self.url} is not a Redis URL: {exc}") from None
        self._scripts = {name: self._r.register_script(getattr(redis_scripts, name)) for name in SCRIPTS}
        # The session each pending record last named (check_pending's guess: the digest is bound
        # to the session id, so it is made before the round trip; the script tells a stale guess).
        self._named: dict[str, str] = {}

    @classmethod
    def like(cls, sync: RedisStore) -> AsyncRedisStore:
        """The namespace a blocking store opened (and checked the key of), on an asyncio client."""
        return cls(sync.layout, sync.connect_url, sync.options)

    async def aclose(self) -> None:
        await self._r.aclose()

    async def __aenter__(self) -> AsyncRedisStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- sending what the layout yields ------------------------------------------------------

    async def _step(self, step: Script | Command | Pipeline) -> Any:
        """One round trip, under the store's timeout (for the wait for a slot too) in one of the
        slots; any failure is the one-line StoreError (a timeout: "did not answer in time"). A
        command cut off by the timeout drops its connection (redis-py does). (No context
        manager of ours around it: this is every round trip's path.)"""
        with errors(self.url):
            async with _deadline(self._wait), self._slots:
                if isinstance(step, Script):
                    return await self._scripts[step.name](keys=step.keys, args=step.args)
                if isinstance(step, Command):
                    return await self._r.execute_command(*step.args)
                pipe = self._r.pipeline(transaction=False)
                for part in step.steps:
                    if isinstance(part, Script):
                        await self._scripts[part.name](keys=part.keys, args=part.args, client=pipe)
                    else:
                        pipe.execute_command(*part.args)
                return await pipe.execute()

    async def _drive(self, op: Op[T]) -> T:
        try:
            step = next(op)
            while True:
                step = op.send(await self._step(step))
        except StopIteration as done:
            result: T = done.value
            return result

    # --- the store's interface (stores.base.AsyncSessionStore) ------------------------------

    async def clock(self) -> float:
        return await self._drive(self.layout.clock())

    async def derive_key(self, label: bytes) -> bytes:
        return derive_key(self.layout.key, label)

    async def check(self, number: str, code: str, session_id: str | None = None, service: str = "") -> Verdict:
        return await self._drive(self.layout.check(number, code, session_id, service))

    async def check_pending(self, kind: str, record_id: str, number: str, code: str,
                            service: str) -> tuple[Record, Verdict] | None:
        """One round trip when the session the record names is the one last seen here; else
        two, the second the check by the session it names."""
        key, _ = self.layout.record_keys(kind, record_id)
        found = await self._drive(self.layout.check_pending(kind, record_id, number, code, self._named.get(key, ""),
                                                              service))
        if found is not None:
            if len(self._named) >= MAX_NAMED:
                self._named.clear()
            session = found[0].get("session")
            if isinstance(session, str):
                self._named[key] = session
        return found

    async def create_session(self, *, session_id: str, number: str, code: str, ttl: float,
                             max_attempts: int = policy.MAX_ATTEMPTS, call_sid: str | None,
                             call_status: str | None, service: str = "") -> Session:
        return await self._drive(self.layout.create_session(
            session_id=session_id, number=number, code=code, ttl=ttl, max_attempts=max_attempts,
            call_sid=call_sid, call_status=call_status, service=service))

    async def reserve_call(self, number: str, max_per_hour: int, *, service: str = "",
                     service_max: int | None = None) -> Reservation:
        return await self._drive(self.layout.reserve_call(number, max_per_hour, service=service,
                                                          service_max=service_max))

    async def release_call(self, reservation: Reservation) -> None:
        await self._drive(self.layout.release_call(reservation))

    async def get(self, session_id: str) -> Session | None:
        return await self._drive(self.layout.get(session_id))

    async def record_call(self, session_id: str, *, state: str | None = None,
                          call_status: str | None = None) -> None:
        await self._drive(self.layout.record_call(session_id, state=state, call_status=call_status))

    async def newest(self, number: str, service: str = "") -> Session | None:
        return await self._drive(self.layout.newest(number, service))

    async def number_locked_until(self, number: str, service: str = "") -> float | None:
        return await self._drive(self.layout.number_locked_until(number, service))

    async def recent(self, limit: int = 50) -> list[Session]:
        return await self._drive(self.layout.recent(limit))

    async def purge(self) -> int:
        return await self._drive(self.layout.purge())

    async def get_record(self, kind: str, record_id: str) -> Record | None:
        return await self._drive(self.layout.get_record(kind, record_id))

    async def list_records(self, kind: str) -> list[Record]:
        return await self._drive(self.layout.list_records(kind))

    async def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                         only_new: bool = False) -> bool:
        return await self._drive(self.layout.put_record(kind, record_id, body, ttl=ttl, only_new=only_new))

    async def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> bool:
        return await self._drive(self.layout.swap_record(kind, record_id, body, rev=rev, ttl=ttl))
