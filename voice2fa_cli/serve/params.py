"""The parameters of each operation `voice2fa serve` answers, as Twilio's spec types them
(twilio/twilio-oai spec/json/twilio_verify_v2.json; the tests compare these tables with the
operations cut out of it in tests/fixtures/twilio_verify_v2.json): each parameter's type, pattern
and enum. A request whose parameter breaks its rule is 60200 naming the parameter; a parameter the
spec does not name is ignored, as Twilio ignores it.

What serve does with each parameter is the core's: some it acts on, the rest (IGNORED) it
accepts, checked, and does nothing with (they are for SMS, PSD2, templates, SNA, or Twilio's
fraud guard); the README lists them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from voice2fa_cli.serve.shapes import ApiError


@dataclass(frozen=True)
class Rule:
    """One parameter: its spec type ("string", "boolean", "integer" or "object": a JSON object
    sent as a form value), its pattern or enum, and a check of voice2fa's where the spec only
    describes the value (an IP address, an E.164 number)."""

    type: str = "string"
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    required: bool = False
    check: Callable[[str], bool] | None = None
    detail: str | None = None  # how the error words a value the check refused

    def problem(self, value: str) -> str | None:
        """Why `value` breaks the rule, or None."""
        if self.type == "boolean" and value.lower() not in ("true", "false"):
            return "true or false"
        if self.type == "integer" and not re.fullmatch(r"-?[0-9]{1,9}", value):
            return "a whole number"
        if self.type == "object" and not _json_object(value):
            return "a JSON object"
        if self.pattern is not None and not re.fullmatch(self.pattern.strip("^$"), value):
            prefix = self.pattern[1:3]
            return f"{prefix} followed by 32 hexadecimal digits"
        if self.enum is not None and value not in self.enum:
            return choices(self.enum)
        if self.check is not None and not self.check(value):
            return self.detail
        return None


def choices(values: tuple[str, ...]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def _json_object(value: str) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except ValueError:
        return False


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def sid(prefix: str) -> Rule:
    return Rule(pattern=f"^{prefix}[0-9a-fA-F]{{32}}$")


E164 = r"\+[1-9][0-9]{1,14}"
STRING, BOOLEAN, INTEGER, OBJECT = Rule(), Rule("boolean"), Rule("integer"), Rule("object")

# POST /v2/Services/{ServiceSid}/Verifications
CREATE = {
    "To": Rule(required=True, check=lambda v: bool(re.fullmatch(E164, v)),
               detail="a phone number in E.164 format (a + and 2 to 15 digits, no spaces), such as +15017122661"),
    "Channel": Rule(required=True),
    "CustomFriendlyName": STRING,
    "CustomMessage": STRING,
    "SendDigits": STRING,
    "Locale": STRING,
    "CustomCode": STRING,
    "Amount": STRING,
    "Payee": STRING,
    "RateLimits": OBJECT,
    "ChannelConfiguration": OBJECT,
    "AppHash": STRING,
    "TemplateSid": sid("HJ"),
    "TemplateCustomSubstitutions": STRING,
    "DeviceIp": Rule(check=_ip, detail="an IPv4 or IPv6 address"),
    "EnableSnaClientToken": BOOLEAN,
    "RiskCheck": Rule(enum=("enable", "disable")),
    "Tags": STRING,
}
# POST /v2/Services/{ServiceSid}/Verifications/{Sid}
UPDATE = {"Status": Rule(enum=("canceled", "approved"), required=True)}
# POST /v2/Services/{ServiceSid}/VerificationCheck
CHECK = {"Code": STRING, "To": STRING, "VerificationSid": sid("VE"), "Amount": STRING, "Payee": STRING,
         "SnaClientToken": STRING}
# POST /v2/Services and POST /v2/Services/{Sid} (FriendlyName is required to create)
SERVICE = {
    "FriendlyName": STRING, "CodeLength": INTEGER, "LookupEnabled": BOOLEAN, "SkipSmsToLandlines": BOOLEAN,
    "DtmfInputRequired": BOOLEAN, "TtsName": STRING, "Psd2Enabled": BOOLEAN, "DoNotShareWarningEnabled": BOOLEAN,
    "CustomCodeEnabled": BOOLEAN, "Push.IncludeDate": BOOLEAN, "Push.ApnCredentialSid": sid("CR"),
    "Push.FcmCredentialSid": sid("CR"), "Totp.Issuer": STRING, "Totp.TimeStep": INTEGER, "Totp.CodeLength": INTEGER,
    "Totp.Skew": INTEGER, "DefaultTemplateSid": sid("HJ"), "Whatsapp.MsgServiceSid": sid("MG"),
    "Whatsapp.From": STRING, "Passkeys.RelyingParty.Id": STRING, "Passkeys.RelyingParty.Name": STRING,
    "Passkeys.RelyingParty.Origins": STRING, "Passkeys.AuthenticatorAttachment": STRING,
    "Passkeys.DiscoverableCredentials": STRING, "Passkeys.UserVerification": STRING,
    "VerifyEventSubscriptionEnabled": BOOLEAN,
}
# GET /v2/Services (and the Attempts lists): the page parameters
PAGE = {"PageSize": Rule("integer", check=lambda v: 1 <= int(v) <= 1000, detail="from 1 to 1000"),
        "Page": Rule("integer", check=lambda v: int(v) >= 0, detail="0 or more"), "PageToken": STRING}
DATE = Rule(check=lambda v: bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", v)),
            detail="a date and time in ISO 8601, such as 2026-12-01T00:00:00Z")
COUNTRY = Rule(check=lambda v: bool(re.fullmatch(r"[A-Z]{2}", v)),
               detail="an ISO 3166-1 alpha-2 country code, such as US")
ATTEMPT_CHANNELS = ("sms", "call", "email", "whatsapp", "rbm")
# GET /v2/Attempts
ATTEMPTS = {"DateCreatedAfter": DATE, "DateCreatedBefore": DATE, "ChannelData.To": STRING, "Country": COUNTRY,
            "Channel": Rule(enum=ATTEMPT_CHANNELS), "VerifyServiceSid": sid("VA"), "VerificationSid": sid("VE"),
            "Status": Rule(enum=("converted", "unconverted")), **PAGE}
# GET /v2/Attempts/Summary
SUMMARY = {"VerifyServiceSid": sid("VA"), "DateCreatedAfter": DATE, "DateCreatedBefore": DATE, "Country": COUNTRY,
           "Channel": Rule(enum=ATTEMPT_CHANNELS), "DestinationPrefix": STRING}

# Accepted and checked, then not acted on (the README lists them, with why).
IGNORED = {
    "CREATE": ("SendDigits", "Amount", "Payee", "RateLimits", "ChannelConfiguration", "AppHash", "TemplateSid",
               "TemplateCustomSubstitutions", "DeviceIp", "EnableSnaClientToken", "RiskCheck", "Tags"),
    "CHECK": ("Amount", "Payee", "SnaClientToken"),
    "SERVICE": ("LookupEnabled", "SkipSmsToLandlines", "Psd2Enabled", "DoNotShareWarningEnabled", "Push.IncludeDate",
                "Push.ApnCredentialSid", "Push.FcmCredentialSid", "Totp.Issuer", "Totp.TimeStep", "Totp.CodeLength",
                "Totp.Skew", "DefaultTemplateSid", "Whatsapp.MsgServiceSid", "Whatsapp.From",
                "Passkeys.RelyingParty.Id", "Passkeys.RelyingParty.Name", "Passkeys.RelyingParty.Origins",
                "Passkeys.AuthenticatorAttachment", "Passkeys.DiscoverableCredentials", "Passkeys.UserVerification",
                "VerifyEventSubscriptionEnabled"),
}


def validate(form: Mapping[str, str], rules: Mapping[str, Rule], *, creating: bool = True) -> None:
    """60200 naming the first parameter (in the spec's order) that is missing or breaks its rule."""
    for name, rule in rules.items():
        value = form.get(name)
        if value is None or value == "":
            if rule.required and creating:
                raise ApiError(60200, f"Invalid parameter: {name} is required")
            continue
        problem = rule.problem(value)
        if problem is not None:
            raise ApiError(60200, f"Invalid parameter `{name}`: {problem}")


def boolean(value: str | None) -> bool | None:
    """A validated boolean parameter's value (None: not given)."""
    return None if not value else value.lower() == "true"
