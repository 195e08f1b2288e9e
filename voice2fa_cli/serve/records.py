"""What `voice2fa serve` keeps in the store, beside the sessions: services, API keys and
verifications, as records (the store's `put_record` / `get_record` / `list_records`, the same on
SQLite and Redis). Synchronous (the CLI's `keys` and `services`); serve reads the same records on its loop.

API keys are stored only as a slow hash (scrypt) of their secret, which is shown once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voice2fa_cli import otp, policy

if TYPE_CHECKING:
    from voice2fa_cli.stores.base import Record, SessionStore

SERVICE, KEY, VERIFICATION, PENDING, META = "service", "key", "verification", "pending", "meta"
SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
# scrypt's cost: 16 MiB and tens of milliseconds per hash, so a stolen store is slow to attack
# (the secrets are 256-bit random anyway); successful checks are cached by the server.
SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}
MAX_NAME = 64
# 6 to 10 digits: NIST SP 800-63B's minimum, and what otp generates and a check accepts.
CODE_LENGTHS = range(otp.MIN_DIGITS, otp.MAX_DIGITS + 1)
TTLS = range(policy.MIN_TTL, policy.MAX_TTL + 1)


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def clean_name(name: str, what: str) -> str:
    text = " ".join(name.split())
    if not text or len(text) > MAX_NAME or not text.isprintable():
        raise ValueError(f"{what} must be printable text of 1 to {MAX_NAME} characters")
    return text


# --- services ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    sid: str
    name: str
    code_length: int
    ttl: int
    language: str | None
    created: float

    def body(self) -> dict:
        return {"sid": self.sid, "name": self.name, "code_length": self.code_length, "ttl": self.ttl,
                "language": self.language, "created": self.created}


def create_service(store: SessionStore, name: str, code_length: int = 6, ttl: int = policy.DEFAULT_TTL,
                   language: str | None = None) -> Service:
    if code_length not in CODE_LENGTHS:
        raise ValueError(f"the code length must be from {CODE_LENGTHS.start} to {CODE_LENGTHS.stop - 1} digits "
                         f"(NIST SP 800-63B asks for at least {CODE_LENGTHS.start}), not {code_length}")
    if ttl not in TTLS:
        raise ValueError(f"the TTL must be from {TTLS.start} to {TTLS.stop - 1} seconds")
    service = Service(new_sid("VA"), clean_name(name, "the service name"), code_length, ttl, language, time.time())
    store.put_record(SERVICE, service.sid, service.body(), only_new=True)
    return service


def is_service_sid(sid: str) -> bool:
    return bool(SID.fullmatch(sid)) and sid.startswith("VA")


def is_key_sid(sid: str) -> bool:
    return bool(SID.fullmatch(sid)) and sid.startswith("SK")


def get_service(store: SessionStore, sid: str) -> Service | None:
    if not is_service_sid(sid):
        return None
    body = store.get_record(SERVICE, sid)
    return Service(**body) if body else None


def list_services(store: SessionStore) -> list[Service]:
    return sorted((Service(**b) for b in store.list_records(SERVICE)), key=lambda s: (s.created, s.sid))


# --- API keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    sid: str
    name: str
    created: float
    revoked: bool = False


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 << 20, dklen=32)


def create_key(store: SessionStore, name: str) -> tuple[ApiKey, str]:
    """A new key: its record and its secret (shown once, stored only as a scrypt hash)."""
    key = ApiKey(new_sid("SK"), clean_name(name, "the key name"), time.time())
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    body = {"sid": key.sid, "name": key.name, "created": key.created, "revoked": False,
            "salt": salt.hex(), "hash": _hash(secret, salt, **SCRYPT).hex(), **SCRYPT}
    store.put_record(KEY, key.sid, body, only_new=True)
    return key, secret


def list_keys(store: SessionStore) -> list[ApiKey]:
    keys = [ApiKey(b["sid"], b["name"], b["created"], b["revoked"]) for b in store.list_records(KEY)]
    return sorted(keys, key=lambda k: (k.created, k.sid))


def revoke_key(store: SessionStore, sid: str) -> bool:
    """Revoke the key; False when there is no such key."""
    body = store.get_record(KEY, sid) if SID.fullmatch(sid) else None
    if body is None:
        return False
    store.put_record(KEY, sid, {**body, "revoked": True})
    return True


def key_record(store: SessionStore, sid: str) -> Record | None:
    if not is_key_sid(sid):
        return None
    return store.get_record(KEY, sid)


def secret_matches(record: dict, secret: str) -> bool:
    """Whether `secret` is the key's (constant time; slow by design: run it off the loop)."""
    if len(secret) > 256:
        return False
    digest = _hash(secret, bytes.fromhex(record["salt"]), record["n"], record["r"], record["p"])
    return hmac.compare_digest(digest, bytes.fromhex(record["hash"]))
