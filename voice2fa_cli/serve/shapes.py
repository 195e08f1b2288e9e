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
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import urlencode

from aiohttp import web

from voice2fa_cli.errors import PolicyRefused

MORE_INFO = "https://www.twilio.com/docs/errors/"
# code → (HTTP status, message)
ERRORS = {
    20003: (401, "Authenticate"),
    20004: (405, "Method not allowed"),
    20403: (403, "Forbidden"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    60200: (400, "Invalid parameter"),
    60202: (429, "Max check attempts reached"),
    60203: (429, "Max send attempts reached"),
    60204: (400, "Custom code not allowed"),
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


def service(body: dict, account: str, base_url: str) -> dict:
    """The service resource (verify.v2.service) from its record; the settings of voice2fa's own
    that Twilio's resource has no field for are under `voice2fa`."""
    url = f"{base_url}/v2/Services/{body['sid']}"
    return {
        "sid": body["sid"],
        "account_sid": account,
        "friendly_name": body["name"],
        "code_length": body["code_length"],
        "lookup_enabled": False,
        "psd2_enabled": False,
        "skip_sms_to_landlines": False,
        "dtmf_input_required": body["keypress"],
        "tts_name": body["voice"],
        "do_not_share_warning_enabled": False,
        "custom_code_enabled": body["custom_code"],
        "push": None,
        "totp": None,
        "default_template_sid": None,
        "whatsapp": None,
        "passkeys": None,
        "verify_event_subscription_enabled": False,
        "date_created": iso(body["created"]),
        "date_updated": iso(body["updated"]),
        "url": url,
        "links": {"verifications": f"{url}/Verifications", "verification_checks": f"{url}/VerificationCheck"},
        "voice2fa": {"ttl": body["ttl"], "language": body["language"], "max_calls_per_hour": body["max_calls_per_hour"],
                     "friendly_name_allowed": body["friendly_name"], "custom_message_allowed": body["custom_message"],
                     "message": body["message"], "callback_url": body["callback_url"],
                     "callback_private": body["callback_private"]},
    }


def attempt(record: dict, base_url: str) -> dict:
    """The verification attempt resource (verify.v2.verification_attempt): one call, its
    channel data the call's outcome (`status` confirmed once converted, as in Twilio's example)."""
    return {
        "sid": record["sid"],
        "account_sid": record["account_sid"],
        "service_sid": record["service_sid"],
        "verification_sid": record["verification_sid"],
        "date_created": iso(record["created"]),
        "date_updated": iso(record["updated"]),
        "conversion_status": record["conversion"],
        "channel": "call",
        "price": None,
        "channel_data": {
            "verification_sid": record["verification_sid"], "to": record["to"],
            "status": "confirmed" if record["conversion"] == "converted" else "unconfirmed",
            "call_sid": record["call_sid"], "call_status": record["call_status"], "duration": record["duration"],
            "code_delivered": record["delivered"], "error": record["problem"], "country": record["country"],
            "code_length": record["code_length"], "locale": record["locale"],
        },
        "url": f"{base_url}/v2/Attempts/{record['sid']}",
    }


def attempts_summary(total: int, converted: int, base_url: str) -> dict:
    """verify.v2.verification_attempts_summary; the rate as Twilio's example writes it
    ("81.818181818"), null with no attempts."""
    return {"total_attempts": total, "total_converted": converted, "total_unconverted": total - converted,
            "conversion_rate_percentage": repr(round(converted / total * 100, 9)) if total else None,
            "url": f"{base_url}/v2/Attempts/Summary"}


def page(key: str, items: list[dict], url: str, number: int, size: int, total: int,
         query: Mapping[str, str] | None = None) -> dict:
    """One page of a list, with the `meta` Twilio's SDK follows (next_page_url: None on the
    last); the page URLs keep the list's filters (`query`)."""

    def at(n: int) -> str:
        return f"{url}?{urlencode({**(query or {}), 'PageSize': size, 'Page': n})}"

    return {key: items, "meta": {"page": number, "page_size": size, "first_page_url": at(0),
                                 "previous_page_url": at(number - 1) if number > 0 else None,
                                 "url": at(number), "next_page_url": at(number + 1) if (number + 1) * size < total
                                 else None, "key": key}}


class ApiError(Exception):
    """An answer in Twilio's error shape."""

    def __init__(self, code: int, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def response(self) -> web.Response:
        return error(self.code, self.message, self.status)
