"""The inline delivery (no tunnel): the call's SWML, dialed through the Calling API and followed
by its voice log, against the sandbox (a real HTTP server that validates the SWML and runs it
with its simulated callee). The callee must hear exactly what the webhook delivery makes them
hear, in every branch and every language."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import FAST, NUMBER
from voice2fa_cli import config, phone, stand_in
from voice2fa_cli.delivery import SendOptions
from voice2fa_cli.errors import ProviderError
from voice2fa_cli.sandbox import SANDBOX_CALLER, Sandbox, Scenario
from voice2fa_cli.voice import phrases, speech, swml

CODE = "40719386"
KEY = "7"
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "swml_calling.schema.json").read_text())


class Recorder:
    """The flow's reporter: what it was told."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str | None]] = []
        self.heard_lines: list[str] = []

    def warn(self, text: str) -> None:
        self.steps.append(("warn", text))

    def debug(self, text: str) -> None:
        pass

    def step(self, event: str, elapsed: float, detail: str | None = None) -> None:
        self.steps.append((event, detail))

    def heard(self, lines: list[str]) -> None:
        self.heard_lines += lines


def fixed(call) -> None:
    call.code, call.key = CODE, (KEY if call.key is not None else None)


def options(language: str = "en-US", keypress: bool = True, **voice) -> SendOptions:
    return SendOptions(number=phone.parse(NUMBER, "NUMBER"), digits=len(CODE),
                       voice=speech.Voice(language=language, **voice), keypress=keypress)


def run(env, delivery: str, scenario: Scenario, opts: SendOptions | None = None):
    recorder = Recorder()
    result = asyncio.run(stand_in.send(env, opts or options(), recorder, config.Listen("127.0.0.1", 0),
                                       scenario=scenario, delivery=delivery, on_call=fixed))
    return result, recorder


@pytest.fixture
def env(tmp_path) -> dict:
    return {"VOICE2FA_STATE_DIR": str(tmp_path / "state"), **FAST}


BRANCHES = {
    "the right key": Scenario(),
    "a wrong key, then the right one": Scenario(keys=("0", "asked")),
    "two wrong keys, then the right one": Scenario(keys=("0", "3", "asked")),
    "three wrong keys": Scenario(press="0"),
    "no key at the gate": Scenario(press=None),
    "a voicemail": Scenario(outcome="voicemail"),
    "1: again": Scenario(steer=("1",)),
    "2: slower": Scenario(steer=("2",)),
    "again, then slower": Scenario(steer=("1", "2")),
    "an unknown key, then again": Scenario(steer=("5", "1")),
    "unknown keys until goodbye": Scenario(steer=("5", "5", "5")),
    "a wrong gate key, then unknown keys": Scenario(keys=("0", "asked", "5", "5")),
    "hangs up at once": Scenario(hang_up_after_fetch=True),
}


@pytest.mark.parametrize("branch", list(BRANCHES))
def test_the_callee_hears_what_the_webhook_delivery_says_in_every_branch(env, branch):
    webhook, heard_webhook = run(env, "webhook", BRANCHES[branch])
    inline, heard_inline = run(env, "inline", BRANCHES[branch])
    assert heard_inline.heard_lines == heard_webhook.heard_lines
    assert heard_inline.heard_lines  # the call said something
    assert inline.call_status == webhook.call_status == "completed"
    assert inline.delivered is None  # answered: what was heard is not known inline
    assert inline.session.attempts_left == webhook.session.attempts_left


@pytest.mark.parametrize("language", phrases.CALL_LANGUAGES)
@pytest.mark.parametrize("keypress", [True, False])
def test_every_language_says_the_same_inline(env, language, keypress):
    scenario = Scenario(steer=("5", "2"))
    opts = options(language, keypress)
    _, heard_webhook = run(env, "webhook", scenario, opts)
    _, heard_inline = run(env, "inline", scenario, opts)
    assert heard_inline.heard_lines == heard_webhook.heard_lines


@pytest.mark.parametrize(("outcome", "problem"), [
    ("busy", "the line was busy: the code was not delivered"),
    ("no-answer", "nobody answered: the code was not delivered"),
    ("failed", "the call failed (the number may be unreachable): the code was not delivered"),
])
def test_a_call_not_answered_is_not_delivered_with_the_webhooks_words(env, outcome, problem):
    result, recorder = run(env, "inline", Scenario(outcome=outcome))
    assert (result.call_status, result.delivered, result.problem) == (outcome, False, problem)
    assert recorder.heard_lines == []
    assert (outcome, None) in recorder.steps


def test_an_answered_call_shows_answered_and_its_length_and_stays_open(env):
    result, recorder = run(env, "inline", Scenario())
    events = [event for event, _ in recorder.steps]
    assert events[:3] == ["dialing", "created", "expires"]
    assert [detail for event, detail in recorder.steps if event == "answered-for"] == [f"{result.duration} s"]
    assert result.duration and result.duration > 0
    assert (result.delivered, result.problem, result.session.state) == (None, None, "calling")
    assert result.session.attempts_left == 5


async def through_sandbox(env, scenario: Scenario, opts: SendOptions | None = None, *, cancel_when=None):
    """One inline call through a Sandbox the test holds (its requests and calls to inspect)."""
    from voice2fa_cli import flow

    recorder = Recorder()
    async with Sandbox(caller=SANDBOX_CALLER, scenario=scenario) as sb:
        settings = stand_in.settings(sb, env, None, delivery="inline")
        task = asyncio.ensure_future(flow.send(settings, opts or options(), recorder, sandbox=True, on_call=fixed))
        if cancel_when is not None:
            while not cancel_when(sb):
                await asyncio.sleep(0.01)
            task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            result = None
        await sb.settle()
        return result, recorder, sb


def test_the_dial_carries_the_document_once_and_the_code_only_in_its_body(env):
    result, _, sb = asyncio.run(through_sandbox(env, Scenario()))
    dials = [r for r in sb.requests if r.path == "/api/calling/calls"]
    assert len(dials) == 1
    body = json.loads(dict(dials[0].form)["body"])
    assert body["command"] == "dial"
    assert set(body["params"]) == {"from", "to", "timeout", "swml"}
    assert (body["params"]["from"], body["params"]["to"], body["params"]["timeout"]) == (SANDBOX_CALLER, NUMBER, 30)
    assert body["params"]["swml"] == swml.document(CODE, options().voice, KEY)
    assert all(CODE not in r.path for r in sb.requests)  # never in a URL
    assert [r.path.split("?")[0] for r in sb.requests[1:]] == [f"/api/voice/logs/{result.call_sid}"] * (
        len(sb.requests) - 1)


def test_a_space_that_wants_the_document_as_a_string_gets_it_on_its_rejection(env):
    result, _, sb = asyncio.run(through_sandbox(env, Scenario(swml_string=True)))
    dials = [json.loads(dict(r.form)["body"]) for r in sb.requests if r.path == "/api/calling/calls"]
    assert [type(d["params"]["swml"]) for d in dials] == [dict, str]
    assert json.loads(dials[1]["params"]["swml"]) == dials[0]["params"]["swml"]
    assert (result.call_status, result.delivered) == ("completed", None)


def test_a_log_not_found_by_the_dials_id_is_found_in_the_list(env):
    result, _, sb = asyncio.run(through_sandbox(env, Scenario(log_by_id=False)))
    (call,) = sb.calls.values()
    assert call.log_id != call.sid
    paths = [r.path for r in sb.requests]
    assert any(p.startswith("/api/voice/logs?created_after=") for p in paths)
    assert paths[-1] == f"/api/voice/logs/{call.log_id}" or paths[-1].startswith("/api/voice/logs?")
    assert (result.call_status, result.delivered) == ("completed", None)


def test_an_interrupted_call_is_hung_up_with_calling_end_and_recorded_canceled(env):
    result, _, sb = asyncio.run(through_sandbox(
        env, Scenario(outcome="hold"), cancel_when=lambda sb: any(c.status == "ringing" for c in sb.calls.values())))
    assert result is None
    (call,) = sb.calls.values()
    ends = [json.loads(dict(r.form)["body"]) for r in sb.requests
            if r.path == "/api/calling/calls" and '"calling.end"' in dict(r.form)["body"]]
    assert ends == [{"id": call.sid, "command": "calling.end", "params": {"reason": "hangup"}}]
    assert call.status == "canceled"


@pytest.mark.parametrize(("status", "message"), [
    (401, "SignalWire refused the credentials: check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"),
    (403, "SignalWire refused the call request (403): the API token needs the Voice permission (API page of your "
          "SignalWire Dashboard)"),
    (422, "SignalWire rejected the call request (422): the scenario rejects this request"),
    (500, "SignalWire failed on the call request (500): try again later"),
])
def test_a_refused_dial_is_a_provider_error_that_says_why(env, status, message):
    with pytest.raises(ProviderError) as raised:
        asyncio.run(through_sandbox(env, Scenario(api_status=status, api_on="create")))
    assert raised.value.message == message
    assert raised.value.dialed is False


VOICES = [{}, {"voice": "woman"}, {"voice": "Polly.Joanna"}]


@pytest.mark.parametrize("language", phrases.CALL_LANGUAGES)
@pytest.mark.parametrize("digits", range(6, 11))
def test_every_document_keeps_to_the_facts_of_signalwires_swml(language, digits):
    for key in (KEY, None):
        for voice in VOICES if language == "en-US" else [{}]:
            document = swml.document("8" * digits, speech.Voice(language=language, **voice), key)
            jsonschema.validate(document, SCHEMA)
            sizes = len(json.dumps(document).encode())
            assert sizes < 32_000  # no limit is documented: far from any a JSON API would set


def test_the_documents_first_sections_exactly():
    document = swml.document("123456", speech.Voice(), "7")
    say = {"say_language": "en-US"}
    assert document["version"] == "1.0.0"
    assert document["sections"]["main"] == [{"answer": {"max_duration": 300}}, {"transfer": {"dest": "gate_1"}}]
    goodbye = [{"play": {"urls": ["say:Goodbye."], **say}}, {"hangup": {}}]
    assert document["sections"]["gate_1"] == [
        {"play": {"urls": ["say:Hello. This is an automated call to check that this phone number is yours.",
                           "say:You will hear a code. Read it only to the person you are speaking with now. If you "
                           "are not expecting this call, hang up."], **say}},
        {"prompt": {"play": ["say:Press 7 to hear your code."], "max_digits": 1, "initial_timeout": 12, **say}},
        {"switch": {"variable": "prompt_value", "case": {"7": [{"transfer": {"dest": "read_1_w0"}}]}, "default": [
            {"switch": {"variable": "prompt_result",
                        "case": {"no_input": [{"play": {"urls": [
                            "say:We did not hear a key press. Goodbye."], **say}}, {"hangup": {}}]},
                        "default": [{"transfer": {"dest": "gate_2"}}]}}]}},
    ]
    assert document["sections"]["read_3_slow_w2"] == [
        {"play": {"urls": ["say:Slowly now. Your code is:", "say:1", "silence:1", "say:2", "silence:1", "say:3", "silence:2",
                           "say:4", "silence:1", "say:5", "silence:1", "say:6", "silence:1", "say:Once again:",
                           "say:1", "silence:1", "say:2", "silence:1", "say:3", "silence:2", "say:4", "silence:1",
                           "say:5", "silence:1", "say:6"], **say}},
        *goodbye,
    ]


def test_the_sandbox_refuses_a_document_that_breaks_the_facts(env):
    import aiohttp

    from tests.serve_helpers import basic

    async def go():
        async with Sandbox(caller=SANDBOX_CALLER) as sb, aiohttp.ClientSession(
                headers=basic(sb.project, sb.token)) as http:
            out = []
            for document in ({"sections": {}}, {"version": "2", "sections": {"main": []}},
                             {"sections": {"main": [{"play": "say:hi"}]}},
                             {"sections": {"main": [{"play": {"urls": ["say:hi"], "url": "say:hi"}}]}},
                             {"sections": {"main": [{"prompt": {"max_digits": 1}}]}},
                             {"sections": {"main": [{"dance": {}}]}}):
                params = {"from": SANDBOX_CALLER, "to": NUMBER, "swml": document}
                async with http.post(f"{sb.url}/api/calling/calls", json={"command": "dial", "params": params}) as r:
                    body = await r.json()
                    out.append((r.status, body["errors"][0]["attribute"], body["errors"][0]["message"]))
            async with http.post(f"{sb.url}/api/calling/calls", json={"command": "dial"}) as r:
                out.append((r.status, (await r.json())["errors"][0]["code"]))
            async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{sb.url}/api/voice/logs") as r:
                out.append((r.status, await r.json()))
            return out, sb.calls

    out, calls = asyncio.run(go())
    assert out == [
        (422, "swml.sections.main", "the document needs sections.main, a list of methods"),
        (422, "swml.version", "version must be 1.0.0"),
        (422, "swml.sections.main[0].play", "play takes an object"),
        (422, "swml.sections.main[0].play", "play takes url or urls, one of them"),
        (422, "swml.sections.main[0].prompt.play", "prompt needs play (relay_script_method_parameter_missing)"),
        (422, "swml.sections.main[0].dance", "unknown method dance (relay_script_method_undefined)"),
        (422, "missing_required_parameter"),
        (401, {"error": "Unauthorized"}),
    ]
    assert calls == {}


def cli_env(tmp_path) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    return {**env, **FAST, "VOICE2FA_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}


@pytest.mark.parametrize(("args", "exit_code", "delivered", "last"), [
    ([], 0, None, "answered: check the code with `voice2fa verify --sandbox +15551234567`"),
    (["--outcome", "lost-logs"], 0, None, "answered: check the code with `voice2fa verify --sandbox +15551234567`"),
    (["--outcome", "busy"], 3, False, "error: the line was busy: the code was not delivered"),
    (["--outcome", "no-answer"], 3, False, "error: nobody answered: the code was not delivered"),
])
def test_send_sandbox_inline_no_prompt_json(tmp_path, args, exit_code, delivered, last):
    from tests.helpers import run_cli

    result = run_cli(["send", "--sandbox", NUMBER, "--delivery", "inline", "--no-prompt", "--json", *args],
                     cli_env(tmp_path))
    assert result.returncode == exit_code, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["delivered"], shown["exit_code"]) == (delivered, exit_code)
    assert result.stderr.strip().splitlines()[-1] == last
    if exit_code == 0:
        assert "answered, " in result.stderr and "the callee heard the code" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--delivery", "inline", "--outcome", "no-webhook"],
     "Invalid value for --outcome: no-webhook is the webhook delivery's (inline, nothing is fetched)"),
    (["--outcome", "lost-logs"], "Invalid value for --outcome: lost-logs is the inline delivery's (--delivery inline)"),
    (["--delivery", "tunnel"], "Invalid value for '--delivery': 'tunnel' is not one of 'webhook', 'inline'."),
])
def test_send_refuses_an_outcome_of_the_other_delivery(tmp_path, args, message):
    from tests.helpers import run_cli

    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", *args], cli_env(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


def test_the_delivery_setting_is_checked(tmp_path):
    from tests.helpers import run_cli

    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt"], {**cli_env(tmp_path), "VOICE2FA_DELIVERY": "ssh"})
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2, "error: VOICE2FA_DELIVERY must be webhook (SignalWire fetches the call from this machine through the "
           "public URL) or inline (the whole call travels in the dial: no tunnel, nothing inbound), not 'ssh'")
    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "--delivery", "inline"],
                     {**cli_env(tmp_path), "VOICE2FA_MAX_PRICE_PER_MINUTE": "-1"})
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2, "error: VOICE2FA_MAX_PRICE_PER_MINUTE must be US dollars per minute from 0 to 100, such as 0.05, not '-1'")


def dial_against(answer: dict, status: int = 200) -> None:
    """CallingClient.dial against a real HTTP server on loopback that answers `answer`."""
    from aiohttp import web

    from voice2fa_cli.signalwire.calling import CallingClient

    async def dial(request: web.Request) -> web.Response:
        return web.json_response(answer, status=status)

    async def go():
        app = web.Application()
        app.router.add_post("/api/calling/calls", dial)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with CallingClient(f"http://127.0.0.1:{runner.addresses[0][1]}", "p", "t", timeout=3) as client:
                await client.dial(to=NUMBER, caller=SANDBOX_CALLER, swml={"sections": {"main": []}}, ring_timeout=30,
                                  max_price_per_minute=None)
        finally:
            await runner.cleanup()

    asyncio.run(go())


@pytest.mark.parametrize("answer", [{"id": "../../voice/logs"}, {"id": ""}, {"status": "queued"}, {"id": 7}])
def test_a_dial_answered_without_a_usable_call_id_is_an_error(answer):
    """A platform whose answer names no usable id: the id goes into the log's URL path, so
    anything but an id's characters is refused."""
    with pytest.raises(ProviderError) as raised:
        dial_against(answer)
    assert raised.value.message == ("SignalWire accepted the call request but returned no call id: the call may ring; "
                                    "voice2fa cannot follow or hang up a call it cannot name")


def test_a_rejection_of_the_document_never_repeats_the_platforms_words_about_it():
    """A 422 about the SWML may quote the document, which holds the code: the error names where
    it was refused, not what the platform said."""
    said = {"errors": [{"type": "validation_error", "code": "invalid_parameter", "url": "https://x.invalid",
                        "message": "bad play url 'say:4, 0, 7, 1, 9, 3, 8, 6'", "attribute": "swml.sections.read_1"}]}
    with pytest.raises(ProviderError) as raised:
        dial_against(said, status=422)
    assert raised.value.message == "SignalWire rejected the call request (422) (swml.sections.read_1)"
    assert raised.value.dialed is False
