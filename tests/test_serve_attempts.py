"""serve's Verification Attempts API (/v2/Attempts, /v2/Attempts/{sid}, /v2/Attempts/Summary),
driven by the official `twilio` SDK against serve --sandbox: each call's outcome, the conversion,
the filters, who sees what, and the answers against the spec's response schemas."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from tests import twilio_spec
from tests.helpers import NUMBER
from tests.serve_helpers import ServeThread, basic, client_for, env, server, setup, twilio_error, verify  # noqa: F401
from voice2fa_cli.sandbox import Scenario
from voice2fa_cli.serve import records
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec

OTHER = "+15551230002"


@pytest.fixture
def v2(server, setup):
    _, key, secret = setup
    return client_for(server, key.sid, secret).verify.v2


def ended(server, v2, count: int, timeout: float = 20.0) -> list:
    """The attempts, once `count` of them have a final call status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = v2.verification_attempts.list()
        if len(found) >= count and all(a.channel_data["call_status"] not in ("initiated", None) for a in found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} ended attempts")


async def raw(server, setup, path: str) -> tuple[int, dict]:
    _, key, secret = setup
    async with aiohttp.ClientSession(headers=basic(key.sid, secret)) as http:
        async with http.get(f"{server.api_url}{path}") as r:
            return r.status, await r.json()


def test_an_attempt_records_the_call_and_becomes_converted_when_the_code_is_approved(server, verify, v2, setup,
                                                                                   state_dir):
    service = setup[0]
    created = verify.verifications.create(to=NUMBER, channel="call")
    code = server.heard()
    [attempt] = ended(server, v2, 1)
    assert attempt.sid == created.send_code_attempts[0]["attempt_sid"]
    assert (attempt.service_sid, attempt.verification_sid, attempt.channel, attempt.conversion_status) == (
        service.sid, created.sid, "call", "unconverted")
    data = attempt.channel_data
    assert (data["to"], data["status"], data["call_status"], data["duration"], data["code_delivered"],
            data["error"], data["country"], data["code_length"], data["locale"]) == (
        NUMBER, "unconfirmed", "completed", 38, True, None, "US", 6, "en-US")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", data["call_sid"])  # SignalWire's
    assert verify.verification_checks.create(to=NUMBER, code=code).status == "approved"
    fetched = v2.verification_attempts(attempt.sid).fetch()
    assert (fetched.conversion_status, fetched.channel_data["status"]) == ("converted", "confirmed")
    assert fetched.url == f"{server.api_url}/v2/Attempts/{attempt.sid}"
    with open_store(StoreSpec(state_dir=state_dir), sandbox=True) as store:  # what the store holds: never the code
        body = store.get_record(records.ATTEMPT, attempt.sid)
    assert body["conversion"] == "converted" and code not in repr(body)


def test_a_busy_call_is_an_undelivered_attempt_and_the_summary_counts_conversions(server, verify, v2):
    verify.verifications.create(to=NUMBER, channel="call")
    assert verify.verification_checks.create(to=NUMBER, code=server.heard()).status == "approved"
    server.serving.sandbox.scenario = Scenario(outcome="busy")
    verify.verifications.create(to=OTHER, channel="call")
    attempts = ended(server, v2, 2)
    busy = next(a for a in attempts if a.channel_data["to"] == OTHER)
    assert (busy.channel_data["call_status"], busy.channel_data["code_delivered"], busy.conversion_status) == (
        "busy", False, "unconverted")
    assert busy.channel_data["error"]  # why the code was not delivered, in words
    summary = v2.verification_attempts_summary().fetch()
    assert (summary.total_attempts, summary.total_converted, summary.total_unconverted,
            summary.conversion_rate_percentage) == (2, 1, 1, "50.0")
    assert v2.verification_attempts_summary().fetch(destination_prefix="+1555123000").total_attempts == 1
    assert v2.verification_attempts_summary().fetch(country="FR").conversion_rate_percentage is None
    assert [a.sid for a in v2.verification_attempts.list(status="unconverted")] == [busy.sid]
    assert [a.sid for a in v2.verification_attempts.list(channel_data_to=OTHER)] == [busy.sid]
    assert v2.verification_attempts.list(channel="sms") == []
    later = datetime.now(timezone.utc) + timedelta(minutes=1)
    assert v2.verification_attempts.list(date_created_after=later) == []
    assert len(v2.verification_attempts.list(date_created_before=later)) == 2


def test_a_resend_is_a_second_attempt_and_only_the_call_whose_code_was_given_converts(server, verify, v2):
    created = verify.verifications.create(to=NUMBER, channel="call")
    server.heard()
    server.settle()
    resent = verify.verifications.create(to=NUMBER, channel="call")
    assert resent.sid == created.sid and len(resent.send_code_attempts) == 2
    assert verify.verification_checks.create(to=NUMBER, code=server.heard(2)).status == "approved"
    attempts = ended(server, v2, 2)
    by_sid = {a.sid: a.conversion_status for a in v2.verification_attempts.list(verification_sid=created.sid)}
    assert by_sid == {resent.send_code_attempts[0]["attempt_sid"]: "unconverted",
                      resent.send_code_attempts[1]["attempt_sid"]: "converted"}
    assert [a.sid for a in attempts] == [resent.send_code_attempts[1]["attempt_sid"],
                                         resent.send_code_attempts[0]["attempt_sid"]]  # newest first


def test_a_canceled_verification_leaves_a_canceled_unconverted_attempt(server, verify, v2):
    server.serving.sandbox.scenario = Scenario(outcome="hold")
    created = verify.verifications.create(to=NUMBER, channel="call")
    verify.verifications(created.sid).update(status="canceled")
    server.settle()
    [attempt] = ended(server, v2, 1)
    assert (attempt.channel_data["call_status"], attempt.channel_data["code_delivered"],
            attempt.conversion_status) == ("canceled", False, "unconverted")


def test_a_scoped_key_sees_only_its_services_attempts(server, verify, v2, state_dir):
    verify.verifications.create(to=NUMBER, channel="call")
    [attempt] = ended(server, v2, 1)
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        other = records.create_service(store, "Other", records.ServiceOptions())
        key, secret = records.create_key(store, "other", (other.sid,))
    scoped = client_for(server, key.sid, secret).verify.v2
    assert scoped.verification_attempts.list() == []
    assert scoped.verification_attempts_summary().fetch().total_attempts == 0
    err = twilio_error(lambda: scoped.verification_attempts(attempt.sid).fetch())
    assert (err.status, err.code, err.msg) == (
        404, 20404, f"Unable to fetch record: The requested resource /Attempts/{attempt.sid} was not found")


@pytest.mark.parametrize(("query", "message"), [
    ("Channel=fax", "Invalid parameter `Channel`: sms, call, email, whatsapp or rbm"),
    ("Status=CONVERTED", "Invalid parameter `Status`: converted or unconverted"),
    ("DateCreatedAfter=yesterday",
     "Invalid parameter `DateCreatedAfter`: a date and time in ISO 8601, such as 2026-12-01T00:00:00Z"),
    ("VerifyServiceSid=VA123", "Invalid parameter `VerifyServiceSid`"),
    ("PageSize=0", "Invalid parameter `PageSize`: from 1 to 1000"),
])
def test_a_list_filter_that_breaks_the_spec_is_60200(server, setup, query, message):
    status, body = asyncio.run(raw(server, setup, f"/v2/Attempts?{query}"))
    assert (status, body["code"]) == (400, 60200)
    assert body["message"].startswith(message), body["message"]


def test_a_summary_filter_that_breaks_the_spec_is_60200_and_an_unknown_attempt_404(server, setup):
    status, body = asyncio.run(raw(server, setup, "/v2/Attempts/Summary?Country=usa"))
    assert (status, body["code"], body["message"]) == (
        400, 60200, "Invalid parameter `Country`: an ISO 3166-1 alpha-2 country code, such as US")
    for sid in ("VL" + "0" * 32, "nope"):
        status, body = asyncio.run(raw(server, setup, f"/v2/Attempts/{sid}"))
        assert (status, body["code"]) == (404, 20404)


def test_attempts_without_a_key_are_20003(server):
    async def go():
        async with aiohttp.ClientSession() as http, http.get(f"{server.api_url}/v2/Attempts") as r:
            return r.status, (await r.json())["code"]
    assert asyncio.run(go()) == (401, 20003)


def test_the_attempts_answers_match_the_specs_response_schemas(server, verify, v2, setup):
    verify.verifications.create(to=NUMBER, channel="call")
    verify.verification_checks.create(to=NUMBER, code=server.heard())
    [attempt] = ended(server, v2, 1)
    status, listed = asyncio.run(raw(server, setup, "/v2/Attempts?PageSize=1&Country=US"))
    assert status == 200
    twilio_spec.response_validator("/v2/Attempts", "get", 200).validate(listed)
    assert listed["meta"]["url"].endswith("/v2/Attempts?Country=US&PageSize=1&Page=0")
    status, one = asyncio.run(raw(server, setup, f"/v2/Attempts/{attempt.sid}"))
    twilio_spec.response_validator("/v2/Attempts/{Sid}", "get", 200).validate(one)
    status, summary = asyncio.run(raw(server, setup, "/v2/Attempts/Summary"))
    twilio_spec.response_validator("/v2/Attempts/Summary", "get", 200).validate(summary)
    assert summary["conversion_rate_percentage"] == "100.0"
