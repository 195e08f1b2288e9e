"""Bounded request bodies: a form read with a size cap and a time limit, every malformed body
answered with one plain line (413, 408, 400), never a traceback.

Used by every app of the package that takes a form: the call webhook and serve's API."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qsl

from aiohttp import web

MAX_BODY = 64 * 1024
MAX_FIELDS = 200
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
FORM_TYPES = ("application/x-www-form-urlencoded", "application/octet-stream")


def plain(status: int, text: str) -> web.Response:
    """A one-line text answer."""
    return web.Response(status=status, text=text + "\n")


async def read_form(request: web.Request, limit: float) -> list[tuple[str, str]] | web.Response:
    """The form fields in order, or the error response (413 / 408 / 400); the body must arrive
    within `limit` seconds once the headers are in."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return plain(413, "request body too large")
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return plain(400, "compressed request bodies are not accepted")  # SignalWire sends plain forms
    try:
        if request.content.is_eof():  # the whole body came with the headers (the platform's case)
            body = await request.read()
        else:
            body = await asyncio.wait_for(request.read(), limit)
    except asyncio.TimeoutError:
        response = plain(408, "the request body did not arrive in time")
        response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        return plain(413, "request body too large")
    except Exception:  # the client vanished mid-body, or sent a body that cannot be read
        return plain(400, "unreadable request body")
    if not body:
        return []
    ctype = request.content_type
    if ctype not in FORM_TYPES:
        return plain(400, "expected an application/x-www-form-urlencoded body")
    try:
        text = body.decode("utf-8")
        if _BAD_ESCAPE.search(text):
            raise ValueError("bad percent escape")
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        return plain(400, "malformed form body")

