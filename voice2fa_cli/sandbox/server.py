"""A local stand-in for SignalWire's Compatibility API: a real aiohttp server on 127.0.0.1.

It checks basic auth, validates the create, answers Calls create / update / fetch and the
account fetch as SignalWire's spec has them (see platform.py for the sources), then simulates
the call: status callbacks (retried like the platform's), the webhook fetched with signed
requests, the cXML read into what the callee heard, the keys the callee is asked for pressed.
A Scenario makes it busy, unanswered, a voicemail, failing, silent, or makes the API answer
any documented error. Every delay is at most 50 ms.

It shares no code with what it tests (DESIGN.md): its own signing, cXML reader and logger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from voice2fa_cli.sandbox import cxml, platform, signing
from voice2fa_cli.sandbox.calling import CallingRoutes

SANDBOX_CALLER = "+15550100000"
MAX_DELAY = 0.05  # seconds: no simulated delay is longer
MAX_DOCUMENTS = 8  # documents one call may fetch (a loop of redirects ends there)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
OUTCOMES = ("answer", "busy", "no-answer", "failed", "voicemail", "hold")


@dataclass
class Scenario:
    outcome: str = "answer"  # one of OUTCOMES; voicemail: answered, listens to the end, presses nothing;
    # hold: rings until hung up
    api_status: int | None = None  # answer the API with this error status (400, 401, 404, 422, 429, 500, 503 …)
    api_code: int | None = None  # … and this error code (default: platform.DEFAULT_CODE[api_status])
    api_on: str = "create"  # the request the scripted error answers: create | fetch | update
    press: str | None = "asked"  # at every <Gather>: "asked" (the first key it names), a key, None (nothing)
    keys: tuple[str | None, ...] | None = None  # when set, replaces `press`: the key for each <Gather>
    # reached, in order ("asked", a key, or None); once used up, nothing is pressed
    callbacks: bool = True  # False: status callbacks are lost (the client must poll)
    fetch: bool = True  # False: the call is answered but the webhook is never fetched
    hang_up_after_fetch: bool = False  # the callee hangs up as soon as the first document arrives
    delay: float = 0.02  # between simulated steps; at most 0.05
    # The callee steers: where a <Gather> offers several keys (the code, read with its repeat
    # and slower keys), press these, one per such <Gather>, in order; then nothing. `press`
    # applies only where a <Gather> asks for one key.
    steer: tuple[str, ...] = ()
    # The Calling API (an inline SWML dial): False, the call's voice log is not found by the
    # dial's id (only in the list); True for swml_string, the Space wants params.swml as an
    # escaped JSON string and answers 422 to an object.
    log_by_id: bool = True
    swml_string: bool = False


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    form: tuple[tuple[str, str], ...]


@dataclass
class Delivery:
    """One status callback and what the application answered to each attempt (an HTTP status,
    or "unreachable")."""

    status: str  # the CallStatus it carried
    sequence: int
    answers: list[int | str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return bool(self.answers) and isinstance(self.answers[-1], int) and 200 <= self.answers[-1] < 300


@dataclass
class SimCall:
    sid: str
    to: str
    caller: str
    url: str = field(repr=False)  # carries the call's token
    method: str
    status_callback: str | None = field(repr=False)  # carries the call's token
    status_callback_method: str
    events: tuple[str, ...]
    scenario: Scenario
    status: str = "queued"
    answered: bool = False
    duration: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    updated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started: datetime | None = None
    ended: datetime | None = None
    heard: list[str] = field(default_factory=list, repr=False)  # holds the code: never in a repr
    documents: list[bytes] = field(default_factory=list, repr=False)
    pressed: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    task: asyncio.Task | None = field(default=None, repr=False)
    sequence: int = 0
    gathers_reached: int = 0
    steered: int = 0  # keys of Scenario.steer pressed so far
    waited: int = 0  # simulated seconds spent waiting out <Gather> timeouts (no key pressed)
    swml: dict | None = field(default=None, repr=False)  # a Calling API dial's document (holds the code)
    log_id: str | None = None  # its voice log's id

    def set_status(self, status: str) -> None:
        self.status = status
        self.updated = datetime.now(timezone.utc)
        if status == "in-progress" and self.started is None:
            self.started = self.updated
        if status in platform.FINAL:
            self.ended = self.updated

    def json(self, project: str) -> dict:
        """The call resource: every field of SignalWire's `model Call` (specs/compatibility-api/
        calls/models/core.tsp), with its documented type: `duration` an int32 (0 until the call
        has lasted), dates RFC 2822, `status` from enum CallStatus, `direction` from enum
        CallDirection (inbound | outbound)."""
        uri = f"{platform.API_ROOT}/Accounts/{project}/Calls/{self.sid}"
        status = "queued" if self.status == "initiated" else self.status  # not a CallStatus value
        return {
            "sid": self.sid,
            "account_sid": project,
            "date_created": platform.rfc2822(self.created),
            "date_updated": platform.rfc2822(self.updated),
            "parent_call_sid": None,
            "to": self.to,
            "formatted_to": platform.formatted(self.to),
            "to_formatted": platform.formatted(self.to),
            "from": self.caller,
            "formatted_from": platform.formatted(self.caller),
            "from_formatted": platform.formatted(self.caller),
            "phone_number_sid": None,
            "status": status,
            "start_time": platform.rfc2822(self.started) if self.started else None,
            "end_time": platform.rfc2822(self.ended) if self.ended else None,
            "duration": self.duration,
            "price": None,
            "price_unit": "USD",
            "direction": "outbound",
            "answered_by": None,
            "api_version": platform.API_VERSION,
            "forwarded_from": None,
            "caller_name": None,
            "uri": uri + ".json",
            "subresource_uris": {"notifications": None, "recordings": uri + "/Recordings.json"},
            "annotation": None,
            "group_sid": None,
            "audio_in_mos": 4.5 if self.answered else None,
            "sip_result_code": "200" if self.answered else None,
            "audio_rtt_avg": None,
            "audio_rtt_min": None,
            "audio_rtt_max": None,
            "audio_out_jitter_min": None,
            "audio_out_jitter_max": None,
            "audio_out_jitter_avg": None,
            "audio_out_lost": None,
        }


def quiet_logger() -> logging.Logger:
    """aiohttp logs a traceback for every malformed request it answers 400; the sandbox keeps
    quiet (its own unregistered logger that drops everything)."""
    return logging.Logger("voice2fa.sandbox", level=logging.CRITICAL + 1)


class Sandbox(CallingRoutes):
    """Use as `async with Sandbox() as sb:`; `sb.url` is the space to point a client at."""

    def __init__(
        self,
        *,
        project: str | None = None,
        token: str | None = None,
        signing_key: str | None = "",
        caller: str | None = None,
        scenario: Scenario | None = None,
        on_heard: Callable[[SimCall, list[str]], None] | None = None,
        on_status: Callable[[SimCall], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep  # every simulated delay goes through this (tests record them)
        # a SignalWire project id is a uuid (specs/compatibility-api/calls/models/core.tsp AccountSid)
        self.project = project or str(uuid.uuid4())
        self.token = token or secrets.token_urlsafe(24)
        # "" → a random key; None → requests go unsigned
        self.signing_key = secrets.token_urlsafe(24) if signing_key == "" else signing_key
        self.caller = caller
        self.scenario = scenario or Scenario()
        self.on_heard = on_heard
        self.on_status = on_status
        self.calls: dict[str, SimCall] = {}
        self.requests: list[Recorded] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._guard])
        base = f"{platform.API_ROOT}/Accounts/{{project}}"
        app.router.add_post(base + "/Calls.json", self._create)
        app.router.add_get(base + "/Calls/{sid}.json", self._fetch)
        app.router.add_post(base + "/Calls/{sid}.json", self._update)
        app.router.add_get(base + ".json", self._account)
        app.router.add_get(base + "/IncomingPhoneNumbers.json", self._numbers)
        self.add_calling_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=quiet_logger())
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self.url

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def settle(self) -> None:
        """Wait until every simulated call and callback has finished (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def heard_code(self, sid: str | None = None) -> str | None:
        """The digits the callee heard read (the first reading), for tests and demos."""
        call = self.calls[sid] if sid else (list(self.calls.values())[-1] if self.calls else None)
        if call is None:
            return None
        for line in call.heard:
            digits = line.replace(", ", "")
            if digits.isdigit() and len(digits) >= 6:
                return digits
        return None

    # --- API -----------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Every API request is recorded, then must carry the project's basic auth."""
        if "project" not in request.match_info:
            return await handler(request)  # not an API route: aiohttp's own 404 / 405
        form = list((await request.post()).items()) if request.method == "POST" else []
        self.requests.append(Recorded(request.method, request.path, tuple((k, str(v)) for k, v in form)))
        if not self._authorised(request):
            # SPEC_CALLS: every operation answers CompatibilityStatusCode401 (the object shape)
            return platform.error_object(401, 20003)
        return await handler(request)

    @staticmethod
    async def _form(request: web.Request) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in (await request.post()).items()]  # already read: cached

    def _new_call(self, sid: str, to: str, caller: str) -> SimCall:
        """A call the Calling API dialed (no webhook: its document came inline)."""
        return SimCall(sid=sid, to=to, caller=caller, url="", method="POST", status_callback=None,
                       status_callback_method="POST", events=(), scenario=self.scenario)

    def _record(self, request: web.Request, body: str) -> None:
        """A Calling or Voice Logs API request, recorded (its JSON body as one field)."""
        self.requests.append(Recorded(request.method, request.path_qs, (("body", body),) if body else ()))

    def _authorised(self, request: web.Request) -> bool:
        return request.match_info["project"] == self.project and self._authorised_basic(request)

    def _authorised_basic(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            login, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(login.encode(), self.project.encode()) and secrets.compare_digest(
            password.encode(), self.token.encode()
        )

    def _scripted(self, operation: str) -> web.Response | None:
        """The scenario's API error, in the shape the spec gives that operation: a rejected
        create is the 400 errors array (SPEC_CALLS create → CompatibilityStatusCode400Array);
        everything else the error object (CompatibilityStatusCode400/401/404/422/503)."""
        scenario = self.scenario
        if scenario.api_status is None or scenario.api_on != operation:
            return None
        status = scenario.api_status
        code = scenario.api_code or platform.DEFAULT_CODE.get(status, 20001)
        if status == 400 and operation == "create":
            return platform.error_array(code)
        return platform.error_object(status, code)

    async def _create(self, request: web.Request) -> web.Response:
        if scripted := self._scripted("create"):
            return scripted
        form = await self._form(request)
        values = dict(form)
        to, caller, url = values.get("To", ""), values.get("From", ""), values.get("Url", "")
        # The rejections below answer 400 with the errors array (SPEC_CALLS create), codes from
        # ERROR_CODES: 21211 To, 21210 From, 21205 Url, 21209 Method, 21208 Timeout, 10000 events.
        if not _E164.fullmatch(to):
            return platform.error_array(21211, f"Invalid 'To' Phone Number: {to[:20]}")
        if not _E164.fullmatch(caller) or (self.caller and caller != self.caller):
            return platform.error_array(21210, f"'From' phone number not verified: {caller[:20]}")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            return platform.error_array(21205)
        methods = (values.get("Method", "POST"), values.get("StatusCallbackMethod", "POST"))
        if any(m not in ("GET", "POST") for m in methods):  # SPEC_REQ Method, StatusCallbackMethod
            return platform.error_array(21209)
        timeout = values.get("Timeout", "60")  # SPEC_REQ Timeout: int32, 1..600
        if not (timeout.isdigit() and platform.TIMEOUT_RANGE[0] <= int(timeout) <= platform.TIMEOUT_RANGE[1]):
            return platform.error_array(21208)
        events = tuple(v for k, v in form if k == "StatusCallbackEvent")
        # SPEC_REQ StatusCallbackEvent: each of the valid values (or space-separated in one field)
        events = tuple(e for value in events for e in value.split()) or platform.DEFAULT_EVENTS
        if any(e not in platform.EVENTS for e in events):
            return platform.error_array(10000, "StatusCallbackEvent has a value that is not a call progress event")
        sid = platform.new_sid()
        call = SimCall(
            sid=sid,
            to=to,
            caller=caller,
            url=url,
            method=methods[0],
            status_callback=values.get("StatusCallback"),
            status_callback_method=methods[1],
            events=events,
            scenario=self.scenario,
        )
        self.calls[sid] = call
        self._spawn(call)
        # SPEC_CALLS create returns CallResponse with no @statusCode: 200 (Twilio's answers 201)
        return web.json_response(call.json(self.project), status=200)

    async def _fetch(self, request: web.Request) -> web.Response:
        if scripted := self._scripted("fetch"):
            return scripted
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return platform.error_object(404, 20404)  # SPEC_CALLS read → CompatibilityStatusCode404
        return web.json_response(call.json(self.project))

    async def _update(self, request: web.Request) -> web.Response:
        if scripted := self._scripted("update"):
            return scripted
        form = dict(await self._form(request))
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return platform.error_object(404, 20404)  # SPEC_CALLS update → CompatibilityStatusCode404
        wanted = form.get("Status")
        if wanted is not None and wanted not in platform.UPDATE_STATUSES:  # SPEC_REQ UpdateCallRequest.Status
            return platform.error_object(422, 10000, f"Status must be one of {', '.join(platform.UPDATE_STATUSES)}")
        if wanted is not None and call.status not in platform.FINAL:
            if wanted == "canceled" and call.answered:
                # ERROR_CODES 10000: "An attempt was made to cancel an in-progress call"
                return platform.error_object(422, 10000, "An attempt was made to cancel an in-progress call")
            if call.task is not None:
                call.task.cancel()
            self._end(call, "completed" if call.answered else "canceled")
        return web.json_response(call.json(self.project))

    async def _numbers(self, request: web.Request) -> web.Response:
        """SPEC_NUMBERS list: the project's one number (the caller), filtered by PhoneNumber (a
        pattern: here a prefix), in IncomingPhoneNumberListResponse's envelope."""
        if scripted := self._scripted("fetch"):
            return scripted
        number = self.caller or SANDBOX_CALLER
        wanted = request.query.get("PhoneNumber", "")
        uri = f"{platform.API_ROOT}/Accounts/{self.project}/IncomingPhoneNumbers?Page=0&PageSize=50"
        item = {"sid": str(uuid.uuid5(uuid.NAMESPACE_URL, number)), "account_sid": self.project,
                "phone_number": number, "friendly_name": platform.formatted(number)}
        items = [item] if number.startswith(wanted) else []
        return web.json_response({"uri": uri, "first_page_uri": uri, "next_page_uri": None, "previous_page_uri": None,
                                  "page": 0, "page_size": 50, "incoming_phone_numbers": items})

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response({"sid": self.project, "friendly_name": "voice2fa sandbox", "status": "active"})

    # --- the simulated call ----------------------------------------------------------------

    def _track(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn(self, call: SimCall) -> None:
        call.task = self._track(self._simulate(call))

    def _status(self, call: SimCall, status: str) -> None:
        call.set_status(status)
        if self.on_status is not None:
            self.on_status(call)

    def _end(self, call: SimCall, final: str) -> None:
        """The caller hung up (an update): the call ends now, and the final callback still goes
        out, whoever hung up (a callback may arrive after the application thinks it is over)."""
        if call.answered and call.started is not None:
            call.duration = max(1, int((datetime.now(timezone.utc) - call.started).total_seconds()))
        self._status(call, final)
        self._track(self._callback(call, "completed", final))

    async def _pause(self, call: SimCall) -> None:
        await self._sleep(min(call.scenario.delay, MAX_DELAY))

    async def _callback(self, call: SimCall, event: str, status: str) -> None:
        """One status callback (SPEC_HOOK VoiceStatusCallbackPayload), for subscribed events
        only (SPEC_REQ StatusCallbackEvent, default `completed`); a non-2xx or no answer is
        tried again, three attempts in all (RETRIES)."""
        if not call.status_callback or not call.scenario.callbacks or event not in call.events:
            return
        answered = call.answered
        form = [
            ("AccountSid", self.project),
            ("ApiVersion", platform.API_VERSION),
            # SPEC_HOOK marks the media statistics required: zeros until there was media
            ("AudioInAveragePtime", "20" if answered else "0"),
            ("AudioInDtmfPacketCount", str(len(call.pressed))),
            ("AudioInFlushPacketCount", "0"),
            ("AudioInJitterMaxVariance", "0"),
            ("AudioInJitterMinVariance", "0"),
            ("AudioInLargestJbSize", "0"),
            ("AudioInMediaPacketCount", str(50 * call.duration)),
            ("AudioInMos", "4.5" if answered else "0"),
            ("AudioInSkipPacketCount", "0"),
            ("AudioOutDtmfPacketCount", "0"),
            ("AudioOutMediaPacketCount", str(50 * call.duration)),
            ("CallSid", call.sid),
            ("CallStatus", status),  # SPEC_HOOK CallStatus: never "answered"
            ("CallbackSource", platform.CALLBACK_SOURCE),
            ("Direction", "outbound-api"),  # SPEC_HOOK Direction: calls launched through the REST API
            ("From", call.caller),
            ("SequenceNumber", str(call.sequence)),  # SPEC_HOOK: "starting at 0"
            ("Timestamp", platform.rfc2822()),  # SPEC_HOOK: RFC 2822
            ("To", call.to),
        ]
        if event == "completed":  # SPEC_HOOK CallDuration: "Only present on the `completed` event"
            form.append(("CallDuration", str(call.duration)))
        delivery = Delivery(status, call.sequence)
        call.sequence += 1
        call.deliveries.append(delivery)
        for attempt in range(platform.CALLBACK_ATTEMPTS):
            if attempt:
                await self._pause(call)
            try:
                answer, _body = await self._request(call.status_callback, form, call.status_callback_method)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                delivery.answers.append("unreachable")
                continue
            delivery.answers.append(answer)
            if 200 <= answer < 300:
                return

    async def _request(self, url: str, form: list[tuple[str, str]], method: str = "POST") -> tuple[int, bytes]:
        """A signed request to the application: POST with the form, or GET with it in the
        query string (signed over the full URL and no fields)."""
        assert self._http is not None
        if method == "GET":
            url = url + ("&" if "?" in url else "?") + urlencode(form)
            form = []
        headers = {}
        if self.signing_key is not None:
            headers[signing.HEADER] = signing.sign(self.signing_key, url, form)
        # sent exactly as signed: yarl would otherwise re-encode the URL (e.g. %2C → ",")
        target = URL(url, encoded=True)
        async with self._http.request(method, target, data=form or None, headers=headers,
                                      allow_redirects=False) as resp:
            return resp.status, await resp.read()

    async def _simulate(self, call: SimCall) -> None:
        scenario = call.scenario
        await self._pause(call)
        self._status(call, "initiated")  # shown as "queued" by the resource (not a CallStatus)
        await self._callback(call, "initiated", "initiated")
        await self._pause(call)
        self._status(call, "ringing")
        await self._callback(call, "ringing", "ringing")
        await self._pause(call)
        if scenario.outcome == "hold":
            await asyncio.Event().wait()  # until the client hangs up (which cancels this task)
        if scenario.outcome not in ("answer", "voicemail"):
            self._status(call, scenario.outcome)
            await self._callback(call, "completed", scenario.outcome)
            return
        call.answered = True
        self._status(call, "in-progress")
        # SPEC_HOOK CallStatus has no "answered": the answered event arrives as in-progress
        await self._callback(call, "answered", "in-progress")
        if not scenario.fetch:
            await asyncio.Event().wait()  # silence until the client hangs up
        await self._converse(call)
        call.duration = max(1, 2 * len(call.heard) + call.waited)
        self._status(call, "completed")
        await self._callback(call, "completed", "completed")

    async def _converse(self, call: SimCall) -> None:
        """Fetch the webhook, listen, press keys, follow redirects: up to MAX_DOCUMENTS."""
        url, method = call.url, call.method
        form = [
            ("AccountSid", self.project),
            ("ApiVersion", platform.API_VERSION),
            ("CallSid", call.sid),
            ("CallStatus", "in-progress"),
            ("Direction", "outbound-api"),
            ("From", call.caller),
            ("To", call.to),
        ]
        for _ in range(MAX_DOCUMENTS):
            try:
                status, body = await self._request(url, form, method)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self._heard(call, ["[the application could not be reached: the call ends]"])
                return
            if status != 200:
                self._heard(call, [f"[the application answered {status}: the call ends]"])
                return
            call.documents.append(body)
            try:
                document = cxml.read(body)
            except cxml.NotCxml:
                self._heard(call, ["[the application answered something that is not cXML: the call ends]"])
                return
            if call.scenario.hang_up_after_fetch:
                self._heard(call, ["[the callee hangs up]"])
                return
            gather = document.gather
            key = self._key(call, gather.keys) if gather is not None else None
            form = [f for f in form if f[0] != "Digits"]
            if key is None:
                if gather is not None:  # nobody presses: the platform waits out the <Gather>'s timeout
                    call.waited += _timeout(gather)
                self._heard(call, list(document.lines))  # no key: the document goes on to its end
                if document.redirect is None:
                    return
                url, method = document.redirect, "POST"
                continue
            assert gather is not None  # a key is pressed only at a <Gather>
            self._heard(call, [*list(document.lines[:gather.heard_before_key]), f"[presses {key}]"])
            call.pressed.append(key)
            await self._pause(call)
            # SignalWire cXML <Gather>: with no action, the current URL is requested again
            url, method = gather.action or url, gather.attributes.get("method", "POST").upper()
            form.append(("Digits", key))

    @staticmethod
    def _key(call: SimCall, named: tuple[str, ...] | list[str]) -> str | None:
        """The key pressed where the call waits for one (a cXML <Gather>, an SWML prompt) whose
        prompt names the keys `named`: the scenario's `keys` in order when set, else its `press`
        where one key is asked for and its `steer` where several are offered; "asked" is the key
        the prompt names; a voicemail presses nothing."""
        scenario = call.scenario
        index = call.gathers_reached
        call.gathers_reached += 1
        if scenario.outcome == "voicemail":
            return None
        if scenario.keys is not None:
            choice = scenario.keys[index] if index < len(scenario.keys) else None
        elif len(named) != 1:  # offered a choice, not asked for one key
            if call.steered < len(scenario.steer):
                call.steered += 1
                return scenario.steer[call.steered - 1]
            return None
        else:
            choice = scenario.press
        if choice == "asked":
            return named[0] if named else None
        return choice

    def _heard(self, call: SimCall, lines: list[str]) -> None:
        call.heard.extend(lines)
        if self.on_heard is not None:
            self.on_heard(call, lines)


def _timeout(gather: cxml.Gather) -> int:
    """Seconds a <Gather> waits for a key (cXML's default: 5)."""
    raw = gather.attributes.get("timeout", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 3 else 5
