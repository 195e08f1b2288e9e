"""voice2fa_cli.webhook: the embedded callback server, over real loopback HTTP.

Requests are signed the way the platform signs them: over the configured public URL + the
path it was given (never the Host header this server sees).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import os
import random
import re
import resource
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from tests.helpers import FAST, ThreadedSandbox, digit_runs, free_port, serving, voice2fa_command
from voice2fa_cli import flow, phone
from voice2fa_cli.config import Listen, Settings, Timing
from voice2fa_cli.errors import EXIT_USAGE, ConfigError
from voice2fa_cli.sandbox import Sandbox, Scenario
from voice2fa_cli.signalwire import signature
from voice2fa_cli.stores.sqlite import Store
from voice2fa_cli.voice import speech, webhook
from voice2fa_cli.voice.call import MAX_HISTORY, CallState
from voice2fa_cli.voice.webhook import GATE_TRIES, MAX_CODE_READS, ServerConfig, make_app, register
from voice2fa_cli.web import server as web_server
from voice2fa_cli.web.forms import MAX_BODY, MAX_FIELDS
from voice2fa_cli.web.server import Limits, Server, bind

PUBLIC = "https://voice.example.test"
KEY = "whk-test-signing-key"
CODE = "40719386"
SID = "CA0f3e9b2c7d1a4e6f8b0c2d4e6f8a0b1c"
OTHER_SID = "CA9e8d7c6b5a49382716f5e4d3c2b1a09f"
CALLER = "+15550100000"
NUMBER = "+15551234567"
FORM = "application/x-www-form-urlencoded"
SIG = "X-SignalWire-Signature"


# --- helpers ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def xml(self) -> ET.Element:
        assert self.status == 200, (self.status, self.text)
        assert self.headers["Content-Type"] == "application/xml; charset=utf-8"
        root = ET.fromstring(self.body)
        assert root.tag == "Response"
        return root


def header_text(headers) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers.items())


def carries_code(body: bytes, headers, code: str = CODE, *, loose: bool = True) -> bool:
    """True when the code is in the headers, in the body as text, or spoken. `loose` also
    looks for its digits with anything in between (not for bodies that echo random input)."""
    if code in header_text(headers):
        return True
    if code.encode() in body or ", ".join(code).encode() in body:
        return True
    if loose and code.encode() in re.sub(rb"[^0-9]", b"", body):
        return True
    with contextlib.suppress(ET.ParseError):
        root = ET.fromstring(body)
        spoken = "".join((say.text or "").strip() for say in root.iter("Say") if (say.text or "").strip().isdigit())
        if code in spoken:
            return True
    return False


def no_code(reply: Reply) -> None:
    assert not carries_code(reply.body, reply.headers), (reply.status, reply.text, dict(reply.headers))


def fields_for(sid: str = SID, **extra: str) -> list[tuple[str, str]]:
    fields = [
        ("AccountSid", "AC7f3e9b2c7d1a4e6f8b0c2d4e6f8a0b1c"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", "in-progress"),
        ("Direction", "outbound-api"),
        ("From", CALLER),
        ("To", NUMBER),
    ]
    fields += list(extra.items())
    return fields


def status_fields(status: str, seq: int | None = None, sid: str = SID, **extra: str) -> list[tuple[str, str]]:
    fields = [("CallSid", sid), ("CallStatus", status), ("Timestamp", "Sat, 28 Nov 2026 06:00:00 +0000")]
    if seq is not None:
        fields.append(("SequenceNumber", str(seq)))
    return fields + list(extra.items())


def padded(fields: list[tuple[str, str]], size: int) -> list[tuple[str, str]]:
    """`fields` plus a Pad field so that the encoded form is exactly `size` bytes."""
    base = len(urlencode(fields + [("Pad", "")]))
    out = fields + [("Pad", "x" * (size - base))]
    assert len(urlencode(out)) == size
    return out


def forged() -> str:
    return base64.b64encode(secrets.token_bytes(20)).decode()


class Hook:
    """A webhook app served on 127.0.0.1, a client session, and request helpers."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.app = make_app(config)
        self.base = ""
        self.http: aiohttp.ClientSession | None = None

    def call(self, key: str | None = "7", code: str = CODE, **kwargs) -> CallState:
        call = CallState(session_id="sess-1", code=code, voice=speech.Voice(), key=key, **kwargs)
        register(self.app, call)
        return call

    def path(self, call: CallState | str, tail: str = "") -> str:
        token = call if isinstance(call, str) else call.token
        return f"{self.config.prefix}/v/{token}{tail}"

    def sign(self, path: str, fields, *, key: str = KEY, origin: str | None = None) -> str:
        return signature.compute(key, (origin or self.config.origins[0]) + path, fields)

    async def send(
        self,
        method: str,
        path: str,
        fields: list[tuple[str, str]] | None = None,
        *,
        body: bytes | None = None,
        content_type: str | None = FORM,
        sig: str | None = "auto",
        header: str = SIG,
        headers: list[tuple[str, str]] | None = None,
        chunked: bool = False,
    ) -> Reply:
        assert self.http is not None
        if body is None and fields is not None:
            body = urlencode(fields).encode()
        hdrs = list(headers or [])
        if content_type is not None and body is not None:
            hdrs.append(("Content-Type", content_type))
        if sig == "auto":
            sig = self.sign(path, fields) if (fields is not None and self.config.signing_key) else None
        if sig is not None:
            hdrs.append((header, sig))
        data: object = body
        if chunked and body is not None:

            async def pieces(payload: bytes = body):
                for i in range(0, len(payload), 8192):
                    yield payload[i : i + 8192]

            data = pieces()
        async with self.http.request(
            method, URL(self.base + path, encoded=True), data=data, headers=hdrs, allow_redirects=False
        ) as resp:
            reply = Reply(resp.status, resp.headers, await resp.read())
        # the code is in no header of any response, the code document's included
        assert CODE not in header_text(reply.headers)
        return reply

    async def post(self, call: CallState, tail: str = "", fields=None, **kwargs) -> Reply:
        return await self.send("POST", self.path(call, tail), fields if fields is not None else fields_for(), **kwargs)

    async def status(self, call: CallState, status: str, seq: int | None = None, **kwargs) -> Reply:
        return await self.send("POST", self.path(call, "/status"), status_fields(status, seq, **kwargs))


@pytest.fixture
async def hooks():
    """A factory of Hooks: await hooks(public_url, signing_key)."""
    stack = contextlib.AsyncExitStack()
    http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))

    async def make(public_url: str = PUBLIC, signing_key: str | None = KEY, shared=None) -> Hook:
        hook = Hook(ServerConfig(public_url, signing_key))
        if shared is not None:
            hook.app[webhook.SHARED] = shared
        hook.base = await stack.enter_async_context(serving(hook.app))
        hook.http = http
        return hook

    async with stack:
        yield make


@pytest.fixture
async def hook(hooks) -> Hook:
    return await hooks()


def events(call: CallState) -> list[str]:
    return [event for _, event in call.history]


# --- the order of the checks ------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["", "/key", "/status"])
async def test_unknown_token_is_404_whatever_else_is_wrong(hook, tail):
    hook.call()  # a live call exists, just not under this token
    path = hook.path(secrets.token_urlsafe(32), tail)
    cases = [
        await hook.send("POST", path, fields_for()),  # validly signed for this path
        await hook.send("POST", path, fields_for(), sig=None),
        await hook.send("POST", path, fields_for(), sig=forged()),
        await hook.send("POST", path, body=b"x=" + b"y" * MAX_BODY),
        await hook.send("POST", path, body=b"x=" + b"y" * MAX_BODY, chunked=True),
        await hook.send("POST", path, body=b"\xff\xfe=1"),
    ]
    for method in ("GET", "PUT", "DELETE", "PATCH", "HEAD"):
        cases.append(await hook.send(method, path, fields_for()))
    for reply in cases:
        assert reply.status == 404
        assert "Allow" not in reply.headers
        no_code(reply)
    assert {r.text for r in cases if r.body} == {"not found\n"}


@pytest.mark.parametrize("tail", ["", "/key", "/status"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_wrong_method_is_405_with_allow_post(hook, method, tail):
    call = hook.call(call_sid=SID)
    reply = await hook.send(method, hook.path(call, tail), fields_for(Digits="7"))
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    if method != "HEAD":
        assert reply.text == "method not allowed\n"
    no_code(reply)
    assert (call.fetched, call.delivered, call.history) == (False, False, [])


async def test_405_comes_before_413_400_403_and_410(hook):
    call = hook.call(call_sid=SID, status="completed")
    for kwargs in (
        {"body": b"x=" + b"y" * MAX_BODY, "sig": None},
        {"body": b"x=" + b"y" * MAX_BODY, "sig": None, "chunked": True},
        {"body": b"\xff\xfe", "sig": forged()},
        {"body": b"CallSid=x", "content_type": "text/plain", "sig": None},
    ):
        reply = await hook.send("PUT", hook.path(call), **kwargs)
        assert (reply.status, reply.headers["Allow"], reply.text) == (405, "POST", "method not allowed\n")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("tail", ["", "/key", "/status"])
async def test_body_over_64_kib_is_413(hook, chunked, tail):
    call = hook.call(call_sid=SID)
    fields = padded(fields_for(Digits="7"), MAX_BODY + 1)
    reply = await hook.send("POST", hook.path(call, tail), fields, chunked=chunked)  # validly signed
    assert (reply.status, reply.text) == (413, "request body too large\n")
    assert (call.fetched, call.delivered, call.history) == (False, False, [])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_of_exactly_64_kib_is_read(hook, chunked):
    call = hook.call(call_sid=SID)
    reply = await hook.post(call, fields=padded(fields_for(), MAX_BODY), chunked=chunked)
    assert reply.xml().find("Gather") is not None
    assert call.fetched


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_413_comes_before_400_403_and_410(hook, chunked):
    call = hook.call(call_sid=SID, status="completed")
    body = b"\xff" * (MAX_BODY + 10)
    reply = await hook.send("POST", hook.path(call), body=body, content_type="text/plain", sig=forged(), chunked=chunked)
    assert (reply.status, reply.text) == (413, "request body too large\n")


MALFORMED = [
    pytest.param(b"CallSid=CA1&Digits=\xff\xfe", FORM, "malformed form body\n", id="invalid-utf8"),
    pytest.param(b"CallSid=\xc3\x28", FORM, "malformed form body\n", id="invalid-utf8-sequence"),
    pytest.param(b"CallSid=\xed\xa0\x80", FORM, "malformed form body\n", id="utf8-encoded-surrogate"),
    pytest.param(b"CallSid=CA1&Digits", FORM, "malformed form body\n", id="field-without-equals"),
    pytest.param(b"CallSid=CA1&&Digits=7", FORM, "malformed form body\n", id="empty-field"),
    pytest.param(b"CallSid=CA1&Digits=%zz", FORM, "malformed form body\n", id="bad-percent-escape"),
    pytest.param(b"CallSid=CA1&Digits=%7", FORM, "malformed form body\n", id="truncated-percent-escape"),
    pytest.param(b"CallSid=CA1&Digits=%ff", FORM, "malformed form body\n", id="percent-encoded-invalid-utf8"),
    pytest.param(
        "&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode(), FORM, "malformed form body\n", id="too-many-fields"
    ),
    pytest.param(b"CallSid=CA1", "text/plain", "expected an application/x-www-form-urlencoded body\n", id="text-plain"),
    pytest.param(
        b'{"CallSid": "CA1"}', "application/json", "expected an application/x-www-form-urlencoded body\n", id="json"
    ),
    pytest.param(
        b'--b\r\nContent-Disposition: form-data; name="CallSid"\r\n\r\nCA1\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
        "expected an application/x-www-form-urlencoded body\n",
        id="multipart",
    ),
]


@pytest.mark.parametrize("body, content_type, text", MALFORMED)
async def test_malformed_form_is_400_before_the_signature_check(hook, body, content_type, text):
    call = hook.call(call_sid=SID)
    for tail in ("", "/key", "/status"):
        reply = await hook.send("POST", hook.path(call, tail), body=body, content_type=content_type, sig=forged())
        assert (reply.status, reply.text) == (400, text), tail
    assert (call.fetched, call.delivered, call.history, call.status) == (False, False, [], "queued")


@pytest.mark.parametrize("body, content_type, text", MALFORMED)
async def test_malformed_form_is_400_without_a_signing_key_too(hooks, body, content_type, text):
    hook = await hooks(signing_key=None)
    call = hook.call(call_sid=SID)
    reply = await hook.send("POST", hook.path(call), body=body, content_type=content_type)
    assert (reply.status, reply.text) == (400, text)
    assert not call.fetched


async def test_400_comes_before_410(hook):
    call = hook.call(call_sid=SID, status="completed")
    reply = await hook.send("POST", hook.path(call), body=b"CallSid=\xff", sig=None)
    assert (reply.status, reply.text) == (400, "malformed form body\n")


async def test_repeated_fields_are_a_valid_form(hook):
    call = hook.call(call_sid=SID)
    fields = fields_for() + [("CallSid", SID), ("Extra", "1"), ("Extra", "2")]
    reply = await hook.post(call, fields=fields)
    assert reply.xml().find("Gather") is not None


# --- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["", "/key", "/status"])
async def test_missing_bad_or_forged_signature_is_403(hook, tail):
    call = hook.call(call_sid=SID)
    path = hook.path(call, tail)
    fields = fields_for(Digits="7", CallStatus="completed", SequenceNumber="9")
    local = hook.base  # the URL this server sees: its Host header, not the public URL
    other = hook.call()
    cases = {
        "missing": None,
        "empty": "",
        "not base64": "!!not-a-signature!!",
        "random": forged(),
        "wrong key": hook.sign(path, fields, key=KEY + "x"),
        "signed over the Host URL": hook.sign(path, fields, origin=local),
        "signed over http": hook.sign(path, fields, origin="http://voice.example.test"),
        "signed over other fields": hook.sign(path, fields_for(Digits="3", CallStatus="completed", SequenceNumber="9")),
        "signed without a field": hook.sign(path, fields[:-1]),
        "signed over another token": hook.sign(hook.path(other, tail), fields),
        "signed over another tail": hook.sign(hook.path(call, "/key" if tail != "/key" else ""), fields),
        "too long": "A" * 4000,
    }
    for name, sig in cases.items():
        for header in ("X-SignalWire-Signature", "X-Twilio-Signature"):
            reply = await hook.send("POST", path, fields, sig=sig, header=header)
            assert (reply.status, reply.text) == (403, "invalid signature\n"), (name, header)
    assert (call.fetched, call.delivered, call.history, call.status) == (False, False, [], "queued")


@pytest.mark.parametrize("header", ["X-SignalWire-Signature", "X-Twilio-Signature", "x-twilio-signature"])
async def test_both_signature_headers_are_accepted(hook, header):
    call = hook.call(call_sid=SID)
    reply = await hook.post(call, header=header)
    assert reply.xml().find("Gather") is not None
    assert call.fetched


async def test_signature_uses_the_public_url_not_the_host_header(hook):
    call = hook.call(call_sid=SID)
    path = hook.path(call)
    fields = fields_for()
    reply = await hook.send("POST", path, fields, headers=[("Host", "evil.example"), ("X-Forwarded-Host", "evil.example")])
    assert reply.status == 200
    call2 = hook.call(call_sid=SID)
    reply = await hook.send(
        "POST", hook.path(call2), fields, sig=hook.sign(hook.path(call2), fields, origin="https://evil.example"),
        headers=[("Host", "evil.example"), ("X-Forwarded-Proto", "https")],
    )
    assert reply.status == 403


async def test_signature_with_the_default_port_is_accepted(hook):
    call = hook.call(call_sid=SID)
    path = hook.path(call)
    reply = await hook.send("POST", path, fields_for(), sig=hook.sign(path, fields_for(), origin=PUBLIC + ":443"))
    assert reply.status == 200


async def test_signature_covers_the_query_string(hook):
    call = hook.call(call_sid=SID)
    path = hook.path(call) + "?attempt=1"
    reply = await hook.send("POST", path, fields_for(), sig=hook.sign(hook.path(call), fields_for()))
    assert reply.status == 403
    reply = await hook.send("POST", path, fields_for())
    assert reply.status == 200


async def test_403_comes_before_410(hook):
    call = hook.call(call_sid=SID, status="completed")
    reply = await hook.post(call, sig=forged())
    assert (reply.status, reply.text) == (403, "invalid signature\n")


async def test_without_a_signing_key_no_signature_is_needed(hooks):
    hook = await hooks(signing_key=None)
    call = hook.call(call_sid=SID)
    reply = await hook.post(call, sig=None)
    assert reply.xml().find("Gather") is not None


# --- a call that is over ------------------------------------------------------------------------


async def test_call_over_is_410(hook):
    call = hook.call(call_sid=SID)
    assert (await hook.status(call, "completed", 0, CallDuration="12")).status == 200
    assert call.ended
    for tail in ("", "/key"):
        reply = await hook.post(call, tail, fields_for(Digits="7"))
        assert (reply.status, reply.text) == (410, "this call is over\n"), tail
        no_code(reply)
    assert not call.delivered and not call.fetched


async def test_status_route_answers_200_after_the_call_is_over(hook):
    """The platform's callbacks after the end (its final one after voice2fa hangs up, and its
    retries of what failed) get 200 for as long as the server runs, and change nothing."""
    call = hook.call(call_sid=SID)
    assert (await hook.status(call, "completed", 3, CallDuration="12")).status == 200
    for status, seq, duration in (("completed", 4, "13"), ("completed", 3, "12"), ("busy", 9, "0"), ("ringing", 1, "")):
        reply = await hook.status(call, status, seq, CallDuration=duration)
        assert (reply.status, reply.body) == (200, b""), status
        no_code(reply)
    assert (call.status, call.duration, events(call)) == ("completed", 12, ["completed"])
    reply = await hook.post(call, "/status", status_fields("completed", 5), sig=forged())
    assert (reply.status, reply.text) == (403, "invalid signature\n")  # still signed


async def test_after_voice2fa_hangs_up_no_document_but_the_final_status_is_taken(hook):
    """Once voice2fa hung up (flow sets hung_up), the cXML routes answer 410 and never the code,
    while the platform's final callback that follows, with its CallDuration, is what is kept."""
    call = hook.call(key=None, call_sid=SID)
    await hook.status(call, "in-progress", 2)
    call.hung_up = True
    for tail in ("", "/key"):
        reply = await hook.post(call, tail, fields_for(Digits="7"))
        assert (reply.status, reply.text) == (410, "this call is over\n"), tail
        no_code(reply)
    assert not call.delivered
    reply = await hook.status(call, "completed", 3, CallDuration="27")
    assert (reply.status, reply.body) == (200, b"")
    assert (call.status, call.duration, call.ended) == ("completed", 27, True)


@pytest.mark.parametrize("tail", ["", "/key"])
async def test_another_callsid_is_410(hook, tail):
    call = hook.call(call_sid=SID)
    reply = await hook.post(call, tail, fields_for(sid=OTHER_SID, Digits="7"))
    assert (reply.status, reply.text) == (410, "not this call\n")
    no_code(reply)
    assert (call.fetched, call.delivered, call.history, call.call_sid) == (False, False, [], SID)
    reply = await hook.post(call, tail, fields_for(Digits="7"))
    assert reply.status == 200


async def test_the_first_fetch_adopts_the_callsid(hook):
    call = hook.call()
    assert call.call_sid is None
    assert (await hook.post(call, fields=fields_for(sid=SID))).status == 200
    assert call.call_sid == SID
    reply = await hook.post(call, "/key", fields_for(sid=OTHER_SID, Digits="7"))
    assert (reply.status, reply.text) == (410, "not this call\n")
    assert not call.delivered


# --- the key-press gate ---------------------------------------------------------------------------


def assert_gate(reply: Reply, call: CallState, *, retry: bool) -> None:
    root = reply.xml()
    gather = root.find("Gather")
    assert gather is not None
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "method": "POST",
        "action": f"{PUBLIC}/v/{call.token}/key",
        "timeout": "12",
    }
    assert [say.text for say in gather.findall("Say")] == [f"Press {call.key} to hear your code."]
    first = root[0]
    assert first.tag == "Say"
    assert first.text == ("That was not the right key." if retry else
                          "Hello. This is an automated call to check that this phone number is yours.")
    assert digit_runs(root) == []
    no_code(reply)


async def test_gate_then_the_right_key_reads_the_code(hook):
    call = hook.call(key="7")
    gate = await hook.post(call)
    assert_gate(gate, call, retry=False)
    assert (call.fetched, call.delivered, call.status, call.call_sid) == (True, False, "in-progress", SID)

    reply = await hook.post(call, "/key", fields_for(Digits="7"))
    root = reply.xml()
    assert root[0].tag == "Gather"  # keys steer the reading
    assert root[0][0].text == "Your code is:"
    assert digit_runs(root) == [CODE, CODE]
    for say in root.iter("Say"):
        assert len(re.findall(r"[0-9]", say.text or "")) <= 2  # each digit its own <Say>; the options name 2 keys
        assert not re.search(r"[0-9]{2}", say.text or "")
    assert CODE.encode() not in reply.body  # never one number
    assert root[-1].tag == "Hangup"
    assert call.delivered
    assert events(call)[:2] == ["fetched", "in-progress"]
    assert events(call)[-1] == "delivered"


@pytest.mark.parametrize("key", list("0123456789"))
async def test_the_gate_names_the_key_as_a_numeral(hook, key):
    call = hook.call(key=key)
    assert_gate(await hook.post(call), call, retry=False)
    wrong = "1" if key != "1" else "2"
    assert_gate(await hook.post(call, "/key", fields_for(Digits=wrong)), call, retry=True)
    reply = await hook.post(call, "/key", fields_for(Digits=key))
    assert digit_runs(reply.xml()) == [CODE, CODE]


async def test_wrong_keys_get_the_gate_again_then_goodbye(hook):
    assert GATE_TRIES == 3
    call = hook.call(key="7")
    assert_gate(await hook.post(call), call, retry=False)
    for n, digits in enumerate(["3", ""][: GATE_TRIES - 1], start=1):
        reply = await hook.post(call, "/key", fields_for(Digits=digits))
        assert_gate(reply, call, retry=True)
        assert call.wrong_keys == n
        assert not call.delivered
    reply = await hook.post(call, "/key", fields_for(Digits="77"))
    root = reply.xml()
    assert [(child.tag, child.text) for child in root] == [("Say", "Goodbye."), ("Hangup", None)]
    no_code(reply)
    assert call.wrong_keys == GATE_TRIES
    assert not call.delivered
    assert events(call)[:2] == ["fetched", "in-progress"]
    assert "delivered" not in events(call)


async def test_no_code_after_the_gate_gave_up(hook):
    """Once the callee used up the tries, the right key does not bring the code any more."""
    call = hook.call(key="7")
    await hook.post(call)
    for _ in range(GATE_TRIES):
        await hook.post(call, "/key", fields_for(Digits="1"))
    for tail in ("/key", ""):
        reply = await hook.post(call, tail, fields_for(Digits="7"))
        assert reply.status in (200, 410)
        no_code(reply)
    assert not call.delivered


async def test_without_a_key_the_code_is_read_at_once(hook):
    call = hook.call(key=None)
    reply = await hook.post(call)
    root = reply.xml()
    assert root[0].text == "Hello. This is an automated call to check that this phone number is yours."
    assert root[2].tag == "Gather" and root[2].get("action") == f"{PUBLIC}/v/{call.token}/read"
    assert digit_runs(root) == [CODE, CODE]
    assert (call.fetched, call.delivered) == (True, True)
    assert events(call)[:2] == ["fetched", "in-progress"]
    assert events(call)[-1] == "delivered"


async def test_the_code_is_only_in_the_code_document(hook):
    call = hook.call(key="7")
    seen: list[Reply] = [
        await hook.send("GET", f"/health/{hook.config.health_nonce}"),
        await hook.send("GET", "/health/nope"),
        await hook.send("POST", hook.path(secrets.token_urlsafe(32)), fields_for()),
        await hook.send("GET", hook.path(call)),
        await hook.post(call, sig=forged()),
        await hook.post(call, body=b"\xff", sig=None),
        await hook.post(call, fields=padded(fields_for(), MAX_BODY + 1)),
        await hook.status(call, "ringing", 1),
        await hook.post(call),  # the gate
        await hook.post(call, "/key", fields_for(Digits="4")),  # wrong key
    ]
    for reply in seen:
        no_code(reply)
    code_document = await hook.post(call, "/key", fields_for(Digits="7"))
    assert carries_code(code_document.body, {})  # spoken digit by digit
    assert CODE not in header_text(code_document.headers)
    after = [
        await hook.status(call, "completed", 5, CallDuration="30"),
        await hook.post(call, "/key", fields_for(Digits="7")),  # 410 now
        await hook.send("GET", f"/health/{hook.config.health_nonce}"),
    ]
    assert after[1].status == 410
    for reply in after:
        no_code(reply)


# --- replay: the code is served a bounded number of times -----------------------------------------


def spoken_code(reply: Reply) -> bool:
    return reply.status == 200 and digit_runs(reply.xml()) == [CODE, CODE]


async def test_a_replayed_signed_key_press_stops_getting_the_code(hook):
    """An attacker who captured the signed request that pressed the right key replays it: the
    code comes back at most MAX_CODE_READS times in all, then 410 without the code."""
    assert MAX_CODE_READS == 3
    call = hook.call(key="7", call_sid=SID)
    assert_gate(await hook.post(call), call, retry=False)
    fields = fields_for(Digits="7")
    path = hook.path(call, "/key")
    body, sig = urlencode(fields).encode(), hook.sign(path, fields)  # captured once, replayed as is
    replies = [await hook.send("POST", path, body=body, sig=sig) for _ in range(MAX_CODE_READS + 6)]
    assert [spoken_code(r) for r in replies] == [True] * MAX_CODE_READS + [False] * 6
    for reply in replies[MAX_CODE_READS:]:
        assert (reply.status, reply.text) == (410, "the code has been read enough times\n")
        no_code(reply)
    assert call.code_reads == MAX_CODE_READS
    assert events(call).count("delivered") == 1


async def test_every_way_to_the_code_counts_against_one_budget(hook):
    """The first document after delivery, the key route with any digits once delivered, the
    callee's repeat key: one budget."""
    call = hook.call(key="7", call_sid=SID)
    await hook.post(call)
    assert spoken_code(await hook.post(call, "/key", fields_for(Digits="7")))
    assert spoken_code(await hook.post(call))  # the first document, after delivery: the code again
    assert spoken_code(await hook.post(call, "/key", fields_for(Digits="3")))
    assert call.code_reads == MAX_CODE_READS == 3
    for tail, digits in (("", ""), ("/key", "7"), ("/key", "1"), ("/read", speech.REPEAT_KEY), ("/read", speech.SLOWER_KEY)):
        reply = await hook.post(call, tail, fields_for(Digits=digits))
        assert reply.status == 410, tail
        no_code(reply)
    assert call.code_reads == MAX_CODE_READS


async def test_without_the_gate_the_first_document_is_bounded_too(hook):
    call = hook.call(key=None, call_sid=SID)
    replies = [await hook.post(call) for _ in range(MAX_CODE_READS + 3)]
    assert [spoken_code(r) for r in replies] == [True] * MAX_CODE_READS + [False] * 3
    assert all(r.status == 410 and not carries_code(r.body, r.headers) for r in replies[MAX_CODE_READS:])
    # the status route is not part of the budget: the platform's callbacks still get 200
    assert (await hook.status(call, "completed", 1, CallDuration="20")).status == 200
    assert (call.status, call.duration) == ("completed", 20)


# --- status callbacks -----------------------------------------------------------------------------


async def test_status_callbacks_in_order_duplicates_and_older_ignored(hook):
    call = hook.call(call_sid=SID)
    steps = [
        ("initiated", 0, "initiated", True),
        ("ringing", 1, "ringing", True),
        ("ringing", 1, "ringing", False),  # a duplicate
        ("initiated", 0, "ringing", False),  # older than what we know
        ("queued", 1, "ringing", False),
        ("answered", 2, "in-progress", True),
        ("in-progress", 3, "in-progress", False),  # answered + in-progress: noted once
        ("ringing", 2, "in-progress", False),
    ]
    for status, seq, expected, woke in steps:
        call.changed.clear()
        reply = await hook.status(call, status, seq)
        assert (reply.status, reply.body) == (200, b"")
        no_code(reply)
        assert call.status == expected, (status, seq)
        assert call.changed.is_set() == woke, (status, seq)
    assert events(call) == ["initiated", "ringing", "in-progress"]
    assert not call.ended

    call.changed.clear()
    reply = await hook.status(call, "completed", 4, CallDuration="17")
    assert reply.status == 200
    assert call.ended and call.status == "completed" and call.duration == 17
    assert call.changed.is_set()
    assert events(call) == ["initiated", "ringing", "in-progress", "completed"]
    reply = await hook.status(call, "completed", 5, CallDuration="18")
    assert (reply.status, reply.body) == (200, b"")  # after the end: 200, and nothing changes
    assert call.duration == 17


async def test_answered_and_in_progress_without_sequence_numbers(hook):
    call = hook.call(call_sid=SID)
    for status in ("ringing", "answered", "in-progress", "ringing", "answered"):
        assert (await hook.status(call, status)).status == 200
    assert call.status == "in-progress"
    assert events(call) == ["ringing", "in-progress"]


@pytest.mark.parametrize("status", ["teleported", "", "COMPLETED", "in progress", "completed ", "Busy"])
async def test_unknown_statuses_are_200_and_ignored(hook, status):
    call = hook.call(call_sid=SID)
    await hook.status(call, "ringing", 1)
    call.changed.clear()
    reply = await hook.status(call, status, 7, CallDuration="3")
    assert (reply.status, reply.body) == (200, b"")
    assert (call.status, call.ended, call.duration) == ("ringing", False, None)
    assert events(call) == ["ringing"]
    assert not call.changed.is_set()


async def test_status_of_another_call_is_ignored(hook):
    call = hook.call(call_sid=SID)
    reply = await hook.status(call, "completed", 3, sid=OTHER_SID, CallDuration="9")
    assert reply.status == 200
    assert (call.status, call.ended, call.duration, call.history) == ("queued", False, None, [])


@pytest.mark.parametrize("final", ["completed", "busy", "failed", "no-answer", "canceled"])
async def test_a_final_status_ends_the_call(hook, final):
    call = hook.call(call_sid=SID)
    await hook.status(call, "ringing", 1)
    reply = await hook.status(call, final, 2, CallDuration="0" if final != "completed" else "42")
    assert reply.status == 200
    assert call.ended and call.status == final
    assert call.duration == (42 if final == "completed" else 0)
    assert events(call) == ["ringing", final]
    for tail in ("", "/key"):
        assert (await hook.post(call, tail, fields_for(Digits="7"))).status == 410
    assert (await hook.post(call, "/status", status_fields("completed", 3, CallDuration="9"))).status == 200
    assert call.status == final


async def test_bad_numbers_in_callbacks_are_tolerated(hook):
    call = hook.call(call_sid=SID)
    reply = await hook.status(call, "ringing", None, SequenceNumber="x")
    assert reply.status == 200 and call.status == "ringing"
    reply = await hook.status(call, "completed", None, SequenceNumber="1e9", CallDuration="soon")
    assert reply.status == 200
    assert call.ended and call.duration is None


async def test_history_is_bounded(hook):
    call = hook.call(call_sid=SID)
    for seq in range(2 * MAX_HISTORY + 10):
        reply = await hook.status(call, "ringing" if seq % 2 else "initiated", seq)
        assert reply.status == 200
    assert len(call.history) == MAX_HISTORY
    assert call.status == "ringing"  # the state itself is still up to date
    assert call.sequence == 2 * MAX_HISTORY + 9


async def test_the_platforms_final_callback_after_voice2fa_hangs_up_is_recorded(tmp_path):
    """The call is answered but the webhook never fetched, so voice2fa hangs up; the platform
    then posts its final status with CallDuration. That callback gets 200, and its status and
    duration are what `send` reports and the store keeps (not a guess)."""
    async with Sandbox(caller=CALLER) as sb:
        sb.scenario = Scenario(fetch=False)
        port = free_port()
        settings = Settings(
            space=sb.url, project=sb.project, token=sb.token, caller=CALLER, signing_key=sb.signing_key,
            public_url=f"http://127.0.0.1:{port}", listen=Listen("127.0.0.1", port), state_dir=tmp_path / "s",
            # polling waits longer than the grace period: the callback is the only way to learn the end
            timing=Timing(ring_timeout=5, poll_interval=30, webhook_grace=1.0, api_timeout=5),
            allowed_countries=frozenset({"US"}),
        )

        async def call_lasts_seven_seconds() -> None:  # the platform's clock: answered 7 s before the hang-up
            while not any(c.answered and c.started for c in sb.calls.values()):
                await asyncio.sleep(0.01)
            sim = next(iter(sb.calls.values()))
            sim.started -= datetime.timedelta(seconds=7)

        timer = asyncio.ensure_future(asyncio.wait_for(call_lasts_seven_seconds(), 20))
        result = await asyncio.wait_for(
            flow.send(settings, flow.SendOptions(number=phone.parse(NUMBER)), Quiet()), 30
        )
        await timer
        sim = sb.calls[result.call_sid]
    assert (result.delivered, result.call_status) == (False, "completed")
    assert result.duration == sim.duration >= 7  # what the platform said, not a guess (None)
    final = [d for d in sim.deliveries if d.status == "completed"]
    assert [d.answers for d in final] == [[200]]  # taken at once: no error, no retry
    with Store.open(tmp_path / "s") as store:
        assert store.newest(NUMBER).call_status == "completed"


class Quiet:
    def warn(self, text: str) -> None: ...
    def debug(self, text: str) -> None: ...
    def step(self, event: str, elapsed: float, detail: str | None = None) -> None: ...
    def heard(self, lines: list[str]) -> None: ...


# --- health ------------------------------------------------------------------------------------


async def test_health_with_the_right_nonce(hook):
    nonce = hook.config.health_nonce
    assert webhook.health_url(hook.config) == f"{PUBLIC}/health/{nonce}"
    reply = await hook.send("GET", f"/health/{nonce}")
    assert reply.status == 200
    proof = hmac.new(hook.config.health_secret, nonce.encode(), hashlib.sha256).hexdigest()
    assert reply.text == f"voice2fa {proof}\n"
    assert reply.body == webhook.health_answer(hook.config)
    assert nonce not in reply.text
    no_code(reply)
    # another run (another secret) answers the same nonce differently: only this run can prove it
    other = ServerConfig(PUBLIC, KEY, health_nonce=nonce)
    assert webhook.health_answer(other) != reply.body
    assert len(hook.config.health_secret) == 32
    assert "health_secret" not in repr(hook.config) and proof not in repr(hook.config)


@pytest.mark.parametrize(
    "nonce",
    [
        "wrong",
        "x" * 22,
        "__NONCE__x",
        "__NONCE_PREFIX__",
        "%C3%A9t%C3%A9",
        quote("ñandú-日本"),
        "%ff%fe",
        "%ED%A0%80",
        "%00",
        "%F0%9F%98%80" * 20,
        "a" * 3000,
    ],
)
async def test_health_with_a_wrong_nonce_is_404(hook, nonce):
    real = hook.config.health_nonce
    nonce = nonce.replace("__NONCE__", real).replace("__NONCE_PREFIX__", real[:-1])
    reply = await hook.send("GET", f"/health/{nonce}")
    assert (reply.status, reply.text) == (404, "not found\n")


# --- preflight: only this run's server passes ------------------------------------------------------


async def echo(request: web.Request) -> web.Response:
    """A server that answers any path with the path, and with what voice2fa used to answer."""
    nonce = request.path.rsplit("/", 1)[-1]
    return web.Response(text=f"voice2fa {nonce}\n{request.path_qs}\n{request.url}\n")


async def test_preflight_is_not_fooled_by_an_echo():
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with serving(app) as base:
        config = ServerConfig(base, KEY)
        async with aiohttp.ClientSession() as http, http.get(webhook.health_url(config)) as resp:
            assert resp.status == 200 and config.health_nonce in await resp.text()  # the echo "passes" the old check
        with pytest.raises(ConfigError) as info:
            await flow.preflight(config, Listen("127.0.0.1", 5000), 5)
    assert info.value.message == (
        f"the public URL {base} reaches another server, not this voice2fa: is the tunnel running and "
        "forwarding to 127.0.0.1:5000? (--skip-preflight to skip this check)"
    )


async def test_preflight_refuses_another_voice2fa_run():
    """Another voice2fa (another secret) behind the URL, even one that knows our nonce, fails."""
    mine = ServerConfig(PUBLIC, KEY)
    async with product_server(ServerConfig(PUBLIC, KEY, health_nonce=mine.health_nonce)) as port:
        base = f"http://127.0.0.1:{port}"
        with pytest.raises(ConfigError, match="reaches another server"):
            await flow.preflight(ServerConfig(base, KEY, health_nonce=mine.health_nonce), Listen("127.0.0.1", port), 5)


async def test_preflight_passes_through_this_server():
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = ServerConfig(f"http://127.0.0.1:{port}", KEY)
    async with Server(make_app(config), sock):
        await flow.preflight(config, Listen("127.0.0.1", port), 5)  # no error


# --- a public URL with a path --------------------------------------------------------------------


async def test_public_url_with_a_path_prefix(hooks):
    public = "https://example.ngrok.app/voice2fa"
    hook = await hooks(public)
    assert hook.config.prefix == "/voice2fa"
    call = hook.call(key="7")
    assert webhook.call_url(hook.config, call) == f"{public}/v/{call.token}"
    assert webhook.call_url(hook.config, call, "/status") == f"{public}/v/{call.token}/status"
    assert webhook.health_url(hook.config) == f"{public}/health/{hook.config.health_nonce}"

    bare = f"/v/{call.token}"
    reply = await hook.send("POST", bare, fields_for())  # signed over origin + /v/…: no route there
    assert reply.status == 404
    path = f"/voice2fa/v/{call.token}"
    reply = await hook.send("POST", path, fields_for(), sig=hook.sign(bare, fields_for()))  # signed without the prefix
    assert (reply.status, reply.text) == (403, "invalid signature\n")
    assert not call.fetched

    gate = await hook.send("POST", path, fields_for())
    assert gate.xml().find("Gather").get("action") == f"{public}/v/{call.token}/key"
    reply = await hook.send("POST", path + "/key", fields_for(Digits="7"))
    assert digit_runs(reply.xml()) == [CODE, CODE]
    assert (await hook.send("POST", f"/voice2fa/v/{call.token}/status", status_fields("completed", 9))).status == 200
    assert call.ended

    assert (await hook.send("GET", f"/health/{hook.config.health_nonce}")).status == 404
    reply = await hook.send("GET", f"/voice2fa/health/{hook.config.health_nonce}")
    assert (reply.status, reply.body) == (200, webhook.health_answer(hook.config))


# --- the server and its socket ----------------------------------------------------------------------


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_server_stops_listening_when_the_block_exits():
    config = ServerConfig(PUBLIC, None)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as http:  # its kept-alive connection must not keep the server up
        async with Server(make_app(config), sock):
            async with http.get(f"http://127.0.0.1:{port}/health/{config.health_nonce}") as resp:
                assert resp.status == 200
                await resp.read()
        assert sock.fileno() == -1
        assert refused(port)


async def test_server_stops_listening_after_an_error_too():
    config = ServerConfig(PUBLIC, None)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    with pytest.raises(RuntimeError, match="boom"):
        async with Server(make_app(config), sock):
            assert not refused(port)
            raise RuntimeError("boom")
    assert refused(port)


def test_bind_gives_a_listening_socket():
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getblocking() is False
        socket.create_connection(sock.getsockname(), timeout=2).close()
    finally:
        sock.close()


def test_bind_address_in_use():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            bind("127.0.0.1", port)
    assert info.value.message == f"--listen 127.0.0.1:{port}: the address is already in use: choose another port"
    assert info.value.exit_code == EXIT_USAGE == 2


def test_bind_unresolvable_host():
    with pytest.raises(ConfigError) as info:
        bind("no-such-host.invalid", 5000)
    assert info.value.message == (
        "--listen no-such-host.invalid:5000: cannot resolve 'no-such-host.invalid' to an address of this machine"
    )
    assert info.value.exit_code == 2


def test_bind_an_address_not_of_this_machine():
    with pytest.raises(ConfigError) as info:
        bind("192.0.2.1", 5000)
    assert info.value.message == "--listen 192.0.2.1:5000: 192.0.2.1 is not an address of this machine"
    assert info.value.exit_code == 2


def test_bind_names_what_it_binds_for():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            bind("127.0.0.1", port, what="VOICE2FA_LISTEN")
    assert info.value.message.startswith(f"VOICE2FA_LISTEN 127.0.0.1:{port}: ")


# --- no traceback from a client that misbehaves at the HTTP level ---------------------------------------


@contextlib.asynccontextmanager
async def product_server(config: ServerConfig, *calls: CallState):
    """The app behind the product's own Server (what `send` runs), on 127.0.0.1:0."""
    app = make_app(config)
    for call in calls:
        register(app, call)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with Server(app, sock):
        yield port


async def raw_exchange(port: int, data: bytes, *, answer: bool = True, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            pass
        if not answer:
            return b""
        try:
            return await asyncio.wait_for(reader.read(), timeout)
        except ConnectionError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def round_trips(port: int, config: ServerConfig, n: int = 20) -> None:
    """Let the server's loop run through whatever a vanished client left behind."""
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            async with http.get(f"http://127.0.0.1:{port}{config.prefix}/health/{config.health_nonce}") as resp:
                assert resp.status == 200


def errors_logged(caplog) -> list[str]:
    out = []
    for record in caplog.records:
        if record.levelno >= logging.ERROR or record.exc_info:
            exc = record.exc_info[1] if record.exc_info else None
            detail = " ".join(str(exc).split())[:90] if exc else ""
            out.append(f"{record.name}: {record.getMessage()} [{type(exc).__name__ if exc else '-'}: {detail}]")
    return out


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"Content-Length: 1000\r\n\r\nCallSid=CA", id="content-length"),
        pytest.param(b"Transfer-Encoding: chunked\r\n\r\n40\r\nCallSid=CA", id="chunked"),
    ],
)
async def test_a_client_vanishing_mid_body_leaves_no_traceback(caplog, request_bytes):
    caplog.set_level(logging.ERROR)
    config = ServerConfig(PUBLIC, KEY)
    call = CallState(session_id="s", code=CODE, voice=speech.Voice(), key="7", call_sid=SID)
    async with product_server(config, call) as port:
        head = f"POST /v/{call.token} HTTP/1.1\r\nHost: voice.example.test\r\nContent-Type: {FORM}\r\n".encode()
        await raw_exchange(port, head + request_bytes, answer=False)
        await round_trips(port, config)
    assert errors_logged(caplog) == []
    assert not call.fetched


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /health/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", id="non-ascii-path"),
        pytest.param(b"GET /health/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", id="header-too-long"),
        pytest.param(b"POST /v/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", id="two-lengths"),
        pytest.param(b"POST /v/x HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", id="header-without-colon"),
    ],
)
async def test_malformed_http_is_400_without_a_traceback(caplog, request_bytes):
    caplog.set_level(logging.ERROR)
    config = ServerConfig(PUBLIC, KEY)
    async with product_server(config) as port:
        answer = await raw_exchange(port, request_bytes)
        await round_trips(port, config, 3)
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer[:100]
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_a_body_that_cannot_be_decoded_is_a_4xx_without_a_traceback(caplog, encoding):
    caplog.set_level(logging.ERROR)
    config = ServerConfig(PUBLIC, KEY)
    call = CallState(session_id="s", code=CODE, voice=speech.Voice(), key="7", call_sid=SID)
    async with product_server(config, call) as port:
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{port}/v/{call.token}",
            data=b"CallSid=CA1&Digits=7",
            headers={"Content-Type": FORM, "Content-Encoding": encoding, SIG: forged()},
        ) as resp:
            status, body = resp.status, await resp.read()
        await round_trips(port, config, 3)
    assert 400 <= status < 500, (status, body)
    assert errors_logged(caplog) == []
    assert not call.fetched


# --- starvation: floods of slow and idle connections ------------------------------------------------

FLOOD = Path(__file__).with_name("flood.py")
FLOOD_SIZE = 1100  # more connections than the open-file limit below allows
FILE_LIMIT = 1024


def with_open_file_limit(argv: list[str], soft: int, hard: int) -> list[str]:
    """`argv` run under these open-file limits (through sh's ulimit: no preexec_fn, which is not
    safe while the test process runs threads, such as the sandbox's)."""
    script = 'ulimit -S -n "$2" && ulimit -H -n "$1" && shift 2 && exec "$@"'
    return ["sh", "-c", script, "sh", str(hard), str(soft), *argv]


def start_flood(port: int, count: int, mode: str, seconds: float = 40) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(FLOOD), str(port), str(count), mode, str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_json_line(proc: subprocess.Popen, timeout: float) -> dict:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no answer from the flood within the time bound"
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return json.loads(line)


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    """Kill `proc` if it still runs; what it printed (when not read already)."""
    if proc.poll() is not None and (proc.stdout is None or proc.stdout.closed):
        return "", ""
    if proc.poll() is None:
        proc.kill()
    try:
        return proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        return "", ""


async def platform_request(url: str, signing_key: str, fields: list[tuple[str, str]]) -> int:
    """A signed request with the platform's own webhook timeouts: 2 s to connect, 5 s to read."""
    timeout = aiohttp.ClientTimeout(sock_connect=2, sock_read=5)
    headers = {SIG: signature.compute(signing_key, url, fields), "Content-Type": FORM}
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(url, data=urlencode(fields), headers=headers) as resp:
            await resp.read()
            return resp.status


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX limits")
def test_a_flood_of_slow_and_idle_connections_does_not_starve_the_webhook(state_dir, tmp_path):
    """The audit's attack: `voice2fa send` runs with an open-file limit of 1024 (soft and hard, so
    raising it cannot help) while 1,100 slow or idle connections are held open on its webhook.
    A signed platform request is still served within the platform's timeouts, the call delivers
    its code, and no traceback (nor a flood of warnings) reaches the terminal."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < FILE_LIMIT:
        pytest.skip("the hard open-file limit is below 1024 here")
    gate = threading.Event()

    async def gated_sleep(delay: float) -> None:  # the simulated call waits until the flood is in place
        for _ in range(6000):
            if gate.is_set():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(delay)

    sb = ThreadedSandbox(caller=CALLER, sleep=gated_sleep)
    floods: list[subprocess.Popen] = []
    cli = None
    try:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
        env.update(
            SIGNALWIRE_SPACE=sb.url, SIGNALWIRE_PROJECT=sb.project, SIGNALWIRE_TOKEN=sb.token,
            SIGNALWIRE_NUMBER=CALLER, SIGNALWIRE_SIGNING_KEY=sb.signing_key,
            VOICE2FA_PUBLIC_URL=f"http://127.0.0.1:{port}", VOICE2FA_LISTEN=f"127.0.0.1:{port}",
            VOICE2FA_STATE_DIR=str(state_dir), NO_COLOR="1", **FAST,
        )
        cli = subprocess.Popen(
            with_open_file_limit(voice2fa_command() + ["send", NUMBER, "--no-prompt"], FILE_LIMIT, FILE_LIMIT),
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(3000):  # the call is created once the server listens and the preflight passed
            if sb.sandbox.calls or cli.poll() is not None:
                break
            time.sleep(0.01)
        assert sb.sandbox.calls, f"no call was created: {cli.poll()} {stop(cli)}"
        sim = next(iter(sb.sandbox.calls.values()))

        half = FLOOD_SIZE // 2
        floods = [start_flood(port, half, "idle"), start_flood(port, FLOOD_SIZE - half, "slow")]
        opened = [read_json_line(f, 60)["opened"] for f in floods]
        assert sum(opened) > FILE_LIMIT, opened  # the connections were made (some may be closed already)

        fields = [("AccountSid", sb.project), ("CallSid", sim.sid), ("CallStatus", "queued")]
        assert asyncio.run(platform_request(sim.status_callback, sb.signing_key, fields)) == 200

        gate.set()  # the platform rings, answers, fetches the webhook (signed), presses the key
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err
        assert sb.heard_code() and re.fullmatch(r"[0-9]{6}", sb.heard_code())
        assert "Traceback" not in err and "out of system resource" not in err, err[:3000]
        warnings = [line for line in err.splitlines() if "webhook" in line and ("connections" in line or "open files" in line)]
        # Each condition is told once at most, never a flood: running out of open files (the
        # accept errors), and the connection cap at work. Which of them shows depends on timing.
        out_of_files = [line for line in warnings if "ran out of open files" in line]
        capped = [line for line in warnings if "connections open" in line]
        assert len(out_of_files) <= 1 and len(capped) <= 1, warnings
        assert len(warnings) == len(out_of_files) + len(capped), warnings
        assert len(err.splitlines()) < 30, err[:3000]  # the usual timeline, not a flood
    finally:
        gate.set()
        for proc in floods:
            stop(proc)
        if cli is not None:
            stop(cli)
        sb.stop()


SERVE_SCRIPT = """
import asyncio, json, logging, os, resource, sys
from voice2fa_cli.voice import speech, webhook
from voice2fa_cli.web import server as web_server

class Reporter:
    def warn(self, text): print("warning: " + text, file=sys.stderr, flush=True)
    def debug(self, text): print("debug: " + text, file=sys.stderr, flush=True)

async def main(mode):
    config = webhook.ServerConfig("http://127.0.0.1", None)
    app = webhook.make_app(config)
    sock = web_server.bind("127.0.0.1", 0)
    try:
        server = web_server.Server(app, sock, Reporter())
    except TypeError:  # a Server without a reporter (the code before the fix)
        server = web_server.Server(app, sock)
    async with server:
        held = []
        if mode == "exhaust":  # something else took every descriptor but a few
            try:
                while len(held) < 100000:
                    held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            for fd in held[-3:]:
                os.close(fd)
            held = held[:-3]
        print(json.dumps({"port": sock.getsockname()[1], "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)}), flush=True)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
        await asyncio.wait_for(done, 60)
        loop.remove_reader(sys.stdin.fileno())
        for fd in held:
            os.close(fd)
        # errors from anywhere in the loop and asyncio's logger: never a traceback
        loop.call_exception_handler({"message": "Fatal error on transport", "exception": ConnectionResetError("gone")})
        try:
            raise ValueError("a bug somewhere")
        except ValueError:
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
        await asyncio.sleep(0.05)
    print(json.dumps({"done": True}), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def start_server_process(mode: str, soft: int, hard: int) -> subprocess.Popen:
    return subprocess.Popen(
        with_open_file_limit([sys.executable, "-c", SERVE_SCRIPT, mode], soft, hard), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_serving_raises_the_soft_open_file_limit_to_the_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 512:
        pytest.skip("the hard open-file limit is too low here")
    target = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    proc = start_server_process("plain", 256, target)
    try:
        info = read_json_line(proc, 30)
        assert info["nofile"] == [target, target]
        out, err = proc.communicate(timeout=30)  # closes its stdin: it stops serving
    finally:
        stop(proc)
    assert json.loads(out) == {"done": True}
    assert "Traceback" not in err, err


def test_running_out_of_open_files_is_one_warning_line_and_never_a_traceback():
    """Something else took every descriptor but a few; a flood of connections then makes every
    accept() fail with EMFILE (asyncio retries each second). The terminal gets one warning line,
    and errors from asyncio's logger and the loop's exception handler never a traceback."""
    proc = start_server_process("exhaust", 256, 256)
    flood = None
    try:
        port = read_json_line(proc, 30)["port"]
        flood = start_flood(port, 200, "idle", seconds=20)
        read_json_line(flood, 60)
        time.sleep(2.5)  # not a timing assertion: lets asyncio retry accept() a couple of times
        out, err = proc.communicate(timeout=60)  # closes its stdin: it stops serving
    finally:
        if flood is not None:
            stop(flood)
        stop(proc)
    assert json.loads(out.splitlines()[-1]) == {"done": True}, (out, err[:2000])
    assert "Traceback" not in err and "out of system resource" not in err, err[:3000]
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: the webhook ran out of open files (limit 256): new connections wait while idle ones are closed"]
    assert len(err) < 5000, err[:3000]


@contextlib.asynccontextmanager
async def limited_server(limits: Limits, *calls: CallState, key: str | None = KEY):
    """The product's Server with short (or small) limits; yields (port, server)."""
    config = ServerConfig(PUBLIC, key, limits=limits)
    app = make_app(config)
    for call in calls:
        register(app, call)
    sock = bind("127.0.0.1", 0)
    async with Server(app, sock) as server:
        yield sock.getsockname()[1], server


async def closed_by_server(reader: asyncio.StreamReader, bound: float = 10.0) -> bytes | None:
    """What the server sent before closing the connection, or None when it was still open after
    `bound` seconds (a bound on waiting, not a timing assertion)."""
    got = b""
    loop = asyncio.get_running_loop()
    end = loop.time() + bound
    while loop.time() < end:
        try:
            data = await asyncio.wait_for(reader.read(4096), end - loop.time())
        except asyncio.TimeoutError:
            return None
        except ConnectionError:
            return got
        if not data:
            return got
        got += data
    return None


LONG = 60.0  # a limit that never fires within a test


async def test_a_connection_that_sends_nothing_is_closed():
    async with limited_server(Limits(idle=0.2, head=LONG, body=LONG)) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_headers_that_never_end_are_closed_however_slowly_they_drip():
    """A slow-loris: one header byte at a time. The head limit counts from the request's first
    byte; bytes that keep coming do not extend it."""
    async with limited_server(Limits(idle=LONG, head=0.3, body=LONG)) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")

        async def drip() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(400):  # at most 20 s
                    writer.write(b"a")
                    await writer.drain()
                    await asyncio.sleep(0.05)

        dripping = asyncio.ensure_future(drip())
        try:
            assert await closed_by_server(reader) == b""
        finally:
            dripping.cancel()
            writer.close()


async def test_a_body_that_never_arrives_is_408_and_closed():
    call = CallState(session_id="s", code=CODE, voice=speech.Voice(), key=None, call_sid=SID)
    async with limited_server(Limits(idle=LONG, head=LONG, body=0.3), call) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /v/{call.token} HTTP/1.1\r\nHost: a\r\nContent-Type: {FORM}\r\n"
            "Content-Length: 1000\r\n\r\nCallSid=CA".encode()
        )
        answer = await closed_by_server(reader)
        writer.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 408 "), answer
    assert answer.endswith(b"\r\n\r\nthe request body did not arrive in time\n")
    assert not call.fetched and not call.delivered


async def test_a_kept_alive_connection_is_closed_once_idle():
    async with limited_server(Limits(idle=0.3, head=LONG, body=LONG)) as (port, server):
        config = server.app[webhook.CONFIG]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /health/{config.health_nonce} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        answer = await closed_by_server(reader)
        writer.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(webhook.health_answer(config))


async def open_idle(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]


async def test_at_the_cap_the_oldest_idle_connection_makes_room_for_the_platform():
    call = CallState(session_id="s", code=CODE, voice=speech.Voice(), key="7", call_sid=SID)
    limits = Limits(idle=LONG, head=LONG, body=LONG, connections=web_server.MIN_CONNECTIONS)
    async with limited_server(limits, call) as (port, server):
        assert server.pool.capacity == web_server.MIN_CONNECTIONS
        held = await open_idle(port, web_server.MIN_CONNECTIONS + 8)
        for _, writer in held[: 8]:  # some send part of their headers: slow, not busy
            writer.write(b"POST /v/x HTTP/1.1\r\n")
        path = f"/v/{call.token}"
        fields = fields_for()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(
                f"http://127.0.0.1:{port}{path}", data=urlencode(fields),
                headers={SIG: signature.compute(KEY, PUBLIC + path, fields), "Content-Type": FORM},
            ) as resp:
                assert resp.status == 200
                assert_gate(Reply(resp.status, resp.headers, await resp.read()), call, retry=False)
        closed = [await closed_by_server(reader, 0.5) for reader, _ in held[:9]]
        assert closed == [b""] * 9  # the oldest made room: the 8 over the cap, then one for the platform
        assert len(server.pool.open) <= web_server.MIN_CONNECTIONS
        for _, writer in held:
            writer.close()


async def test_at_the_cap_with_every_connection_in_a_handler_a_new_one_is_closed_at_once():
    call = CallState(session_id="s", code=CODE, voice=speech.Voice(), key="7", call_sid=SID)
    limits = Limits(idle=LONG, head=LONG, body=LONG, connections=web_server.MIN_CONNECTIONS)
    async with limited_server(limits, call) as (port, server):
        busy = await open_idle(port, web_server.MIN_CONNECTIONS)
        head = f"POST /v/{call.token} HTTP/1.1\r\nHost: a\r\nContent-Type: {FORM}\r\nContent-Length: 20\r\n\r\n"
        for _, writer in busy:  # headers in, the body still to come: each holds a handler
            writer.write(head.encode() + b"CallSid=")
        for _ in range(1000):
            if sum(c.phase == web_server.BUSY for c in server.pool.open) == web_server.MIN_CONNECTIONS:
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health/x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert await closed_by_server(reader) == b""  # closed at once, no answer
        writer.close()
        assert server.pool.refused >= 1
        for reader, writer in busy:
            assert not reader.at_eof()
            writer.close()


async def test_errors_in_the_loop_never_print_a_traceback(capfd):
    """While serving, the loop's exception handler and asyncio's logger print nothing; the
    reporter hears one debug line each (shown with -v)."""
    heard: list[tuple[str, str]] = []

    class Reporter:
        def warn(self, text: str) -> None:
            heard.append(("warn", text))

        def debug(self, text: str) -> None:
            heard.append(("debug", text))

    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    sock = bind("127.0.0.1", 0)
    async with Server(make_app(ServerConfig(PUBLIC, KEY)), sock, Reporter()):
        loop.call_exception_handler({"message": "Fatal error on transport", "exception": ConnectionResetError("x")})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
    assert loop.get_exception_handler() is before
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "boom" not in err
    assert ("debug", "event loop: Fatal error on transport (ConnectionResetError)") in heard
    assert ("debug", "asyncio: Task exception was never retrieved") in heard
    assert not [h for h in heard if h[0] == "warn"]


def test_the_capacity_leaves_room_for_the_rest_of_the_process():
    limits = Limits()
    assert web_server.connection_capacity(limits, None, 10, 128) == 1000
    assert web_server.connection_capacity(limits, 1024, 20, 128) == 1024 - 20 - 64 - 128
    assert web_server.connection_capacity(limits, 1 << 20, 20, 128) == 1000
    assert web_server.connection_capacity(limits, 100, 20, 128) == web_server.MIN_CONNECTIONS


# --- hostile input ------------------------------------------------------------------------------------

FUZZ_TOTAL = 10_000
FUZZ_SEED = 20261128
FUZZ_PARALLEL = 16
FUZZ_PUBLIC = "https://voice.example.test/hook"
FUZZ_CODES = {"gate": "40719386", "open": "58263917", "over": "73150482"}
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
PATH_CHARS = TOKEN_CHARS + "/%;:@&=+$,"
TEXT_CHARS = "abcXYZ019 +-_.~&=%?#/\\\"'<>é日\u202e\x00\x1f\t"
STATUSES = [
    "initiated", "queued", "ringing", "answered", "in-progress", "completed", "busy", "failed",
    "no-answer", "canceled", "teleported", "", "COMPLETED", "in progress", "completed\x00",
]
JUNK_TOKENS = [
    "", ".", "..", "%2e%2e", "%00", "%ff", "%ED%A0%80", "%C3%A9t%C3%A9", "%2F", "v", "key", "status",
    "%", "%%", "~", "*", "A" * 3000, "%F0%9F%98%80" * 50, "health",
]
TAILS = ["", "/key", "/status", "/", "/key/", "/KEY", "/status/x", "/%6Bey", ";x", "/key/../status", "//key"]
TAIL_WEIGHTS = [34, 26, 26, 2, 2, 2, 2, 2, 2, 1, 1]
CONTENT_TYPES = [
    FORM, FORM + "; charset=utf-8", "APPLICATION/X-WWW-FORM-URLENCODED", "text/plain", "application/json",
    "multipart/form-data; boundary=zz", "application/xml", "a/b/c;;;=", "application/octet-stream",
    FORM + "; charset=latin-1", "*/*",
]
CT_WEIGHTS = [70, 5, 3, 3, 3, 3, 3, 2, 3, 2, 3]
METHODS = ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "FOO", "post"]


@dataclass
class Probe:
    label: str
    kind: str = "http"  # http: the client session; raw: bytes on a socket, answer read; cut: bytes then close
    method: str = "POST"
    path: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    chunked: bool = False
    skip_content_type: bool = False
    raw: bytes = b""


class Hostile:
    """A seeded generator of hostile requests against one server."""

    def __init__(self, rng: random.Random, config: ServerConfig, calls: list[CallState], port: int) -> None:
        self.rng = rng
        self.config = config
        self.port = port
        self.tokens = [call.token for call in calls]
        self.sids = [call.call_sid for call in calls]
        self.nonce = config.health_nonce
        # valid signatures of requests this generator never sends: replayed onto others
        marker = "".join(rng.choice(B64) for _ in range(24))
        self.replays = [
            signature.compute(KEY, config.url(f"/v/{token}{tail}"), self.fields(sid) + [("Marker", marker)])
            for token, sid in zip(self.tokens, self.sids, strict=True)
            for tail in ("", "/key", "/status")
        ]

    def __iter__(self):
        for _ in range(FUZZ_TOTAL):
            yield self.probe()

    # -- pieces --

    def text(self, low: int = 0, high: int = 20) -> str:
        return "".join(self.rng.choice(TEXT_CHARS) for _ in range(self.rng.randint(low, high)))

    def token(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.7:
            return rng.choice(self.tokens)
        if r < 0.8:
            return "".join(rng.choice(B64) for _ in range(43))
        if r < 0.9:
            real = rng.choice(self.tokens)
            i = rng.randrange(len(real))
            return rng.choice(
                [
                    real[:i],
                    real[:i] + rng.choice(B64) + real[i + 1 :],
                    real.upper(),
                    real[:i] + f"%{ord(real[i]):02X}" + real[i + 1 :],  # the same token, percent-encoded
                    real + real,
                ]
            )
        return rng.choice(JUNK_TOKENS)

    def query(self) -> str:
        rng = self.rng
        parts = [f"{rng.choice(['a', 'CallSid', 'Digits', 'x%zz', ''])}={quote(self.text(0, 8), safe='')}" for _ in range(rng.randint(1, 3))]
        return "&".join(parts)

    def call_path(self) -> str:
        rng = self.rng
        prefix = rng.choices([self.config.prefix, "", "/hook/hook", "/HOOK", "/hook/", "/%68ook"], [85, 4, 3, 3, 3, 2])[0]
        path = f"{prefix}/v/{self.token()}{rng.choices(TAILS, TAIL_WEIGHTS)[0]}"
        if rng.random() < 0.1:
            path += "?" + self.query()
        return path

    def fields(self, sid: str | None = None) -> list[tuple[str, str]]:
        rng = self.rng
        sid = sid or rng.choice(self.sids + ["CA" + "".join(rng.choice("0123456789abcdef") for _ in range(32)), "", "x" * 500])
        fields = [
            ("AccountSid", "AC" + "0" * 32),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", sid),
            ("CallStatus", rng.choice(STATUSES)),
            ("Direction", "outbound-api"),
            ("From", CALLER),
            ("To", NUMBER),
        ]
        if rng.random() < 0.5:
            fields.append(("Digits", rng.choice(list("0123456789#*") + ["", "77", "7" * 100, "\u0667", " 7"])))
        if rng.random() < 0.5:
            fields.append(("SequenceNumber", rng.choice(["0", "1", str(rng.randint(-5, 10**6)), "-1", "1e3", "", "9" * 40, " 3", "x"])))
        if rng.random() < 0.3:
            fields.append(("CallDuration", rng.choice(["0", "7", "-3", "abc", "9" * 30, ""])))
        for _ in range(rng.choice([0, 0, 0, 1, 2, 5])):  # repeated fields
            fields.append(rng.choice(fields) if rng.random() < 0.6 else (rng.choice(["CallSid", "Digits", "CallStatus"]), self.text()))
        for _ in range(rng.choice([0, 0, 1, 3])):
            fields.append((self.text(1, 12), self.text()))
        if rng.random() < 0.2:
            rng.shuffle(fields)
        return fields

    def mutate(self, body: bytes) -> bytes:
        rng = self.rng
        i = rng.randint(0, len(body))
        return rng.choice(
            [
                lambda: body[:i] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80"]) + body[i:],
                lambda: body[:i] + rng.choice([b"%zz", b"%", b"%f", b"%ff", b"%00", b"%ED%A0%80"]) + body[i:],
                lambda: body[:i] + rng.choice([b"&&", b"&=", b"&noequals", b"==", b"&&&&"]) + body[i:],
                lambda: body[:i],
                lambda: body + b"&" + body,
                lambda: rng.randbytes(rng.randint(1, 300)),
            ]
        )()

    def signature_headers(self, path: str, fields: list[tuple[str, str]] | None) -> tuple[list[tuple[str, str]], bool]:
        """Never a valid signature for this request. Returns (headers, body may be mutated)."""
        rng = self.rng
        r = rng.random()
        mutable = True
        if r < 0.15:
            return [], True
        if r < 0.35:
            sig = base64.b64encode(rng.randbytes(20)).decode()
        elif r < 0.45:
            sig = signature.compute(KEY + "!", self.config.origins[0] + path, fields or [])
        elif r < 0.55:
            sig = signature.compute(KEY, f"http://127.0.0.1:{self.port}" + path, fields or [])
        elif r < 0.70:
            sig = rng.choice(self.replays)
        elif r < 0.82 and fields:
            # signed over the request as it was, then tampered with: one value made longer
            sig = signature.compute(KEY, self.config.origins[0] + path, fields)
            i = rng.randrange(len(fields))
            fields[i] = (fields[i][0], fields[i][1] + rng.choice(["x", "7", "0", " "]))
            mutable = False
        else:
            sig = rng.choice(["", " ", "!!!!", "=" * 28, "A" * 5000, "é", "\t", "null", base64.b64encode(b"x" * 20).decode()])
        names = rng.choice(
            [
                ["X-SignalWire-Signature"], ["X-Twilio-Signature"], ["x-signalwire-signature"],
                ["X-SIGNALWIRE-SIGNATURE"], ["X-SignalWire-Signature", "X-Twilio-Signature"],
                ["X-SignalWire-Signature", "X-SignalWire-Signature"],
            ]
        )
        return [(name, sig) for name in names], mutable

    def extra_headers(self) -> list[tuple[str, str]]:
        rng = self.rng
        out = []
        for _ in range(rng.choice([0, 0, 0, 1, 2, 4])):
            out.append(
                rng.choice(
                    [
                        ("Host", rng.choice(["voice.example.test", "evil.example", "127.0.0.1:1", "[::1]:80", "a" * 300])),
                        ("X-Forwarded-Host", "evil.example"),
                        ("X-Forwarded-Proto", "http"),
                        ("Forwarded", "for=1.2.3.4;host=evil.example;proto=http"),
                        ("Content-Encoding", rng.choice(["gzip", "deflate", "br", "identity", "zstd", "x-weird"])),
                        ("Accept", "text/html"),
                        ("Cookie", "a=" + "b" * rng.randint(0, 200)),
                        ("Authorization", "Basic " + base64.b64encode(rng.randbytes(12)).decode()),
                        ("".join(rng.choice("abcXYZ-_019") for _ in range(rng.randint(1, 30))), self.text().replace("\x00", "").replace("\x1f", "")),
                    ]
                )
            )
        if rng.random() < 0.005:
            out.append(("X-Huge", "a" * 9000))
        return out

    def body(self, fields: list[tuple[str, str]], mutable: bool) -> tuple[bytes, bool]:
        """(body, chunked)"""
        rng = self.rng
        r = rng.random()
        if not mutable:
            return urlencode(fields).encode(), rng.random() < 0.05
        if r < 0.55:
            body = urlencode(fields).encode()
            if rng.random() < 0.3:
                body = self.mutate(body)
            return body, rng.random() < 0.05
        if r < 0.65:
            return b"", False
        if r < 0.75:
            return rng.randbytes(rng.randint(1, 3000)), rng.random() < 0.2
        if r < 0.79:
            return urlencode(padded(fields, MAX_BODY + rng.randint(1, 4096))).encode(), rng.random() < 0.5
        if r < 0.80:
            return urlencode(padded(fields, MAX_BODY)).encode(), rng.random() < 0.5
        if r < 0.84:
            return "&".join(f"f{i}=v" for i in range(rng.randint(MAX_FIELDS - 5, 2 * MAX_FIELDS))).encode(), False
        return urlencode(fields).encode(), True

    # -- probes --

    def probe(self) -> Probe:
        r = self.rng.random()
        if r < 0.76:
            return self.call_probe()
        if r < 0.84:
            return self.health_probe()
        if r < 0.88:
            return self.random_path_probe()
        if r < 0.96:
            return self.raw_probe()
        return self.cut_probe()

    def call_probe(self) -> Probe:
        rng = self.rng
        path = self.call_path()
        method = "POST" if rng.random() < 0.82 else rng.choice(METHODS)
        fields = self.fields()
        sig_headers, mutable = self.signature_headers(path, fields)
        body, chunked = self.body(fields, mutable)
        headers = sig_headers + self.extra_headers()
        skip = False
        if body:
            ct = rng.choices(CONTENT_TYPES, CT_WEIGHTS)[0] if rng.random() < 0.97 else None
            if ct is None:
                skip = True
            else:
                headers.append(("Content-Type", ct))
        rng.shuffle(headers)
        return Probe("call", "http", method, path, headers, body, chunked, skip)

    def health_probe(self) -> Probe:
        rng = self.rng
        nonce = rng.choice(
            [
                self.nonce, "".join(rng.choice(B64) for _ in range(22)), "%C3%A9t%C3%A9", "", "a" * 2000,
                self.nonce + "x", self.nonce[:-1], "%ff", "%00", "%ED%A0%80", quote("ñ日"), self.nonce.upper(),
            ]
        )
        prefix = rng.choice([self.config.prefix, self.config.prefix, ""])
        method = "GET" if rng.random() < 0.8 else rng.choice(METHODS + ["POST"])
        return Probe("health", "http", method, f"{prefix}/health/{nonce}", self.extra_headers())

    def random_path_probe(self) -> Probe:
        rng = self.rng
        path = "/" + "".join(rng.choice(PATH_CHARS) for _ in range(rng.randint(0, 80)))
        path = path.replace("%", rng.choice(["%", "%ff", "%2F", "%00", "%zz"]))
        if rng.random() < 0.3:
            path = self.config.prefix + path
        method = rng.choice(["GET", "POST"] + METHODS)
        body = rng.randbytes(rng.randint(0, 200)) if rng.random() < 0.5 else None
        return Probe("path", "http", method, path, self.extra_headers(), body)

    def raw_probe(self) -> Probe:
        rng = self.rng
        path = self.call_path().encode()
        form = urlencode(self.fields()).encode()
        head = b"POST " + path + b" HTTP/1.1\r\nHost: voice.example.test\r\nConnection: close\r\n"
        ct = b"Content-Type: " + FORM.encode() + b"\r\n"
        length = b"Content-Length: %d\r\n" % len(form)
        data = rng.choice(
            [
                lambda: b"GARBAGE\r\n\r\n",
                lambda: rng.randbytes(rng.randint(1, 200)) + b"\r\n\r\n",
                lambda: b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + rng.randbytes(40),  # a TLS hello
                lambda: b"POST " + path + b"\r\n\r\n",
                lambda: b"POST " + path + b" HTTP/9.9\r\nConnection: close\r\n\r\n",
                lambda: head + b"NoColonHere\r\n\r\n",
                lambda: head + b"X-Bad: a\x00b\r\n" + ct + length + b"\r\n" + form,
                lambda: head + ct + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n" + form,
                lambda: head + ct + length + b"Transfer-Encoding: chunked\r\n\r\n" + form,
                lambda: head + ct + rng.choice([b"Content-Length: -1\r\n", b"Content-Length: abc\r\n", b"Content-Length: +5\r\n", b"Content-Length: 1 2\r\n"]) + b"\r\n" + form,
                lambda: head + ct + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                lambda: head + ct + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                lambda: head + ct + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(form) + form + b"\r\n0\r\n\r\n",
                lambda: b"POST " + path + b" HTTP/1.0\r\n" + ct + length + b"\r\n" + form,
                lambda: b"POST " + path + b" HTTP/1.1\r\nHost: a\r\n" + ct + length + b"\r\n" + form + head + ct + length + b"\r\n" + form,
                lambda: b"POST http://evil.example" + path + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n" + ct + length + b"\r\n" + form,
                lambda: head + ct + length + b"Expect: 100-continue\r\n\r\n" + form,
                lambda: head + b"X-Folded: a\r\n  b\r\n" + ct + length + b"\r\n" + form,
                lambda: b"POST /hook/v/\xc3\xa9\xff HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                lambda: head + b"Bad Name: x\r\n\r\n",
                lambda: b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                lambda: head + b"X-Signalwire-Signature: \xff\xfe\r\n" + ct + length + b"\r\n" + form,
            ]
        )()
        return Probe("raw", "raw", raw=data)

    def cut_probe(self) -> Probe:
        rng = self.rng
        path = self.call_path().encode()
        form = urlencode(self.fields()).encode()
        head = b"POST " + path + b" HTTP/1.1\r\nHost: voice.example.test\r\nContent-Type: " + FORM.encode() + b"\r\n"
        data = rng.choice(
            [
                lambda: head + b"Content-Length: %d\r\n\r\n" % (len(form) + rng.randint(1, 500)) + form,
                lambda: head + b"Content-Length: %d\r\n\r\n" % (MAX_BODY - 1) + form,
                lambda: head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (len(form) + 10) + form,
                lambda: head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
                lambda: head[: rng.randint(1, len(head))],
                lambda: b"POST " + path[: rng.randint(0, len(path))],
            ]
        )()
        return Probe("cut", "cut", raw=data)


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    by_label: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    client_errors: Counter = field(default_factory=Counter)


def judge(tally: Tally, probe: Probe, status: int | None, body: bytes, headers) -> None:
    tally.statuses[status] += 1
    tally.by_label[(probe.label, status)] += 1
    if probe.kind == "http":
        shown = [f"{k}: {v[:30]}" for k, v in probe.headers if k.lower() in ("content-encoding", "content-type")]
        where = f"{probe.label} {probe.method} {probe.path[:80]!r} {shown}"
    else:
        where = f"{probe.label} {probe.raw[:80]!r}"
    if status is not None and status >= 500:
        tally.problems.append(f"{status} for {where}: {body[:200]!r}")
    if b"Traceback" in body:
        tally.problems.append(f"a traceback in the answer to {where}")
    for name, code in FUZZ_CODES.items():
        if carries_code(body, headers, code, loose=False):
            tally.problems.append(f"the {name} call's code in the answer to {where}")


async def run_http(http: aiohttp.ClientSession, base: str, probe: Probe, tally: Tally) -> None:
    data: object = probe.body
    if probe.chunked and probe.body is not None:

        async def pieces(payload: bytes = probe.body):
            for i in range(0, len(payload), 4096):
                yield payload[i : i + 4096]

        data = pieces()
    try:
        async with http.request(
            probe.method,
            URL(base + probe.path, encoded=True),
            data=data,
            headers=probe.headers,
            skip_auto_headers=("Content-Type",) if probe.skip_content_type else (),
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            judge(tally, probe, resp.status, body, resp.headers)
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
        tally.client_errors[f"{probe.label}: {type(exc).__name__}"] += 1
        tally.statuses[None] += 1


async def run_raw(port: int, probe: Probe, tally: Tally) -> None:
    try:
        answer = await raw_exchange(port, probe.raw, answer=probe.kind == "raw", timeout=5.0)
    except asyncio.TimeoutError:
        tally.statuses[None] += 1
        tally.problems.append(f"no answer within 5 s to {probe.raw[:80]!r}")
        return
    codes = [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]
    _head, _, _body = answer.partition(b"\r\n\r\n")
    judge(tally, probe, codes[-1] if codes else None, answer, {})
    for code in codes[:-1]:
        if code >= 500:
            tally.problems.append(f"{code} for {probe.label} {probe.raw[:80]!r}")


async def test_hostile_input(caplog, capfd):
    """The issue's acceptance test: 10,000 generated requests (random paths, methods, headers,
    forged and replayed signatures, huge and truncated bodies, invalid UTF-8, repeated fields)
    against one server. Pass: no 5xx, no traceback in the output, the code in no response, and
    the server still answers a valid request afterwards."""
    caplog.set_level(logging.ERROR)
    started = time.perf_counter()
    config = ServerConfig(FUZZ_PUBLIC, KEY)
    calls = {
        "gate": CallState(session_id="s1", code=FUZZ_CODES["gate"], voice=speech.Voice(), key="5", call_sid=SID),
        "open": CallState(session_id="s2", code=FUZZ_CODES["open"], voice=speech.Voice(), key=None, call_sid=OTHER_SID),
        "over": CallState(
            session_id="s3", code=FUZZ_CODES["over"], voice=speech.Voice(), key="2", call_sid="CA" + "7" * 32, status="completed"
        ),
    }
    tally = Tally()
    async with product_server(config, *calls.values()) as port:
        base = f"http://127.0.0.1:{port}"
        probes = iter(Hostile(random.Random(FUZZ_SEED), config, list(calls.values()), port))
        connector = aiohttp.TCPConnector(limit=FUZZ_PARALLEL, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def worker() -> None:
                for probe in probes:  # one shared, seeded stream of probes
                    if probe.kind == "http":
                        await run_http(http, base, probe, tally)
                    else:
                        await run_raw(port, probe, tally)

            await asyncio.gather(*(worker() for _ in range(FUZZ_PARALLEL)))
            fuzz_seconds = time.perf_counter() - started

            # the server still answers valid requests, and nothing above changed a call
            for name in ("gate", "open"):
                call = calls[name]
                assert (call.fetched, call.delivered, call.wrong_keys, call.history, call.status) == (
                    False, False, 0, [], "queued"
                ), name
            assert calls["over"].status == "completed" and calls["over"].history == []
            gate, sid = calls["gate"], SID
            path = f"/hook/v/{gate.token}"
            fields = fields_for(sid=sid)
            headers = {SIG: signature.compute(KEY, config.url(f"/v/{gate.token}"), fields), "Content-Type": FORM}
            async with http.post(base + path, data=urlencode(fields), headers=headers) as resp:
                assert resp.status == 200
                root = ET.fromstring(await resp.read())
                assert root.find("Gather").get("action") == config.url(f"/v/{gate.token}/key")
            fields = fields_for(sid=sid, Digits="5")
            headers = {SIG: signature.compute(KEY, config.url(f"/v/{gate.token}/key"), fields), "Content-Type": FORM}
            async with http.post(base + path + "/key", data=urlencode(fields), headers=headers) as resp:
                assert resp.status == 200
                assert digit_runs(ET.fromstring(await resp.read())) == [FUZZ_CODES["gate"]] * 2
            async with http.get(f"{base}/hook/health/{config.health_nonce}") as resp:
                assert resp.status == 200
        await round_trips(port, config, 5)

    total = sum(tally.statuses.values())
    summary = (
        f"{total} requests in {fuzz_seconds:.1f} s; statuses {dict(sorted(tally.statuses.items(), key=str))}; "
        f"client errors {dict(tally.client_errors)}"
    )
    assert total == FUZZ_TOTAL, summary
    # the generator reached every check, not just the router (410 needs a valid signature: see above)
    assert {200, 400, 403, 404, 405, 413} <= set(tally.statuses), summary

    failures = []
    if tally.problems:
        kinds = Counter(re.sub(r" for .*|'.*", "", p) for p in tally.problems)
        failures.append(f"{len(tally.problems)} bad answers {dict(kinds)}, e.g.:\n  " + "\n  ".join(tally.problems[:5]))
    logged = Counter(
        re.sub(r"\d+\.\d+\.\d+\.\d+", "ADDR", line.split(" [")[0]) + " [" + line.split(" [", 1)[-1][:100]
        for line in errors_logged(caplog)
    )
    if logged:
        failures.append(f"{sum(logged.values())} errors/tracebacks logged:\n  " + "\n  ".join(f"{n} × {k}" for k, n in logged.most_common(12)))
    out, err = capfd.readouterr()
    if "Traceback" in out + err:
        failures.append("a traceback on stdout/stderr")
    print(summary)  # after readouterr: shown with -s
    # a real client nearly always gets an answer (aiohttp's own 400 to HEAD carries a body: tolerated)
    if sum(tally.client_errors.values()) > FUZZ_TOTAL // 100:
        failures.append(f"too many requests without an answer: {dict(tally.client_errors)}")
    assert not failures, "\n".join(failures) + "\n" + summary


# --- the callee steers the reading: /read (repeat, slower), within MAX_CODE_READS -------------------


def reads_code(reply: Reply) -> bool:
    return digit_runs(reply.xml()) == [CODE, CODE]


async def passed_gate(hook: Hook) -> tuple[CallState, Reply]:
    call = hook.call(key="7")
    await hook.post(call)
    reply = await hook.post(call, "/key", fields_for(Digits="7"))
    assert reads_code(reply) and call.code_reads == 1
    return call, reply


async def test_the_repeat_key_reads_the_code_again(hook):
    call, first = await passed_gate(hook)
    gather = first.xml().find("Gather")
    assert gather.get("action") == f"{PUBLIC}/v/{call.token}/read"
    reply = await hook.post(call, "/read", fields_for(Digits=speech.REPEAT_KEY))
    assert reply.status == 200 and reads_code(reply)
    assert reply.body == speech.code_document(CODE, call.voice, after_gate=True, action=f"{PUBLIC}/v/{call.token}/read")
    assert call.code_reads == 2
    assert events(call).count("delivered") == 1  # a repeat is not a new delivery


async def test_the_slower_key_pauses_after_every_digit(hook):
    call, _ = await passed_gate(hook)
    reply = await hook.post(call, "/read", fields_for(Digits=speech.SLOWER_KEY))
    assert reads_code(reply)
    assert reply.body == speech.code_document(
        CODE, call.voice, after_gate=True, slow=True, action=f"{PUBLIC}/v/{call.token}/read"
    )
    pauses = [el.get("length") for el in reply.xml().iter("Pause")]
    assert pauses.count("1") >= 2 * (len(CODE) - 2) and "2" in pauses


async def test_repeats_are_bounded_by_max_code_reads(hook):
    assert webhook.MAX_CODE_READS == 3
    call, _ = await passed_gate(hook)
    second = await hook.post(call, "/read", fields_for(Digits=speech.REPEAT_KEY))
    assert second.xml().find("Gather") is not None
    last = await hook.post(call, "/read", fields_for(Digits=speech.SLOWER_KEY))
    assert reads_code(last)
    assert last.xml().find("Gather") is None  # the last reading offers no more keys
    assert call.code_reads == webhook.MAX_CODE_READS
    for tail, digits in (("/read", speech.REPEAT_KEY), ("/read", speech.SLOWER_KEY), ("", ""), ("/key", "7")):
        reply = await hook.post(call, tail, fields_for(Digits=digits) if digits else fields_for())
        assert (reply.status, reply.text) == (410, "the code has been read enough times\n")  # issue 9: replay
        no_code(reply)
    assert call.code_reads == webhook.MAX_CODE_READS


def shape_of(reply: Reply) -> list[tuple[str, str | None]]:
    return [(child.tag, child.text) for child in reply.xml()]


async def test_the_read_route_cannot_skip_the_gate(hook):
    call = hook.call(key="7")
    await hook.post(call)
    for digits in (speech.REPEAT_KEY, speech.SLOWER_KEY, "7"):
        reply = await hook.post(call, "/read", fields_for(Digits=digits))
        assert_gate(reply, call, retry=False)
    assert (call.delivered, call.code_reads) == (False, 0)


async def test_a_key_that_does_nothing_offers_the_keys_then_ends(hook):
    call, _ = await passed_gate(hook)
    reply = await hook.post(call, "/read", fields_for(Digits="9"))
    no_code(reply)
    assert shape_of(reply) == [("Say", "That key does nothing here."), ("Gather", None), ("Say", "Goodbye."),
                               ("Hangup", None)]
    assert reply.xml().find("Gather").get("action") == f"{PUBLIC}/v/{call.token}/read"
    for _ in range(GATE_TRIES - 2):
        await hook.post(call, "/read", fields_for(Digits="#"))
    reply = await hook.post(call, "/read", fields_for(Digits=""))
    assert shape_of(reply) == [("Say", "Goodbye."), ("Hangup", None)]
    assert call.code_reads == 1


async def test_every_document_of_a_steered_call_keeps_signalwire_s_cxml_rules(hook):
    from tests.test_speech import check_cxml

    call = hook.call(key="7")
    replies = [await hook.post(call), await hook.post(call, "/key", fields_for(Digits="3")),
               await hook.post(call, "/key", fields_for(Digits="7"))]
    for digits in ("9", speech.REPEAT_KEY, speech.SLOWER_KEY):
        replies.append(await hook.post(call, "/read", fields_for(Digits=digits)))
    beyond = await hook.post(call, "/read", fields_for(Digits=speech.REPEAT_KEY))
    assert beyond.status == 410  # past MAX_CODE_READS: no document at all (issue 9: replay)
    for reply in replies:
        assert (reply.status, reply.headers["Content-Type"]) == (200, "application/xml; charset=utf-8")
        check_cxml(reply.body)


# --- calls kept in a shared store (voice2fa serve on Redis): load, answer, save, or again ----------


class ContendedCalls:
    """A SharedCalls over a dict whose save fails `conflicts` times (another server saved the call
    first) and which forgets the call after `forget_after` loads (its record expired meanwhile)."""

    def __init__(self, conflicts: int = 0, forget_after: int | None = None) -> None:
        self.calls: dict[str, tuple[CallState, int]] = {}
        self.conflicts = conflicts
        self.forget_after = forget_after
        self.loads = 0
        self.saves = 0
        self.merged: list[str] = []

    async def load(self, token: str) -> tuple[CallState, int] | None:
        self.loads += 1
        if self.forget_after is not None and self.loads > self.forget_after:
            return None
        return self.calls.get(token)

    def guess(self, token: str) -> tuple[CallState, int] | None:
        return None  # another instance placed these calls: no mirror here

    async def save(self, token: str, call: CallState, rev: int) -> bool:
        self.saves += 1
        if self.conflicts > 0:
            self.conflicts -= 1
            return False
        self.calls[token] = (call, rev + 1)
        return True

    def merge(self, token: str, seen: CallState) -> None:
        self.merged.append(token)


async def shared_hook(hooks, calls: ContendedCalls) -> tuple[Hook, CallState]:
    hook = await hooks(shared=calls)
    call = CallState(session_id="sess-1", code=CODE, voice=speech.Voice(), key=None)
    calls.calls[call.token] = (call, 1)
    return hook, call


async def test_a_shared_call_saved_after_a_conflict_is_answered_once_saved(hooks):
    calls = ContendedCalls(conflicts=2)
    hook, call = await shared_hook(hooks, calls)
    reply = await hook.post(call)
    assert reply.status == 200 and carries_code(reply.body, reply.headers, loose=False)
    assert (calls.loads, calls.saves, calls.merged) == (3, 3, [call.token])
    assert calls.calls[call.token][1] == 2 and calls.calls[call.token][0].delivered


async def test_a_shared_call_that_keeps_changing_gets_503_and_no_code(hooks):
    calls = ContendedCalls(conflicts=100)
    hook, call = await shared_hook(hooks, calls)
    reply = await hook.post(call)
    assert (reply.status, reply.text) == (503, "the call's state kept changing: try again\n")
    no_code(reply)
    assert calls.saves == webhook.SHARED_TRIES and calls.merged == []


async def test_a_shared_call_gone_between_tries_gets_404_not_a_crash(hooks):
    # the record expires after the first load: the retry finds nothing, and says so
    calls = ContendedCalls(conflicts=1, forget_after=1)
    hook, call = await shared_hook(hooks, calls)
    reply = await hook.post(call)
    assert (reply.status, reply.text) == (404, "not found\n")
    no_code(reply)
    assert (calls.loads, calls.saves, calls.merged) == (2, 1, [])


async def test_an_unknown_token_on_a_shared_store_gets_404(hooks):
    calls = ContendedCalls()
    hook, _ = await shared_hook(hooks, calls)
    reply = await hook.send("POST", hook.path("no-such-token"), fields_for())
    assert (reply.status, reply.text) == (404, "not found\n")
    assert calls.saves == 0
