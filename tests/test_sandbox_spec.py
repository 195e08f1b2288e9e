"""The sandbox against SignalWire's published spec (tests/fixtures/compat_api_spec.json): every
answer it gives, every callback it sends, its retries, the callbacks after a hang-up, and that
it shares no code with what it tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests import spec
from tests.helpers import serving
import voice2fa_cli
from tests.test_sandbox import CALLER, api, call_form, create, fetch, http_for, phone, settle, wait_for  # noqa: F401
from voice2fa_cli.sandbox import Sandbox, Scenario

# --- no shared code ---------------------------------------------------------------------------------

ALLOWED = {"voice2fa_cli", "voice2fa_cli.sandbox", "voice2fa_cli.sandbox.server", "voice2fa_cli.sandbox.cxml",
           "voice2fa_cli.sandbox.platform", "voice2fa_cli.sandbox.signing", "voice2fa_cli.sandbox.calling",
           "voice2fa_cli.sandbox.swml"}


def test_the_sandbox_imports_nothing_of_what_it_tests():
    """Imported, started, a call placed through it and hung up: no voice2fa module beyond its own
    package (DESIGN.md: a mistake shared by both sides would pass unseen)."""
    script = """
import asyncio, sys, aiohttp
from voice2fa_cli.sandbox import Sandbox, Scenario
async def main():
    async with Sandbox(scenario=Scenario(outcome="hold")) as sb:
        auth = aiohttp.BasicAuth(sb.project, sb.token)
        async with aiohttp.ClientSession(auth=auth) as http:
            base = f"{sb.url}/api/laml/2010-04-01/Accounts/{sb.project}"
            form = {"To": "+15551234567", "From": "+15550100000", "Url": "http://127.0.0.1:9/x"}
            async with http.post(base + "/Calls.json", data=form) as resp:
                sid = (await resp.json())["sid"]
            async with http.post(f"{base}/Calls/{sid}.json", data={"Status": "completed"}) as resp:
                assert resp.status == 200
asyncio.run(main())
print(" ".join(sorted(m for m in sys.modules if m.startswith("voice2fa_cli"))))
"""
    root = Path(voice2fa_cli.__file__).resolve().parent.parent  # the code under test, not whatever is installed
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == ALLOWED


# --- answers ----------------------------------------------------------------------------------------


async def test_create_fetch_update_answer_the_documented_call_resource(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold")) as sb, http_for(sb) as http:
        status, body = await create(http, sb, call_form(phone))
        assert status == spec.spec()["create"]["success_status"] == 200
        spec.check_call(body)
        assert body["duration"] == 0 and body["start_time"] is None and body["end_time"] is None
        sid = body["sid"]
        await wait_for(lambda: sb.calls[sid].status == "ringing", "ringing")
        ringing = await fetch(http, sb, sid)
        spec.check_call(ringing)
        assert ringing["status"] == "ringing"
        async with http.post(f"{api(sb)}/Calls/{sid}.json", data={"Status": "completed"}) as resp:
            assert resp.status == 200
            updated = await resp.json()
        spec.check_call(updated)
        await settle(sb)
        final = await fetch(http, sb, sid)
    spec.check_call(final)
    assert (final["status"], final["duration"]) == ("canceled", 0)
    assert final["end_time"] is not None


@pytest.mark.parametrize("outcome", ["answer", "busy", "no-answer", "failed", "voicemail"])
async def test_every_callback_conforms(phone, outcome):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome=outcome)) as sb, http_for(sb) as http:
        _status, body = await create(http, sb, call_form(phone))
        await settle(sb)
        final = await fetch(http, sb, body["sid"])
    spec.check_call(final)
    callbacks = phone.callbacks()
    assert callbacks
    for hit in callbacks:
        spec.check_callback(hit.fields)
        assert ("CallDuration" in hit.fields) == (hit is callbacks[-1])  # only on the completed event
    assert phone.sequences() == list(range(len(callbacks)))  # from 0
    assert "answered" not in phone.statuses()
    expected = {"answer": "completed", "voicemail": "completed"}.get(outcome, outcome)
    assert phone.statuses()[-1] == final["status"] == expected
    assert int(callbacks[-1].fields["CallDuration"]) == final["duration"]


async def test_only_subscribed_events_are_sent_default_completed(phone):
    form = [f for f in call_form(phone) if f[0] != "StatusCallbackEvent"]
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="busy")) as sb, http_for(sb) as http:
        await create(http, sb, form)
        await settle(sb)
    assert phone.statuses() == ["busy"]
    assert phone.sequences() == [0]


SCRIPTED = [("create", 400), ("create", 401), ("create", 422), ("create", 429), ("create", 500),
            ("fetch", 400), ("fetch", 401), ("fetch", 404), ("update", 400), ("update", 401), ("update", 404),
            ("update", 422), ("update", 503)]


@pytest.mark.parametrize("operation, status", SCRIPTED)
async def test_scripted_errors_take_the_documented_shape(phone, operation, status):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold")) as sb, http_for(sb) as http:
        sid = None
        if operation != "create":
            _s, body = await create(http, sb, call_form(phone))
            sid = body["sid"]
        sb.scenario = Scenario(outcome="hold", api_status=status, api_on=operation)
        if operation == "create":
            got, body = await create(http, sb, call_form(phone))
        elif operation == "fetch":
            async with http.get(f"{api(sb)}/Calls/{sid}.json") as resp:
                got, body = resp.status, await resp.json()
        else:
            async with http.post(f"{api(sb)}/Calls/{sid}.json", data={"Status": "completed"}) as resp:
                got, body = resp.status, await resp.json()
    assert got == status
    shape = spec.check_error(operation, status, body)
    assert shape == ("error_array" if (operation, status) == ("create", 400) else "error_object")
    if shape == "error_array":
        assert body["errors"][0]["code"] == "21211"
        assert body["errors"][0]["more_info"].startswith("https://")
    else:
        assert isinstance(body["code"], int) and body["more_info"].startswith("https://")


@pytest.mark.parametrize("code", [21211, 21210, 21219])
async def test_scripted_create_rejections_by_code(phone, code):
    async with Sandbox(caller=CALLER, scenario=Scenario(api_status=400, api_code=code)) as sb, http_for(sb) as http:
        status, body = await create(http, sb, call_form(phone))
    assert status == 400
    assert spec.check_error("create", 400, body) == "error_array"
    assert body["errors"][0]["code"] == str(code)
    assert sb.calls == {}


@pytest.mark.parametrize(
    "change, code",
    [
        (("To", "12345"), "21211"),
        (("From", "+15550109999"), "21210"),
        (("Url", "ftp://example.test/x"), "21205"),
        (("Method", "PUT"), "21209"),
        (("Timeout", "0"), "21208"),
        (("Timeout", "601"), "21208"),
        (("Timeout", "ten"), "21208"),
        (("StatusCallbackEvent", "answered-ish"), "10000"),
    ],
)
async def test_invalid_creates_are_rejected_with_the_errors_array(phone, change, code):
    name, value = change
    form = [f for f in call_form(phone) if f[0] != name] + [(name, value)]
    async with Sandbox(caller=CALLER) as sb, http_for(sb) as http:
        status, body = await create(http, sb, form)
    assert status == 400
    spec.check_error("create", 400, body)
    assert body["errors"][0]["code"] == code
    assert sb.calls == {}


async def test_update_with_a_status_outside_the_enum_is_422(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold")) as sb, http_for(sb) as http:
        _s, body = await create(http, sb, call_form(phone))
        async with http.post(f"{api(sb)}/Calls/{body['sid']}.json", data={"Status": "busy"}) as resp:
            got, error = resp.status, await resp.json()
        assert sb.calls[body["sid"]].status not in ("completed", "canceled")
    assert got == 422
    spec.check_error("update", 422, error)


async def test_unknown_call_is_the_404_object(phone):
    async with Sandbox() as sb, http_for(sb) as http:
        async with http.get(f"{api(sb)}/Calls/b3877c40-da60-4998-90ad-b792e98472ca.json") as resp:
            assert resp.status == 404
            spec.check_error("fetch", 404, await resp.json())


# --- retries and late callbacks ---------------------------------------------------------------------


class Flaky:
    """An application whose /status answers the given statuses in turn (then 200), and whose
    /voice reads a short document."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = list(answers)
        self.seen: list[dict[str, str]] = []
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/status", self.status)
        app.router.add_post("/voice", self.voice)
        return app

    async def status(self, request: web.Request) -> web.Response:
        self.seen.append({k: str(v) for k, v in (await request.post()).items()})
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    async def voice(self, request: web.Request) -> web.Response:
        return web.Response(body=b"<Response><Say>Hi</Say><Hangup/></Response>", content_type="application/xml")

    def form(self, events=("completed",)) -> list[tuple[str, str]]:
        return [("From", CALLER), ("To", "+15551234567"), ("Url", self.base + "/voice"),
                ("StatusCallback", self.base + "/status"), *(("StatusCallbackEvent", e) for e in events)]


@pytest.mark.parametrize(
    "answers, recorded",
    [
        ([500], [500, 200]),
        ([503, 410], [503, 410, 200]),
        ([500, 500, 500], [500, 500, 500]),  # three attempts in all, then given up
        ([404, 404, 404, 404], [404, 404, 404]),
        ([302], [302, 200]),  # a redirect is not a success
    ],
)
async def test_a_callback_answered_non_2xx_is_tried_three_times_in_all(answers, recorded):
    flaky = Flaky(answers)
    async with serving(flaky.app()) as base:
        flaky.base = base
        async with Sandbox(caller=CALLER, scenario=Scenario(outcome="busy")) as sb, http_for(sb) as http:
            await create(http, sb, flaky.form())
            await settle(sb)
    [call] = sb.calls.values()
    [delivery] = call.deliveries
    assert (delivery.status, delivery.sequence, delivery.answers) == ("busy", 0, recorded)
    assert delivery.delivered == (recorded[-1] == 200)
    assert len(flaky.seen) == len(recorded)
    assert all(seen == flaky.seen[0] for seen in flaky.seen)  # the same callback each time (same SequenceNumber)


async def test_an_unreachable_callback_is_tried_three_times():
    async with serving(web.Application()) as dead:
        pass  # closed: nothing listens there any more
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="no-answer")) as sb, http_for(sb) as http:
        form = [("From", CALLER), ("To", "+15551234567"), ("Url", dead + "/voice"), ("StatusCallback", dead + "/status")]
        await create(http, sb, form)
        await settle(sb)
    [call] = sb.calls.values()
    assert [(d.status, d.answers) for d in call.deliveries] == [("no-answer", ["unreachable"] * 3)]


@pytest.mark.parametrize("final_answer", [200, 410])
async def test_the_final_callback_arrives_after_the_caller_hung_up(phone, final_answer):
    """The application hangs up an answered call through the API; the platform still sends the
    `completed` callback, and the sandbox records what the application answered."""
    async with Sandbox(caller=CALLER) as sb, http_for(sb) as http:
        _s, body = await create(http, sb, call_form(phone, webhook="/slow"))
        sid = body["sid"]
        await asyncio.wait_for(phone.slow_reached.wait(), 5)
        if final_answer != 200:
            phone.status_answer = final_answer
        async with http.post(f"{api(sb)}/Calls/{sid}.json", data={"Status": "completed"}) as resp:
            assert (await resp.json())["status"] == "completed"
        phone.release.set()
        await settle(sb)
    call = sb.calls[sid]
    assert [d.status for d in call.deliveries] == ["initiated", "ringing", "in-progress", "completed"]
    last = call.deliveries[-1]
    assert last.answers == ([200] if final_answer == 200 else [final_answer] * 3)
    final = phone.callbacks()[-1].fields
    spec.check_callback(final)
    assert final["CallStatus"] == "completed" and int(final["CallDuration"]) >= 1
