"""The sandbox's own cXML reader, and the simulated callee pressing keys in order (a hook the
code document's "repeat" / "slower" keys rely on)."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.helpers import serving
from tests.test_sandbox import CALLER, NUMBER, create, http_for, settle
from voice2fa_cli.sandbox import Sandbox, Scenario
from voice2fa_cli.sandbox.cxml import NotCxml, read


def test_digits_gather_with_several_keys_and_hangup():
    doc = read(
        b'<?xml version="1.0"?><Response><Say language="en-US">Hello.</Say>'
        b'<Gather numDigits="1" action="https://app.test/k" method="POST">'
        b"<Say>Your code is:</Say><Say>4</Say><Say>0</Say><Pause length='1'/><Say>7</Say>"
        b"<Say>Press 1 to hear it again, press 2 to hear it slower.</Say></Gather>"
        b"<Say>Goodbye.</Say><Hangup/><Say>never heard</Say></Response>"
    )
    # A pause between groups of digits keeps the reading one line.
    assert doc.lines == ("Hello.", "Your code is:", "4, 0, 7", "Press 1 to hear it again, press 2 to hear it slower.",
                         "[waits for a key]", "Goodbye.", "[hangs up]")
    assert doc.gather.keys == ("1", "2")
    assert doc.gather.prompt == ("Your code is:", "4, 0, 7", "Press 1 to hear it again, press 2 to hear it slower.")
    assert doc.gather.action == "https://app.test/k"
    assert doc.gather.heard_before_key == 5
    assert doc.languages == ("en-US",)
    assert doc.redirect is None


def test_redirect_ends_the_document_and_names_the_next_url():
    doc = read("<Response><Say>One</Say><Redirect method='POST'> https://app.test/next </Redirect><Say>x</Say></Response>")
    assert doc.lines == ("One", "[redirected]")
    assert doc.redirect == "https://app.test/next"


def test_other_verbs_are_named_and_nested_gathers_skipped():
    doc = read("<Response><Play>https://a.test/x.mp3</Play><Gather><Gather><Say>Press 5</Say></Gather>"
               "<Say>Press 3</Say></Gather></Response>")
    assert doc.lines == ("[Play]", "[Gather]", "Press 3", "[waits for a key]")
    assert [g.keys for g in doc.gathers] == [("3",)]


@pytest.mark.parametrize(
    "document",
    [b"", b"not xml", b"<Response>", b"<Html><Say>x</Say></Html>", b"\xff\xfe<Response/>",
     b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
     b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
     b'<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]>'
     b"<Html>&h;</Html>"],
)
def test_what_is_not_cxml(document):
    with pytest.raises(NotCxml):
        read(document)


def test_deep_nesting_does_not_crash_the_reader():
    doc = read("<Response>" + "<Gather>" * 5000 + "</Gather>" * 5000 + "</Response>")
    assert doc.lines == ("[Gather]", "[waits for a key]")


class Repeating:
    """/voice reads a code inside a <Gather> offering 1 (again) and 2 (slower); the action
    records the key and, for 1 or 2, redirects back to /voice."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/voice", self.voice)
        app.router.add_post("/key", self.key)
        return app

    async def voice(self, request: web.Request) -> web.Response:
        body = (f'<Response><Gather numDigits="1" action="{self.base}/key"><Say>Your code is:</Say>'
                "<Say>1</Say><Say>2</Say><Say>3</Say><Say>4</Say><Say>5</Say><Say>6</Say>"
                "<Say>Press 1 to hear it again, press 2 to hear it slower.</Say></Gather>"
                "<Say>Goodbye.</Say><Hangup/></Response>")
        return web.Response(text=body, content_type="application/xml")

    async def key(self, request: web.Request) -> web.Response:
        self.keys.append((await request.post())["Digits"])
        return web.Response(text=f"<Response><Redirect>{self.base}/voice</Redirect></Response>",
                            content_type="application/xml")


@pytest.mark.parametrize(
    "keys, pressed",
    [
        (("asked", "2", None), ["1", "2"]),
        (("2",), ["2"]),
        ((None,), []),
        (("2", "2", "1", "2", "1", "2", "1", "2", "1"), ["2", "2", "1", "2"]),  # ends at MAX_DOCUMENTS
    ],
)
async def test_keys_are_pressed_in_order_one_per_gather(keys, pressed):
    app = Repeating()
    async with serving(app.app()) as base:
        app.base = base
        async with Sandbox(caller=CALLER, scenario=Scenario(keys=keys)) as sb, http_for(sb) as http:
            await create(http, sb, [("From", CALLER), ("To", NUMBER), ("Url", base + "/voice")])
            await settle(sb)
    [call] = sb.calls.values()
    assert call.pressed == pressed == app.keys
    assert sb.heard_code() == "123456"
    if len(pressed) < 4:
        assert call.heard[-2:] == ["Goodbye.", "[hangs up]"]
