"""voice2fa_cli.signalwire.Client over real loopback HTTP: against the sandbox, and against
small aiohttp servers of our own that give the odd answers a real platform (or network) can."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from voice2fa_cli.config import API_PATH
from voice2fa_cli.errors import EXIT_PROVIDER, ProviderError
from voice2fa_cli.sandbox import Sandbox, Scenario
from voice2fa_cli.signalwire.client import Call, Client

RELEASE = web.AppKey("release", asyncio.Event)

CALLER = "+15550100000"
NUMBER = "+15551234567"
PROJECT = "a1b2c3d4-0000-4000-8000-00000000abcd"
TOKEN = "PTsecret-token"
WEBHOOK = "https://voice.example.test/v/tok"
STATUS = "https://voice.example.test/v/tok/status"
CREDENTIALS = "SignalWire refused the credentials: check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"
CREATE_PATH = f"{API_PATH}/Accounts/{PROJECT}/Calls.json"

EXPECTED_FORM = (
    ("From", CALLER),
    ("To", NUMBER),
    ("Url", WEBHOOK),
    ("Method", "POST"),
    ("StatusCallback", STATUS),
    ("StatusCallbackMethod", "POST"),
    ("StatusCallbackEvent", "initiated"),
    ("StatusCallbackEvent", "ringing"),
    ("StatusCallbackEvent", "answered"),
    ("StatusCallbackEvent", "completed"),
    ("Timeout", "25"),
)


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


async def place(client: Client, to: str = NUMBER, caller: str = CALLER) -> Call:
    return await client.create_call(to=to, caller=caller, url=WEBHOOK, status_callback=STATUS, ring_timeout=25)


# --- small servers with odd answers --------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: tuple[tuple[str, str], ...]


@dataclass
class Odd:
    url: str
    seen: list[Seen] = field(default_factory=list)

    def base(self, project: str = PROJECT) -> str:
        return f"{self.url}{API_PATH}/Accounts/{project}"

    def client(self, timeout: float = 2.0) -> Client:
        return Client(self.base(), PROJECT, TOKEN, timeout=timeout)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def odd_server():
    """A factory: odd_server(handler) serves `handler` for every path on 127.0.0.1 and records
    each request it receives. Handlers that never answer are released at teardown."""
    runners: list[web.AppRunner] = []
    release = asyncio.Event()

    async def start(handler: Handler) -> Odd:
        odd = Odd("")

        async def recording(request: web.Request) -> web.StreamResponse:
            form = await request.post() if request.method == "POST" else {}
            odd.seen.append(
                Seen(request.method, request.path, dict(request.headers), tuple((k, str(v)) for k, v in form.items()))
            )
            return await handler(request)

        app = web.Application()
        app[RELEASE] = release
        app.router.add_route("*", "/{tail:.*}", recording)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        odd.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return odd

    yield start
    release.set()
    for runner in runners:
        await runner.cleanup()


def answer(status: int, body: object = None, *, text: str | None = None, content_type: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if text is not None:
            return web.Response(status=status, text=text, content_type=content_type)
        return web.Response(status=status, text=json.dumps(body), content_type=content_type)

    return handler


async def never_answer(request: web.Request) -> web.Response:
    await request.app[RELEASE].wait()
    return web.Response(status=201, text="{}")


async def hang_up_on_the_client(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.close()
    await request.app[RELEASE].wait()
    return web.Response(status=201)


def client_for(sb: Sandbox) -> Client:
    """The real client pointed at the sandbox with its own credentials."""
    return Client(f"{sb.url}{API_PATH}/Accounts/{sb.project}", sb.project, sb.token, timeout=2)


async def provider_error(coro) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await coro
    assert info.value.exit_code == EXIT_PROVIDER == 4
    assert str(info.value) == info.value.message
    return info.value


# --- against the sandbox ---------------------------------------------------------------------------


async def test_create_call_sends_exactly_the_documented_form():
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="busy", callbacks=False)) as sb:
        async with client_for(sb) as client:
            call = await place(client)
        await asyncio.wait_for(sb.settle(), 5)
    assert call.sid in sb.calls
    assert str(uuid.UUID(call.sid)) == call.sid  # SignalWire's sids are UUIDs; nothing assumes "CA…"
    assert call.status == "queued"
    assert [(r.method, r.path) for r in sb.requests] == [("POST", f"{API_PATH}/Accounts/{sb.project}/Calls.json")]
    assert sb.requests[0].form == EXPECTED_FORM
    assert sb.calls[call.sid].events == ("initiated", "ringing", "answered", "completed")


async def test_create_call_request_on_the_wire(odd_server):
    odd = await odd_server(answer(201, {"sid": "CA" + "1" * 32, "status": "queued"}))
    async with odd.client() as client:
        call = await place(client)
    assert call == Call(sid="CA" + "1" * 32, status="queued")
    [seen] = odd.seen
    assert (seen.method, seen.path) == ("POST", CREATE_PATH)
    assert seen.headers["Authorization"] == basic(PROJECT, TOKEN)
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert seen.form == EXPECTED_FORM


async def test_fetch_call_after_the_call_ended():
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="no-answer", callbacks=False)) as sb:
        async with client_for(sb) as client:
            call = await place(client)
            await asyncio.wait_for(sb.settle(), 5)
            fetched = await client.fetch_call(call.sid)
        assert fetched == Call(sid=call.sid, status="no-answer", duration=0)
        assert sb.requests[-1].method == "GET"
        assert sb.requests[-1].path == f"{API_PATH}/Accounts/{sb.project}/Calls/{call.sid}.json"


async def test_fetch_call_duration_variants(odd_server):
    bodies = iter([{"status": "completed", "duration": "17"}, {"status": "ringing", "duration": None}, {"duration": "x"}])

    async def handler(request):
        return web.json_response(next(bodies))

    odd = await odd_server(handler)
    async with odd.client() as client:
        assert await client.fetch_call("CA1") == Call("CA1", "completed", 17)
        assert await client.fetch_call("CA1") == Call("CA1", "ringing", None)
        assert await client.fetch_call("CA1") == Call("CA1", "unknown", None)
    assert [(s.method, s.path) for s in odd.seen] == [("GET", f"{API_PATH}/Accounts/{PROJECT}/Calls/CA1.json")] * 3


async def test_hang_up_posts_status_completed():
    async with Sandbox(caller=CALLER, scenario=Scenario(outcome="hold", callbacks=False)) as sb:
        async with client_for(sb) as client:
            call = await place(client)
            await client.hang_up(call.sid)
            await asyncio.wait_for(sb.settle(), 5)
            fetched = await client.fetch_call(call.sid)
        update = sb.requests[1]
        assert (update.method, update.path) == ("POST", f"{API_PATH}/Accounts/{sb.project}/Calls/{call.sid}.json")
        assert update.form == (("Status", "completed"),)
        assert fetched.status == "canceled"


async def test_fetch_account():
    async with Sandbox() as sb:
        async with client_for(sb) as client:
            account = await client.fetch_account()
        assert account == {"sid": sb.project, "friendly_name": "voice2fa sandbox", "status": "active"}
        assert [(r.method, r.path) for r in sb.requests] == [("GET", f"{API_PATH}/Accounts/{sb.project}.json")]


# --- error mapping against the sandbox ---------------------------------------------------------------


def creates(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests if r.method == "POST" and r.path.endswith("/Calls.json"))


@pytest.mark.parametrize("what", ["token", "project"])
async def test_wrong_credentials(what):
    async with Sandbox(caller=CALLER) as sb:
        project, token = (sb.project, "wrong") if what == "token" else ("other-project", sb.token)
        async with Client(f"{sb.url}{API_PATH}/Accounts/{project}", project, token, timeout=2) as client:
            err = await provider_error(place(client))
            assert err.message == CREDENTIALS
            assert creates(sb) == 1
            err = await provider_error(client.fetch_account())
            assert err.message == CREDENTIALS
        assert sb.calls == {}


async def test_invalid_to_21211():
    async with Sandbox(caller=CALLER) as sb:
        async with client_for(sb) as client:
            err = await provider_error(place(client, to="12345"))
        assert err.message == (
            "SignalWire rejected the call request (400, error 21211): Invalid 'To' Phone Number: 12345"
            " — the number called is not valid for SignalWire"
        )
        assert creates(sb) == 1


async def test_caller_not_of_this_project_21210():
    async with Sandbox(caller=CALLER) as sb:
        async with client_for(sb) as client:
            err = await provider_error(place(client, caller="+15550109999"))
        assert err.message == (
            "SignalWire rejected the call request (400, error 21210): 'From' phone number not verified: +15550109999"
            " — SIGNALWIRE_NUMBER is not a number of this project: pick one from the Phone Numbers page"
        )
        assert creates(sb) == 1


@pytest.mark.parametrize(
    "api_status, message",
    [
        (401, CREDENTIALS),
        (429, "SignalWire is rate-limiting this account (429 Too Many Requests): wait and try again"),
        (500, "SignalWire failed on the call request (500): try again later"),
    ],
)
async def test_scripted_api_errors(api_status, message):
    async with Sandbox(caller=CALLER, scenario=Scenario(api_status=api_status)) as sb:
        async with client_for(sb) as client:
            err = await provider_error(place(client))
        assert err.message == message
        assert creates(sb) == 1  # never retried
        assert sb.calls == {}


# --- error mapping against odd servers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, message",
    [
        (401, {"code": 20003, "message": "Unauthorized", "status": 401}, CREDENTIALS),
        (403, {"code": 20403, "message": "Forbidden", "status": 403}, CREDENTIALS),
        (403, None, CREDENTIALS),
        (
            400,
            {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400},
            ("SignalWire rejected the call request (400, error 21211): Invalid 'To' Phone Number"
            " — the number called is not valid for SignalWire"),
        ),
        (
            400,
            {"code": 21210, "message": "'From' phone number not verified", "status": 400},
            ("SignalWire rejected the call request (400, error 21210): 'From' phone number not verified"
            " — SIGNALWIRE_NUMBER is not a number of this project: pick one from the Phone Numbers page"),
        ),
        (
            400,
            {"code": 21219, "message": "Trial accounts may only call verified numbers", "status": 400},
            ("SignalWire rejected the call request (400, error 21219): Trial accounts may only call verified numbers"
            " — a trial account can call only verified numbers: verify this number or upgrade the account"),
        ),
        (
            400,
            {"code": 21999, "message": "Something else", "status": 400},
            "SignalWire rejected the call request (400, error 21999): Something else",
        ),
        (
            429,
            {"code": 20429, "message": "Too Many Requests", "status": 429},
            "SignalWire is rate-limiting this account (429 Too Many Requests): wait and try again",
        ),
        (500, {"code": 20500, "message": "Internal", "status": 500}, "SignalWire failed on the call request (500): try again later"),
        (503, None, "SignalWire failed on the call request (503): try again later"),
    ],
)
async def test_error_answers(odd_server, status, body, message):
    odd = await odd_server(answer(status, body) if body is not None else answer(status, text="<html>no</html>", content_type="text/html"))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == message
    assert len(odd.seen) == 1  # a create is never retried


async def test_422_without_json(odd_server):
    odd = await odd_server(answer(422, text="<html><body>Unprocessable</body></html>", content_type="text/html"))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == "SignalWire rejected the call request (422)"
    assert len(odd.seen) == 1


async def test_2xx_without_json(odd_server):
    odd = await odd_server(answer(200, text="<Response/>", content_type="application/xml"))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == "SignalWire answered the call request with 200 but no JSON object"
    assert len(odd.seen) == 1


async def test_2xx_with_a_json_array(odd_server):
    odd = await odd_server(answer(201, [{"sid": "CA1"}]))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == "SignalWire answered the call request with 201 but no JSON object"
    assert len(odd.seen) == 1


@pytest.mark.parametrize("body", [{"status": "queued"}, {"sid": ""}, {"sid": None}, {"sid": 12345}])
async def test_201_without_a_sid(odd_server, body):
    odd = await odd_server(answer(201, body))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == "SignalWire accepted the call request but returned no call sid"
    assert len(odd.seen) == 1


async def test_timeout_of_the_create(odd_server):
    odd = await odd_server(never_answer)
    async with odd.client(timeout=0.2) as client:
        err = await provider_error(place(client))
    assert err.message == "SignalWire did not answer the call request within 0.2 s; the call may still have been placed"
    assert len(odd.seen) == 1


async def test_timeout_of_other_requests(odd_server):
    odd = await odd_server(never_answer)
    async with odd.client(timeout=0.2) as client:
        err = await provider_error(client.fetch_call("CA1"))
        assert err.message == "SignalWire did not answer the call status request within 0.2 s"
        err = await provider_error(client.hang_up("CA1"))
        assert err.message == "SignalWire did not answer the hang-up request within 0.2 s"
    assert len(odd.seen) == 2


async def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on `port` any more
    async with Client(f"http://127.0.0.1:{port}{API_PATH}/Accounts/{PROJECT}", PROJECT, TOKEN, timeout=2) as client:
        err = await provider_error(place(client))
    assert err.message == f"cannot reach SignalWire at http://127.0.0.1:{port}: connection failed (Connection refused)"


async def test_server_closing_the_connection_is_not_retried(odd_server):
    odd = await odd_server(hang_up_on_the_client)
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == f"cannot reach SignalWire at {odd.url}: the server closed the connection"
    assert len(odd.seen) == 1


async def test_errors_never_leak_the_token(odd_server):
    odd = await odd_server(answer(400, {"code": 21211, "message": "bad", "status": 400}))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert TOKEN not in err.message
    assert TOKEN not in repr(err)


async def test_long_platform_messages_are_cut(odd_server):
    odd = await odd_server(answer(400, {"code": 21000, "message": "x" * 1000, "status": 400}))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == "SignalWire rejected the call request (400, error 21000): " + "x" * 300


# --- both documented error shapes (specs/compatibility-api/_shared/errors.tsp) -----------------------

MORE = "https://signalwire.com/docs/rest/compatibility-api/error-codes"
HINT_21211 = " — the number called is not valid for SignalWire"
HINT_21210 = " — SIGNALWIRE_NUMBER is not a number of this project: pick one from the Phone Numbers page"
HINT_21219 = " — a trial account can call only verified numbers: verify this number or upgrade the account"


def array_error(code: str, message: str, more_info: str | None = MORE) -> dict:
    item = {"code": code, "message": message}
    if more_info is not None:
        item["more_info"] = more_info
    return {"errors": [item]}


@pytest.mark.parametrize(
    "body, message, more_info",
    [
        (array_error("21211", "Invalid 'To' Phone Number"),
         "SignalWire rejected the call request (400, error 21211): Invalid 'To' Phone Number" + HINT_21211, MORE),
        (array_error("21210", "From not in project"),
         "SignalWire rejected the call request (400, error 21210): From not in project" + HINT_21210, MORE),
        (array_error("21219", "Trial account"),
         "SignalWire rejected the call request (400, error 21219): Trial account" + HINT_21219, MORE),
        (array_error("30010", "Maxpriceperminute was exceeded.", None),
         "SignalWire rejected the call request (400, error 30010): Maxpriceperminute was exceeded.", None),
        ({"code": "21211", "message": "string code, object shape", "more_info": MORE, "status": 400},
         "SignalWire rejected the call request (400, error 21211): string code, object shape" + HINT_21211, MORE),
        ({"code": 21219, "message": "int code", "more_info": MORE + "#21219", "status": 400},
         "SignalWire rejected the call request (400, error 21219): int code" + HINT_21219, MORE + "#21219"),
        ({"errors": [{"code": "21211", "message": "first"}, {"code": "21210", "message": "second"}]},
         "SignalWire rejected the call request (400, error 21211): first; second" + HINT_21211, None),
    ],
)
async def test_both_error_shapes_give_the_reason_and_the_hint(odd_server, body, message, more_info):
    odd = await odd_server(answer(400, body))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == message
    assert err.more_info == more_info
    assert not err.dialed  # a rejected create rang nobody
    assert len(odd.seen) == 1


@pytest.mark.parametrize("status", [404, 422])
async def test_object_shape_on_fetch_and_update(odd_server, status):
    body = {"code": 20404, "message": "The resource you are trying to access does not exist",
            "more_info": MORE + "#20404", "status": status}
    odd = await odd_server(answer(status, body))
    async with odd.client() as client:
        err = await provider_error(client.fetch_call("b3877c40-da60-4998-90ad-b792e98472ca"))
        assert err.message == (f"SignalWire rejected the call status request ({status}, error 20404): "
                               "The resource you are trying to access does not exist")
        assert err.more_info == MORE + "#20404"
        err = await provider_error(client.hang_up("b3877c40-da60-4998-90ad-b792e98472ca"))
        assert err.message.startswith(f"SignalWire rejected the hang-up request ({status}, error 20404)")


@pytest.mark.parametrize(
    "body, message",
    [
        ({"errors": "21211"}, "SignalWire rejected the call request (400)"),
        ({"errors": []}, "SignalWire rejected the call request (400)"),
        ({"errors": [None, 5, "x"]}, "SignalWire rejected the call request (400)"),
        ({"errors": [{"code": {"nested": 1}, "message": ["not", "text"]}]}, "SignalWire rejected the call request (400)"),
        ({"errors": [{"code": "2121 1", "message": "spaced code"}]}, "SignalWire rejected the call request (400): spaced code"),
        ({"errors": [{"code": "9" * 40, "message": "huge code"}]}, "SignalWire rejected the call request (400): huge code"),
        ({"errors": [{"code": True, "message": "bool code"}]}, "SignalWire rejected the call request (400): bool code"),
        ({"code": 21211.5, "message": "float code"}, "SignalWire rejected the call request (400): float code"),
        ({"errors": [{"code": "21211", "message": "line\nbreak\x1b[31mred\x07"}]},
         "SignalWire rejected the call request (400, error 21211): line break [31mred" + HINT_21211),
        ({"errors": [{"code": "21211", "message": "y" * 1000}] * 50},
         "SignalWire rejected the call request (400, error 21211): " + "y" * 300 + HINT_21211),
    ],
)
async def test_hostile_error_bodies(odd_server, body, message):
    odd = await odd_server(answer(400, body))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.message == message
    assert TOKEN not in err.message


@pytest.mark.parametrize(
    "more_info, kept",
    [
        ("https://signalwire.com/docs/x#21211", True),
        ("http://example.test/errors/21211", True),
        ("javascript:alert(1)", False),
        ("https://example.test/\x1b[2Jclear", False),
        ("https://example.test/" + "a" * 600, False),
        (12345, False),
        ("", False),
    ],
)
async def test_more_info_is_kept_only_as_a_plain_web_link(odd_server, more_info, kept):
    odd = await odd_server(answer(400, {"errors": [{"code": "21211", "message": "m", "more_info": more_info}]}))
    async with odd.client() as client:
        err = await provider_error(place(client))
    assert err.more_info == (more_info if kept else None)
    assert "more_info" not in err.message and (not isinstance(more_info, str) or not more_info or more_info not in err.message)


async def test_the_sandbox_rejections_reach_the_operator_with_their_hint():
    """The sandbox answers rejected creates in the 400-array shape; the client reads it."""
    for code, hint in (("21211", HINT_21211), ("21210", HINT_21210), ("21219", HINT_21219)):
        async with Sandbox(caller=CALLER, scenario=Scenario(api_status=400, api_code=int(code))) as sb:
            async with client_for(sb) as client:
                err = await provider_error(place(client))
        assert err.message.startswith(f"SignalWire rejected the call request (400, error {code}): ")
        assert err.message.endswith(hint)
        assert err.more_info == f"{MORE}#{code}"
