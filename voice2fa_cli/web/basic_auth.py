"""HTTP basic authentication's header (RFC 7617), parsed strictly.

The credentials are base64 as RFC 4648 §4 defines it: its alphabet, with its padding, and
nothing else (no stray bytes, no missing `=`). What is not exactly that is no credential at all,
so one header has one reading for every server that parses it.
"""

from __future__ import annotations

import base64
import binascii
import re

MAX_HEADER = 1024  # longer than any key SID and secret this tool makes, with room to spare
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def credentials(header: str | None) -> tuple[str, str] | None:
    """The user and password of an `Authorization: Basic …` header, or None when it is not
    one (another scheme, bad base64, no colon, not UTF-8, a control character)."""
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not _BASE64.fullmatch(token) or not token:
        return None
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or _CONTROL.search(decoded):
        return None
    return user, password
