"""What every store offers: the settings that name one (StoreSpec), and the interface all of
voice2fa uses, synchronous (SessionStore) and for an event loop (AsyncSessionStore).

Two backends keep sessions behind it (see `open_store` in this package): the SQLite store under
the state dir (sqlite.py, the embedded default) and the shared Redis store (redis.py, and
redis_async.py on an event loop). The contract test suite (tests/test_store.py) runs against
each. The session record, the verdicts and the limits are the policy's (voice2fa_cli.policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from voice2fa_cli.policy import Session, Verdict

DEFAULT_TIMEOUT = 3.0  # seconds a shared store may take to answer
KEY_BYTES = 32  # the HMAC key's length

Reservation = int | str  # what reserve_call returns, to hand back to release_call
Record = dict  # a JSON-able record of `voice2fa serve` (services, keys, verifications, calls)


@dataclass(frozen=True)
class StoreSpec:
    """Which store to open, from the settings (config.store_spec); opening it is `open_store`."""

    state_dir: Path
    url: str | None = None  # None: SQLite under state_dir
    key_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None

    @property
    def shared(self) -> bool:
        return self.url is not None

    def describe(self) -> str:
        if self.url is None:
            return f"SQLite in {self.state_dir}"
        return f"Redis at {safe_url(self.url)}"


# Query parameters of a store URL that never hold a credential: shown as they are. Any other
# (password=, username=, a token, a name redis-py may add later) is shown as NAME=***.
SAFE_QUERY = frozenset({"db", "ssl_cert_reqs", "ssl_check_hostname", "socket_timeout", "socket_connect_timeout",
                        "health_check_interval", "retry_on_timeout", "protocol", "decode_responses"})


def safe_url(url: str) -> str:
    """A store's URL fit for a message, a log line or --json: the user and password (all of the
    userinfo: a user name may be a token) shown as ***, every query value that may hold a
    credential as ***, no fragment."""
    from urllib.parse import parse_qsl, urlencode

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unparsable port or host: show only the scheme
        return url.split(":", 1)[0] + "://***" if "://" in url else "***"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    query = urlencode([(name, value if name.lower() in SAFE_QUERY else "***")
                       for name, value in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


class NoStore(Exception):
    """The state dir holds no database yet (only raised when not asked to create one)."""


class SessionStore(Protocol):
    """What both backends offer (stores/sqlite.py and stores/redis.py), and all that the rest
    of voice2fa uses of a store. Every check-and-update is atomic where the data lives."""

    sandbox: bool  # the sandbox's sessions, or the real ones: never both

    def clock(self) -> float:
        """The store's time (the server's, for a shared store)."""

    def close(self) -> None: ...

    def __enter__(self) -> SessionStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def reserve_call(self, number: str, max_per_hour: int, *, service: str = "",
                     service_max: int | None = None) -> Reservation:
        """Check the number's lock (in `service`) and the send limits (the number's across
        services, the hourly cap, and `service_max` calls an hour of `service` when given) and
        count this call (PolicyRefused otherwise); the reservation to release when nothing was dialed."""

    def release_call(self, reservation: Reservation) -> None: ...

    def create_session(self, *, session_id: str, number: str, code: str, ttl: float, max_attempts: int = ...,
                       call_sid: str | None, call_status: str | None, service: str = "") -> Session:
        """A new session for a call that was placed, superseding the number's open ones in
        `service` ("" is the CLI's own; a serve service's sessions are its own)."""

    def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> None: ...

    def get(self, session_id: str) -> Session | None: ...

    def newest(self, number: str, service: str = "") -> Session | None: ...

    def number_locked_until(self, number: str, service: str = "") -> float | None: ...

    def check(self, number: str, code: str, session_id: str | None = None, service: str = "") -> Verdict:
        """Check a code against the newest session of `number` in `service` (or the given one
        of them), atomically."""

    def recent(self, limit: int = 50) -> list[Session]: ...

    def purge(self) -> int: ...

    # Records by kind and id, for `voice2fa serve` (services, keys, verifications, calls).
    def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                   only_new: bool = False) -> bool: ...

    def get_record(self, kind: str, record_id: str) -> Record | None: ...

    def list_records(self, kind: str) -> list[Record]: ...

    def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> bool: ...

    def derive_key(self, label: bytes) -> bytes: ...


class AsyncSessionStore(Protocol):
    """The same interface for an event loop: a sync store worked from threads
    (stores/onloop.py), or the asyncio Redis driver (stores/redis_async.py)."""

    sandbox: bool

    async def clock(self) -> float: ...

    async def aclose(self) -> None: ...

    async def reserve_call(self, number: str, max_per_hour: int, *, service: str = "",
                           service_max: int | None = None) -> Reservation: ...

    async def release_call(self, reservation: Reservation) -> None: ...

    async def create_session(self, *, session_id: str, number: str, code: str, ttl: float,
                             max_attempts: int = ..., call_sid: str | None, call_status: str | None,
                             service: str = "") -> Session: ...

    async def record_call(self, session_id: str, *, state: str | None = None,
                          call_status: str | None = None) -> None: ...

    async def get(self, session_id: str) -> Session | None: ...

    async def newest(self, number: str, service: str = "") -> Session | None: ...

    async def number_locked_until(self, number: str, service: str = "") -> float | None: ...

    async def check(self, number: str, code: str, session_id: str | None = None, service: str = "") -> Verdict: ...

    async def check_pending(self, kind: str, record_id: str, number: str, code: str,
                            service: str) -> tuple[Record, Verdict] | None:
        """A check through a record that names the session (serve's pending verification of a
        number in `service`): None when no live record of `kind` and `record_id` has status
        pending; else the record and the verdict of `check` on the session it names (and its `to`)."""

    async def put_record(self, kind: str, record_id: str, body: Record, *, ttl: float | None = None,
                         only_new: bool = False) -> bool: ...

    async def get_record(self, kind: str, record_id: str) -> Record | None: ...

    async def list_records(self, kind: str) -> list[Record]: ...

    async def swap_record(self, kind: str, record_id: str, body: Record, *, rev: int, ttl: float) -> bool: ...

    async def derive_key(self, label: bytes) -> bytes: ...
