"""A blocking store reached from an event loop: StoreThread, the AsyncSessionStore over any
SessionStore, and `open_async_store`, which picks the asyncio Redis driver where it can."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from voice2fa_cli import policy
from voice2fa_cli.policy import Session, Verdict
from voice2fa_cli.stores.base import AsyncSessionStore, Record, Reservation, SessionStore, StoreSpec

T = TypeVar("T")
PENDING = "pending"  # the status of a record that check_pending follows


class StoreThread:
    """The store worked from one thread of its own, one call at a time and in order: a busy or
    slow store (another process holding the write lock, a slow disk) never blocks the event
    loop, so the webhook keeps answering the platform meanwhile. More than one worker only for
    a store whose client is thread-safe (Redis's pool of connections); each coroutine still
    awaits its own calls in order."""

    def __init__(self, store: SessionStore, workers: int = 1) -> None:
        self.store = store
        self.sandbox = store.sandbox
        self.owns_store = True  # closing this closes the store
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="voice2fa-store")

    @classmethod
    async def open(cls, where: StoreSpec | Path, *, sandbox: bool = False, workers: int = 1) -> StoreThread:
        from voice2fa_cli.stores import open_store

        pool = ThreadPoolExecutor(1, thread_name_prefix="voice2fa-store")
        try:
            store = await asyncio.get_running_loop().run_in_executor(
                pool, functools.partial(open_store, where, sandbox=sandbox))
        finally:
            pool.shutdown(wait=False)
        shared = isinstance(where, StoreSpec) and where.shared
        return cls(store, workers if shared else 1)

    def sibling(self, workers: int) -> StoreThread:
        """The same store on threads of its own (the webhook's, so that the platform's requests
        never queue behind the API's work); closing it leaves the store open."""
        other = StoreThread(self.store, workers)
        other.owns_store = False
        return other

    async def _call(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def aclose(self) -> None:
        try:
            if self.owns_store:
                await self._call(self.store.close)
        finally:
            self._pool.shutdown(wait=False)

    async def __aenter__(self) -> StoreThread:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the store's interface (stores.base.AsyncSessionStore) ------------------------------

    async def clock(self) -> float:
        return await self._call(self.store.clock)

    async def reserve_call(self, number: str, max_per_hour: int, *, service: str = "",
                           service_max: int | None = None) -> Reservation:
        return await self._call(self.store.reserve_call, number, max_per_hour, service=service,
                                service_max=service_max)

    async def release_call(self, reservation: Reservation) -> None:
        await self._call(self.store.release_call, reservation)

    async def create_session(self, *, session_id: str, number: str, code: str, ttl: float,
                             max_attempts: int = policy.MAX_ATTEMPTS, call_sid: str | None,
                             call_status: str | None, service: str = "") -> Session:
        return await self._call(self.store.create_session, session_id=session_id, number=number, code=code,
                                ttl=ttl, max_attempts=max_attempts, call_sid=call_sid, call_status=call_status,
                                service=service)

    async def record_call(self, session_id: str, *, state: str | None = None,
                          call_status: str | None = None) -> None:
        await self._call(self.store.record_call, session_id, state=state, call_status=call_status)

    async def get(self, session_id: str) -> Session | None:
        return await self._call(self.store.get, session_id)

    async def newest(self, number: str, service: str = "") -> Session | None:
        return await self._call(self.store.newest, number, service)

    async def number_locked_until(self, number: str, service: str = "") -> float | None:
        return await self._call(self.store.number_locked_until, number, service)

    async def check(self, number: str, code: str, session_id: str | None = None, service: str = "") -> Verdict:
        return await self._call(self.store.check, number, code, session_id, service)

    async def check_pending(self, kind: str, record_id: str, number: str, code: str,
                            service: str) -> tuple[Record, Verdict] | None:
        return await self._call(_check_pending, self.store, kind, record_id, code, service)

    async def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                         only_new: bool = False) -> bool:
        return await self._call(self.store.put_record, kind, record_id, body, ttl=ttl, only_new=only_new)

    async def get_record(self, kind: str, record_id: str) -> Record | None:
        return await self._call(self.store.get_record, kind, record_id)

    async def list_records(self, kind: str) -> list[Record]:
        return await self._call(self.store.list_records, kind)

    async def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> bool:
        return await self._call(self.store.swap_record, kind, record_id, body, rev=rev, ttl=ttl)

    async def derive_key(self, label: bytes) -> bytes:
        return self.store.derive_key(label)


def _check_pending(store: SessionStore, kind: str, record_id: str, code: str,
                   service: str) -> tuple[Record, Verdict] | None:
    """check_pending on a blocking store: the record, then the check of the session it names."""
    record = store.get_record(kind, record_id)
    if not record or record.get("status") != PENDING:
        return None
    return record, store.check(record["to"], code, record.get("session"), service)


async def open_async_store(spec: StoreSpec, *, sandbox: bool, workers: int = 1) -> AsyncSessionStore:
    """The store the settings name, for an event loop: on a standalone Redis the asyncio driver
    (after the blocking one has opened the store and checked its key), else a StoreThread."""
    thread = await StoreThread.open(spec, sandbox=sandbox, workers=workers)
    if not spec.shared:
        return thread
    from voice2fa_cli.stores.redis import RedisStore
    from voice2fa_cli.stores.redis_async import AsyncRedisStore

    sync = thread.store
    if not isinstance(sync, RedisStore) or sync.cluster:
        return thread  # a Redis Cluster: threads only
    try:
        return AsyncRedisStore.like(sync)
    finally:
        await thread.aclose()
