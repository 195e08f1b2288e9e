"""One-time codes: generate, normalise what an operator typed, hash, check. Pure functions.

hashlib, hmac and secrets are imported where they are used: `verify` with no session (and
every command that only normalises a code) starts without them (bench/: start-up)."""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Binding:
    """What a code's hash is bound to: the number, the namespace (real or sandbox), the service
    ("" for the CLI's own verifications) and the session. A hash copied to another number,
    namespace, service or session never matches there."""

    number: str
    session_id: str
    service: str = ""
    sandbox: bool = False

    def message(self, code: str) -> bytes:
        namespace = "sandbox" if self.sandbox else "real"
        return "\x00".join((DIGEST_LABEL, namespace, self.service, self.number, self.session_id, code)).encode()


DIGEST_LABEL = "voice2fa code v2"


def digest(key: bytes, binding: Binding, code: str) -> bytes:
    """HMAC-SHA256 of the code, bound to its number, namespace, service and session, under the
    per-install key."""
    import hashlib
    import hmac

    return hmac.new(key, binding.message(code), hashlib.sha256).digest()


def matches(key: bytes, binding: Binding, code: str, stored: bytes) -> bool:
    """Constant-time comparison of an entered code against the stored digest."""
    import hmac

    return hmac.compare_digest(digest(key, binding, code), stored)
