"""The SignalWire Compatibility (cXML) REST API, the three calls voice2fa needs, over aiohttp.

A create is never retried: a retry after a request that reached the platform can ring the
person twice. Every failure becomes a ProviderError (exit 4) that says what happened.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from voice2fa_cli import __version__
from voice2fa_cli.errors import ProviderError

FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")

_HINTS = {  # SignalWire error codes (fern/products/compatibility-api/pages/rest-api/core/error-codes.mdx)
    21211: "the number called is not valid for SignalWire",
    21210: "SIGNALWIRE_NUMBER is not a number of this project: pick one from the Phone Numbers page",
    21219: "a trial account can call only verified numbers: verify this number or upgrade the account",
}
CREDENTIALS = "SignalWire refused the credentials: check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"


C = TypeVar("C", bound="Client")


@dataclass(frozen=True)
class Call:
    sid: str
    status: str
    duration: int | None = None


class Client:
    """One aiohttp session against `{space}/api/laml/2010-04-01/Accounts/{project}`."""

    def __init__(self, api_base: str, project: str, token: str, *, timeout: float) -> None:
        self._base = api_base
        import base64

        credentials = base64.b64encode(f"{project}:{token}".encode()).decode("ascii")
        self._auth = f"Basic {credentials}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self: C) -> C:
        self._http = aiohttp.ClientSession(
            timeout=self._timeout,
            headers={"User-Agent": f"voice2fa/{__version__}", "Authorization": self._auth},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def _request(self, method: str, path: str, what: str, form: list[tuple[str, str]] | None = None,
                       payload: dict | None = None) -> dict:
        """The answer's JSON object, or a ProviderError (a form, or with `payload` a JSON body)."""
        assert self._http is not None, "use the client as an async context manager"
        url = self._base + path
        try:
            async with self._http.request(method, url, data=form, json=payload, allow_redirects=False) as resp:
                body = await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            error = ProviderError(
                f"SignalWire did not answer {what} within {self._timeout.total:g} s"
                + ("; the call may still have been placed" if what == "the call request" else "")
            )
            error.timed_out = True
            raise error from None
        except aiohttp.ClientError as exc:
            error = ProviderError(f"cannot reach SignalWire at {self._base.split('/api')[0]}: {describe(exc)}")
            error.unreachable = True
            raise error from None
        data = _json(body)
        if 200 <= status < 300:
            if not isinstance(data, dict):
                raise ProviderError(f"SignalWire answered {what} with {status} but no JSON object")
            return data
        error = self._error(status, data, what)
        error.status = status
        raise error

    @staticmethod
    def _error(status: int, data: object, what: str) -> ProviderError:
        return _error(status, data, what)

    async def create_call(
        self, *, to: str, caller: str, url: str, status_callback: str, ring_timeout: int
    ) -> Call:
        form = [
            ("From", caller),
            ("To", to),
            ("Url", url),
            ("Method", "POST"),
            ("StatusCallback", status_callback),
            ("StatusCallbackMethod", "POST"),
            *(("StatusCallbackEvent", event) for event in STATUS_EVENTS),
            ("Timeout", str(ring_timeout)),
        ]
        try:
            data = await self._request("POST", "/Calls.json", "the call request", form)
        except ProviderError as error:
            error.dialed = error.timed_out
            raise
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid:
            raise ProviderError("SignalWire accepted the call request but returned no call sid")
        return Call(sid=sid, status=str(data.get("status") or "queued"))

    async def fetch_call(self, sid: str) -> Call:
        data = await self._request("GET", f"/Calls/{sid}.json", "the call status request")
        duration = data.get("duration")
        try:
            duration = int(duration) if duration is not None else None
        except (TypeError, ValueError):
            duration = None
        return Call(sid=sid, status=str(data.get("status") or "unknown"), duration=duration)

    async def hang_up(self, sid: str) -> None:
        await self._request("POST", f"/Calls/{sid}.json", "the hang-up request", [("Status", "completed")])

    async def owns_number(self, number: str) -> bool:
        """Whether `number` (E.164) is one of the project's numbers: the IncomingPhoneNumbers list
        filtered by it (specs/compatibility-api/incoming-phone-numbers/main.tsp; the token needs
        the Numbers permission). Changes nothing."""
        from urllib.parse import quote

        data = await self._request("GET", f"/IncomingPhoneNumbers.json?PhoneNumber={quote(number)}&PageSize=50",
                                   "the phone numbers request")
        items = data.get("incoming_phone_numbers")
        return isinstance(items, list) and any(isinstance(i, dict) and i.get("phone_number") == number for i in items)

    async def fetch_account(self) -> dict:
        return await self._request("GET", ".json", "the account request")


def _json(body: bytes) -> object:
    import json

    try:
        return json.loads(body)
    except ValueError:
        return None


def describe(exc: aiohttp.ClientError) -> str:
    """A network failure in a few words: never its URL."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        import os

        reason = os.strerror(err.errno) if err.errno else (err.strerror or "no route")
        return f"connection failed ({reason})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return type(exc).__name__


def _error(status: int, data: object, what: str) -> ProviderError:
    code, message, more_info = _reason(data)
    if status in (401, 403):
        error = ProviderError(CREDENTIALS)
        error.auth_refused = True
    elif status == 429:
        error = ProviderError("SignalWire is rate-limiting this account (429 Too Many Requests): wait and try again")
    elif status >= 500:
        error = ProviderError(f"SignalWire failed on {what} ({status}): try again later")
    else:
        detail = f"SignalWire rejected {what} ({status}"
        detail += f", error {code}" if code is not None else ""
        detail += f"): {message}" if message else ")"
        hint = _HINTS.get(code) if code is not None else None
        error = ProviderError(detail + (f" — {hint}" if hint else ""))
    error.more_info = more_info
    return error


def _reason(data: object) -> tuple[int | None, str | None, str | None]:
    """(code, message, more_info) from either documented error body (SignalWire's
    specs/compatibility-api/_shared/errors.tsp): CompatibilityErrorResponse {code: int,
    message, more_info, status}, or CompatibilityErrorArrayResponse {errors: [{code: string,
    message, more_info}]} (a rejected create). Codes as int or digit string; anything else in
    the body is ignored, never trusted."""
    if not isinstance(data, dict):
        return None, None, None
    items: list[dict] = [data]
    errors = data.get("errors")
    if isinstance(errors, list):
        items = [item for item in errors[:10] if isinstance(item, dict)]
        if not items:
            return None, None, None
    first = items[0]
    messages = [text for item in items if (text := one_line(item.get("message")))]
    message = "; ".join(messages)[:300] or None
    return _code(first.get("code")), message, _link(first.get("more_info"))


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value < 10**8:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 8:
        return int(value)
    return None


def one_line(value: object) -> str | None:
    """Platform text made one printable line (it is shown on the operator's terminal)."""
    if not isinstance(value, str):
        return None
    return " ".join("".join(c if c.isprintable() else " " for c in value[:2000]).split()) or None


def _link(value: object) -> str | None:
    """`more_info` kept only when it is a plain http(s) link (shown with -v)."""
    if not isinstance(value, str) or len(value) > 500 or not value.isascii() or not value.isprintable():
        return None
    if not value.startswith(("https://", "http://")) or any(c in value for c in " <>\"'`"):
        return None
    return value
