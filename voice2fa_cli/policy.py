"""The rules, written once: the session record, the verdict of a check (with a kind callers
branch on), the limits, and every sentence a verdict or a refusal says.

Every store (SQLite, Redis, asyncio Redis), the CLI, `serve` and `doctor` take these from here;
nothing anywhere reads a rule back from a message's text. This module imports only the errors.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voice2fa_cli.errors import PolicyRefused, Problem

if TYPE_CHECKING:
    from voice2fa_cli.phone import Number

# --- the limits ----------------------------------------------------------------------------

MAX_ATTEMPTS = 5  # wrong codes a session allows, then it is locked
DEFAULT_TTL = 600  # seconds a code lives by default
MIN_TTL = 30  # at the least
MAX_TTL = 600  # and at the most

# Per-number failures across sessions (NIST 800-63B rev 4): this many in FAILURE_WINDOW lock the
# number for LOCK_SECONDS. A new session never resets the count.
NUMBER_FAILURE_LIMIT = 10
FAILURE_WINDOW = 3600.0
LOCK_SECONDS = 3600.0

# Send limits against toll fraud and call bombing (Twilio Verify's defaults), and the hourly cap
# of all calls (VOICE2FA_MAX_CALLS_PER_HOUR) when it is not set.
SENDS_PER_NUMBER = 5
SEND_WINDOW = 600.0
HOUR = 3600.0
DEFAULT_MAX_CALLS_PER_HOUR = 30
# A serve service's share of that cap when it sets none: one service (and every key that reaches
# it) can place at most this fraction of the hour's calls; the CLI's own calls have the whole cap.
SERVICE_SHARE = 0.5

# --- the session record --------------------------------------------------------------------

OPEN_STATES = ("calling", "delivered")  # a code may still be checked
# "retired": a session stored by a voice2fa before codes were bound to their number and service
# (its code can no longer be checked); the SQLite migration and the Redis reader mark them.
CLOSED_STATES = ("verified", "locked", "superseded", "undelivered", "retired")


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
    service: str = ""  # the serve service it belongs to; "" for the CLI's own

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


def clock_text(ts: float) -> str:
    """A time as the operator reads it in a sentence (local time of day)."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


# --- verdicts ------------------------------------------------------------------------------


class Kind(enum.Enum):
    """What a check found, for callers that act on it (serve's answers, the prompt's re-entry)."""

    VERIFIED = "verified"
    WRONG = "wrong"  # a wrong code; the session stays open
    LOCKOUT = "lockout"  # a wrong code that used the session's last attempt: now locked
    EXPIRED = "expired"
    CLOCK_BACK = "clock-back"  # expired: older than its lifetime by the boot clock (the wall clock was set back)
    USED = "used"  # the session was verified already
    LOCKED = "locked"  # the session was locked by earlier wrong codes
    SUPERSEDED = "superseded"
    UNDELIVERED = "undelivered"  # the call did not deliver the code
    NUMBER_LOCKED = "number-locked"  # too many failures for the number across sessions
    NO_SESSION = "no-session"

    @property
    def locked(self) -> bool:
        """No code can verify here until the lock ends or a new code is sent."""
        return self in (Kind.LOCKED, Kind.NUMBER_LOCKED)

    @property
    def expired(self) -> bool:
        return self in (Kind.EXPIRED, Kind.CLOCK_BACK)


# A closed session's state → the kind of its verdict
_CLOSED_KIND = {"verified": Kind.USED, "locked": Kind.LOCKED, "superseded": Kind.SUPERSEDED,
                "undelivered": Kind.UNDELIVERED, "retired": Kind.SUPERSEDED}
CLOSED_REASONS = {
    "verified": "this code was already used: send a new one",
    "locked": "locked: too many wrong codes; send a new one",
    "superseded": "superseded by a newer code: use the newest one",
    "undelivered": "no open session: the last call did not deliver the code; send a new one",
    "retired": "this code was sent by an older voice2fa and can no longer be checked: send a new one",
}
CLOCK_BACK = "expired: the code is older than its lifetime (the system clock was set back); send a new code"


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str  # for the operator; never contains the code
    session: Session | None
    attempts_left: int = 0

    @property
    def verified(self) -> bool:
        return self.kind is Kind.VERIFIED

    @property
    def may_retry(self) -> bool:
        """A wrong code on a session that stays open: another attempt may follow."""
        return (self.kind is Kind.WRONG and self.session is not None and self.session.is_open
                and self.attempts_left > 0)


def verified(session: Session, attempts_left: int) -> Verdict:
    return Verdict(Kind.VERIFIED, "verified", session, attempts_left)


def wrong(session: Session, attempts_left: int) -> Verdict:
    """A wrong code, counted: the session stays open while attempts are left, else it is locked."""
    if attempts_left <= 0:
        return Verdict(Kind.LOCKOUT, "wrong code; locked: too many wrong codes; send a new one", session, 0)
    plural = "s" if attempts_left != 1 else ""
    return Verdict(Kind.WRONG, f"wrong code ({attempts_left} attempt{plural} left)", session, attempts_left)


def closed(session: Session) -> Verdict:
    """The verdict on a session that no longer takes codes (verified, locked, superseded, undelivered)."""
    return Verdict(_CLOSED_KIND[session.state], CLOSED_REASONS[session.state], session)


def expired(session: Session) -> Verdict:
    return Verdict(Kind.EXPIRED, f"expired at {clock_text(session.expires_at)}: send a new code", session)


def clock_back(session: Session) -> Verdict:
    return Verdict(Kind.CLOCK_BACK, CLOCK_BACK, session)


def number_locked(number: str, until: float, session: Session | None) -> Verdict:
    return Verdict(Kind.NUMBER_LOCKED,
                   f"locked: too many wrong codes for {number}; try again after {clock_text(until)}", session)


def no_session(number: str, sandbox: bool) -> Verdict:
    """The verdict when the number has no session (in the sandbox's store, or the real one)."""
    where = "sandbox session" if sandbox else "open session"
    send = f"voice2fa send --sandbox {number}" if sandbox else f"voice2fa send {number}"
    return Verdict(Kind.NO_SESSION, f"no {where} for {number}: run `{send}` first", None)


def locked_until(failure_times: Iterable[float], now: float) -> float | None:
    """Failure times (any order) → the end of a number lock in force at `now`, or None.
    NUMBER_FAILURE_LIMIT failures within FAILURE_WINDOW lock the number for LOCK_SECONDS
    from the failure that reached the limit. (The Redis store's Lua keeps the same rule.)"""
    times = sorted(failure_times)
    for i in range(NUMBER_FAILURE_LIMIT - 1, len(times)):
        if times[i] - times[i - NUMBER_FAILURE_LIMIT + 1] <= FAILURE_WINDOW:
            until = times[i] + LOCK_SECONDS
            if until > now:
                return until
    return None


# --- refusals before a call ----------------------------------------------------------------


def country_refusal(number: Number, allowed: frozenset[str]) -> PolicyRefused | None:
    """Calls only to the allowed countries (VOICE2FA_ALLOWED_COUNTRIES), against toll fraud."""
    if number.region in allowed:
        return None
    national = (f" (it has no country code and was read as dialed in {number.national.describe()}: "
                f"write it with + and its country code, or set VOICE2FA_DEFAULT_REGION)"
                if number.national is not None else "")
    return PolicyRefused(
        f"calls to {number.region} ({number.e164}) are not allowed: VOICE2FA_ALLOWED_COUNTRIES is "
        f"{','.join(sorted(allowed))}; add {number.region} to allow them" + national,
        kind=Problem.COUNTRY,
    )


# Number types that bill the caller at a rate the callee (or a party of theirs) shares in: the
# classic toll-fraud targets. phonenumbers' PREMIUM_RATE and SHARED_COST, PERSONAL_NUMBER (e.g.
# the UK's 070, charged like premium rate) and UAN (universal access numbers, often charged
# above a local call). Toll-free, VoIP, pager and voicemail numbers cost no more than a call.
REVENUE_SHARING = {"premium-rate": "a premium-rate number", "shared-cost": "a shared-cost number",
                   "personal-number": "a personal number", "uan": "a universal access number (UAN)"}
ALLOW_NUMBER_TYPES = "VOICE2FA_ALLOW_NUMBER_TYPES"


def number_type_refusal(number: Number, allowed: frozenset[str] = frozenset()) -> PolicyRefused | None:
    """No call to a revenue-sharing number unless the operator allowed its type."""
    if number.kind not in REVENUE_SHARING or number.kind in allowed:
        return None
    return PolicyRefused(
        f"{number.e164} is {REVENUE_SHARING[number.kind]}: voice2fa does not call numbers that "
        f"charge the caller extra (toll fraud); set {ALLOW_NUMBER_TYPES}={number.kind} to allow them",
        kind=Problem.NUMBER_TYPE,
    )


def number_locked_refusal(number: str, until: float) -> PolicyRefused:
    reason = f"{number} is locked after too many wrong codes"
    return PolicyRefused(f"{reason}: no calls until {clock_text(until)}", kind=Problem.NUMBER_LOCKED,
                         reason=reason, retry_at=until)


def _limit(reason: str, retry: float) -> PolicyRefused:
    return PolicyRefused(f"{reason}; try again after {clock_text(retry)}", kind=Problem.SEND_LIMIT,
                         reason=reason, retry_at=retry)


def number_limit_refusal(number: str, calls: int, retry: float) -> PolicyRefused:
    return _limit(f"send limit reached: {calls} calls to {number} in the last {SEND_WINDOW / 60:g} minutes", retry)


def hourly_limit_refusal(calls: int, max_per_hour: int, retry: float) -> PolicyRefused:
    return _limit(f"send limit reached: {calls} calls in the last hour (VOICE2FA_MAX_CALLS_PER_HOUR={max_per_hour})",
                  retry)


def service_limit_refusal(service: str, calls: int, share: int, retry: float) -> PolicyRefused:
    return _limit(f"send limit reached: {calls} calls of service {service} in the last hour (its share of the "
                  f"hourly cap is {share})", retry)


def service_share(max_per_hour: int, share: int | None) -> int:
    """A service's hourly calls: its own setting (at most the cap), else SERVICE_SHARE of the
    cap, so that no one service (nor the keys that reach it) can use up every service's calls."""
    if share is not None:
        return max(1, min(share, max_per_hour))
    return max(1, math.ceil(max_per_hour * SERVICE_SHARE))


def retry_after(times: list[float], limit: int, window: float) -> float | None:
    """Sorted call times within a window → when the next call is allowed, or None when it is now."""
    if len(times) < limit:
        return None
    return times[len(times) - limit] + window
