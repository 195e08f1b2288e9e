"""Premium-rate and other revenue-sharing numbers are never called (issue 18, item 4): `send`,
`send --sandbox` and serve refuse them before dialing unless the operator allows their type."""

from __future__ import annotations

import os

import pytest

from tests.helpers import run_cli
from voice2fa_cli import config, phone, policy
from voice2fa_cli.errors import ConfigError, Problem

REFUSED = {
    "+19005551234": "premium-rate",  # NANP 900: phonenumbers' PREMIUM_RATE
    "+19765551234": "premium-rate",  # NANP 976: phonenumbers says unknown; the historical premium code
    "+448712345678": "premium-rate",  # UK 087
    "+33891234567": "premium-rate",  # France 089
    "+447031234567": "personal-number",  # UK 070
}
CALLED = {
    "+12025550123": "fixed-line-or-mobile",
    "+18005551234": "toll-free",
    "+4915212345678": "mobile",
    "+15551234567": "unknown",  # the examples' +1 555 numbers: not assigned, still called (the sandbox's)
}


def message(number: str, kind: str) -> str:
    return (f"{number} is {policy.REVENUE_SHARING[kind]}: voice2fa does not call numbers that charge the "
            f"caller extra (toll fraud); set VOICE2FA_ALLOW_NUMBER_TYPES={kind} to allow them")


@pytest.mark.parametrize(("number", "kind"), [*REFUSED.items(), *CALLED.items()])
def test_each_number_has_its_type(number, kind):
    assert phone.parse(number).kind == kind


@pytest.mark.parametrize(("number", "kind"), REFUSED.items())
def test_a_revenue_sharing_number_is_refused_unless_its_type_is_allowed(number, kind):
    refused = policy.number_type_refusal(phone.parse(number))
    assert refused is not None and refused.kind is Problem.NUMBER_TYPE and refused.message == message(number, kind)
    assert policy.number_type_refusal(phone.parse(number), frozenset({kind})) is None


@pytest.mark.parametrize("number", CALLED)
def test_other_numbers_are_not_refused_for_their_type(number):
    assert policy.number_type_refusal(phone.parse(number)) is None


def test_the_setting_takes_only_revenue_sharing_types():
    assert config.allowed_number_types({}) == frozenset()
    assert config.allowed_number_types({"VOICE2FA_ALLOW_NUMBER_TYPES": "Premium-Rate, uan"}) == {"premium-rate", "uan"}
    with pytest.raises(ConfigError) as info:
        config.allowed_number_types({"VOICE2FA_ALLOW_NUMBER_TYPES": "mobile,toll-free"})
    assert info.value.message == ("VOICE2FA_ALLOW_NUMBER_TYPES lists 'mobile', 'toll-free': give one or more of "
                                  "personal-number, premium-rate, shared-cost, uan")


@pytest.mark.parametrize("number", ["+19005551234", "+19765551234"])
def test_send_refuses_before_dialing(cli_env, sandbox, number):
    result = run_cli(["send", number], {**cli_env, "VOICE2FA_ALLOWED_COUNTRIES": "US"})
    assert result.returncode == 5
    assert result.stderr.splitlines()[-1] == "error: " + message(number, "premium-rate")
    assert sandbox.calls == {}


@pytest.mark.parametrize(("number", "kind"), REFUSED.items())
def test_send_sandbox_refuses_the_same_way(state_dir, number, kind):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(state_dir), NO_COLOR="1")
    result = run_cli(["send", "--sandbox", number], env)
    assert result.returncode == 5
    assert result.stderr.splitlines()[-1] == "error: " + message(number, kind)


def test_an_allowed_type_is_called(cli_env, sandbox):
    env = {**cli_env, "VOICE2FA_ALLOWED_COUNTRIES": "US", "VOICE2FA_ALLOW_NUMBER_TYPES": "premium-rate"}
    result = run_cli(["send", "+19005551234", "--json"], env, input="\n")
    assert result.returncode != 5, result.stderr
    assert [call.to for call in sandbox.calls.values()] == ["+19005551234"]
