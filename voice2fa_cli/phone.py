"""Phone numbers: parse what a person typed into E.164, say clearly what is wrong.

A number is international when it starts with `+`, `00`, or the default region's own
international prefix (`011` in North America); any other number is national to a default
region (see config.default_region). The caller ID is always read as E.164.

phonenumbers is imported only when needed: a North American number already in E.164 form
takes a fast path (see `quick_e164`), which keeps `verify` quick to start.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from voice2fa_cli.errors import ConfigError

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# The fast path: +1 and ten digits whose area code does not start with 0 or 1. phonenumbers
# gives such a number back unchanged; other E.164 forms may lose a trunk prefix
# (+44 020… → +44 20…), so they go through it, as in `send`.
_QUICK = re.compile(r"\+1[2-9][0-9]{9}")
_ALLOWED = re.compile(r"[0-9+ \t().\-/]*")
_MAX_INPUT = 40
EXAMPLE = "+15551234567"
REGION_SETTING = "VOICE2FA_DEFAULT_REGION"


@dataclass(frozen=True)
class Region:
    """The country assumed for a number written without a country code."""

    code: str  # ISO 3166
    source: str | None  # the variable it came from; None: the built-in default

    @property
    def origin(self) -> str:
        return {
            None: "the default",
            REGION_SETTING: f"from {REGION_SETTING}",
            "SIGNALWIRE_NUMBER": "the caller ID's country",
        }.get(self.source, f"from {self.source}")

    def describe(self) -> str:
        """`United States (US, the caller ID's country)`."""
        from voice2fa_cli.countries import name

        return f"{name(self.code)} ({self.code}, {self.origin})"


@dataclass(frozen=True)
class Number:
    e164: str
    region: str  # ISO 3166 code; for a region phonenumbers cannot name, the calling code's main one
    known: bool  # assigned according to phonenumbers' metadata (False for +1 555 examples)
    formatted: str = ""  # international format, e.g. "+1 555-123-4567"
    national: Region | None = None  # set when it was read as a national number of this region
    elsewhere: str | None = None  # the same digits read as international, when that is a number too
    # its type, one of NUMBER_TYPES (phonenumbers' metadata, plus NANP 976); derived from e164, so not compared
    kind: str = field(default="unknown", compare=False)

    @property
    def described(self) -> str:
        """`+1 555-123-4567, United States`: the number as it is dialed, and its country."""
        from voice2fa_cli.countries import name

        return f"{self.formatted or self.e164}, {name(self.region)}"

    @property
    def note(self) -> str | None:
        """For a national number: how it was read, and the other reading when there is one."""
        if self.national is None:
            return None
        text = f"no country code: read as dialed in {self.national.describe()}"
        if self.elsewhere:
            text += f"; for {self.elsewhere}, write it with + and its country code"
        return text


def shown(text: str) -> str:
    """A user's input, safe to put in a one-line message."""
    if len(text) > _MAX_INPUT:
        text = text[:_MAX_INPUT] + "…"
    return repr(text)


def quick_e164(text: str) -> str | None:
    """The number, without importing phonenumbers, when `text` is a North American E.164
    number that phonenumbers would give back unchanged; else None (use `parse`)."""
    return text if _QUICK.fullmatch(text) else None


def parse(text: str, what: str = "the number", region: Callable[[], Region] | None = None) -> Number:
    """Parse `text` or raise ConfigError. Spaces, dashes, dots, slashes and parentheses are
    allowed. Without `region`, every number is read as E.164 (the `+` may be left out); with
    it, a number that does not start with `+`, `00` or the region's international prefix is
    national to `region()` (called only then)."""
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
    digits = re.sub(r"[^0-9]", "", stripped)
    if not digits:
        raise ConfigError(f"{what} {shown(stripped)} has no digits: give it in E.164 form, e.g. {EXAMPLE}")
    if len(stripped) > _MAX_INPUT or len(digits) > 18:
        raise ConfigError(f"{what} {shown(stripped)} is too long: E.164 numbers have at most 15 digits")
    if region is None or stripped.startswith("+"):
        if len(digits) > 15:
            raise ConfigError(f"{what} {shown(stripped)} is too long: E.164 numbers have at most 15 digits")
        return _international(digits, stripped, what)
    assumed = region()
    import phonenumbers

    try:
        parsed = phonenumbers.parse(digits, assumed.code, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and parsed.country_code_source == phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD:
        return _international(digits, stripped, what, parsed=parsed)
    if digits.startswith("00"):
        return _international(digits[2:], stripped, what)
    return _national(parsed, digits, stripped, what, assumed)


MIN_DIGITS = 7  # the shortest E.164 number voice2fa dials: country code and number


def _international(digits: str, stripped: str, what: str, parsed=None) -> Number:
    import phonenumbers
    from phonenumbers import ValidationResult as VR

    if parsed is None:
        if len(digits) > 15:
            raise ConfigError(f"{what} {shown(stripped)} is too long: E.164 numbers have at most 15 digits")
        try:
            parsed = phonenumbers.parse("+" + digits, None)
        except phonenumbers.NumberParseException as exc:
            if exc.error_type in (exc.TOO_SHORT_NSN, exc.TOO_SHORT_AFTER_IDD, exc.NOT_A_NUMBER) and len(digits) <= 3:
                raise ConfigError(
                    f"{what} {shown(stripped)} is too short: a country code alone is not a number"
                ) from None
            raise ConfigError(
                f"{what} {shown(stripped)} does not start with a known country calling code "
                f"(E.164: '+', country code, number; e.g. {EXAMPLE})"
            ) from None
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason == VR.IS_POSSIBLE and len(f"{parsed.country_code}{parsed.national_number}") < MIN_DIGITS:
        reason = VR.TOO_SHORT  # phonenumbers allows some national short numbers (+49 0000): no E.164 number
    if reason != VR.IS_POSSIBLE:
        raise ConfigError(f"{what} {shown(stripped)} {_problem(reason)} (+{parsed.country_code})")
    return _number(parsed)


def _national(parsed, digits: str, stripped: str, what: str, assumed: Region) -> Number:
    import phonenumbers
    from phonenumbers import ValidationResult as VR

    from voice2fa_cli.countries import name

    elsewhere = _other_reading(digits, assumed.code)
    reason = VR.TOO_SHORT if parsed is None else phonenumbers.is_possible_number_with_reason(parsed)
    if reason != VR.IS_POSSIBLE:
        problem = _problem(reason).replace(" for its country", "")
        if reason == VR.INVALID_COUNTRY_CODE:
            problem = "is not a number"
        advice = f"did you mean {elsewhere}? Write it with + and its country code" if elsewhere else (
            "write it with + and its country code")
        raise ConfigError(
            f"{what} {shown(stripped)} has no country code and {problem} for {name(assumed.code)} "
            f"({assumed.code}, {assumed.origin}): {advice}, or set {REGION_SETTING} to its country"
        )
    number = _number(parsed)
    return Number(number.e164, number.region, number.known, number.formatted, assumed, elsewhere, number.kind)


def _other_reading(digits: str, assumed: str) -> str | None:
    """The digits read as E.164 (a forgotten +), formatted with their country, when that is
    a possible number of another country."""
    import phonenumbers

    from voice2fa_cli.countries import name

    if digits.startswith("0") or len(digits) > 15:
        return None
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    region = _region(parsed)
    if region == assumed:
        return None
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return f"{international} ({name(region)})"


def _region(parsed) -> str:
    import phonenumbers

    region = phonenumbers.region_code_for_number(parsed)
    if not region or region == "ZZ":
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return region


# phonenumbers' PhoneNumberType, by name (the names VOICE2FA_ALLOW_NUMBER_TYPES takes).
NUMBER_TYPES = {0: "fixed-line", 1: "mobile", 2: "fixed-line-or-mobile", 3: "toll-free", 4: "premium-rate",
                5: "shared-cost", 6: "voip", 7: "personal-number", 8: "pager", 9: "uan", 10: "voicemail",
                99: "unknown"}
# NANP area code 976: never assigned, the historical premium-rate code (phonenumbers calls its
# numbers unknown, and a +1 976 number is dialed like any other): a premium-rate number here.
_NANP_PREMIUM = re.compile(r"\+1976[0-9]{7}")


def _number(parsed) -> Number:
    import phonenumbers

    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    kind = "premium-rate" if _NANP_PREMIUM.fullmatch(e164) else NUMBER_TYPES.get(
        phonenumbers.number_type(parsed), "unknown")
    return Number(
        e164=e164,
        region=_region(parsed),
        known=phonenumbers.is_valid_number(parsed),
        formatted=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        kind=kind,
    )


def _problem(reason) -> str:
    from phonenumbers import ValidationResult as VR

    return {
        VR.INVALID_COUNTRY_CODE: "does not start with a known country calling code",
        VR.TOO_SHORT: "is too short for its country",
        VR.TOO_LONG: "is too long for its country",
        VR.INVALID_LENGTH: "has a length no number of its country has",
    }.get(reason, "cannot be a phone number")
