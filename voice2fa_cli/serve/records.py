"""What `voice2fa serve` keeps in the store, beside the sessions: services, API keys and
verifications, as records (the store's `put_record` / `get_record` / `list_records`, the same on
SQLite and Redis). Synchronous (the CLI's `keys` and `services`); serve reads the same records on its loop.

API keys are stored only as a keyed hash of their secret (shown once): HMAC-SHA256 under a key
derived from the store's key, which a shared store never holds. The secrets are 256-bit random,
so a slow hash would add nothing but a queue a flood could fill; the check is as fast for a
known key SID as for an unknown one (the same HMAC, the same store read)."""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING

from voice2fa_cli import otp, policy

if TYPE_CHECKING:
    from voice2fa_cli.stores.base import Record, SessionStore

SERVICE, KEY, VERIFICATION, PENDING, ATTEMPT = "service", "key", "verification", "pending", "attempt"
SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
SECRET_LABEL = b"serve api key secret v1"  # the derived key that hashes API key secrets
KEY_VERSION = 2  # key records before it held scrypt hashes: such keys must be made again
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
    # Its share of the hourly cap (None: policy.SERVICE_SHARE of it).
    max_calls_per_hour: int | None = None
    # Whether a request's CustomFriendlyName is said (else 60200), and CustomMessage (off by
    # default: any key could make the call say anything); `message` fixes the message said.
    friendly_name: bool = True
    custom_message: bool = False
    message: str | None = None
    # Twilio's CustomCodeEnabled (a request's CustomCode is the code read; else 60204),
    # DtmfInputRequired (the key-press gate) and TtsName (the calls' voice).
    custom_code: bool = False
    keypress: bool = True
    voice: str | None = None
    # Where serve posts the service's status events (signed; None: nowhere), and whether that
    # URL may reach loopback and private addresses (off: only public ones, over https).
    callback_url: str | None = None
    callback_private: bool = False
    updated: float | None = None
    deleted: bool = False  # a tombstone: deleted through the API (records are never removed)

    def body(self) -> dict:
        return {**asdict(self), "updated": self.updated if self.updated is not None else self.created}

    @classmethod
    def of(cls, body: Record) -> Service:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in known})


@dataclass(frozen=True)
class ServiceOptions:
    """What a service has beside its name (the defaults are the API's)."""

    code_length: int = 6
    ttl: int = policy.DEFAULT_TTL
    language: str | None = None
    max_calls_per_hour: int | None = None
    friendly_name: bool = True
    custom_message: bool = False
    message: str | None = None
    custom_code: bool = False
    keypress: bool = True
    voice: str | None = None
    callback_url: str | None = None
    callback_private: bool = False

    @classmethod
    def of(cls, service: Service) -> ServiceOptions:
        return cls(**{f.name: getattr(service, f.name) for f in fields(cls)})

    def settings(self) -> dict:
        return asdict(self)


class OptionsError(ValueError):
    """A service option that cannot be: `field` names it (a ServiceOptions field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def checked_options(options: ServiceOptions) -> ServiceOptions:
    """The options, or OptionsError saying which is wrong and why (its language and voice as
    the calls name them)."""
    if options.code_length not in CODE_LENGTHS:
        raise OptionsError("code_length", f"the code length must be from {CODE_LENGTHS.start} to "
                           f"{CODE_LENGTHS.stop - 1} digits (NIST SP 800-63B asks for at least "
                           f"{CODE_LENGTHS.start}), not {options.code_length}")
    if options.ttl not in TTLS:
        raise OptionsError("ttl", f"the TTL must be from {TTLS.start} to {TTLS.stop - 1} seconds")
    if options.max_calls_per_hour is not None and options.max_calls_per_hour < 1:
        raise OptionsError("max_calls_per_hour", "the service's calls per hour must be 1 or more")
    if options.callback_url is not None:
        problem = callback_problem(options.callback_url, options.callback_private)
        if problem is not None:
            raise OptionsError("callback_url", problem)
    from voice2fa_cli.voice.options import OptionError, clean_message, voice_options

    message = options.message
    if message is not None:
        try:
            message = clean_message(message)
        except OptionError as exc:
            raise OptionsError("message", f"the service's message must be {exc.detail}") from None
    language = options.language
    if language is not None or options.voice is not None:
        try:
            voice, _ = voice_options(language=language, voice=options.voice, message=None, caller=None, region=None)
        except OptionError as exc:
            raise OptionsError("voice" if exc.option == "voice" or options.voice else "language", exc.detail) from None
        language = voice.language if language is not None else None
    return replace(options, message=message, language=language)


MAX_CALLBACK_URL = 2000
CALLBACK_LABEL = b"serve callback secret v1:"  # + the service's SID: the derived key gives its secret


def callback_label(service_sid: str) -> bytes:
    return CALLBACK_LABEL + service_sid.encode()


def callback_secret(derived: bytes) -> str:
    """A service's callback secret from the store's key derived for callback_label (every
    instance derives the same; nothing stores it)."""
    return derived[:20].hex()


def callback_problem(url: str, private: bool) -> str | None:
    """Why `url` cannot be a service's callback URL, or None: an absolute https URL (http too
    when private addresses are allowed: a receiver on loopback or the local network), with a
    host, no user or password, no fragment, printable, at most MAX_CALLBACK_URL characters.
    (The addresses a host name resolves to are checked at each post: serve/events.py.)"""
    from urllib.parse import urlsplit

    if len(url) > MAX_CALLBACK_URL or not url.isprintable() or any(c.isspace() for c in url):
        return f"the callback URL must be printable, without spaces, at most {MAX_CALLBACK_URL} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "the callback URL is not a valid URL"
    schemes = ("https", "http") if private else ("https",)
    if parts.scheme == "http" and parts.hostname and not private:
        return ("the callback URL must be an https:// URL (http:// only for a service that allows private "
                "addresses: --callback-private, Voice2fa.CallbackPrivate)")
    if parts.scheme not in schemes or not parts.hostname:
        return ("the callback URL must be an absolute https:// URL" if not private
                else "the callback URL must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None or parts.fragment:
        return "the callback URL must carry no user, password or fragment"
    if not private and not public_host(parts.hostname):
        return (f"the callback URL's host {parts.hostname} is a loopback or private address: "
                "allow such addresses for this service (--callback-private, Voice2fa.CallbackPrivate)")
    return None


def public_host(host: str) -> bool:
    """False for an IP address that is not global (loopback, private, link-local, …); a name is
    judged by what it resolves to, when it is used."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return host.lower() not in ("localhost", "localhost.localdomain") and not host.lower().endswith(".localhost")


def new_service(name: str, options: ServiceOptions | None = None) -> Service:
    """A service (not stored yet), or ValueError (OptionsError for an option)."""
    options = checked_options(options or ServiceOptions())
    now = time.time()
    return Service(new_sid("VA"), clean_name(name, "the service name"), created=now, updated=now,
                   **options.settings())


def changed(service: Service, name: str | None, options: ServiceOptions) -> Service:
    """The service with a new name and options (checked), or ValueError."""
    options = checked_options(options)
    return replace(service, name=service.name if name is None else clean_name(name, "the service name"),
                   updated=time.time(), **options.settings())


def create_service(store: SessionStore, name: str, options: ServiceOptions | None = None) -> Service:
    service = new_service(name, options)
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
    service = Service.of(body) if body else None
    return None if service is None or service.deleted else service


def listed(bodies: list[Record]) -> list[Service]:
    """The services of these records that were not deleted, oldest first."""
    services = (Service.of(b) for b in bodies)
    return sorted((s for s in services if not s.deleted), key=lambda s: (s.created, s.sid))


def list_services(store: SessionStore) -> list[Service]:
    return listed(store.list_records(SERVICE))


# --- API keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    sid: str
    name: str
    created: float
    revoked: bool = False
    services: tuple[str, ...] | None = None  # None: every service (account-wide, Twilio's default)
    usable: bool = True  # False: made by a voice2fa before KEY_VERSION (an scrypt hash): make it again
    admin: bool = False  # may create, update and delete services through the API (account-wide)

    @classmethod
    def of(cls, body: Record) -> ApiKey:
        services = body.get("services")
        return cls(body["sid"], body["name"], body["created"], body["revoked"],
                   None if services is None else tuple(services), body.get("v") == KEY_VERSION,
                   body.get("admin") is True)

    def reaches(self, service_sid: str) -> bool:
        return self.services is None or service_sid in self.services


def secret_hash(secret_key: bytes, sid: str, secret: str) -> bytes:
    """The keyed hash of a key's secret, bound to its SID."""
    return hmac.digest(secret_key, f"{sid}\x00{secret}".encode(), "sha256")


def create_key(store: SessionStore, name: str, services: tuple[str, ...] | None = None, *,
               admin: bool = False) -> tuple[ApiKey, str]:
    """A new key: its record and its secret (shown once, stored only as a keyed hash); with
    `services`, it reaches only those; an `admin` key also manages services."""
    if admin and services is not None:
        raise ValueError("an admin key manages every service: give --admin or --service, not both")
    if services is not None:
        for sid in services:
            if get_service(store, sid) is None:
                raise ValueError(f"no service {sid[:40]!r}: see `voice2fa services list`")
        services = tuple(dict.fromkeys(services))
    key = ApiKey(new_sid("SK"), clean_name(name, "the key name"), time.time(), services=services, admin=admin)
    secret = secrets.token_urlsafe(32)
    body = {"sid": key.sid, "name": key.name, "created": key.created, "revoked": False, "v": KEY_VERSION,
            "services": None if services is None else list(services), "admin": admin,
            "hash": secret_hash(store.derive_key(SECRET_LABEL), key.sid, secret).hex()}
    store.put_record(KEY, key.sid, body, only_new=True)
    return key, secret


def list_keys(store: SessionStore) -> list[ApiKey]:
    return sorted((ApiKey.of(b) for b in store.list_records(KEY)), key=lambda k: (k.created, k.sid))


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


# What an unknown SID's secret is compared with: the same work as for a known one.
NO_HASH = bytes(32)


def secret_matches(secret_key: bytes, sid: str, record: Record | None, secret: str) -> bool:
    """Whether `secret` is the key's: one HMAC and a constant-time comparison, for an unknown
    SID (`record` None), a revoked key or one made before KEY_VERSION too."""
    computed = secret_hash(secret_key, sid, secret)
    usable = record is not None and record.get("v") == KEY_VERSION and not record["revoked"]
    stored = bytes.fromhex(record["hash"]) if usable and record is not None else NO_HASH
    return hmac.compare_digest(computed, stored) and usable
