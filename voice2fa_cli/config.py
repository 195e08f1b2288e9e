"""Settings from flags > environment > `.env` in the working directory > defaults.

Every problem is a ConfigError (exit 2) raised before anything touches the network, in one
line that names the variable and where to get its value. Secrets never appear in messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voice2fa_cli import phone
from voice2fa_cli.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:5000"
DB_NAME = "sessions.sqlite3"  # in the state dir
KEY_NAME = "key"  # in the state dir: the per-install HMAC key
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
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?")


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
    max_calls_per_hour: int = 30
    warnings: tuple[str, ...] = ()

    @property
    def api_base(self) -> str:
        return f"{self.space}{API_PATH}/Accounts/{self.project}"


# --- reading the environment -------------------------------------------------------------


def load_environment(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The real environment over the values of `.env` in `cwd` (which never override it)."""
    environ = os.environ if environ is None else environ
    path = (cwd or Path.cwd()) / ".env"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(environ)
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
    return {**parse_dotenv(text, path), **environ}


def parse_dotenv(text: str, path: Path | str = ".env") -> dict[str, str]:
    """KEY=VALUE lines as python-dotenv reads them (no interpolation); junk lines are errors.
    A message names the line, never its content: the line may hold a secret."""
    import io

    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(
                f"{path} line {binding.original.line} is not KEY=VALUE: fix or remove that line"
            )
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


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
    import ipaddress

    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
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


def parse_space(value: str, name: str = "SIGNALWIRE_SPACE") -> str:
    """`example.signalwire.com` (https) or `scheme://host[:port]` with no path → base URL."""
    from urllib.parse import urlsplit

    if any(c.isspace() or ord(c) < 32 for c in value):
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
    if port == 0:
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
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(f"{name} uses http:// for a host that is not loopback: use https://")
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc.lower()}"


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

    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\s\[\]]+):(\d{1,5})", value.strip())
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


def _number_setting(env: Mapping[str, str], name: str, low: float, high: float, default: float) -> float:
    raw = value(env, name)
    if raw is None:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {phone.shown(raw)}") from None
    if not low <= seconds <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds")
    return seconds


def timing(env: Mapping[str, str], ring_timeout: int | None = None) -> Timing:
    return Timing(
        ring_timeout=ring_timeout if ring_timeout is not None else Timing.ring_timeout,
        poll_interval=_number_setting(env, "VOICE2FA_POLL_INTERVAL", 0.01, 5, Timing.poll_interval),
        webhook_grace=_number_setting(env, "VOICE2FA_WEBHOOK_GRACE", 0.05, 120, Timing.webhook_grace),
        api_timeout=_number_setting(env, "VOICE2FA_API_TIMEOUT", 0.05, 120, Timing.api_timeout),
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

    codes = [c.upper() for c in re.split(r"[\s,]+", raw) if c]
    bad = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
    if bad or not codes:
        shown_bad = ", ".join(phone.shown(c) for c in bad[:3]) or "nothing"
        raise ConfigError(
            f"VOICE2FA_ALLOWED_COUNTRIES lists {shown_bad}: give ISO country codes such as US,CA,GB"
        )
    return frozenset(codes)


def max_calls_per_hour(env: Mapping[str, str]) -> int:
    raw = value(env, "VOICE2FA_MAX_CALLS_PER_HOUR")
    if raw is None:
        return 30
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise ConfigError("VOICE2FA_MAX_CALLS_PER_HOUR must be a whole number from 1 to 10000")
    return int(raw)


def caller_name(env: Mapping[str, str], flag: str | None) -> str | None:
    """Who the call says is calling (--caller-name, else VOICE2FA_CALLER_NAME); None: a neutral call."""
    from voice2fa_cli.phrases import clean_caller_name

    name, raw = ("--caller-name", flag) if flag is not None else ("VOICE2FA_CALLER_NAME", value(env, "VOICE2FA_CALLER_NAME"))
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
) -> Settings:
    """Everything `send` needs to call through SignalWire, checked, or a ConfigError."""
    space = parse_space(_require(env, "SIGNALWIRE_SPACE"))
    project = _require(env, "SIGNALWIRE_PROJECT")
    if ":" in project or any(c.isspace() or ord(c) < 32 for c in project):
        raise ConfigError("SIGNALWIRE_PROJECT has a colon, space or control character: " + HINTS["SIGNALWIRE_PROJECT"])
    token = _require(env, "SIGNALWIRE_TOKEN")
    if any(ord(c) < 32 for c in token):
        raise ConfigError("SIGNALWIRE_TOKEN has a control character: " + HINTS["SIGNALWIRE_TOKEN"])
    caller_number = phone.parse(_require(env, "SIGNALWIRE_NUMBER"), "SIGNALWIRE_NUMBER")
    warnings: list[str] = []
    if not caller_number.known:
        warnings.append(f"SIGNALWIRE_NUMBER {caller_number.e164} is not known to be an assigned number")
    url_value = public_url if public_url is not None else _require(env, "VOICE2FA_PUBLIC_URL")
    url, url_warnings = parse_public_url(url_value, "--public-url" if public_url is not None else "VOICE2FA_PUBLIC_URL")
    warnings += url_warnings
    return Settings(
        space=space,
        project=project,
        token=token,
        caller=caller_number.e164,
        signing_key=value(env, "SIGNALWIRE_SIGNING_KEY"),
        public_url=url,
        listen=listen(env, listen_flag),
        state_dir=state_dir(env),
        timing=timing(env, ring_timeout),
        allowed_countries=allowed_countries(env, caller_number.region),
        max_calls_per_hour=max_calls_per_hour(env),
        warnings=tuple(warnings),
    )
