"""serve against Twilio's spec, point by point (tests/fixtures/twilio_verify_v2.json): every
parameter of the served operations checked by its spec type, pattern and enum; the Locale values
Twilio documents; the answers against the spec's response schemas."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from tests import twilio_spec
from tests.helpers import NUMBER
from tests.serve_helpers import basic, client_for, env, server, setup, twilio_error, verify  # noqa: F401
from voice2fa_cli.serve import locales, params
from voice2fa_cli.serve.core import SPOKEN_LOCALES

README = Path(__file__).parent.parent / "README.md"
CREATE_PATH = "/v2/Services/{ServiceSid}/Verifications"
UPDATE_PATH = "/v2/Services/{ServiceSid}/Verifications/{Sid}"
CHECK_PATH = "/v2/Services/{ServiceSid}/VerificationCheck"
TABLES = [(CREATE_PATH, params.CREATE), (UPDATE_PATH, params.UPDATE), (CHECK_PATH, params.CHECK),
          ("/v2/Services", params.SERVICE), ("/v2/Services/{Sid}", params.SERVICE)]


def spec_rule(schema: dict) -> tuple:
    kind = schema.get("type", "object")  # the spec's untyped `{}` (RateLimits, ChannelConfiguration): an object
    return kind, schema.get("pattern"), tuple(schema["enum"]) if "enum" in schema else None


@pytest.mark.parametrize(("path", "table"), TABLES, ids=[p for p, _ in TABLES])
def test_every_parameter_of_the_spec_has_its_rule(path, table):
    spec = twilio_spec.body_parameters(path)
    assert list(table) == list(spec)  # the same parameters, in the spec's order
    for name, schema in spec.items():
        rule = table[name]
        assert (rule.type, rule.pattern, rule.enum) == spec_rule(schema), name
        if path != "/v2/Services/{Sid}" and path != "/v2/Services":
            assert rule.required == schema["required"], name


@pytest.mark.parametrize(("path", "table"), [("/v2/Attempts", params.ATTEMPTS),
                                             ("/v2/Attempts/Summary", params.SUMMARY)])
def test_every_query_parameter_of_the_spec_has_its_rule(path, table):
    spec = twilio_spec.query_parameters(path)
    assert list(table) == list(spec)
    for name, schema in spec.items():
        assert (table[name].pattern, table[name].enum) == (schema.get("pattern"), tuple(schema["enum"])
                                                          if "enum" in schema else None), name


def bad_values() -> list[tuple[str, str, str]]:
    """(parameter, a value its spec refuses, the message's end) for each typed create parameter."""
    cases = []
    for name, schema in twilio_spec.body_parameters(CREATE_PATH).items():
        kind, pattern, enum = spec_rule(schema)
        if kind == "boolean":
            cases.append((name, "maybe", "true or false"))
        elif kind == "object":
            cases.append((name, "[1, 2]", "a JSON object"))
        elif pattern is not None:
            cases.append((name, pattern[1:3] + "123", f"{pattern[1:3]} followed by 32 hexadecimal digits"))
        elif enum is not None:
            cases.append((name, "sometimes", " or ".join([", ".join(enum[:-1]), enum[-1]])))
    cases.append(("DeviceIp", "not-an-ip", "an IPv4 or IPv6 address"))
    for to in ("+1 (555) 123-9998", "+1-555-123-9998", "+0155512345", "+1555123456789012", "+1555\u0661234567"):
        cases.append(("To", to, "a phone number in E.164 format (a + and 2 to 15 digits, no spaces), "
                                "such as +15017122661"))
    return cases


async def post(server, setup, path: str, fields: dict) -> tuple[int, dict]:
    service, key, secret = setup
    async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
        async with http.post(f"{server.api_url}/v2/Services/{service.sid}{path}", data=fields) as r:
            return r.status, await r.json()


def test_the_issues_examples_are_among_the_refused_values():
    names = {(name, value) for name, value, _ in bad_values()}
    assert {("TemplateSid", "HJ123"), ("EnableSnaClientToken", "maybe"), ("RiskCheck", "sometimes"),
            ("DeviceIp", "not-an-ip"), ("To", "+1 (555) 123-9998")} <= names


@pytest.mark.parametrize(("name", "value", "why"), bad_values())
def test_a_value_its_spec_refuses_is_60200_naming_it_and_nothing_is_dialed(server, setup, name, value, why):
    fields = {"To": NUMBER, "Channel": "call", name: value}
    status, body = asyncio.run(post(server, setup, "/Verifications", fields))
    assert (status, body["code"]) == (400, 60200)
    assert body["message"] == f"Invalid parameter `{name}`: {why}"
    assert server.serving.sandbox.calls == {}


def test_valid_parameters_serve_does_not_act_on_are_accepted(server, setup):
    ignored = {"SendDigits": "1234", "Amount": "10.00", "Payee": "Acme", "RateLimits": '{"my_limit": "1"}',
               "ChannelConfiguration": "{}", "AppHash": "abc", "TemplateSid": "HJ" + "0" * 32,
               "TemplateCustomSubstitutions": '{"name": "x"}', "DeviceIp": "2001:db8::1",
               "EnableSnaClientToken": "true", "RiskCheck": "disable", "Tags": '{"id": "1"}'}
    assert set(ignored) == set(params.IGNORED["CREATE"])
    status, body = asyncio.run(post(server, setup, "/Verifications", {"To": NUMBER, "Channel": "call", **ignored}))
    assert (status, body["status"]) == (201, "pending")
    status, body = asyncio.run(post(server, setup, "/VerificationCheck",
                                    {"To": NUMBER, "Code": "000000", "Amount": "1", "Payee": "x",
                                     "SnaClientToken": "t"}))
    assert (status, body["status"]) == (200, "pending")


def test_the_readme_lists_the_ignored_parameters():
    text = README.read_text()
    for group in params.IGNORED.values():
        for name in group:
            assert f"`{name}`" in text, name


@pytest.mark.parametrize(("locale", "language"), [
    ("en", "en-US"), ("en-GB", "en-GB"), ("fr", "fr-FR"), ("de", "de-DE"), ("es", "es-ES"), ("it", "it-IT"),
    ("FR", "fr-FR"), ("en-gb", "en-GB"), ("fr-FR", "fr-FR"), ("en-AU", "en-AU"),
])
def test_twilios_locales_the_call_speaks_are_accepted_and_spoken(server, setup, locale, language):
    status, body = asyncio.run(post(server, setup, "/Verifications", {"To": NUMBER, "Channel": "call",
                                                                     "Locale": locale}))
    assert status == 201, body
    server.heard()
    documents = b"".join(d for call in server.serving.sandbox.calls.values() for d in call.documents).decode()
    assert set(re.findall(r'language="([^"]+)"', documents)) == {language}


UNSPOKEN = [tag for tag in locales.TWILIO_LOCALES if tag not in SPOKEN_LOCALES]


@pytest.mark.parametrize("locale", [*UNSPOKEN, "pt_BR", "xx", "en-ZZ"])
def test_a_locale_the_call_cannot_speak_is_404_as_twilio_documents_and_nothing_is_dialed(server, setup, locale):
    status, body = asyncio.run(post(server, setup, "/Verifications", {"To": NUMBER, "Channel": "call",
                                                                     "Locale": locale}))
    assert (status, body["code"]) == (404, 20404)
    assert body["message"].startswith(f"Locale `{locale}` is not supported by this server's calls: retry without "
                                      "Locale (the call then speaks the language of the number's country, or English)")
    assert server.serving.sandbox.calls == {}


@pytest.mark.parametrize("locale", ["<b>", "en US", "e", "en-"])
def test_a_locale_that_is_no_language_tag_is_60200(server, setup, locale):
    status, body = asyncio.run(post(server, setup, "/Verifications", {"To": NUMBER, "Channel": "call",
                                                                     "Locale": locale}))
    assert (status, body["code"], body["message"]) == (
        400, 60200, "Invalid parameter `Locale`: a language tag such as en, fr or pt-BR")


def test_the_readme_lists_twilios_locales_and_which_are_spoken():
    text = README.read_text()
    section = text[text.index("#### Locale"):]
    section = section[:section.index("\n#")]
    for tag in locales.TWILIO_LOCALES:
        assert re.search(rf"`{re.escape(tag)}`", section), tag
    for tag in SPOKEN_LOCALES:
        assert f"`{tag}`" in section, tag


def test_answers_match_the_specs_response_schemas(server, verify, setup):
    created = verify.verifications.create(to=NUMBER, channel="call")
    raw = {}

    async def go():
        service, key, secret = setup
        async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
            base = f"{server.api_url}/v2/Services/{service.sid}"
            async with http.get(f"{base}/Verifications/{created.sid}") as r:
                raw["fetch"] = (r.status, await r.json())
            async with http.post(f"{base}/VerificationCheck", data={"To": NUMBER, "Code": "000000"}) as r:
                raw["check"] = (r.status, await r.json())
            async with http.post(f"{base}/Verifications/{created.sid}", data={"Status": "canceled"}) as r:
                raw["update"] = (r.status, await r.json())
            async with http.post(f"{base}/Verifications", data={"To": NUMBER, "Channel": "call"}) as r:
                raw["create"] = (r.status, await r.json())

    asyncio.run(go())
    for name, path, method in [("fetch", UPDATE_PATH, "get"), ("check", CHECK_PATH, "post"),
                               ("update", UPDATE_PATH, "post"), ("create", CREATE_PATH, "post")]:
        status, body = raw[name]
        twilio_spec.response_validator(path, method, status).validate(body)
