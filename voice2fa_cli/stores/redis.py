"""The shared store: sessions in Redis (or Valkey), for several operators on several machines.

The same guarantees as the SQLite store, kept by the server: every check-and-update is one Lua
script (redis_scripts), the keys of one number share a hash tag (Redis Cluster works), and
expiry is Redis's own (nothing to purge by hand). The HMAC key never reaches Redis: each machine
reads it from its settings, the store keeps only a fingerprint of it, and a machine with another
key is refused before it writes anything. Any failure of the server is a StoreError naming the
store and the cause: never a success without the server's word.

This is the blocking driver: every operation is redis_keys.Layout's, sent with redis-py's
blocking client. redis_async.py sends the same operations on an event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster

from voice2fa_cli import policy
from voice2fa_cli.errors import StoreError
from voice2fa_cli.policy import Session, Verdict
from voice2fa_cli.stores import redis_scripts
from voice2fa_cli.stores.base import Record, Reservation, safe_url
from voice2fa_cli.stores.redis_keys import (
    SCRIPTS,
    Command,
    Layout,
    Op,
    Pipeline,
    Script,
    errors,
    fingerprint_of,
)

T = TypeVar("T")


def client_options(url: str, timeout: float, ssl_ca_certs: str | None) -> dict[str, Any]:
    """redis-py's connection options for the store's URL (both drivers)."""
    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout,
                               "decode_responses": True}
    if url.startswith("rediss://") and ssl_ca_certs:
        options["ssl_ca_certs"] = ssl_ca_certs
    return options


class RedisStore:
    """One store namespace (real or sandbox) on one Redis server or cluster."""

    def __init__(self, client: redis.Redis | RedisCluster, layout: Layout, url: str,
                 options: dict[str, Any]) -> None:
        self._r = client
        self.layout = layout
        self.url = layout.url
        self.path = self.url  # what messages name
        self.sandbox = layout.sandbox
        self.connect_url = url  # the URL and options it was opened with (for the asyncio driver)
        self.options = options
        self._scripts = {name: client.register_script(getattr(redis_scripts, name)) for name in SCRIPTS}

    @classmethod
    def open(cls, url: str, key: bytes, *, sandbox: bool = False, timeout: float = 3.0,
             clock: Callable[[], float] | None = None, ssl_ca_certs: str | None = None) -> RedisStore:
        options = client_options(url, timeout, ssl_ca_certs)
        try:
            client: redis.Redis | RedisCluster = redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise StoreError(f"VOICE2FA_STORE {safe_url(url)} is not a Redis URL: {exc}") from None
        with errors(safe_url(url)):
            if client.info("cluster").get("cluster_enabled"):
                # A node of a Redis Cluster: talk to the cluster (it routes each number's
                # script to the node holding the number's hash tag).
                client.close()
                client = RedisCluster.from_url(url, **options)
        store = cls(client, Layout(key, url, sandbox=sandbox, clock=clock), url, options)
        try:
            store._drive(store.layout.check_key())
        except BaseException:
            store.close()
            raise
        return store

    @property
    def cluster(self) -> bool:
        return isinstance(self._r, RedisCluster)

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint of this machine's key (what the store keeps of it)."""
        return fingerprint_of(self.layout.key)

    def close(self) -> None:
        self._r.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending what the layout yields ------------------------------------------------------

    def _step(self, step: Script | Command | Pipeline) -> Any:
        if isinstance(step, Script):
            return self._scripts[step.name](keys=step.keys, args=step.args)
        if isinstance(step, Command):
            return self._r.execute_command(*step.args)
        if self.cluster:  # a cluster's pipeline may not load a script first: one step at a time
            return [self._step(part) for part in step.steps]
        pipe = self._r.pipeline(transaction=False)
        for part in step.steps:
            if isinstance(part, Script):
                self._scripts[part.name](keys=part.keys, args=part.args, client=pipe)
            else:
                pipe.execute_command(*part.args)
        return pipe.execute()

    def _drive(self, op: Op[T]) -> T:
        with errors(self.url):
            try:
                step = next(op)
                while True:
                    step = op.send(self._step(step))
            except StopIteration as done:
                result: T = done.value
                return result

    # --- the store's interface (stores.base.SessionStore) -----------------------------------

    def clock(self) -> float:
        return self._drive(self.layout.clock())

    def create_session(self, *, session_id: str, number: str, code: str, ttl: float,
                       max_attempts: int = policy.MAX_ATTEMPTS, call_sid: str | None,
                       call_status: str | None, service: str = "") -> Session:
        return self._drive(self.layout.create_session(
            session_id=session_id, number=number, code=code, ttl=ttl, max_attempts=max_attempts,
            call_sid=call_sid, call_status=call_status, service=service))

    def reserve_call(self, number: str, max_per_hour: int, *, service: str = "",
                     service_max: int | None = None) -> Reservation:
        return self._drive(self.layout.reserve_call(number, max_per_hour, service=service,
                                                          service_max=service_max))

    def release_call(self, reservation: Reservation) -> None:
        self._drive(self.layout.release_call(reservation))

    def get(self, session_id: str) -> Session | None:
        return self._drive(self.layout.get(session_id))

    def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> None:
        self._drive(self.layout.record_call(session_id, state=state, call_status=call_status))

    def newest(self, number: str, service: str = "") -> Session | None:
        return self._drive(self.layout.newest(number, service))

    def number_locked_until(self, number: str, service: str = "") -> float | None:
        return self._drive(self.layout.number_locked_until(number, service))

    def check(self, number: str, code: str, session_id: str | None = None, service: str = "") -> Verdict:
        return self._drive(self.layout.check(number, code, session_id, service))

    def recent(self, limit: int = 50) -> list[Session]:
        return self._drive(self.layout.recent(limit))

    def purge(self) -> int:
        return self._drive(self.layout.purge())

    def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                   only_new: bool = False) -> bool:
        return self._drive(self.layout.put_record(kind, record_id, body, ttl=ttl, only_new=only_new))

    def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> bool:
        return self._drive(self.layout.swap_record(kind, record_id, body, rev=rev, ttl=ttl))

    def get_record(self, kind: str, record_id: str) -> Record | None:
        return self._drive(self.layout.get_record(kind, record_id))

    def list_records(self, kind: str) -> list[Record]:
        return self._drive(self.layout.list_records(kind))

    def derive_key(self, label: bytes) -> bytes:
        from voice2fa_cli.stores.redis_keys import derive_key

        return derive_key(self.layout.key, label)

    # --- for doctor ------------------------------------------------------------------------

    def persistence(self) -> tuple[bool, bool]:
        """(AOF on, RDB snapshots configured), as the server says."""
        with errors(self.url):
            info = self._r.info("persistence")
            aof = bool(info.get("aof_enabled"))
            try:
                save = self._r.config_get("save").get("save") or ""
            except redis.exceptions.ResponseError:  # CONFIG may be refused to this ACL user
                save = ""
        return aof, bool(save.strip())
