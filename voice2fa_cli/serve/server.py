"""The server: the webhook listener (call routes only, reached by the platform through the public
URL) and the API listener (the API, /healthz and /metrics; loopback by default), one platform
client, many calls at once on one webhook app, each with its own token routes.

`Core` holds what the API does (verifications over the store); `Serving` starts and stops it all.
On `stop()` new verifications get 503, the calls in flight get up to `drain` seconds to finish
(then they are hung up and recorded), and both listeners close."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from voice2fa_cli import config, flow, phone, phrases, speech
from voice2fa_cli.errors import ConfigError, PolicyRefused, ProviderError, StoreError, Voice2faError
from voice2fa_cli.serve import records, shapes
from voice2fa_cli.serve.log import CallReporter, Log, ServerReporter

AUTH_CACHE_SECONDS = 5.0  # a revoked key stops working within this
MAX_AUTH_CACHE = 1024
MAX_HASHING = 32  # scrypt checks running or waiting at once; beyond, 20003 at once
MAX_CODE = 10
CALL_LINGER = 60.0
SYNC_INTERVAL = 1.0  # how often the placing instance syncs a call with the store (several instances)
STORE_WORKERS = 4  # threads working a shared (Redis) store at once; SQLite always gets one  # a call's routes stay after its end, for the platform's late callbacks


class ApiError(Exception):
    """An answer in Twilio's error shape."""

    def __init__(self, code: int, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def response(self) -> web.Response:
        return shapes.error(self.code, self.message, self.status)


@dataclass
class Flight:
    call: object  # the CallState
    task: asyncio.Task


class Core:
    def __init__(self, settings: config.Settings, creds: flow.StoreThread, store: flow.StoreThread, client,
                 webhook: web.Application, log: Log, metrics, *, sandbox: bool, api_url: str,
                 linger: float = CALL_LINGER, calls=None) -> None:
        self.settings = settings
        self.calls = calls  # serve.calls.StoredCalls with several instances, else None
        self.creds = creds  # services and API keys: always the real namespace
        self.store = store  # verifications and sessions: the sandbox's with --sandbox
        self.client = client
        self.webhook = webhook
        self.log = log
        self.metrics = metrics
        self.sandbox = sandbox
        self.api_url = api_url
        self.linger = linger
        self.draining = False
        self.account = ""
        self.flights: dict[str, Flight] = {}  # verification sid → its call in flight here
        self.tasks: set[asyncio.Task] = set()
        self._mac_key = secrets.token_bytes(32)
        self._auth_cache: dict[str, tuple[bytes, float]] = {}
        self._scrypt = asyncio.Semaphore(2)
        self._hashing = 0  # requests waiting for or running a scrypt check
        self._services: dict[str, records.Service] = {}

    async def start(self) -> None:
        self.account = await self.creds.apply(records.account_sid)

    # --- credentials -----------------------------------------------------------------------

    async def authenticate(self, header: str | None) -> bool:
        """HTTP basic auth with an API key: the key's SID and its secret."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, secret = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if not records.SID.fullmatch(user) or not secret or len(secret) > 256:
            return False
        mac = hmac.digest(self._mac_key, secret.encode(), "sha256")
        cached = self._auth_cache.get(user)
        now = time.monotonic()
        if cached is not None and hmac.compare_digest(cached[0], mac) and now - cached[1] < AUTH_CACHE_SECONDS:
            return True
        record = await self.creds.apply(records.key_record, user)
        if record is None or record["revoked"]:
            self._auth_cache.pop(user, None)
            return False
        if cached is None or not hmac.compare_digest(cached[0], mac):
            if self._hashing >= MAX_HASHING:
                return False  # a flood of wrong secrets: refused at once rather than queued
            self._hashing += 1
            try:
                async with self._scrypt:
                    ok = await asyncio.to_thread(records.secret_matches, record, secret)
            finally:
                self._hashing -= 1
            if not ok:
                return False
        if len(self._auth_cache) >= MAX_AUTH_CACHE:
            self._auth_cache.clear()
        self._auth_cache[user] = (mac, now)
        return True

    async def service(self, sid: str) -> records.Service:
        service = self._services.get(sid)  # services never change: cached once read
        if service is None:
            service = await self.creds.apply(records.get_service, sid)
            if service is not None:
                if len(self._services) >= MAX_AUTH_CACHE:
                    self._services.clear()
                self._services[sid] = service
        if service is None:
            raise ApiError(20404, f"The requested resource /Services/{sid} was not found")
        return service

    # --- verifications ---------------------------------------------------------------------

    async def _record(self, service: records.Service, sid: str) -> dict:
        record = None
        if records.SID.fullmatch(sid) and sid.startswith("VE"):
            record = await self.store.run("get_record", records.VERIFICATION, sid)
        if record is None or record["service_sid"] != service.sid or record["status"] != "pending":
            raise ApiError(20404, f"The requested resource /Services/{service.sid}/Verifications/{sid} was not found")
        return record

    async def _pending(self, service: records.Service, to: str) -> dict | None:
        """The number's pending verification: a copy of its record, kept beside it under the
        service and the number (one read for a check by `To`)."""
        record = await self.store.run("get_record", records.PENDING, f"{service.sid}:{to}")
        return record if record and record.get("status") == "pending" else None

    async def _close(self, service: records.Service, record: dict, status: str) -> dict:
        record = {**record, "status": status, "updated": time.time()}
        await self.store.run("put_record", records.VERIFICATION, record["sid"], record, ttl=service.ttl)
        await self.store.run("put_record", records.PENDING, f"{service.sid}:{record['to']}", {"sid": None}, ttl=service.ttl)
        return record

    def _number(self, to: str | None) -> phone.Number:
        if not to:
            raise ApiError(60200, "Invalid parameter: To is required")
        if not to.startswith("+") or len(to) > 20:
            raise ApiError(60200, "Invalid parameter `To`: a phone number in E.164 format, such as +15017122661")
        try:
            number = phone.parse(to, "To")
        except ConfigError as exc:
            raise ApiError(60200, f"Invalid parameter `To`: {exc.message}") from None
        allowed = self.settings.allowed_countries
        if allowed and number.region not in allowed:
            raise ApiError(60200, f"Invalid parameter `To`: calls to {number.region} are not allowed by this server")
        return number

    def _voice(self, service: records.Service, number: phone.Number, form: Mapping[str, str]) -> speech.Voice:
        language = form.get("Locale") or service.language
        try:
            choice = phrases.choose(language=language, voice=None, region=number.region)
        except phrases.LanguageError:
            raise ApiError(60200, f"Invalid parameter `Locale`: one of {', '.join(phrases.CALL_LANGUAGES)}") from None
        caller = None
        if form.get("CustomFriendlyName"):
            try:
                caller = phrases.clean_caller_name(form["CustomFriendlyName"], "CustomFriendlyName")
            except ValueError as exc:
                raise ApiError(60200, f"Invalid parameter `CustomFriendlyName`: {exc}") from None
        intro = None
        if form.get("CustomMessage"):
            intro = " ".join(form["CustomMessage"].split())
            if not intro or len(intro) > speech.MAX_INTRO or not intro.isprintable():
                raise ApiError(60200, f"Invalid parameter `CustomMessage`: plain text of 1 to {speech.MAX_INTRO} characters")
        return speech.Voice(language=choice.language, intro=intro, caller=caller)

    async def create(self, service: records.Service, form: Mapping[str, str]) -> dict:
        if self.draining:
            raise ApiError(20001, status=503)
        number = self._number(form.get("To"))
        channel = form.get("Channel")
        if channel != "call":
            raise ApiError(60200, "Invalid parameter `Channel`: this server verifies by voice call only (Channel=call)")
        voice = self._voice(service, number, form)
        record = await self._pending(service, number.e164)
        try:
            reservation = await self.store.run("reserve_call", number.e164, self.settings.max_calls_per_hour)
        except PolicyRefused as exc:
            if "locked" in exc.message:
                self.metrics.refused("locked")
                raise ApiError(60202, f"Max check attempts reached: {exc.message}") from None
            self.metrics.refused("send_limit")
            raise ApiError(60203, f"Max send attempts reached: {exc.message}") from None
        now = time.time()
        if record is None:
            record = {"sid": records.new_sid("VE"), "service_sid": service.sid, "account_sid": self.account,
                      "to": number.e164, "status": "pending", "created": now, "send_code_attempts": []}
        options = flow.SendOptions(number=number, digits=service.code_length, ttl=service.ttl, voice=voice,
                                   keypress=True, preflight=False)
        call = flow.new_call(options)
        if self.calls is not None:
            await self.calls.publish(call)  # before it is dialed: any instance may get its webhook
        placed: asyncio.Future = asyncio.get_running_loop().create_future()
        previous = self.flights.get(record["sid"])
        task = asyncio.create_task(self._follow(record["sid"], options, call, placed))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        await asyncio.wait({placed, task}, return_when=asyncio.FIRST_COMPLETED)
        if not placed.done():
            exc = task.exception()
            if isinstance(exc, ProviderError) and not exc.dialed:
                await self.store.run("release_call", reservation)
            if isinstance(exc, (ProviderError, StoreError)):
                raise ApiError(20500, f"The call could not be placed: {exc.message}", status=502)
            raise ApiError(20500)
        session = placed.result()
        self.flights[record["sid"]] = Flight(call, task)
        if previous is not None and not previous.task.done():
            previous.task.cancel()  # the new attempt supersedes the call still ringing
        record = {**record, "session": session.id, "updated": now,
                  "call": self.calls.record_id(call.token) if self.calls is not None else None,
                  "send_code_attempts": record["send_code_attempts"] + [
                      {"time": now, "channel": "call", "attempt_sid": records.new_sid("VL")}]}
        await self.store.run("put_record", records.VERIFICATION, record["sid"], record, ttl=service.ttl)
        await self.store.run("put_record", records.PENDING, f"{service.sid}:{number.e164}", record, ttl=service.ttl)
        self.metrics.placed()
        self.log.write("verification", verification=record["sid"], service=service.sid, event="created",
                       attempt=len(record["send_code_attempts"]))
        return shapes.verification(record, self.api_url)

    async def _follow(self, sid: str, options: flow.SendOptions, call, placed: asyncio.Future) -> None:
        from voice2fa_cli.webhook import CALLS

        reporter = CallReporter(self.log, sid)
        syncing = None
        if self.calls is not None:
            me = asyncio.current_task()
            syncing = asyncio.create_task(self.calls.follow(call, SYNC_INTERVAL, me.cancel))  # canceled elsewhere: hang up
        try:
            result = await flow.place_call(self.settings, options, self.store, reporter, self.client, self.webhook,
                                           call, placed, refresh=syncing and (lambda: self.calls.sync(call)))
            self.metrics.call_ended()
            if result.delivered:
                self.metrics.delivered()
            self.log.write("call", verification=sid, event="ended", status=result.call_status,
                           delivered=result.delivered)
        except Exception as exc:
            if not placed.done():
                raise  # the create waits on this task and answers for it
            # Placed, then failed (the store or the platform went away): flow hung up and
            # recorded what it could; nobody else awaits this task, so the failure is told here,
            # in one line (never asyncio's "Task exception was never retrieved").
            self.log.write("call", verification=sid, event="failed",
                           error=exc.message if isinstance(exc, Voice2faError) else type(exc).__name__)
        finally:
            if syncing is not None:
                syncing.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(self.calls.sync(call), self.settings.timing.api_timeout)
            flight = self.flights.get(sid)
            if flight is not None and flight.call is call:
                del self.flights[sid]
            loop = asyncio.get_running_loop()
            loop.call_later(self.linger, self.webhook[CALLS].pop, call.token, None)

    async def fetch(self, service: records.Service, sid: str) -> dict:
        return shapes.verification(await self._record(service, sid), self.api_url)

    async def update(self, service: records.Service, sid: str, form: Mapping[str, str]) -> dict:
        if form.get("Status") != "canceled":
            raise ApiError(60200, "Invalid parameter `Status`: canceled")
        record = await self._record(service, sid)
        record = await self._close(service, record, "canceled")
        if record.get("session"):
            await self.store.run("record_call", record["session"], state="undelivered")
        flight = self.flights.get(sid)
        if flight is not None and not flight.task.done():
            flight.task.cancel()  # hangs up and records
        elif self.calls is not None and record.get("call"):
            await self.calls.hang_up(record["call"])  # placed by another instance: it hangs up
        self.log.write("verification", verification=sid, service=service.sid, event="canceled")
        return shapes.verification(record, self.api_url)

    async def check(self, service: records.Service, form: Mapping[str, str]) -> dict:
        code = form.get("Code") or ""
        if not (code.isascii() and code.isdigit() and 1 <= len(code) <= MAX_CODE):
            raise ApiError(60200, "Invalid parameter `Code`: the digits the callee heard")
        if form.get("VerificationSid"):
            record = await self._record(service, form["VerificationSid"])
            verdict = await self.store.run("check", record["to"], code, record.get("session"))
        elif form.get("To"):
            one_trip = getattr(self.store, "check_pending", None)  # standalone Redis: record and check at once
            if one_trip is not None:
                found = await one_trip(records.PENDING, f"{service.sid}:{form['To']}", form["To"], code)
                record, verdict = found if found is not None else (None, None)
            else:
                record = await self._pending(service, form["To"])
                if record is not None:
                    verdict = await self.store.run("check", record["to"], code, record.get("session"))
            if record is None:
                raise ApiError(20404, f"The requested resource /Services/{service.sid}/VerificationCheck was not found")
        else:
            raise ApiError(60200, "Invalid parameter: To or VerificationSid is required")
        if verdict.verified:
            record = await self._close(service, record, "approved")
            self.metrics.checked("approved")
            self.log.write("check", verification=record["sid"], outcome="approved")
            return shapes.verification_check(record, "approved")
        if verdict.reason.startswith("locked"):
            self.metrics.checked("locked")
            self.log.write("check", verification=record["sid"], outcome="locked")
            raise ApiError(60202)
        if verdict.reason.startswith("expired"):
            self.metrics.checked("expired")
            raise ApiError(20404, f"The requested resource /Services/{service.sid}/VerificationCheck was not found")
        outcome = "lockout" if verdict.session is not None and verdict.session.state == "locked" else "wrong"
        self.metrics.checked(outcome)
        self.log.write("check", verification=record["sid"], outcome=outcome)
        return shapes.verification_check(record, "pending")

    async def drain(self, bound: float) -> None:
        """Stop taking verifications; let the calls in flight end (up to `bound` s), then hang up."""
        self.draining = True
        pending = {t for t in self.tasks if not t.done()}
        if pending:
            await asyncio.wait(pending, timeout=bound)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self.settings.timing.api_timeout)


def _base(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return f"http://[{'::1' if host == '::' else host}]:{port}"
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


class Serving:
    """Everything `voice2fa serve` runs, as an async context manager. Sockets bound by the caller
    (so that bad addresses fail before anything starts)."""

    def __init__(self, env: Mapping[str, str], *, api_sock: socket.socket, webhook_sock: socket.socket,
                 sandbox: bool, log: Log, public_url: str | None = None, drain: float = 30.0,
                 preflight: bool = True, linger: float = CALL_LINGER, shared_calls: bool | None = None,
                 limits=None) -> None:
        self.env = env
        self.api_sock = api_sock
        self.webhook_sock = webhook_sock
        self.sandbox_mode = sandbox
        self.log = log
        self.public_url = public_url
        self.drain_bound = drain
        self.preflight = preflight
        self.linger = linger
        self.shared_calls = shared_calls  # None: with a shared store (Redis)
        self.limits = limits  # webhook.Limits for both listeners (None: the defaults)
        self.sandbox = None
        self.core: Core | None = None
        self.api_url = _base(api_sock)
        self.webhook_url = _base(webhook_sock)
        self._stack = contextlib.AsyncExitStack()

    def _settings(self) -> config.Settings:
        env = self.env
        if not self.sandbox_mode:
            listen = config.Listen(*self.webhook_sock.getsockname()[:2])
            settings = config.send_settings(env, public_url=self.public_url, listen_flag=str(listen))
            return settings
        sandbox = self.sandbox
        return config.Settings(
            space=sandbox.url, project=sandbox.project, token=sandbox.token, caller=sandbox.caller,
            signing_key=sandbox.signing_key, public_url=self.webhook_url,
            listen=config.Listen(*self.webhook_sock.getsockname()[:2]), state_dir=config.state_dir(env),
            timing=config.timing(env), max_calls_per_hour=config.max_calls_per_hour(env),
            store=config.store_spec(env),
        )

    async def __aenter__(self) -> Serving:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        from voice2fa_cli.serve import api, metrics
        from voice2fa_cli.signalwire import Client
        from voice2fa_cli.webhook import Server, ServerConfig, make_app

        stack = self._stack
        stack.callback(self.api_sock.close)
        stack.callback(self.webhook_sock.close)
        if self.sandbox_mode:
            from voice2fa_cli.sandbox import SANDBOX_CALLER, Sandbox

            self.sandbox = await stack.enter_async_context(Sandbox(caller=SANDBOX_CALLER))
        settings = self._settings()
        spec = config.store_spec(self.env)
        creds = await self._open_store(spec, sandbox=False)
        store = creds
        if self.sandbox_mode:
            store = await self._open_store(spec, sandbox=True)
        registry = metrics.Metrics()
        server_config = ServerConfig(settings.public_url, settings.signing_key,
                                     **({"limits": self.limits} if self.limits is not None else {}))
        webhook = make_app(server_config)
        calls = None
        if self.shared_calls if self.shared_calls is not None else spec.shared:
            from voice2fa_cli.serve.calls import StoredCalls
            from voice2fa_cli.webhook import CALLS, SHARED

            # The webhook's own threads on the same (thread-safe) Redis client: the platform's
            # requests never queue behind the API's work there. On Redis (an OnLoop store, which
            # has `aio`) the calls' records are read and written on the loop, as the API's are.
            hook_thread = flow.StoreThread(store.store, STORE_WORKERS)
            stack.callback(hook_thread._pool.shutdown, wait=False)
            hook_store = type(store)(hook_thread, store.aio) if hasattr(store, "aio") else hook_thread
            calls = await StoredCalls.open(hook_store, webhook[CALLS], ttl=flow.MAX_TTL + 3600)
            webhook[SHARED] = calls
        metrics.observe_webhook(webhook, registry)
        api.log_requests(webhook, self.log, "webhook")
        await stack.enter_async_context(Server(webhook, self.webhook_sock, ServerReporter(self.log, "webhook")))
        client = await stack.enter_async_context(
            Client(settings.api_base, settings.project, settings.token, timeout=settings.timing.api_timeout)
        )
        self.core = Core(settings, creds, store, client, webhook, self.log, registry, sandbox=self.sandbox_mode,
                         api_url=self.api_url, linger=self.linger, calls=calls)
        await self.core.start()
        app = api.make_app(self.core, ServerConfig(self.api_url, None, limits=server_config.limits))
        api.log_requests(app, self.log, "api")
        await stack.enter_async_context(Server(app, self.api_sock, ServerReporter(self.log, "api")))
        if self.preflight and not self.sandbox_mode:
            await flow.preflight(server_config, settings.listen, settings.timing.api_timeout)
        self.log.write("server", event="started", api=self.api_url, webhook=settings.public_url,
                       sandbox=self.sandbox_mode, store=spec.describe())

    async def _open_store(self, spec, *, sandbox: bool):
        """The store worked from threads (SQLite: one); on Redis, its hot paths on the event loop
        through redis.asyncio (stores.redis_async.OnLoop), the rest from threads."""
        thread = await self._stack.enter_async_context(
            await flow.StoreThread.open(spec, sandbox=sandbox, workers=STORE_WORKERS))
        if not spec.shared:
            return thread
        aio = thread.store.asyncio()
        if aio is None:  # a Redis Cluster: threads only
            return thread
        from voice2fa_cli.stores.redis_async import OnLoop

        return await self._stack.enter_async_context(OnLoop(thread, aio))

    async def stop(self) -> None:
        """Stop taking verifications, let the calls in flight end (up to the bound), close."""
        if self.core is not None:
            self.core.draining = True
            self.log.write("server", event="stopping", calls_in_flight=len(self.core.flights))
            await self.core.drain(self.drain_bound)
        await self._stack.aclose()
        self.log.write("server", event="stopped")

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
