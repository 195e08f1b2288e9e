"""References we did not write: the official `twilio` package (its REST client speaks the same
Compatibility API; its RequestValidator the same signatures) against the sandbox, and against
voice2fa's webhook."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

from tests.helpers import serving
from tests.test_sandbox import CALLER, EVENTS, NUMBER, Phone, phone, settle  # noqa: F401
from tests.test_sandbox_spec import SCRIPTED
from voice2fa_cli.sandbox import Sandbox, Scenario
from voice2fa_cli.sandbox.platform import ERROR_MESSAGES
from voice2fa_cli.voice import speech
from voice2fa_cli.voice.call import CallState
from voice2fa_cli.voice.webhook import ServerConfig, make_app, register


def twilio_for(sb: Sandbox) -> TwilioClient:
    """The official client pointed at the sandbox: in twilio 9.x the Api domain's base_url
    (https://api.twilio.com) is an attribute; the 2010-04-01 version is appended to it."""
    client = TwilioClient(sb.project, sb.token)
    client.api.base_url = f"{sb.url}/api/laml"
    return client


def create_call(client: TwilioClient, phone: Phone, webhook: str = "/voice"):
    return client.calls.create(
        to=NUMBER, from_=CALLER, url=phone.base + webhook, method="POST", status_callback=phone.base + "/status",
        status_callback_method="POST", status_callback_event=list(EVENTS), timeout=20,
    )


async def test_create_fetch_and_hang_up_with_the_official_client(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold")) as sb:
        client = twilio_for(sb)
        created = await asyncio.to_thread(create_call, client, phone)
        assert created.sid in sb.calls
        assert created.status == "queued"
        assert (created.to, created._from, created.account_sid) == (NUMBER, CALLER, sb.project)
        assert isinstance(created.date_created, datetime)  # the SDK parsed our RFC 2822 dates
        assert created.duration == 0
        fetched = await asyncio.to_thread(client.calls(created.sid).fetch)
        assert fetched.sid == created.sid
        ended = await asyncio.to_thread(client.calls(created.sid).update, status="completed")
        assert ended.status == "canceled"  # hung up while ringing
        await settle(sb)
        final = await asyncio.to_thread(client.calls(created.sid).fetch)
        assert isinstance(final.end_time, datetime)
    create, fetch, update, fetch_again = sb.requests
    assert (create.method, fetch.method, update.method, fetch_again.method) == ("POST", "GET", "POST", "GET")
    assert update.form == (("Status", "completed"),)
    assert [v for k, v in create.form if k == "StatusCallbackEvent"] == list(EVENTS)


async def test_a_whole_call_placed_by_the_official_client(phone):
    async with Sandbox(caller=CALLER) as sb:
        client = twilio_for(sb)
        created = await asyncio.to_thread(create_call, client, phone)
        await settle(sb)
        final = await asyncio.to_thread(client.calls(created.sid).fetch)
    assert final.status == "completed" and final.duration == sb.calls[created.sid].duration
    assert sb.heard_code(created.sid) == "40719386"


async def test_wrong_credentials_are_a_twilio_rest_exception_20003(phone):
    async with Sandbox(caller=CALLER) as sb:
        client = TwilioClient(sb.project, "not-the-token")
        client.api.base_url = f"{sb.url}/api/laml"
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(create_call, client, phone)
    assert (info.value.status, info.value.code) == (401, 20003)


@pytest.mark.parametrize("operation, status", SCRIPTED)
async def test_every_documented_error_shape_is_a_twilio_rest_exception(phone, operation, status):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold")) as sb:
        client = twilio_for(sb)
        sid = None
        if operation != "create":
            sid = (await asyncio.to_thread(create_call, client, phone)).sid
        sb.scenario = Scenario(outcome="hold", api_status=status, api_on=operation)
        with pytest.raises(TwilioRestException) as info:
            if operation == "create":
                await asyncio.to_thread(create_call, client, phone)
            elif operation == "fetch":
                await asyncio.to_thread(client.calls(sid).fetch)
            else:
                await asyncio.to_thread(client.calls(sid).update, status="completed")
    error = info.value
    assert error.status == status
    if (operation, status) == ("create", 400):
        # The errors array has no top-level code: twilio 9.x reads only `code`, so it reports
        # the HTTP status. voice2fa reads the array (test_signalwire.py).
        assert error.code == 400
    else:
        expected = {400: 21211, 401: 20003, 404: 20404, 422: 10000, 429: 20429, 500: 20504, 503: 20001}[status]
        assert error.code == expected
        assert error.msg.endswith(": " + ERROR_MESSAGES[expected])  # the SDK shows the platform's message


async def test_scripted_object_codes_reach_the_sdk(phone):
    async with Sandbox(caller=CALLER, scenario=Scenario(api_status=422, api_code=21219)) as sb:
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(create_call, twilio_for(sb), phone)
    assert (info.value.status, info.value.code) == (422, 21219)
    assert "Trial mode" in info.value.msg


# --- RequestValidator on every request the sandbox sends -------------------------------------------------


@pytest.mark.parametrize("outcome", ["answer", "busy", "voicemail"])
async def test_request_validator_validates_every_webhook_request(phone, outcome):
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome=outcome)) as sb:
        await asyncio.to_thread(create_call, twilio_for(sb), phone)
        await settle(sb)
    validator = RequestValidator(sb.signing_key)
    assert phone.hits
    for hit in phone.hits:
        params = dict(hit.form)
        assert validator.validate(hit.url, params, hit.signature), hit
        assert not validator.validate(hit.url + "&x=1" if "?" in hit.url else hit.url + "?x=1", params, hit.signature)
        assert not validator.validate(hit.url, params | {"CallStatus": "completed-ish"}, hit.signature)
        assert not RequestValidator(sb.signing_key + "x").validate(hit.url, params, hit.signature)


async def test_request_validator_validates_get_webhooks_and_callbacks():
    seen: list[tuple[str, str | None]] = []

    async def anything(request: web.Request) -> web.Response:
        # the URL exactly as it came on the wire (aiohttp's request.url re-encodes the query)
        seen.append((base_url[0] + request.raw_path, request.headers.get("X-SignalWire-Signature")))
        if request.path == "/voice":
            return web.Response(body=b"<Response><Say>Hello</Say><Hangup/></Response>", content_type="application/xml")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/{name}", anything)
    base_url: list[str] = []
    async with serving(app) as base, Sandbox(caller=CALLER) as sb:
        base_url.append(base)
        client = twilio_for(sb)
        await asyncio.to_thread(
            client.calls.create, to=NUMBER, from_=CALLER, url=base + "/voice?lang=en", method="GET",
            status_callback=base + "/status", status_callback_method="GET", status_callback_event=["answered", "completed"],
        )
        await settle(sb)
    validator = RequestValidator(sb.signing_key)
    assert [url.split("?")[0] for url, _ in seen] == [base + "/status", base + "/voice", base + "/status"]
    for url, sig in seen:
        assert validator.validate(url, {}, sig), url
        assert not validator.validate(url.replace("CallSid=", "CallSid=x"), {}, sig)


# --- voice2fa's webhook and RequestValidator's signatures ---------------------------------------------------

PUBLIC = "https://voice.example.test"
KEY = "whk-reference-key"
CODE = "40719386"
SID = "b3877c40-da60-4998-90ad-b792e98472ca"


def webhook_fields() -> dict[str, str]:
    return {"AccountSid": "b3877c40-da60-4998-90ad-b792e98472af", "ApiVersion": "2010-04-01", "CallSid": SID,
            "CallStatus": "in-progress", "Direction": "outbound-api", "From": CALLER, "To": NUMBER}


@pytest.fixture
async def voice2fa_hook():
    config = ServerConfig(PUBLIC, KEY)
    app = make_app(config)
    call = CallState(session_id="sess-1", code=CODE, voice=speech.Voice(), key=None, call_sid=SID)
    register(app, call)
    async with serving(app) as base, aiohttp.ClientSession() as http:

        async def post(path: str, fields: dict[str, str], sig: str | None) -> tuple[int, bytes]:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if sig is not None:
                headers["X-SignalWire-Signature"] = sig
            async with http.post(base + path, data=urlencode(fields), headers=headers) as resp:
                return resp.status, await resp.read()

        yield f"{config.prefix}/v/{call.token}", post


async def test_voice2fa_accepts_what_request_validator_signed(voice2fa_hook):
    path, post = voice2fa_hook
    fields = webhook_fields()
    sig = RequestValidator(KEY).compute_signature(PUBLIC + path, fields)
    status, body = await post(path, fields, sig)
    assert status == 200
    assert b"<Response>" in body


@pytest.mark.parametrize(
    "tamper",
    ["a field changed", "a field added", "a field removed", "another URL", "another key", "the signature cut"],
)
async def test_voice2fa_rejects_request_validator_signatures_tampered(voice2fa_hook, tamper):
    path, post = voice2fa_hook
    fields = webhook_fields()
    url, key = PUBLIC + path, KEY
    if tamper == "another URL":
        url = PUBLIC + path + "x"
    if tamper == "another key":
        key = secrets.token_urlsafe(16)
    sig = RequestValidator(key).compute_signature(url, fields)
    if tamper == "a field changed":
        fields["To"] = "+15559999999"
    elif tamper == "a field added":
        fields["Digits"] = "7"
    elif tamper == "a field removed":
        del fields["Direction"]
    elif tamper == "the signature cut":
        sig = sig[:-2]
    status, body = await post(path, fields, sig)
    assert status == 403
    assert CODE.encode() not in body
