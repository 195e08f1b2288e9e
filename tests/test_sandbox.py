"""voice2fa_cli.sandbox: the SignalWire stand-in, driven over real loopback HTTP.

The application side is a small aiohttp app of our own (`Phone`) that records every request
the sandbox makes and answers cXML built with voice2fa_cli.speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import serving as serve
from voice2fa_cli.config import API_PATH
from voice2fa_cli.sandbox import Sandbox, Scenario
from voice2fa_cli.signalwire import signature
from voice2fa_cli.voice import speech

CALLER = "+15550100000"
NUMBER = "+15551234567"
CODE = "40719386"
KEY = "7"
EVENTS = ("initiated", "ringing", "answered", "completed")
WAIT = 5.0  # the longest any test waits for the sandbox to finish a call


# --- the application side -------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    path: str
    url: str  # the URL the sandbox was given (our base + path), which it must have signed
    form: tuple[tuple[str, str], ...]
    signature: str | None

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.form)


class Phone:
    """The application the sandbox calls: /voice asks for KEY, /key reads CODE for the right
    key, /status records callbacks, /plain reads the code at once, /broken answers 500,
    /slow waits until `release` is set."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.base = ""
        self.arrived = asyncio.Event()  # any request
        self.slow_reached = asyncio.Event()
        self.release = asyncio.Event()
        self.voice = speech.Voice()
        self.status_answer = 200  # what /status answers

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        form = tuple((k, str(v)) for k, v in (await request.post()).items())
        self.hits.append(
            Hit(request.path, self.base + request.path_qs, form, request.headers.get("X-SignalWire-Signature"))
        )
        self.arrived.set()
        name = request.match_info["name"]
        fields = dict(form)
        if name == "status":
            return web.Response(status=self.status_answer)
        if name == "voice":
            return self.xml(speech.gate_document(KEY, self.base + "/key", self.voice))
        if name == "key":
            if fields.get("Digits") == KEY:
                return self.xml(speech.code_document(CODE, self.voice, after_gate=True, action=self.base + "/read"))
            return self.xml(speech.goodbye_document(self.voice))
        if name == "read":  # the callee steers the reading: repeat, or slower (the last reading)
            slow = fields.get("Digits") == speech.SLOWER_KEY
            action = None if slow else self.base + "/read"
            return self.xml(speech.code_document(CODE, self.voice, after_gate=True, slow=slow, action=action))
        if name == "plain":
            return self.xml(speech.code_document(CODE, self.voice, action=self.base + "/read"))
        if name == "slow":
            self.slow_reached.set()
            await self.release.wait()
            return self.xml(speech.goodbye_document(self.voice))
        if name == "broken":
            return web.Response(status=500, text="boom")
        return web.Response(status=404)

    @staticmethod
    def xml(body: bytes) -> web.Response:
        return web.Response(body=body, content_type="application/xml")

    def callbacks(self) -> list[Hit]:
        return [h for h in self.hits if h.path == "/status"]

    def webhooks(self) -> list[Hit]:
        return [h for h in self.hits if h.path != "/status"]

    def statuses(self) -> list[str]:
        return [h.fields["CallStatus"] for h in self.callbacks()]

    def sequences(self) -> list[int]:
        return [int(h.fields["SequenceNumber"]) for h in self.callbacks()]


@pytest.fixture
async def phone():
    p = Phone()
    async with serve(p.app()) as base:
        p.base = base
        yield p
        p.release.set()


# --- the API side ------------------------------------------------------------------------------


def api(sb: Sandbox, project: str | None = None) -> str:
    return f"{sb.url}{API_PATH}/Accounts/{project or sb.project}"


def call_form(phone: Phone, *, to: str = NUMBER, caller: str = CALLER, webhook: str = "/voice", events=EVENTS):
    return [
        ("From", caller),
        ("To", to),
        ("Url", phone.base + webhook),
        ("Method", "POST"),
        ("StatusCallback", phone.base + "/status"),
        ("StatusCallbackMethod", "POST"),
        *(("StatusCallbackEvent", e) for e in events),
        ("Timeout", "20"),
    ]


@contextlib.asynccontextmanager
async def http_for(sb: Sandbox, login: str | None = None, password: str | None = None):
    auth = aiohttp.encode_basic_auth(login or sb.project, password or sb.token)
    async with aiohttp.ClientSession(headers={"Authorization": auth}, timeout=aiohttp.ClientTimeout(total=WAIT)) as http:
        yield http


async def create(http: aiohttp.ClientSession, sb: Sandbox, form, project: str | None = None) -> tuple[int, dict]:
    async with http.post(f"{api(sb, project)}/Calls.json", data=form) as resp:
        return resp.status, await resp.json()


async def fetch(http: aiohttp.ClientSession, sb: Sandbox, sid: str) -> dict:
    async with http.get(f"{api(sb)}/Calls/{sid}.json") as resp:
        assert resp.status == 200
        return await resp.json()


async def settle(sb: Sandbox) -> None:
    await asyncio.wait_for(sb.settle(), WAIT)


async def wait_for(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


MORE_INFO = "https://signalwire.com/docs/rest/compatibility-api/error-codes"


def auth_error() -> dict:
    return {
        "code": 20003,
        "message": "There was an authentication error or API access is blocked for this feature",
        "more_info": f"{MORE_INFO}#20003",
        "status": 401,
    }


def rejected(code: int, message: str) -> dict:
    """A rejected create: SignalWire's 400 errors array, string codes."""
    return {"errors": [{"code": str(code), "message": message, "more_info": f"{MORE_INFO}#{code}"}]}


# --- basic auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["wrong token", "wrong project login", "project in the path"])
async def test_wrong_credentials_get_401_with_code_20003(phone, who):
    async with Sandbox(caller=CALLER) as sb:
        if who == "wrong token":
            creds, project = (sb.project, "not-the-token"), None
        elif who == "wrong project login":
            creds, project = ("other-project", sb.token), None
        else:
            creds, project = ("other-project", sb.token), "other-project"
        async with http_for(sb, *creds) as http:
            status, body = await create(http, sb, call_form(phone), project=project)
            async with http.get(f"{api(sb, project)}.json") as resp:
                account = (resp.status, await resp.json())
        assert (status, body) == (401, auth_error())
        assert account == (401, auth_error())
        assert sb.calls == {}
    assert phone.hits == []


async def test_no_authorization_header_gets_401(phone):
    async with Sandbox(caller=CALLER) as sb:
        async with aiohttp.ClientSession() as http, http.post(f"{api(sb)}/Calls.json", data=call_form(phone)) as resp:
            assert resp.status == 401
            assert await resp.json() == auth_error()
        assert sb.calls == {}


async def test_fetch_and_update_check_auth_too(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold")) as sb:
        async with http_for(sb) as http:
            status, body = await create(http, sb, call_form(phone))
        assert status == 200
        sid = body["sid"]
        async with http_for(sb, sb.project, "wrong") as bad:
            async with bad.get(f"{api(sb)}/Calls/{sid}.json") as resp:
                assert (resp.status, await resp.json()) == (401, auth_error())
            async with bad.post(f"{api(sb)}/Calls/{sid}.json", data={"Status": "completed"}) as resp:
                assert (resp.status, await resp.json()) == (401, auth_error())
        assert sb.calls[sid].status not in ("completed", "canceled")


async def test_account_fetch(phone):
    async with Sandbox() as sb, http_for(sb) as http:
        async with http.get(f"{api(sb)}.json") as resp:
            assert resp.status == 200
            assert await resp.json() == {"sid": sb.project, "friendly_name": "voice2fa sandbox", "status": "active"}


# --- validation of the create ------------------------------------------------------------------


@pytest.mark.parametrize("to", ["12345", "+0123456789", "", "+1555abc4567", "+1234567890123456", "15551234567"])
async def test_invalid_to_is_400_with_code_21211(phone, to):
    async with Sandbox(caller=CALLER) as sb:
        async with http_for(sb) as http:
            status, body = await create(http, sb, call_form(phone, to=to))
        assert status == 400
        assert body == rejected(21211, f"Invalid 'To' Phone Number: {to[:20]}")
        assert sb.calls == {}
    assert phone.hits == []


async def test_from_must_be_the_configured_caller(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="busy")) as sb:
        async with http_for(sb) as http:
            status, body = await create(http, sb, call_form(phone, caller="+15550109999"))
            assert status == 400
            assert body == rejected(21210, "'From' phone number not verified: +15550109999")
            assert sb.calls == {}
            status, body = await create(http, sb, call_form(phone, caller=CALLER))
            assert status == 200
        await settle(sb)


async def test_without_a_caller_any_e164_from_is_accepted(phone):
    async with Sandbox(caller=None, scenario=Scenario(outcome="busy")) as sb:
        async with http_for(sb) as http:
            status, _body = await create(http, sb, call_form(phone, caller="+442071838750"))
            assert status == 200
            status, bad = await create(http, sb, call_form(phone, caller="not-a-number"))
        assert status == 400
        assert bad["errors"][0]["code"] == "21210"
        await settle(sb)
        assert len(sb.calls) == 1


async def test_create_answers_200_with_the_call(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="busy")) as sb:
        async with http_for(sb) as http:
            status, body = await create(http, sb, call_form(phone))
        await settle(sb)
    assert status == 200  # SignalWire's spec; Twilio answers 201
    assert str(uuid.UUID(body["sid"])) == body["sid"]  # a UUID, as SignalWire's
    assert body["status"] == "queued"
    assert (body["to"], body["from"], body["account_sid"]) == (NUMBER, CALLER, sb.project)
    assert list(sb.calls) == [body["sid"]]
    assert sb.calls[body["sid"]].events == EVENTS


# --- scripted outcomes -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_unanswered_outcomes_send_callbacks_in_order(phone, outcome):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome=outcome)) as sb:
        async with http_for(sb) as http:
            status, body = await create(http, sb, call_form(phone))
            assert status == 200
            await settle(sb)
            final = await fetch(http, sb, body["sid"])
        assert phone.statuses() == ["initiated", "ringing", outcome]
        assert phone.sequences() == [0, 1, 2]
        last = phone.callbacks()[-1].fields
        assert last["CallDuration"] == "0"
        assert last["CallSid"] == body["sid"]
        assert "CallDuration" not in phone.callbacks()[0].fields
        assert phone.webhooks() == []  # never answered: the webhook is never fetched
        assert (final["status"], final["duration"]) == (outcome, 0)
        assert sb.calls[body["sid"]].heard == []
        assert sb.heard_code() is None


async def test_answered_call_end_to_end(phone):
    heard_batches: list[list[str]] = []
    sb = Sandbox(caller=CALLER, on_heard=lambda call, lines: heard_batches.append(list(lines)))
    async with sb, http_for(sb) as http:
        status, body = await create(http, sb, call_form(phone))
        assert status == 200
        await settle(sb)
        final = await fetch(http, sb, body["sid"])
    sid = body["sid"]
    call = sb.calls[sid]

    assert phone.statuses() == ["initiated", "ringing", "in-progress", "completed"]  # no "answered"
    assert phone.sequences() == [0, 1, 2, 3]
    assert phone.callbacks()[-1].fields["CallDuration"] == str(call.duration)
    assert call.duration >= 1

    # the webhook: first document, then the gate's action with the key asked for
    assert [h.path for h in phone.webhooks()] == ["/voice", "/key"]
    first, second = phone.webhooks()
    assert first.fields["CallSid"] == sid
    assert first.fields["CallStatus"] == "in-progress"
    assert (first.fields["From"], first.fields["To"]) == (CALLER, NUMBER)
    assert "Digits" not in first.fields
    assert second.fields["Digits"] == KEY
    assert call.pressed == [KEY]

    assert call.heard == [
        "Hello. This is an automated call to check that this phone number is yours.",
        "You will hear a code. Read it only to the person you are speaking with now. If you are not expecting this call, hang up.",
        "Press 7 to hear your code.",
        "[waits for a key]",
        "[presses 7]",
        "Your code is:",
        ", ".join(CODE),
        "Once again:",
        ", ".join(CODE),
        "Press 1 to hear the code again, or 2 to hear it more slowly.",
        "[waits for a key]",
        "Goodbye.",
        "[hangs up]",
    ]
    assert sb.heard_code() == CODE
    assert sb.heard_code(sid) == CODE
    assert [line for batch in heard_batches for line in batch] == call.heard

    assert (final["status"], final["duration"]) == ("completed", call.duration)


async def test_every_request_is_signed_and_verifies(phone):
    async with Sandbox(caller=CALLER) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone))
        await settle(sb)
    assert len(phone.hits) == 6  # 4 callbacks + 2 webhook documents
    for hit in phone.hits:
        assert hit.signature, hit
        assert signature.valid(sb.signing_key, hit.url, hit.form, hit.signature), hit
        assert not signature.valid(sb.signing_key + "x", hit.url, hit.form, hit.signature)
        assert not signature.valid(sb.signing_key, hit.url + "x", hit.form, hit.signature)


async def test_given_signing_key_is_used(phone):
    async with Sandbox(caller=CALLER, signing_key="my-key", scenario=Scenario(outcome="busy")) as sb:
        async with http_for(sb) as http:
            await create(http, sb, call_form(phone))
            await settle(sb)
    assert len(phone.hits) == 3
    for hit in phone.hits:
        assert hit.signature == signature.compute("my-key", hit.url, hit.form)


async def test_no_signing_key_sends_unsigned_requests(phone):
    async with Sandbox(caller=CALLER, signing_key=None) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone))
        await settle(sb)
    assert len(phone.hits) == 6
    assert all(hit.signature is None for hit in phone.hits)
    assert sb.heard_code() == CODE


async def test_code_read_at_once_without_a_gate(phone):
    async with Sandbox(caller=CALLER) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone, webhook="/plain"))
        await settle(sb)
    call = next(iter(sb.calls.values()))
    assert [h.path for h in phone.webhooks()] == ["/plain"]
    assert call.pressed == []
    assert call.heard == [
        "Hello. This is an automated call to check that this phone number is yours.",
        "You will hear a code. Read it only to the person you are speaking with now. If you are not expecting this call, hang up.",
        "Your code is:",
        ", ".join(CODE),
        "Once again:",
        ", ".join(CODE),
        "Press 1 to hear the code again, or 2 to hear it more slowly.",
        "[waits for a key]",
        "Goodbye.",
        "[hangs up]",
    ]
    assert sb.heard_code() == CODE


async def test_callee_presses_a_scripted_wrong_key(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(press="3")) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone))
        await settle(sb)
    call = next(iter(sb.calls.values()))
    assert [h.fields.get("Digits") for h in phone.webhooks()] == [None, "3"]
    assert call.pressed == ["3"]
    assert call.heard[-4:] == ["[waits for a key]", "[presses 3]", "Goodbye.", "[hangs up]"]
    assert sb.heard_code() is None


async def test_callee_pressing_nothing_hears_the_gate_to_its_end(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(press=None)) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone))
        await settle(sb)
    call = next(iter(sb.calls.values()))
    assert [h.path for h in phone.webhooks()] == ["/voice"]
    assert call.pressed == []
    assert call.heard == [
        "Hello. This is an automated call to check that this phone number is yours.",
        "You will hear a code. Read it only to the person you are speaking with now. If you are not expecting this call, hang up.",
        "Press 7 to hear your code.",
        "[waits for a key]",
        "We did not hear a key press. Goodbye.",
        "[hangs up]",
    ]
    assert sb.heard_code() is None
    assert phone.statuses()[-1] == "completed"


async def test_webhook_error_ends_the_call(phone):
    async with Sandbox(caller=CALLER) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone, webhook="/broken"))
        await settle(sb)
    call = next(iter(sb.calls.values()))
    assert call.heard == ["[the application answered 500: the call ends]"]
    assert sb.heard_code() is None


# --- scripted API errors -----------------------------------------------------------------------


@pytest.mark.parametrize("api_status", [401, 429, 500])
async def test_scripted_api_errors(phone, api_status):
    async with Sandbox(caller=CALLER, scenario=Scenario(api_status=api_status)) as sb:
        async with http_for(sb) as http:
            status, body = await create(http, sb, call_form(phone))
        assert status == api_status
        assert body["status"] == api_status
        assert isinstance(body["code"], int) and isinstance(body["message"], str)
        assert sb.calls == {}
        assert [(r.method, r.path) for r in sb.requests] == [("POST", f"{API_PATH}/Accounts/{sb.project}/Calls.json")]
    assert phone.hits == []


# --- hang-up via update ------------------------------------------------------------------------


async def test_hang_up_cancels_a_ringing_call(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold")) as sb, http_for(sb) as http:
        _status, body = await create(http, sb, call_form(phone))
        sid = body["sid"]
        await wait_for(lambda: "ringing" in phone.statuses(), "the ringing callback")
        assert sb.calls[sid].status == "ringing"
        async with http.post(f"{api(sb)}/Calls/{sid}.json", data={"Status": "completed"}) as resp:
            assert resp.status == 200
            updated = await resp.json()
        await asyncio.wait_for(settle(sb), 10)  # the held call ends: settle would wait forever
        final = await fetch(http, sb, sid)
    assert updated["sid"] == sid
    assert updated["status"] == "canceled"
    assert final["status"] == "canceled"
    assert phone.statuses() == ["initiated", "ringing", "canceled"]
    assert phone.sequences() == [0, 1, 2]
    assert phone.webhooks() == []
    assert sb.requests[-2].form == (("Status", "completed"),)


async def test_hang_up_of_an_answered_call_completes_it(phone):
    async with Sandbox(caller=CALLER) as sb, http_for(sb) as http:
        _status, body = await create(http, sb, call_form(phone, webhook="/slow"))
        sid = body["sid"]
        await asyncio.wait_for(phone.slow_reached.wait(), WAIT)
        async with http.post(f"{api(sb)}/Calls/{sid}.json", data={"Status": "completed"}) as resp:
            assert resp.status == 200
        phone.release.set()
        await settle(sb)
        final = await fetch(http, sb, sid)
    assert final["status"] == "completed"
    assert phone.statuses() == ["initiated", "ringing", "in-progress", "completed"]
    assert phone.sequences() == [0, 1, 2, 3]


async def test_hang_up_of_a_finished_call_changes_nothing(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="busy")) as sb, http_for(sb) as http:
        _status, body = await create(http, sb, call_form(phone))
        await settle(sb)
        async with http.post(f"{api(sb)}/Calls/{body['sid']}.json", data={"Status": "completed"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "busy"
        await settle(sb)
    assert phone.statuses() == ["initiated", "ringing", "busy"]


async def test_unknown_call_is_404(phone):
    async with Sandbox() as sb, http_for(sb) as http, http.get(f"{api(sb)}/Calls/CA0000.json") as resp:
        assert resp.status == 404
        assert (await resp.json())["code"] == 20404


# --- lost callbacks, delays --------------------------------------------------------------------


async def test_callbacks_false_sends_none(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(callbacks=False)) as sb, http_for(sb) as http:
        _status, body = await create(http, sb, call_form(phone))
        await settle(sb)
        final = await fetch(http, sb, body["sid"])
    assert phone.callbacks() == []
    assert [h.path for h in phone.webhooks()] == ["/voice", "/key"]
    assert sb.heard_code() == CODE
    assert final["status"] == "completed"  # the API still tells the truth


async def test_simulated_delays_are_capped_at_50_ms(phone):
    pauses: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        pauses.append(seconds)

    scenario = Scenario(delay=5.0)
    async with Sandbox(caller=CALLER, scenario=scenario, sleep=recording_sleep) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone))
        await settle(sb)
    # the simulated pauses: initiated, ringing, answer, the key press; none above 50 ms
    assert sb.heard_code() == CODE
    assert pauses == [0.05] * 4


# --- the callee steers the reading (Scenario.steer) -------------------------------------------------


async def test_callee_presses_the_repeat_then_the_slower_key(phone):
    steer = (speech.REPEAT_KEY, speech.SLOWER_KEY)
    async with Sandbox(caller=CALLER, scenario=Scenario(steer=steer)) as sb, http_for(sb) as http:
        await create(http, sb, call_form(phone))
        await settle(sb)
    call = next(iter(sb.calls.values()))
    assert [(h.path, h.fields.get("Digits")) for h in phone.webhooks()] == [
        ("/voice", None), ("/key", KEY), ("/read", "1"), ("/read", "2")
    ]
    assert call.pressed == [KEY, "1", "2"]
    reading = [
        ", ".join(CODE), "Once again:", ", ".join(CODE),
        "Press 1 to hear the code again, or 2 to hear it more slowly.", "[waits for a key]",
    ]
    assert call.heard[call.heard.index("[presses 7]"):] == (
        ["[presses 7]", "Your code is:"] + reading + ["[presses 1]", "Your code is:"] + reading
        + ["[presses 2]", "Slowly now. Your code is:", ", ".join(CODE), "Once again:", ", ".join(CODE), "Goodbye.",
           "[hangs up]"]
    )
    assert sb.heard_code() == CODE


async def test_a_callee_without_steering_keys_presses_nothing_while_the_code_is_read(phone):
    """The code's digits and the offered keys are not a key asked for: the default callee
    (press="asked") and a scripted one (press=KEY) press only at the gate."""
    for press in ("asked", KEY):
        phone.hits.clear()
        async with Sandbox(caller=CALLER, scenario=Scenario(press=press)) as sb, http_for(sb) as http:
            await create(http, sb, call_form(phone))
            await settle(sb)
        call = next(iter(sb.calls.values()))
        assert call.pressed == [KEY]
        assert [h.path for h in phone.webhooks()] == ["/voice", "/key"]
