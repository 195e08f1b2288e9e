"""voice2fa_cli.phone: parsing what a person typed into E.164, and saying what is wrong."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice2fa_cli import phone
from voice2fa_cli.errors import ConfigError
from voice2fa_cli.phone import Number, Region

HINT = "give it in E.164 form, e.g. +15551234567"


def error_of(text: str, what: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        phone.parse(text) if what is None else phone.parse(text, what)
    assert info.value.exit_code == 2
    return info.value


# --- accepted forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "+15551234567",
        "15551234567",
        "+1 555 123 4567",
        "+1-555-123-4567",
        "+1 (555) 123-4567",
        "1 (555) 123-4567",
        "+1.555.123.4567",
        "  +15551234567  ",
        "+1 555/123 4567",
    ],
)
def test_parse_accepts_e164_with_or_without_plus_and_separators(text):
    assert phone.parse(text) == Number(e164="+15551234567", region="US", known=False, formatted="+1 555-123-4567")


def test_parse_known_number_in_france():
    france = Number(e164="+33612345678", region="FR", known=True, formatted="+33 6 12 34 56 78")
    assert phone.parse("+33612345678") == france
    assert phone.parse("33 6 12 34 56 78") == france  # without a region (the caller ID): always E.164


def test_parse_555_example_is_not_known():
    assert phone.parse("+15551234567").known is False


@pytest.mark.parametrize("text", ["+18765551234", "+1 876 555 1234", "1 (876) 555-1234"])
def test_region_for_plus_1_876_is_jamaica(text):
    assert phone.parse(text) == Number(e164="+18765551234", region="JM", known=True, formatted="+1 876-555-1234")


def test_region_for_plus_1_555_is_the_us():
    assert phone.parse("+15551234567").region == "US"


def test_region_of_a_london_number():
    assert phone.parse("+44 20 7946 0958") == Number(
        e164="+442079460958", region="GB", known=True, formatted="+44 20 7946 0958"
    )


# --- errors: exact messages ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "   \t  "])
def test_empty(text):
    assert error_of(text).message == f"the number is empty: {HINT}"


def test_empty_names_what_it_parses():
    assert error_of("", "SIGNALWIRE_NUMBER").message == f"SIGNALWIRE_NUMBER is empty: {HINT}"


@pytest.mark.parametrize("text", ["abc", "+1555abc1234", "+1 555 CALL NOW", "tel:+15551234567"])
def test_letters(text):
    assert error_of(text).message == f"the number {text!r} contains letters: {HINT}"


def test_letters_message_names_what_it_parses():
    assert error_of("PT123", "SIGNALWIRE_NUMBER").message == f"SIGNALWIRE_NUMBER 'PT123' contains letters: {HINT}"


@pytest.mark.parametrize("text", ["+1+5551234567", "1+5551234567", "++15551234567", "+1555123456+"])
def test_plus_inside(text):
    assert error_of(text).message == f"the number {text!r} has a '+' inside it: only a leading '+' is allowed"


@pytest.mark.parametrize("text", ["+", "()", "+ ( ) -"])
def test_no_digits(text):
    assert error_of(text).message == f"the number {text!r} has no digits: {HINT}"


@pytest.mark.parametrize("text", ["+12345", "+1 555", "+1 555 123"])
def test_too_short(text):
    assert error_of(text).message == f"the number {text!r} is too short for its country (+1)"


@pytest.mark.parametrize(("text", "cc"), [("+1 555 123 4567 890", "1"), ("+33 6 12 34 56 78 9", "33")])
def test_too_long(text, cc):
    assert error_of(text).message == f"the number {text!r} is too long for its country (+{cc})"


@pytest.mark.parametrize("text", ["+1555123456789012", "1234567890123456"])
def test_more_than_15_digits_is_never_e164(text):
    assert error_of(text).message == f"the number {text!r} is too long: E.164 numbers have at most 15 digits"


@pytest.mark.parametrize("text", ["+999123456789", "+0123456789", "+2801234567", "0123456789"])
def test_unknown_country_code(text):
    assert error_of(text).message == (
        f"the number {text!r} does not start with a known country calling code "
        "(E.164: '+', country code, number; e.g. +15551234567)"
    )


@pytest.mark.parametrize("text", ["+1", "+7", "+44"])
def test_a_bare_known_country_code_is_not_called_unknown(text):
    # +1, +7 and +44 are country calling codes; the number is too short, not of an unknown country.
    message = error_of(text).message
    assert message.startswith(f"the number {text!r} ")
    assert "known country calling code" not in message
    assert "too short" in message


def test_over_long_input_is_truncated_in_the_message():
    text = "x" * 50
    assert error_of(text).message == f"the number '{'x' * 40}…' contains letters: {HINT}"


def test_over_long_message_keeps_the_first_40_characters():
    text = "+1 555 CALL ME " * 5
    assert error_of(text).message == f"the number {text[:40] + '…'!r} contains letters: {HINT}"


@pytest.mark.parametrize("text", ["1" * 41, "+" + "5" * 60, "+1" + " " * 40 + "5551234567"])
def test_over_long_digits_are_not_called_non_digits(text):
    # Only digits (and spaces) here: the message must say the input is too long, not that it
    # contains characters that are not digits. It is truncated like every over-long input.
    message = error_of(text).message
    assert message.startswith(f"the number {text.strip()[:40] + '…'!r} ")
    assert "not digits" not in message
    assert "letters" not in message
    assert "too long" in message


# --- hostile input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\x00", f"the number '\\x00' contains characters that are not digits: {HINT}"),
        ("+1555\x001234567", f"the number '+1555\\x001234567' contains characters that are not digits: {HINT}"),
        ("+1555\x1b1234567", f"the number '+1555\\x1b1234567' contains characters that are not digits: {HINT}"),
        ("$(rm -rf /)", f"the number '$(rm -rf /)' contains letters: {HINT}"),
        ("`id`", f"the number '`id`' contains letters: {HINT}"),
        ("+15551234567; rm -rf /", f"the number '+15551234567; rm -rf /' contains letters: {HINT}"),
        ("１５５５１２３４５６７", f"the number '１５５５１２３４５６７' contains characters that are not digits: {HINT}"),
        ("+1555\u202e1234567", f"the number '+1555\\u202e1234567' contains characters that are not digits: {HINT}"),
    ],
)
def test_hostile_input(text, message):
    assert error_of(text).message == message


@pytest.mark.parametrize("control", ["\n", "\r", "\x0b", "\x1c", "\x85"])
def test_control_characters_inside_a_number_are_refused(control):
    # A number with a newline or another control character inside is not what a person typed
    # as a phone number (and could forge a second log line): refused like '\x00'.
    text = f"+1555{control}1234567"
    assert error_of(text).message == f"the number {text!r} contains characters that are not digits: {HINT}"


def test_10_kb_of_letters():
    text = "a" * 10240
    assert error_of(text).message == f"the number '{'a' * 40}…' contains letters: {HINT}"


def test_10_kb_of_nul_bytes():
    text = "\x00" * 10240
    shown = repr("\x00" * 40 + "…")
    assert shown == "'" + "\\x00" * 40 + "…'"
    assert error_of(text).message == f"the number {shown} contains characters that are not digits: {HINT}"


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_any_text_gives_a_number_or_a_one_line_config_error(text):
    try:
        number = phone.parse(text)
    except ConfigError as exc:
        assert exc.exit_code == 2
        assert "\n" not in exc.message and "\r" not in exc.message
        assert len(exc.message) < 400
    else:
        assert re.fullmatch(r"\+[1-9][0-9]{6,14}", number.e164)
        assert re.fullmatch(r"[A-Z0-9]{2,3}", number.region)


# --- quick_e164 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["+15551234567", "+12125551234", "+19995551234"])
def test_quick_e164_accepts_north_american_e164(text):
    assert phone.quick_e164(text) == text


@pytest.mark.parametrize(
    "text",
    ["15551234567", "+123456", "+1234567890123456", "+0155512345", "+1 555 123 4567", " +15551234567",
     "+15551234567\n", "+1555123456７", "", "+",
     # E.164 forms that phonenumbers rewrites: they must take the same path as in `send`
     "+4402012345678", "+115551234567", "+10555123456", "+33612345678", "+1234567"],
)
def test_quick_e164_refuses_anything_else(text):
    assert phone.quick_e164(text) is None


def test_quick_e164_agrees_with_parse_on_a_real_number():
    assert phone.quick_e164("+15551234567") == phone.parse("+15551234567").e164


@settings(max_examples=500)
@given(st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True))
def test_quick_e164_agrees_with_parse_on_every_number_it_takes(text):
    # verify's fast path and send's parse must store and look up the very same E.164.
    assert phone.quick_e164(text) == phone.parse(text).e164 == phone.parse(text, region=US).e164


@pytest.mark.parametrize(("text", "e164"), [("+4402012345678", "+442012345678"), ("+115551234567", "+15551234567")])
def test_e164_with_a_trunk_prefix_is_normalised_the_same_everywhere(text, e164):
    assert phone.parse(text).e164 == phone.parse(text, region=US).e164 == e164


# --- national numbers: the default region ------------------------------------------------------

US = lambda: Region("US", "SIGNALWIRE_NUMBER")  # noqa: E731


def region(code: str, source: str | None = "SIGNALWIRE_NUMBER"):
    return lambda: Region(code, source)


@pytest.mark.parametrize(
    ("text", "code", "e164"),
    [
        ("5551234567", "US", "+15551234567"),  # once +55 (Brazil)
        ("(555) 123-4567", "US", "+15551234567"),
        ("555.123.4567", "US", "+15551234567"),
        ("2125551234", "US", "+12125551234"),  # once "too short for its country (+212)"
        ("1 212 555 1234", "US", "+12125551234"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("0113 496 0000", "GB", "+441134960000"),  # Leeds: 011 is not an international prefix in the UK
        ("06 12 34 56 78", "FR", "+33612345678"),
    ],
)
def test_a_number_without_a_country_code_is_national_to_the_default_region(text, code, e164):
    number = phone.parse(text, region=region(code))
    assert (number.e164, number.national) == (e164, Region(code, "SIGNALWIRE_NUMBER"))


@pytest.mark.parametrize(
    ("text", "code", "e164"),
    [
        ("+33 6 12 34 56 78", "US", "+33612345678"),
        ("0033 6 12 34 56 78", "US", "+33612345678"),
        ("00 44 20 7946 0958", "FR", "+442079460958"),
        ("011 33 6 12 34 56 78", "US", "+33612345678"),
        ("011 44 20 7946 0958", "CA", "+442079460958"),
        ("0011 33 6 12 34 56 78", "AU", "+33612345678"),  # the region's own international prefix
    ],
)
def test_plus_00_and_the_international_prefix_mean_international(text, code, e164):
    number = phone.parse(text, region=region(code))
    assert (number.e164, number.national) == (e164, None)


def test_the_region_is_not_asked_for_when_the_number_has_a_plus():
    def no_region():
        raise AssertionError("asked for the default region")

    assert phone.parse("+33612345678", region=no_region).e164 == "+33612345678"


def test_the_timeline_text_is_the_formatted_number_and_its_country():
    assert phone.parse("5551234567", region=US).described == "+1 555-123-4567, United States"
    assert phone.parse("+33612345678").described == "+33 6 12 34 56 78, France"


def test_a_national_number_that_is_another_countrys_too_says_so():
    number = phone.parse("5551234567", region=US)
    assert number.elsewhere == "+55 51234567 (Brazil)"
    assert number.note == (
        "no country code: read as dialed in United States (US, the caller ID's country); "
        "for +55 51234567 (Brazil), write it with + and its country code"
    )
    assert phone.parse("2125551234", region=US).note == (
        "no country code: read as dialed in United States (US, the caller ID's country)"
    )


def test_an_international_number_has_no_note():
    assert phone.parse("+15551234567", region=US).note is None


@pytest.mark.parametrize(
    ("text", "code", "source", "message"),
    [
        ("15551234567", "GB", "SIGNALWIRE_NUMBER",
         "the number '15551234567' has no country code and is too long for United Kingdom (GB, the caller ID's "
         "country): did you mean +1 555-123-4567 (United States)? Write it with + and its country code, or set "
         "VOICE2FA_DEFAULT_REGION to its country"),
        ("33612345678", "US", None,
         "the number '33612345678' has no country code and is too long for United States (US, the default): did "
         "you mean +33 6 12 34 56 78 (France)? Write it with + and its country code, or set VOICE2FA_DEFAULT_REGION "
         "to its country"),
        ("123", "FR", "VOICE2FA_DEFAULT_REGION",
         "the number '123' has no country code and is too short for France (FR, from VOICE2FA_DEFAULT_REGION): "
         "write it with + and its country code, or set VOICE2FA_DEFAULT_REGION to its country"),
    ],
)
def test_errors_for_a_national_number_name_the_region_assumed_and_the_way_out(text, code, source, message):
    with pytest.raises(ConfigError) as info:
        phone.parse(text, region=region(code, source))
    assert info.value.message == message


@settings(max_examples=300)
@given(st.text(alphabet="0123456789+ ()-", max_size=30))
def test_any_national_text_gives_a_number_or_a_one_line_config_error(text):
    try:
        number = phone.parse(text, region=US)
    except ConfigError as exc:
        assert "\n" not in exc.message and len(exc.message) < 400
    else:
        assert re.fullmatch(r"\+[1-9][0-9]{6,14}", number.e164)


# --- shown --------------------------------------------------------------------------------------


def test_shown_quotes_and_truncates():
    assert phone.shown("abc") == "'abc'"
    assert phone.shown("y" * 40) == repr("y" * 40)
    assert phone.shown("y" * 41) == repr("y" * 40 + "…")


# --- through the CLI: send dials, and verify finds, the same E.164 ----------------------------------------

from tests.helpers import run_cli  # noqa: E402


def _verify_env(cli_env: dict) -> dict:
    env = {k: v for k, v in cli_env.items() if not k.startswith("SIGNALWIRE_")}
    env.pop("VOICE2FA_PUBLIC_URL")
    return env


def test_a_national_number_is_dialed_in_the_caller_ids_country_and_verified_as_typed(sandbox, cli_env):
    result = run_cli(["send", "(555) 123-4567", "--no-prompt", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    assert [c.to for c in sandbox.calls.values()] == ["+15551234567"]  # not +55 (Brazil)
    assert json.loads(result.stdout)["number"] == "+15551234567"
    lines = result.stderr.splitlines()
    assert any(line.endswith("calling +1 555-123-4567, United States") for line in lines), result.stderr
    note = ("no country code: read as dialed in United States (US, the caller ID's country); "
            "for +55 51234567 (Brazil), write it with + and its country code")
    assert any(line.endswith(note) for line in lines), result.stderr
    code = sandbox.heard_code()
    # verify needs no SIGNALWIRE_*: without the caller ID, US is the default too
    ok = run_cli(["verify", "555-123-4567", "--json"], _verify_env(cli_env), input=code + "\n")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["number"] == "+15551234567"


def test_send_and_verify_agree_in_another_default_region(sandbox, cli_env):
    cli_env.update(VOICE2FA_DEFAULT_REGION="GB", VOICE2FA_ALLOWED_COUNTRIES="GB")
    result = run_cli(["send", "020 7946 0958", "--no-prompt"], cli_env)
    assert result.returncode == 0, result.stderr
    assert [c.to for c in sandbox.calls.values()] == ["+442079460958"]
    assert "calling +44 20 7946 0958, United Kingdom" in result.stderr
    code = sandbox.heard_code()
    wrong_region = run_cli(["verify", "020 7946 0958"], _verify_env(cli_env) | {"VOICE2FA_DEFAULT_REGION": ""},
                           input=code + "\n")
    assert wrong_region.returncode == 2  # read in the US, 0… is no number: nothing checked, no attempt counted
    ok = run_cli(["verify", "020 7946 0958"], _verify_env(cli_env), input=code + "\n")
    assert ok.returncode == 0, ok.stderr


def test_verify_takes_the_default_region_from_the_caller_id_like_send(cli_env):
    from tests.helpers import ThreadedSandbox

    uk = ThreadedSandbox(caller="+447700900123")  # a project whose caller ID is British
    try:
        cli_env.update(SIGNALWIRE_SPACE=uk.url, SIGNALWIRE_PROJECT=uk.project, SIGNALWIRE_TOKEN=uk.token,
                       SIGNALWIRE_SIGNING_KEY=uk.signing_key, SIGNALWIRE_NUMBER="+447700900123")
        result = run_cli(["send", "020 7946 0958", "--no-prompt"], cli_env)
        assert result.returncode == 0, result.stderr
        assert [c.to for c in uk.calls.values()] == ["+442079460958"]
        code = uk.heard_code()
    finally:
        uk.stop()
    env = {k: v for k, v in cli_env.items() if k != "VOICE2FA_PUBLIC_URL"}  # SIGNALWIRE_NUMBER present
    ok = run_cli(["verify", "020 7946 0958", "--code", code], env)
    assert ok.returncode == 0, ok.stderr
    again = run_cli(["verify", "+44 20 7946 0958", "--code", code], env)
    assert (again.returncode, again.stderr.splitlines()[-1]) == (1, "error: this code was already used: send a new one")


def test_an_e164_number_with_a_trunk_zero_is_the_same_session_in_send_and_verify(sandbox, cli_env):
    cli_env.update(VOICE2FA_ALLOWED_COUNTRIES="GB")
    result = run_cli(["send", "+4402079460958", "--no-prompt"], cli_env)
    assert result.returncode == 0, result.stderr
    assert [c.to for c in sandbox.calls.values()] == ["+442079460958"]
    ok = run_cli(["verify", "+4402079460958", "--code", sandbox.heard_code()], _verify_env(cli_env))
    assert ok.returncode == 0, ok.stderr


def test_the_sandbox_reads_national_numbers_in_the_us(state_dir):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(state_dir), NO_COLOR="1")
    result = run_cli(["send", "--sandbox", "5551234567", "--no-prompt", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["number"] == "+15551234567"
    assert "calling +1 555-123-4567, United States" in result.stderr


def test_a_national_number_refused_by_country_names_the_region_assumed(sandbox, cli_env):
    cli_env.update(VOICE2FA_DEFAULT_REGION="FR")
    result = run_cli(["send", "06 12 34 56 78"], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        5, "error: calls to FR (+33612345678) are not allowed: VOICE2FA_ALLOWED_COUNTRIES is US; add FR to allow "
           "them (it has no country code and was read as dialed in France (FR, from VOICE2FA_DEFAULT_REGION): write "
           "it with + and its country code, or set VOICE2FA_DEFAULT_REGION)"
    )
    assert sandbox.calls == {}


def test_a_national_number_that_is_no_number_there_exits_2_with_the_way_out(sandbox, cli_env):
    result = run_cli(["send", "33612345678"], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, "error: the number '33612345678' has no country code and is too long for United States (US, the caller "
           "ID's country): did you mean +33 6 12 34 56 78 (France)? Write it with + and its country code, or set "
           "VOICE2FA_DEFAULT_REGION to its country"
    )
    assert sandbox.requests == []


def test_a_number_shorter_than_seven_digits_is_too_short():
    """Found by the property test above: phonenumbers calls +49 0000 possible."""
    with pytest.raises(ConfigError) as info:
        phone.parse("+490000", region=US)
    assert "too short" in info.value.message
