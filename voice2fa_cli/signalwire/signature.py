"""Webhook signatures of the SignalWire Compatibility API (the Twilio scheme):
base64(HMAC-SHA1(key, url + name1 + value1 + name2 + value2 …)), fields sorted by name."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

HEADERS = ("X-SignalWire-Signature", "X-Twilio-Signature")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def compute(key: str, url: str, fields: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(name + value for name, value in sorted(fields))
    mac = hmac.new(key.encode(), data.encode("utf-8", "surrogatepass"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def url_variants(url: str) -> list[str]:
    """The URL as given, and with the default port added or removed: platforms differ."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if default is None or parts.hostname is None:
        return [url]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None:
        other = parts._replace(netloc=f"{host}:{default}")
    elif port == default:
        other = parts._replace(netloc=host)
    else:
        return [url]
    return [url, urlunsplit(other)]


def valid(key: str, url: str, fields: Iterable[tuple[str, str]], signature: str | None) -> bool:
    """True when `signature` signs `url` (with or without default port) and the fields.
    Every variant is compared in constant time."""
    return valid_for_any(key, url_variants(url), fields, signature)


def valid_for_any(key: str, urls: Iterable[str], fields: Iterable[tuple[str, str]], signature: str | None) -> bool:
    """True when `signature` signs one of `urls` (variants computed once by the caller)."""
    if not signature:
        return False
    fields = list(fields)
    given = signature.encode("utf-8", "surrogatepass")
    ok = False
    for variant in urls:
        ok |= hmac.compare_digest(compute(key, variant, fields).encode("ascii"), given)
    return ok
