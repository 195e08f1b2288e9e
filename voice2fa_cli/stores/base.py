"""What every store shares: the session record, the limits and the reasons a check gives.

Two backends keep sessions behind one interface (see `open_store` in this package): the SQLite
store under the state dir (sqlite.py, the embedded default) and the shared Redis store
(redis.py). The contract test suite (tests/test_store.py) runs against both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from voice2fa_cli.sessions import Verdict

MAX_ATTEMPTS = 5

# Per-number failures across sessions (NIST 800-63B): this many in FAILURE_WINDOW locks the
# number for LOCK_SECONDS. A new session never resets the count.
NUMBER_FAILURE_LIMIT = 10
FAILURE_WINDOW = 3600.0
LOCK_SECONDS = 3600.0

OPEN_STATES = ("calling", "delivered")
CLOCK_BACK = "expired: the code is older than its lifetime (the system clock was set back); send a new code"
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


def clock_text(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


class NoStore(Exception):
    """The state dir holds no database yet (only raised when not asked to create one)."""


class SessionStore(Protocol):
    """What both backends offer (stores/sqlite.py and stores/redis.py), and all that the rest
    of voice2fa uses of a store. Every check-and-update is atomic where the data lives."""

    sandbox: bool  # the sandbox's sessions, or the real ones: never both

    def clock(self) -> float: ...

    def close(self) -> None: ...

    def reserve_call(self, number: str, max_per_hour: int) -> object:
        """Check the number's lock and the send limits and count this call (PolicyRefused
        otherwise); the reservation to release when nothing was dialed."""

    def release_call(self, reservation: object) -> None: ...

    def create_session(self, *, session_id: str, number: str, code: str, ttl: float, max_attempts: int = ...,
                       call_sid: str | None, call_status: str | None) -> Session:
        """A new session for a call that was placed, superseding the number's open ones."""

    def record_call(self, session_id: str, *, state: str | None = None, call_status: str | None = None) -> None: ...

    def get(self, session_id: str) -> Session | None: ...

    def newest(self, number: str) -> Session | None: ...

    def number_locked_until(self, number: str) -> float | None: ...

    def check(self, number: str, code: str, session_id: str | None = None) -> Verdict:
        """Check a code against the newest session of `number` (or the given one), atomically."""

    def recent(self, limit: int = 50) -> list[Session]: ...

    def purge(self) -> int: ...

    # Records by kind and id, for `voice2fa serve` (services, keys, verifications, calls).
    def put_record(self, kind: str, record_id: str, body: dict, *, ttl: float | None = None,
                   only_new: bool = False) -> bool: ...

    def get_record(self, kind: str, record_id: str) -> dict | None: ...

    def list_records(self, kind: str) -> list[dict]: ...

    def swap_record(self, kind: str, record_id: str, body: dict, *, rev: int, ttl: float) -> bool: ...

    def derive_key(self, label: bytes) -> bytes: ...
