"""One-time codes: generate, normalise what an operator typed, hash, check. Pure functions.

hashlib, hmac and secrets are imported where they are used: `verify` with no session (and
every command that only normalises a code) starts without them (bench/: start-up)."""

from __future__ import annotations

import re

MIN_DIGITS = 6
MAX_DIGITS = 10
DEFAULT_DIGITS = 6
_SEPARATORS = re.compile(r"[\s\-.]+")


def generate(digits: int = DEFAULT_DIGITS) -> str:
    """A code of `digits` decimal digits, each drawn uniformly from `secrets`."""
    import secrets

    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise ValueError(f"a code has {MIN_DIGITS} to {MAX_DIGITS} digits, not {digits}")
    return "".join(str(secrets.randbelow(10)) for _ in range(digits))


def normalise(text: str) -> str | None:
    """The digits of an entered code (spaces, dashes and dots between them allowed), or None
    when it is not 6–10 ASCII digits. Never echo `text` back: it may be a real code."""
    candidate = _SEPARATORS.sub("", text.strip())
    if MIN_DIGITS <= len(candidate) <= MAX_DIGITS and candidate.isascii() and candidate.isdigit():
        return candidate
    return None


def digest(key: bytes, session_id: str, code: str) -> bytes:
    """HMAC-SHA256 of the code, bound to its session, under the per-install key."""
    import hashlib
    import hmac

    return hmac.new(key, f"{session_id}\x00{code}".encode(), hashlib.sha256).digest()


def matches(key: bytes, session_id: str, code: str, stored: bytes) -> bool:
    """Constant-time comparison of an entered code against the stored digest."""
    import hmac

    return hmac.compare_digest(digest(key, session_id, code), stored)
