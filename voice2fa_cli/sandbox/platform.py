"""What the platform says, as SignalWire's published spec has it. Every fact cites its source.

Sources (repository `signalwire/docs`):
- SPEC_CALLS   = specs/compatibility-api/calls/main.tsp (operations and their answers)
- SPEC_CALL    = specs/compatibility-api/calls/models/core.tsp (model Call, enum CallStatus)
- SPEC_REQ     = specs/compatibility-api/calls/models/requests.tsp (CreateCallRequest, UpdateCallRequest)
- SPEC_HOOK    = specs/compatibility-api/calls/models/webhooks.tsp (VoiceStatusCallbackPayload)
- SPEC_NUMBERS = specs/compatibility-api/incoming-phone-numbers/main.tsp (list: PhoneNumber filter),
                 models/responses.tsp (IncomingPhoneNumberListResponse: incoming_phone_numbers, page, …)
- SPEC_ERRORS  = specs/compatibility-api/_shared/errors.tsp (CompatibilityErrorResponse,
                 CompatibilityErrorArrayResponse)
- ERROR_CODES  = fern/products/compatibility-api/pages/rest-api/core/error-codes.mdx
- RETRIES      = fern/products/compatibility-api/pages/cxml/guides/webhooks/common-webhook-errors.mdx
"""

from __future__ import annotations

import email.utils
import re
import uuid
from datetime import datetime, timezone

from aiohttp import web

# The REST root every Compatibility API path hangs from (SPEC_CALLS: @route("/Accounts/{AccountSid}/Calls")
# under the LaML API's /api/laml/2010-04-01 base).
API_ROOT = "/api/laml/2010-04-01"
API_VERSION = "2010-04-01"  # SPEC_CALL Call.api_version, SPEC_HOOK ApiVersion

# SPEC_CALL enum CallStatus: the values a call resource's `status` takes.
CALL_STATUSES = ("queued", "ringing", "in-progress", "canceled", "completed", "busy", "failed", "no-answer")
FINAL = frozenset({"canceled", "completed", "busy", "failed", "no-answer"})
# SPEC_HOOK VoiceStatusCallbackPayload.CallStatus: the values a callback carries. There is no
# `answered`: the `answered` event (SPEC_REQ CreateCallRequest.StatusCallbackEvent) arrives as
# `in-progress`.
CALLBACK_STATUSES = ("initiated", "ringing", "in-progress", "queued", "failed", "busy", "no-answer", "completed",
                     "canceled")
# SPEC_REQ CreateCallRequest.StatusCallbackEvent: valid values; default ["completed"].
EVENTS = ("initiated", "ringing", "answered", "completed", "ringing_forwarded", "ringing_queued")
DEFAULT_EVENTS = ("completed",)
# SPEC_REQ UpdateCallRequest.Status
UPDATE_STATUSES = ("canceled", "completed")
# SPEC_REQ CreateCallRequest.Timeout: 1..600, default 60.
TIMEOUT_RANGE = (1, 600)
# SPEC_HOOK VoiceStatusCallbackPayload.CallbackSource (example "call-progress-events").
CALLBACK_SOURCE = "call-progress-events"
# RETRIES: "If it's a status callback webhook, SignalWire will retry up to two more times —
# three attempts in total."
CALLBACK_ATTEMPTS = 3
# SPEC_ERRORS CompatibilityErrorArrayItem.more_info example; every error body carries one.
MORE_INFO = "https://signalwire.com/docs/rest/compatibility-api/error-codes"

# ERROR_CODES: the codes the sandbox answers with, and the documented cause it quotes.
ERROR_MESSAGES = {
    10000: "The argument passed is invalid",
    20001: "An unknown error occurred",
    20003: "There was an authentication error or API access is blocked for this feature",
    20404: "The resource you are trying to access does not exist",
    20429: "There were too many requests or throughput was exceeded",
    20504: "An internal error occurred",
    21205: "A phone call was attempted without a CXML URL or ApplicationSid",
    21208: "The provided Timeout parameter was not a positive whole integer",
    21209: "The Method parameter provided was not GET or POST",
    21210: "The From number provided was not a purchased or verified number in your project",
    21211: "The 'To' number provided has an invalid format",
    21219: "The 'To' phone number is not a verified caller ID and the account is in Trial mode",
}
# The code a scripted error status answers with unless the scenario names one.
DEFAULT_CODE = {400: 21211, 401: 20003, 404: 20404, 422: 10000, 429: 20429, 500: 20504, 503: 20001}

_NANP = re.compile(r"\+1([2-9][0-9]{2})([0-9]{3})([0-9]{4})")


def new_sid() -> str:
    """SPEC_CALL Call.sid: a uuid (example b3877c40-da60-4998-90ad-b792e98472ca)."""
    return str(uuid.uuid4())


def rfc2822(when: datetime | None = None) -> str:
    """SPEC_CALL date_created etc. and SPEC_HOOK Timestamp: RFC 2822 with a +0000 zone
    (example "Thu, 04 Apr 2024 18:32:15 +0000")."""
    return email.utils.format_datetime(when or datetime.now(timezone.utc))


def formatted(number: str) -> str:
    """SPEC_CALL formatted_to / formatted_from (example "(310) 567-8901" for +13105678901)."""
    if m := _NANP.fullmatch(number):
        return f"({m[1]}) {m[2]}-{m[3]}"
    return number


def error_object(status: int, code: int, message: str | None = None) -> web.Response:
    """SPEC_ERRORS CompatibilityErrorResponse: {code: int32, message, more_info, status: int32}."""
    body = {"code": code, "message": message or ERROR_MESSAGES.get(code, "Error"), "more_info": f"{MORE_INFO}#{code}",
            "status": status}
    return web.json_response(body, status=status)


def error_array(code: int, message: str | None = None) -> web.Response:
    """SPEC_ERRORS CompatibilityErrorArrayResponse, the answer to a rejected create
    (SPEC_CALLS create → CompatibilityStatusCode400Array): 400 with {errors: [{code: string,
    message, more_info}]}."""
    item = {"code": str(code), "message": message or ERROR_MESSAGES.get(code, "Error"),
            "more_info": f"{MORE_INFO}#{code}"}
    return web.json_response({"errors": [item]}, status=400)
