"""Domain errors. Each carries the exit code the contract gives it; commands/edge.py maps them.

Messages are shown to the operator as they are, so they must never contain a code.
"""

from __future__ import annotations

import enum

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_NOT_DELIVERED = 3
EXIT_PROVIDER = 4
EXIT_POLICY = 5
EXIT_INTERNAL = 70  # a bug (EX_SOFTWARE); the traceback is shown with -v
EXIT_INTERRUPTED = 130


class Problem(enum.Enum):
    """What went wrong, for the callers that must tell errors of one class apart (serve's
    answers, doctor's advice): they branch on this, never on a message's text."""

    NUMBER_LOCKED = "number-locked"  # PolicyRefused: too many wrong codes for the number
    SEND_LIMIT = "send-limit"  # PolicyRefused: the per-number or hourly send limit
    COUNTRY = "country"  # PolicyRefused: the number's country is not allowed
    NUMBER_TYPE = "number_type"  # PolicyRefused: a premium-rate (revenue-sharing) number
    WRONG_KEY = "wrong-key"  # StoreError: the shared store was set up with another key
    UNREACHABLE = "unreachable"  # StoreError: the shared store cannot be reached or did not answer
    TAMPERED = "tampered"  # StoreError: a record of the shared store does not authenticate
    ADDRESS_IN_USE = "address-in-use"  # ConfigError: the address to listen on is taken


class Voice2faError(Exception):
    """Base of every error the CLI turns into one line and an exit code."""

    exit_code = EXIT_USAGE
    more_info: str | None = None  # a link about the error (the platform's), shown with -v

    def __init__(self, message: str, hint: str | None = None, *, kind: Problem | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind


class ConfigError(Voice2faError):
    """Usage or configuration is wrong; nothing was called."""

    exit_code = EXIT_USAGE


class StoreError(Voice2faError):
    """The state directory or database cannot be used as it is."""

    exit_code = EXIT_USAGE


class Rejected(Voice2faError):
    """A code was checked and not accepted (wrong, expired, used, locked, none open)."""

    exit_code = EXIT_REJECTED


class NotDelivered(Voice2faError):
    """The call ended without the code being read to the person."""

    exit_code = EXIT_NOT_DELIVERED


class ProviderError(Voice2faError):
    """SignalWire (or the network to it) failed or refused."""

    exit_code = EXIT_PROVIDER
    timed_out = False  # no answer: the request may have reached the platform
    dialed = True  # False only when a call request was refused before anything was dialed
    unreachable = False  # the platform was never reached (name, connection, TLS): a network problem
    auth_refused = False  # the platform refused the credentials (401/403)
    status: int | None = None  # the platform's HTTP status, when it answered one
    rejected: str | None = None  # the parameter a rejection named (the Calling API's 422 `attribute`)


class PolicyRefused(Voice2faError):
    """`send` refused before dialing: send limit, country, locked number."""

    exit_code = EXIT_POLICY

    def __init__(self, message: str, hint: str | None = None, *, kind: Problem | None = None,
                 reason: str | None = None, retry_at: float | None = None) -> None:
        super().__init__(message, hint, kind=kind)
        self.reason = reason or message  # the refusal without its time, for a face to word that
        self.retry_at = retry_at  # when a send may succeed (a Unix time), for a limit or a lock
