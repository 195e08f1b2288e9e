"""Phone numbers: parse what a person typed into E.164, say clearly what is wrong.

phonenumbers is imported only when needed: input already in E.164 form takes a fast path
(see `quick_e164`), which keeps `verify` quick to start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voice2fa_cli.errors import ConfigError

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ALLOWED = re.compile(r"[0-9+ \t().\-/]*")
_MAX_INPUT = 40
EXAMPLE = "+15551234567"


@dataclass(frozen=True)
class Number:
    e164: str
    region: str  # ISO 3166 code; for a region phonenumbers cannot name, the calling code's main one
    known: bool  # assigned according to phonenumbers' metadata (False for +1 555 examples)


def shown(text: str) -> str:
    """A user's input, safe to put in a one-line message."""
    if len(text) > _MAX_INPUT:
        text = text[:_MAX_INPUT] + "…"
    return repr(text)


def quick_e164(text: str) -> str | None:
    """The number if `text` is already E.164 (`+` and 7–15 digits), without phonenumbers."""
    return text if E164.fullmatch(text) else None


def parse(text: str, what: str = "the number") -> Number:
    """Parse `text` (E.164, `+` optional; spaces, dashes, parentheses allowed) or raise ConfigError."""
    stripped = text.strip()
    if not stripped:
        raise ConfigError(f"{what} is empty: give it in E.164 form, e.g. {EXAMPLE}")
    if not _ALLOWED.fullmatch(stripped):
        kind = "letters" if re.search(r"[^\W\d_]", stripped) else "characters that are not digits"
        raise ConfigError(
            f"{what} {shown(stripped)} contains {kind}: give it in E.164 form, e.g. {EXAMPLE}"
        )
    if "+" in stripped[1:] or stripped.count("+") > 1:
        raise ConfigError(f"{what} {shown(stripped)} has a '+' inside it: only a leading '+' is allowed")
    digits = re.sub(r"\D", "", stripped)
    if not digits:
        raise ConfigError(f"{what} {shown(stripped)} has no digits: give it in E.164 form, e.g. {EXAMPLE}")
    if len(stripped) > _MAX_INPUT or len(digits) > 15:
        raise ConfigError(f"{what} {shown(stripped)} is too long: E.164 numbers have at most 15 digits")

    import phonenumbers
    from phonenumbers import ValidationResult as VR

    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type in (exc.TOO_SHORT_NSN, exc.TOO_SHORT_AFTER_IDD, exc.NOT_A_NUMBER) and len(digits) <= 3:
            raise ConfigError(f"{what} {shown(stripped)} is too short: a country code alone is not a number") from None
        raise ConfigError(
            f"{what} {shown(stripped)} does not start with a known country calling code "
            f"(E.164: '+', country code, number; e.g. {EXAMPLE})"
        ) from None
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason != VR.IS_POSSIBLE:
        problem = {
            VR.INVALID_COUNTRY_CODE: "does not start with a known country calling code",
            VR.TOO_SHORT: "is too short for its country",
            VR.TOO_LONG: "is too long for its country",
            VR.INVALID_LENGTH: "has a length no number of its country has",
        }.get(reason, "cannot be a phone number")
        raise ConfigError(f"{what} {shown(stripped)} {problem} (+{parsed.country_code})")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(parsed)
    if not region or region == "ZZ":
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return Number(e164=e164, region=region, known=phonenumbers.is_valid_number(parsed))
