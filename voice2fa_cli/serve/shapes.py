"""The shapes of Twilio's Verify v2 API that `voice2fa serve` answers in. The facts, with their
sources, are in tests/twilio_verify.py (the tests check these against them).

- Resources: twilio/twilio-oai spec/json/twilio_verify_v2.json, components.schemas
  `verify.v2.service.verification` and `verify.v2.service.verification_check`; dates as in its
  examples (ISO 8601, "2015-07-30T20:00:00Z"); send_code_attempts items {time, channel, attempt_sid}.
- Errors: the JSON body Twilio's REST API answers errors with, {code, message, more_info,
  status}, which the official SDK reads (twilio/base/version.py: TwilioRestException from
  `code`, `message`, `details`, `more_info`).
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from aiohttp import web

from voice2fa_cli.errors import PolicyRefused

MORE_INFO = "https://www.twilio.com/docs/errors/"
# code → (HTTP status, message)
ERRORS = {
    20003: (401, "Authenticate"),
    20004: (405, "Method not allowed"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    60200: (400, "Invalid parameter"),
    60202: (429, "Max check attempts reached"),
    60203: (429, "Max send attempts reached"),
    60605: (403, "Verification delivery attempt blocked"),
    20001: (503, "Service unavailable: the server is shutting down"),
    20500: (500, "Internal server error"),
}


def error(code: int, message: str | None = None, status: int | None = None) -> web.Response:
    default_status, default_message = ERRORS[code]
    status = status or default_status
    body = {"code": code, "message": message or default_message, "more_info": f"{MORE_INFO}{code}", "status": status}
    headers = {"WWW-Authenticate": 'Basic realm="voice2fa"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def refusal(exc: PolicyRefused, now: float | None = None) -> str:
    """A send limit's or a lock's reason for an API client: when to try again in ISO 8601 UTC
    and in seconds (never the server's local clock)."""
    if exc.retry_at is None:
        return exc.reason
    seconds = max(0, math.ceil(exc.retry_at - (time.time() if now is None else now)))
    return f"{exc.reason}; try again after {iso(exc.retry_at)} (in {seconds} s)"


def verification(record: dict, base_url: str, status: str | None = None) -> dict:
    """The verification resource from its record."""
    return {
        "sid": record["sid"],
        "service_sid": record["service_sid"],
        "account_sid": record["account_sid"],
        "to": record["to"],
        "channel": "call",
        "status": status or record["status"],
        "valid": (status or record["status"]) == "approved",
        "lookup": {},
        "amount": None,
        "payee": None,
        "send_code_attempts": [
            {"time": iso(a["time"]), "channel": "call", "attempt_sid": a["attempt_sid"]}
            for a in record["send_code_attempts"]
        ],
        "date_created": iso(record["created"]),
        "date_updated": iso(record["updated"]),
        "sna": None,
        "url": f"{base_url}/v2/Services/{record['service_sid']}/Verifications/{record['sid']}",
    }


def verification_check(record: dict, status: str) -> dict:
    """The verification check resource: the verification's sid, its status after the check."""
    return {
        "sid": record["sid"],
        "service_sid": record["service_sid"],
        "account_sid": record["account_sid"],
        "to": record["to"],
        "channel": "call",
        "status": status,
        "valid": status == "approved",
        "amount": None,
        "payee": None,
        "sna_attempts_error_codes": [],
        "date_created": iso(record["created"]),
        "date_updated": iso(record["updated"]),
    }


class ApiError(Exception):
    """An answer in Twilio's error shape."""

    def __init__(self, code: int, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def response(self) -> web.Response:
        return error(self.code, self.message, self.status)
