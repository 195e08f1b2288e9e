"""A local stand-in for SignalWire's Compatibility API: a real aiohttp server on 127.0.0.1.

It checks basic auth, validates `To`, answers Calls create / update / fetch and the account
fetch, then simulates the call: status callbacks in order (with sequence numbers), the
webhook fetched with signed POSTs, the cXML rendered into what the callee heard, the key the
callee is asked for pressed. A Scenario makes it busy, unanswered, failing, silent, or makes
the API answer 401 / 429 / 500. Every delay is at most 50 ms.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from voice2fa_cli import signature, speech
from voice2fa_cli.config import API_PATH
from voice2fa_cli.signalwire import FINAL_STATUSES

SANDBOX_CALLER = "+15550100000"
MAX_DELAY = 0.05  # seconds: no simulated delay is longer
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_KEY_ASKED = re.compile(r"(?<!\d)([0-9])(?!\d)")


@dataclass
class Scenario:
    outcome: str = "answer"  # answer | busy | no-answer | failed | hold (rings until hung up)
    api_status: int | None = None  # answer Calls.json create with this error status (401, 429, 500 …)
    press: str | None = "asked"  # "asked": the key the call asks for; a digit; None: press nothing
    callbacks: bool = True  # False: status callbacks are lost (the client must poll)
    fetch: bool = True  # False: the call is answered but the webhook is never fetched
    hang_up_after_fetch: bool = False  # the callee hangs up as soon as the call is answered
    delay: float = 0.02  # between simulated steps; at most 0.05
    # The callee steers: when a document offers several keys (the code, read with its repeat
    # and slower keys), press these, one per such document, in order; then nothing.
    steer: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    form: tuple[tuple[str, str], ...]


@dataclass
class SimCall:
    sid: str
    to: str
    caller: str
    url: str = field(repr=False)  # carries the call's token
    method: str
    status_callback: str | None = field(repr=False)  # carries the call's token
    events: tuple[str, ...]
    scenario: Scenario
    status: str = "queued"
    answered: bool = False
    duration: int = 0
    heard: list[str] = field(default_factory=list, repr=False)  # holds the code: never in a repr
    documents: list[bytes] = field(default_factory=list, repr=False)
    pressed: list[str] = field(default_factory=list)
    task: asyncio.Task | None = field(default=None, repr=False)
    sequence: int = 0
    steered: int = 0  # keys of Scenario.steer pressed so far

    def json(self, project: str) -> dict:
        return {
            "sid": self.sid,
            "account_sid": project,
            "to": self.to,
            "from": self.caller,
            "status": self.status,
            "direction": "outbound-api",
            "duration": str(self.duration) if self.status in FINAL_STATUSES else None,
            "api_version": "2010-04-01",
        }


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status}, status=status)


class Sandbox:
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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep  # every simulated delay goes through this (tests record them)
        self.project = project or f"sandbox-{secrets.token_hex(8)}"
        self.token = token or secrets.token_urlsafe(24)
        # "" → a random key; None → requests go unsigned
        self.signing_key = secrets.token_urlsafe(24) if signing_key == "" else signing_key
        self.caller = caller
        self.scenario = scenario or Scenario()
        self.on_heard = on_heard
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
        base = f"{API_PATH}/Accounts/{{project}}"
        app.router.add_post(base + "/Calls.json", self._create)
        app.router.add_get(base + "/Calls/{sid}.json", self._fetch)
        app.router.add_post(base + "/Calls/{sid}.json", self._update)
        app.router.add_get(base + ".json", self._account)
        from voice2fa_cli.webhook import quiet_logger

        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=quiet_logger())
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
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
        """Wait until every simulated call has finished (tests)."""
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
            return _error(401, 20003, "Authentication Error - invalid username")
        return await handler(request)

    @staticmethod
    async def _form(request: web.Request) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in (await request.post()).items()]  # already read: cached

    def _authorised(self, request: web.Request) -> bool:
        if request.match_info["project"] != self.project:
            return False
        import base64
        import binascii

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

    async def _create(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        scenario = self.scenario
        if scenario.api_status is not None:
            status = scenario.api_status
            return _error(status, 20429 if status == 429 else 20500, f"sandbox scripted {status}")
        values = dict(form)
        to, caller, url = values.get("To", ""), values.get("From", ""), values.get("Url", "")
        if not _E164.fullmatch(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to[:20]}")
        if not _E164.fullmatch(caller) or (self.caller and caller != self.caller):
            return _error(400, 21210, f"'From' phone number not verified: {caller[:20]}")
        if not url.startswith(("http://", "https://")):
            return _error(400, 21205, "Url is not a valid URL")
        sid = "CA" + secrets.token_hex(16)
        call = SimCall(
            sid=sid,
            to=to,
            caller=caller,
            url=url,
            method=values.get("Method", "POST"),
            status_callback=values.get("StatusCallback"),
            events=tuple(v for k, v in form if k == "StatusCallbackEvent"),
            scenario=scenario,
        )
        self.calls[sid] = call
        self._spawn(call)
        return web.json_response(call.json(self.project), status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return _error(404, 20404, "The requested resource was not found")
        return web.json_response(call.json(self.project))

    async def _update(self, request: web.Request) -> web.Response:
        form = dict(await self._form(request))
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return _error(404, 20404, "The requested resource was not found")
        if form.get("Status") in ("completed", "canceled") and call.status not in FINAL_STATUSES:
            if call.task is not None:
                call.task.cancel()
            final = "completed" if call.answered else "canceled"
            self._spawn_final(call, final)
        return web.json_response(call.json(self.project))

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response({"sid": self.project, "friendly_name": "voice2fa sandbox", "status": "active"})

    # --- the simulated call ----------------------------------------------------------------

    def _spawn(self, call: SimCall) -> None:
        task = asyncio.get_running_loop().create_task(self._simulate(call))
        call.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_final(self, call: SimCall, final: str) -> None:
        call.status = final
        task = asyncio.get_running_loop().create_task(self._callback(call, "completed", final))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pause(self, call: SimCall) -> None:
        await self._sleep(min(call.scenario.delay, MAX_DELAY))

    async def _callback(self, call: SimCall, event: str, status: str) -> None:
        if not call.status_callback or not call.scenario.callbacks:
            return
        if event not in call.events and event != "initiated":
            return
        form = [
            ("AccountSid", self.project),
            ("CallSid", call.sid),
            ("CallStatus", status),
            ("Direction", "outbound-api"),
            ("From", call.caller),
            ("To", call.to),
            ("SequenceNumber", str(call.sequence)),
            ("Timestamp", _now()),
            ("CallbackSource", "call-progress-events"),
        ]
        if status in FINAL_STATUSES:
            form.append(("CallDuration", str(call.duration)))
        call.sequence += 1
        try:
            await self._post(call.status_callback, form)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # a lost callback: the client must cope

    async def _post(self, url: str, form: list[tuple[str, str]]) -> tuple[int, bytes]:
        assert self._http is not None
        headers = {}
        if self.signing_key is not None:
            headers["X-SignalWire-Signature"] = signature.compute(self.signing_key, url, form)
        async with self._http.post(url, data=form, headers=headers, allow_redirects=False) as resp:
            return resp.status, await resp.read()

    async def _simulate(self, call: SimCall) -> None:
        scenario = call.scenario
        await self._pause(call)
        call.status = "initiated"
        await self._callback(call, "initiated", "initiated")
        await self._pause(call)
        call.status = "ringing"
        await self._callback(call, "ringing", "ringing")
        await self._pause(call)
        if scenario.outcome == "hold":
            await asyncio.Event().wait()  # until the client hangs up (which cancels this task)
        if scenario.outcome != "answer":
            call.status = scenario.outcome
            await self._callback(call, "completed", scenario.outcome)
            return
        call.status = "in-progress"
        call.answered = True
        await self._callback(call, "answered", "answered")
        await self._callback(call, "answered", "in-progress")
        if not scenario.fetch:
            await asyncio.Event().wait()  # silence until the client hangs up
        await self._converse(call)
        call.duration = max(1, 2 * len(call.heard))
        call.status = "completed"
        await self._callback(call, "completed", "completed")

    async def _converse(self, call: SimCall) -> None:
        """Fetch the webhook, listen, press keys: up to 6 documents."""
        url = call.url
        form = [
            ("AccountSid", self.project),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call.sid),
            ("CallStatus", "in-progress"),
            ("Direction", "outbound-api"),
            ("From", call.caller),
            ("To", call.to),
        ]
        for _ in range(6):
            try:
                status, body = await self._post(url, form)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self._heard(call, ["[the application could not be reached: the call ends]"])
                return
            if status != 200:
                self._heard(call, [f"[the application answered {status}: the call ends]"])
                return
            call.documents.append(body)
            try:
                heard = speech.render(body)
            except ValueError:
                self._heard(call, ["[the application answered something that is not cXML: the call ends]"])
                return
            if call.scenario.hang_up_after_fetch:
                self._heard(call, ["[the callee hangs up]"])
                return
            key = self._key(call, heard) if heard.gather is not None else None
            if key is None:
                self._heard(call, list(heard.lines))  # no key: the document goes on to its end
                return
            self._heard(call, list(heard.lines[: heard.until_key]) + [f"[presses {key}]"])
            call.pressed.append(key)
            await self._pause(call)
            url = heard.gather.get("action") or url
            form = [f for f in form if f[0] != "Digits"] + [("Digits", key)]

    def _key(self, call: SimCall, heard: speech.Heard) -> str | None:
        named = [m.group(1) for line in heard.prompt for m in _KEY_ASKED.finditer(line)]
        if len(named) != 1:  # offered a choice (or read digits), not asked for one key
            if call.steered < len(call.scenario.steer):
                call.steered += 1
                return call.scenario.steer[call.steered - 1]
            return None
        press = call.scenario.press
        if press is None:
            return None
        if press != "asked":
            return press
        return named[0]

    def _heard(self, call: SimCall, lines: list[str]) -> None:
        call.heard.extend(lines)
        if self.on_heard is not None:
            self.on_heard(call, lines)


def _now() -> str:
    import email.utils

    return email.utils.formatdate(usegmt=True)
