"""Settings from flags > environment > `.env` in the working directory > defaults.

Every problem is a ConfigError (exit 2) raised before anything touches the network, in one
line that names the variable and where to get its value. Secrets never appear in messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from voice2fa_cli import phone, policy
from voice2fa_cli.errors import ConfigError

if TYPE_CHECKING:
    from voice2fa_cli.stores.base import StoreSpec

DEFAULT_LISTEN = "127.0.0.1:5000"
API_PATH = "/api/laml/2010-04-01"

HINTS = {
    "SIGNALWIRE_SPACE": "your Space's domain, e.g. example.signalwire.com (top of your SignalWire Dashboard)",
    "SIGNALWIRE_PROJECT": "copy the Project ID from the API page of your SignalWire Dashboard",
    "SIGNALWIRE_TOKEN": "create an API token on the API page of your SignalWire Dashboard",
    "SIGNALWIRE_NUMBER": "a number of your project, in E.164 (Phone Numbers page of your SignalWire Dashboard)",
    "VOICE2FA_PUBLIC_URL": (
        "start a tunnel to the --listen address (e.g. `ngrok http 5000`) and pass its https URL "
        "with --public-url or VOICE2FA_PUBLIC_URL"
    ),
}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Timing:
    """How long to wait for things; tests make these short instead of sleeping."""

    ring_timeout: int = 30  # seconds the platform lets the phone ring
    poll_interval: float = 5.0  # poll the call when callbacks have been quiet this long
    webhook_grace: float = 15.0  # an answered call must fetch the webhook within this
    api_timeout: float = 15.0  # one REST request to the platform


@dataclass(frozen=True)
class Settings:
    space: str  # base URL, scheme://host[:port], no path
    project: str
    token: str = field(repr=False)
    caller: str  # E.164
    signing_key: str | None = field(repr=False)
    public_url: str  # no trailing slash
    listen: Listen
    state_dir: Path
    timing: Timing
    allowed_countries: frozenset[str] = frozenset()
    allowed_number_types: frozenset[str] = frozenset()  # revenue-sharing types the operator allowed
    max_calls_per_hour: int = policy.DEFAULT_MAX_CALLS_PER_HOUR
    warnings: tuple[str, ...] = ()
    store: StoreSpec | None = None  # where sessions live; None: the SQLite store under state_dir
    delivery: str = "webhook"  # DELIVERIES: how the call gets its script
    max_price_per_minute: float | None = None  # the inline dial's cost cap, US dollars (None: none)

    @property
    def api_base(self) -> str:
        return f"{self.space}{API_PATH}/Accounts/{self.project}"


def value(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, stripped; None when unset or blank."""
    raw = env.get(name)
    if raw is None:
        return None
    return raw.strip() or None


def _require(env: Mapping[str, str], name: str) -> str:
    found = value(env, name)
    if found is None:
        raise ConfigError(f"{name} is not set: {HINTS[name]}")
    return found


# --- single values -------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """A literal loopback address (127.0.0.0/8, ::1), or the name `localhost` itself (never a
    name under it: `evil.localhost` is whatever a resolver makes of it)."""
    import ipaddress

    host = host.strip("[]").lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_address(host: str) -> bool:
    """A literal loopback address only: no name, `localhost` included, is looked up."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_ok(host: str) -> bool:
    import ipaddress

    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return host.endswith("]")
    return bool(_HOST.fullmatch(host))


SPACE_DOMAIN = ".signalwire.com"
PLACEHOLDER_SPACES = frozenset({"example.signalwire.com"})  # example.env's, before it is filled in
ALLOW_SPACE_HOST = "VOICE2FA_ALLOW_SPACE_HOST"


def parse_space(value: str, name: str = "SIGNALWIRE_SPACE", allowed_host: str | None = None) -> str:
    """`example.signalwire.com` (https) or `scheme://host[:port]` with no path → base URL.

    The credentials go wherever this points, so the host must be a SignalWire Space
    (`*.signalwire.com`), a literal loopback address (a local stand-in), or exactly
    `allowed_host` (the operator's explicit choice, VOICE2FA_ALLOW_SPACE_HOST)."""
    from urllib.parse import urlsplit

    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{name} contains spaces or control characters: give a host such as example.signalwire.com")
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: give a host such as example.signalwire.com") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{name} must be an https URL or a bare host, not {parts.scheme}://")
    host = parts.netloc.rsplit("@", 1)[-1]
    if "@" in parts.netloc:
        raise ConfigError(f"{name} must not carry credentials: use SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN")
    if port == 0 or (port is not None and not re.fullmatch(r".*:[0-9]{1,5}", host)):
        raise ConfigError(f"{name} has an invalid port: give a host such as example.signalwire.com")
    if port is not None:
        host = host[: host.rfind(":")]
    if not host or not _host_ok(host):
        raise ConfigError(f"{name} has no valid host name: give a host such as example.signalwire.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"{name} must have no path (the client appends {API_PATH}/…): give only the host, "
            "e.g. example.signalwire.com"
        )
    host = host.lower()
    bare = host.rstrip(".")
    if bare in PLACEHOLDER_SPACES:
        raise ConfigError(f"{name} is {bare}, the placeholder from example.env: put your own Space's domain "
                          "(top of your SignalWire Dashboard)")
    allowed = allowed_host is not None and bare.strip("[]") == allowed_host.strip("[]").rstrip(".").lower()
    if not (allowed or is_loopback_address(host) or _is_space_host(bare)):
        raise ConfigError(
            f"{name} host {bare} is not a SignalWire Space (*.signalwire.com) nor a loopback address: "
            f"the API credentials would be sent there; to use it anyway, set {ALLOW_SPACE_HOST}={bare} "
            "in the real environment"
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(f"{name} uses http:// for a host that is not loopback: use https://")
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}"


def _is_space_host(host: str) -> bool:
    return host.endswith(SPACE_DOMAIN) and len(host) > len(SPACE_DOMAIN) and _host_ok(host)


def allowed_space_host(env: Mapping[str, str]) -> str | None:
    """VOICE2FA_ALLOW_SPACE_HOST, from the real environment only: a `.env` (a cloned project's,
    say) that could name it could send the credentials anywhere."""
    raw = value(env, ALLOW_SPACE_HOST)
    if raw is None:
        return None
    if ALLOW_SPACE_HOST in getattr(env, "from_dotenv", ()):
        raise ConfigError(f"{ALLOW_SPACE_HOST} is read only from the real environment, not from "
                          f"{getattr(env, 'dotenv', '.env')}: export it in your shell")
    if not _host_ok(raw.strip("[]")) and not is_loopback_address(raw):
        raise ConfigError(f"{ALLOW_SPACE_HOST} {phone.shown(raw)} is not a host name: give the host alone, "
                          "e.g. stand-in.internal")
    return raw


def space(env: Mapping[str, str]) -> str:
    """SIGNALWIRE_SPACE, checked: where `send` and `doctor` send the credentials."""
    return parse_space(_require(env, "SIGNALWIRE_SPACE"), "SIGNALWIRE_SPACE", allowed_space_host(env))


def parse_public_url(value: str, name: str = "VOICE2FA_PUBLIC_URL") -> tuple[str, list[str]]:
    """A base URL the platform can reach, without trailing slash; with any warnings."""
    from urllib.parse import urlsplit

    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ConfigError(f"{name} contains spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: give a URL such as https://abc123.ngrok.app") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{name} must start with https:// (e.g. https://abc123.ngrok.app)")
    if "@" in parts.netloc:
        raise ConfigError(f"{name} must not carry credentials")
    host = parts.hostname or ""
    if not host or not _host_ok(host if ":" not in host else f"[{host}]"):
        raise ConfigError(f"{name} has no valid host name (e.g. https://abc123.ngrok.app)")
    if "?" in value or "#" in value:
        raise ConfigError(f"{name} must not have a query string or fragment")
    warnings = []
    if is_loopback(host):
        warnings.append(f"{name} is a loopback address: SignalWire cannot reach it (a local stand-in can)")
    elif parts.scheme == "http":
        warnings.append(f"{name} uses plain http://: the call's webhook travels unencrypted")
    del port
    return value.rstrip("/"), warnings


def parse_listen(value: str, name: str = "--listen") -> Listen:
    """`HOST:PORT`, `[IPv6]:PORT`."""
    import ipaddress

    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\s\[\]]+):([0-9]{1,5})", value.strip())
    if not m:
        raise ConfigError(f"{name} {phone.shown(value)} is not HOST:PORT (e.g. 127.0.0.1:5000)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ConfigError(f"{name} {phone.shown(value)}: port {port} is above 65535")
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{name} {phone.shown(value)}: {host} is not an IPv6 address") from None
    elif not _host_ok(host):
        raise ConfigError(f"{name} {phone.shown(value)}: {host!r} is not a host name or address")
    return Listen(host, port)


# Every number a person types is ASCII digits: `str.isdigit`, `int` and `float` also take
# superscripts, other scripts' digits, signs, blanks, underscores, exponents, nan and inf.
_INTEGER = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?|\.[0-9]{1,9}")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    """The variable as typed (not stripped: ` 5` is not a number); None when unset or blank."""
    raw = env.get(name)
    return None if raw is None or not raw.strip() else raw


def parse_int(raw: str, name: str, low: int, high: int) -> int:
    """A whole number from `low` to `high`, written in ASCII digits only, or a ConfigError."""
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {phone.shown(raw)}")
    return int(raw)


def parse_seconds(raw: str, name: str, low: float, high: float) -> float:
    """Seconds, `12` or `0.25` in ASCII digits (no sign, exponent, nan or inf), or a ConfigError."""
    if not _DECIMAL.fullmatch(raw):
        raise ConfigError(f"{name} must be a number of seconds, not {phone.shown(raw)}")
    seconds = float(raw)
    if not low <= seconds <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds")
    return seconds


def _seconds_setting(env: Mapping[str, str], name: str, low: float, high: float, default: float) -> float:
    raw = _raw(env, name)
    return default if raw is None else parse_seconds(raw, name, low, high)


def poll_interval(env: Mapping[str, str]) -> float:
    return _seconds_setting(env, "VOICE2FA_POLL_INTERVAL", 0.01, 5, Timing.poll_interval)


def webhook_grace(env: Mapping[str, str]) -> float:
    return _seconds_setting(env, "VOICE2FA_WEBHOOK_GRACE", 0.05, 120, Timing.webhook_grace)


def api_timeout(env: Mapping[str, str]) -> float:
    return _seconds_setting(env, "VOICE2FA_API_TIMEOUT", 0.05, 120, Timing.api_timeout)


def timing(env: Mapping[str, str], ring_timeout: int | None = None) -> Timing:
    return Timing(
        ring_timeout=ring_timeout if ring_timeout is not None else Timing.ring_timeout,
        poll_interval=poll_interval(env),
        webhook_grace=webhook_grace(env),
        api_timeout=api_timeout(env),
    )


def state_dir(env: Mapping[str, str]) -> Path:
    raw = value(env, "VOICE2FA_STATE_DIR")
    if raw is not None:
        if "\x00" in raw:
            raise ConfigError("VOICE2FA_STATE_DIR contains a NUL character")
        return Path(raw).expanduser()
    from platformdirs import user_state_dir

    return Path(user_state_dir("voice2fa", appauthor=False))


def allowed_countries(env: Mapping[str, str], caller_region: str) -> frozenset[str]:
    """VOICE2FA_ALLOWED_COUNTRIES (ISO codes, comma or space separated); default: the caller
    ID's country."""
    raw = value(env, "VOICE2FA_ALLOWED_COUNTRIES")
    if raw is None:
        return frozenset({caller_region})
    import phonenumbers

    codes = [c.upper() if c.isascii() else c for c in re.split(r"[\s,]+", raw) if c]
    bad = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
    if bad or not codes:
        shown_bad = ", ".join(phone.shown(c) for c in bad[:3]) or "nothing"
        raise ConfigError(
            f"VOICE2FA_ALLOWED_COUNTRIES lists {shown_bad}: give ISO country codes such as US,CA,GB"
        )
    return frozenset(codes)


def allowed_number_types(env: Mapping[str, str]) -> frozenset[str]:
    """VOICE2FA_ALLOW_NUMBER_TYPES: the revenue-sharing number types the operator allows to be
    called (comma or space separated; default none)."""
    raw = value(env, policy.ALLOW_NUMBER_TYPES)
    if raw is None:
        return frozenset()
    names = [n.lower() for n in re.split(r"[\s,]+", raw) if n]
    bad = [n for n in names if n not in policy.REVENUE_SHARING]
    if bad or not names:
        shown_bad = ", ".join(phone.shown(n) for n in bad[:3]) or "nothing"
        raise ConfigError(f"{policy.ALLOW_NUMBER_TYPES} lists {shown_bad}: give one or more of "
                          f"{', '.join(sorted(policy.REVENUE_SHARING))}")
    return frozenset(names)


DELIVERIES = ("webhook", "inline")
DELIVERY_HINT = ("webhook (SignalWire fetches the call from this machine through the public URL) or inline "
                 "(the whole call travels in the dial: no tunnel, nothing inbound)")


def delivery(env: Mapping[str, str], flag: str | None = None) -> str:
    """How the call gets its script (--delivery over VOICE2FA_DELIVERY; default webhook)."""
    name = "--delivery" if flag is not None else "VOICE2FA_DELIVERY"
    raw = flag if flag is not None else value(env, "VOICE2FA_DELIVERY")
    if raw is None:
        return "webhook"
    if raw.strip().lower() not in DELIVERIES:
        raise ConfigError(f"{name} must be {DELIVERY_HINT}, not {phone.shown(raw)}")
    return raw.strip().lower()


def max_price_per_minute(env: Mapping[str, str]) -> float | None:
    """VOICE2FA_MAX_PRICE_PER_MINUTE: the inline dial's cost cap in US dollars (a call whose
    route costs more is refused by SignalWire); unset: no cap."""
    raw = _raw(env, "VOICE2FA_MAX_PRICE_PER_MINUTE")
    if raw is None:
        return None
    if not _DECIMAL.fullmatch(raw) or not 0 <= float(raw) <= 100:
        raise ConfigError(f"VOICE2FA_MAX_PRICE_PER_MINUTE must be US dollars per minute from 0 to 100, such as "
                          f"0.05, not {phone.shown(raw)}")
    return float(raw)


def max_calls_per_hour(env: Mapping[str, str]) -> int:
    raw = _raw(env, "VOICE2FA_MAX_CALLS_PER_HOUR")
    return policy.DEFAULT_MAX_CALLS_PER_HOUR if raw is None else parse_int(raw, "VOICE2FA_MAX_CALLS_PER_HOUR", 1, 10000)


DEFAULT_REGION = "VOICE2FA_DEFAULT_REGION"


def default_region(env: Mapping[str, str]) -> phone.Region:
    """The country of a number written without a country code, the same for `send`, `verify`
    and `sessions`: VOICE2FA_DEFAULT_REGION, else the caller ID's (SIGNALWIRE_NUMBER) country,
    else US. Only looked at when a number has no country code."""
    raw = value(env, DEFAULT_REGION)
    if raw is not None:
        import phonenumbers

        code = raw.upper() if raw.isascii() else raw
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(f"{DEFAULT_REGION} {phone.shown(raw)} is not an ISO country code: "
                              "give one such as US, GB or FR")
        return phone.Region(code, DEFAULT_REGION)
    if value(env, "SIGNALWIRE_NUMBER") is not None:
        return phone.Region(caller(env).region, "SIGNALWIRE_NUMBER")
    return phone.Region("US", None)


def number_input(env: Mapping[str, str], text: str, what: str = "the number") -> phone.Number:
    """A number a person typed for `send`, `verify` or `sessions`, to the same E.164 in all
    three: international when it starts with +, 00 or the default region's international
    prefix (011 in North America), else national to `default_region`."""
    return phone.parse(text, what, region=lambda: default_region(env))


def caller(env: Mapping[str, str]) -> phone.Number:
    """SIGNALWIRE_NUMBER, the caller ID: always E.164 (the `+` may be left out)."""
    return phone.parse(_require(env, "SIGNALWIRE_NUMBER"), "SIGNALWIRE_NUMBER")


def project(env: Mapping[str, str]) -> str:
    found = _require(env, "SIGNALWIRE_PROJECT")
    if ":" in found or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in found):
        raise ConfigError("SIGNALWIRE_PROJECT has a colon, space or control character: " + HINTS["SIGNALWIRE_PROJECT"])
    return found


def token(env: Mapping[str, str]) -> str:
    found = _require(env, "SIGNALWIRE_TOKEN")
    if any(ord(c) < 32 or ord(c) == 127 for c in found):
        raise ConfigError("SIGNALWIRE_TOKEN has a control character: " + HINTS["SIGNALWIRE_TOKEN"])
    return found


def signing_key(env: Mapping[str, str]) -> str | None:
    return value(env, "SIGNALWIRE_SIGNING_KEY")


def public_url_setting(env: Mapping[str, str], flag: str | None) -> tuple[str, list[str]]:
    """The public URL (flag over VOICE2FA_PUBLIC_URL) and its warnings."""
    if flag is not None:
        return parse_public_url(flag, "--public-url")
    if value(env, "VOICE2FA_PUBLIC_URL") is None and _local_stand_in(env):
        raise ConfigError(
            "VOICE2FA_PUBLIC_URL is not set: SIGNALWIRE_SPACE is a local stand-in, which reaches this machine "
            "without a tunnel: set VOICE2FA_PUBLIC_URL to http:// and the --listen address, e.g. http://127.0.0.1:5000"
        )
    return parse_public_url(_require(env, "VOICE2FA_PUBLIC_URL"), "VOICE2FA_PUBLIC_URL")


def _local_stand_in(env: Mapping[str, str]) -> bool:
    """SIGNALWIRE_SPACE names a literal loopback address (`voice2fa sandbox`, a test double)."""
    from urllib.parse import urlsplit

    raw = value(env, "SIGNALWIRE_SPACE")
    if raw is None:
        return False
    try:
        host = urlsplit(raw if "://" in raw else f"https://{raw}").hostname
    except ValueError:
        return False
    return host is not None and is_loopback_address(host)


def caller_name(env: Mapping[str, str], flag: str | None) -> str | None:
    """Who the call says is calling (--caller-name, else VOICE2FA_CALLER_NAME); None: a neutral call."""
    from voice2fa_cli.voice.phrases import clean_caller_name

    name = "--caller-name" if flag is not None else "VOICE2FA_CALLER_NAME"
    raw = flag if flag is not None else value(env, "VOICE2FA_CALLER_NAME")
    if raw is None:
        return None
    try:
        return clean_caller_name(raw, name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def listen(env: Mapping[str, str], flag: str | None) -> Listen:
    if flag is not None:
        return parse_listen(flag, "--listen")
    return parse_listen(value(env, "VOICE2FA_LISTEN") or DEFAULT_LISTEN, "VOICE2FA_LISTEN")


# --- whole settings ------------------------------------------------------------------------


def send_settings(
    env: Mapping[str, str],
    *,
    public_url: str | None = None,
    listen_flag: str | None = None,
    ring_timeout: int | None = None,
    delivery_flag: str | None = None,
) -> Settings:
    """Everything `send` needs to call through SignalWire, checked, or a ConfigError. Each
    setting is read by its own function above, the same ones `doctor` runs row by row. The
    inline delivery needs no public URL (nor listens)."""
    space_url = space(env)
    project_id = project(env)
    api_token = token(env)
    caller_number = caller(env)
    how = delivery(env, delivery_flag)
    price = max_price_per_minute(env)
    warnings: list[str] = []
    if not caller_number.known:
        warnings.append(f"SIGNALWIRE_NUMBER {caller_number.e164} is not known to be an assigned number")
    if how == "inline":
        url = ""
    else:
        url, url_warnings = public_url_setting(env, public_url)
        warnings += url_warnings
        if price is not None:
            warnings.append("VOICE2FA_MAX_PRICE_PER_MINUTE caps the inline delivery's calls only "
                            "(the Compatibility API's dial takes no price cap)")
    return Settings(
        space=space_url,
        project=project_id,
        token=api_token,
        caller=caller_number.e164,
        signing_key=signing_key(env),
        public_url=url,
        listen=listen(env, listen_flag),
        state_dir=state_dir(env),
        timing=timing(env, ring_timeout),
        allowed_countries=allowed_countries(env, caller_number.region),
        allowed_number_types=allowed_number_types(env),
        max_calls_per_hour=max_calls_per_hour(env),
        warnings=tuple(warnings),
        store=store_spec(env),
        delivery=how,
        max_price_per_minute=price,
    )


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def store_spec(env: Mapping[str, str], state: Path | None = None) -> StoreSpec:
    """Where sessions live, checked: VOICE2FA_STORE (unset: SQLite in the state dir, or in
    `state`), VOICE2FA_KEY_FILE, VOICE2FA_STORE_TIMEOUT, VOICE2FA_STORE_CA."""
    from voice2fa_cli.stores.base import DEFAULT_TIMEOUT, StoreSpec

    url = value(env, "VOICE2FA_STORE")
    key_file = value(env, "VOICE2FA_KEY_FILE")
    ca_file = value(env, "VOICE2FA_STORE_CA")
    for name, raw in (("VOICE2FA_STORE", url), ("VOICE2FA_KEY_FILE", key_file), ("VOICE2FA_STORE_CA", ca_file)):
        if raw is not None and any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise ConfigError(f"{name} contains a control character")
    if url is not None and not url.startswith(REDIS_SCHEMES):
        raise ConfigError(
            "VOICE2FA_STORE must be a redis://, rediss:// or unix:// URL (unset: the local SQLite store)"
        )
    if url is not None:
        try:
            import redis  # noqa: F401  (an optional dependency: `pip install .` leaves it out)
        except ImportError:
            from voice2fa_cli.stores import REDIS_MISSING

            raise ConfigError(REDIS_MISSING) from None
    if url is None and (key_file or ca_file):
        name = "VOICE2FA_KEY_FILE" if key_file else "VOICE2FA_STORE_CA"
        raise ConfigError(f"{name} is for the shared store: set VOICE2FA_STORE too, or unset {name}")
    if ca_file is not None and not (url or "").startswith("rediss://"):
        raise ConfigError("VOICE2FA_STORE_CA is for a TLS store: use a rediss:// URL in VOICE2FA_STORE")
    timeout = DEFAULT_TIMEOUT
    raw_timeout = value(env, "VOICE2FA_STORE_TIMEOUT")
    if raw_timeout is not None:
        timeout = _store_seconds(raw_timeout, "VOICE2FA_STORE_TIMEOUT")
    return StoreSpec(
        state_dir=state if state is not None else state_dir(env),
        url=url,
        key_file=Path(key_file).expanduser() if key_file else None,
        timeout=timeout,
        ca_file=Path(ca_file).expanduser() if ca_file else None,
    )


def _store_seconds(raw: str, name: str) -> float:
    text = raw.strip()
    whole, _, frac = text.partition(".")
    if not (whole.isascii() and whole.isdigit() and (not frac or (frac.isascii() and frac.isdigit()))):
        raise ConfigError(f"{name} must be a number of seconds from 0.1 to 60, such as 3 or 0.5")
    seconds = float(text)
    if not 0.1 <= seconds <= 60:
        raise ConfigError(f"{name} must be a number of seconds from 0.1 to 60, such as 3 or 0.5")
    return seconds

