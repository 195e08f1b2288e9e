"""The verification service behind `voice2fa serve`'s API: services and API keys, and
verifications (a call that reads a code, then checks of it) over the store. Twilio Verify v2's
rules and error codes; the policy's limits and verdicts. serve/api.py is its HTTP face,
serve/server.py starts and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voice2fa_cli import config, flow, phone, policy
from voice2fa_cli.errors import ConfigError, PolicyRefused, Problem, ProviderError, StoreError, Voice2faError
from voice2fa_cli.policy import Kind, Session
from voice2fa_cli.serve import locales, params, records, shapes
from voice2fa_cli.serve.attempts import Attempts
from voice2fa_cli.serve.events import Events
from voice2fa_cli.serve.log import CallReporter, Log
from voice2fa_cli.serve.services import Services
from voice2fa_cli.serve.shapes import ApiError
from voice2fa_cli.stores.base import AsyncSessionStore, Record
from voice2fa_cli.voice import inline, phrases, speech
from voice2fa_cli.web import basic_auth

if TYPE_CHECKING:
    from aiohttp import web

    from voice2fa_cli.serve.calls import StoredCalls
    from voice2fa_cli.serve.metrics import Metrics
    from voice2fa_cli.signalwire.calling import CallingClient
    from voice2fa_cli.signalwire.client import Client
    from voice2fa_cli.voice.call import CallState

AUTH_CACHE_SECONDS = 5.0  # a revoked key stops working within this
MAX_AUTH_CACHE = 1024
ACCOUNT_LABEL = b"serve account sid v1"  # the derived key whose first bytes are the account SID
MIN_CODE, MAX_CODE = 4, 10  # a VerificationCheck's Code: 4 to 10 characters (Twilio's spec)
PENDING, MAX_ATTEMPTS = "pending", "max_attempts_reached"  # verification statuses (the spec's words)
# The `expired` event's timer runs EXPIRY_DELAY s past a create's TTL; a closed verification's
# record outlives it by CLOSED_GRACE s more, so that a close right after a create is never
# taken for an expiry (the timer finds the record, closed, on any instance).
EXPIRY_DELAY, CLOSED_GRACE = 1, 5
# An update's Status (the spec's enum) → the state its session closes in
UPDATE_STATUSES = {"canceled": "undelivered", "approved": "verified"}
CLAIM_TRIES = 8  # creates for one number racing on several instances: each claim is retried
CALL_LINGER = 60.0  # a call's routes stay after its end, for the platform's late callbacks
SYNC_INTERVAL = 1.0  # how often the placing instance syncs a call with the store (several instances)
# The Locale values a call speaks: Twilio's tags whose language has phrases, and voice2fa's region tags
SPOKEN_LOCALES = tuple(dict.fromkeys(
    [tag for tag, language in locales.TWILIO_LOCALES.items()
     if any(language.lower() == spoken.lower() for spoken in phrases.CALL_LANGUAGES)] + list(phrases.CALL_LANGUAGES)))


@dataclass
class Flight:
    call: CallState
    task: asyncio.Task[None]


class Core:
    def __init__(self, settings: config.Settings, creds: AsyncSessionStore, store: AsyncSessionStore,
                 client: Client, webhook: web.Application | None, log: Log, metrics: Metrics, *, sandbox: bool,
                 api_url: str, linger: float = CALL_LINGER, calls: StoredCalls | None = None,
                 inline: CallingClient | None = None) -> None:
        self.settings = settings
        # The inline delivery (no webhook app at all): the Calling API's client; the call's id
        # in the verification record lets any instance hang it up.
        self.inline = inline
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
        self.timers: set[asyncio.TimerHandle] = set()  # the expired events to come
        self._secret_key = b""  # derived from the store's key at start (records.SECRET_LABEL)
        self._auth_cache: dict[str, tuple[bytes, float, records.ApiKey]] = {}
        self.services = Services(creds, api_url)
        self.attempts = Attempts(store, api_url)
        self.events = Events(creds, log)

    async def start(self) -> None:
        # The account SID is the deployment's: derived from the store key (the key file every
        # instance of a shared store holds), so it is the same on every instance and store.
        self.account = "AC" + (await self.creds.derive_key(ACCOUNT_LABEL))[:16].hex()
        self.services.account = self.account
        self._secret_key = await self.creds.derive_key(records.SECRET_LABEL)

    # --- credentials -----------------------------------------------------------------------

    async def authenticate(self, header: str | None) -> records.ApiKey | None:
        """HTTP basic auth with an API key (the key's SID and its secret): the key, or None.
        The same work for a known SID as for an unknown one: one HMAC, one store read (or the
        cache of keys checked in the last AUTH_CACHE_SECONDS), a constant-time comparison."""
        parsed = basic_auth.credentials(header)
        if parsed is None:
            return None
        user, secret = parsed
        if not records.is_key_sid(user) or not secret or len(secret) > 256:
            return None
        mac = records.secret_hash(self._secret_key, user, secret)
        cached = self._auth_cache.get(user)
        now = time.monotonic()
        if cached is not None and now - cached[1] < AUTH_CACHE_SECONDS:
            return cached[2] if hmac.compare_digest(cached[0], mac) else None
        try:
            record = await self.creds.get_record(records.KEY, user)
        except StoreError as exc:
            if exc.kind is not Problem.TAMPERED:
                raise
            self.log.write("tampered", error=exc.message)  # a key record a writer of Redis made or changed
            record = None
        if not records.secret_matches(self._secret_key, user, record, secret) or record is None:
            self._auth_cache.pop(user, None)
            return None
        key = records.ApiKey.of(record)
        if len(self._auth_cache) >= MAX_AUTH_CACHE:
            self._auth_cache.clear()
        self._auth_cache[user] = (mac, now, key)
        return key

    async def service(self, sid: str, key: records.ApiKey) -> records.Service:
        return await self.services.lookup(sid, key)

    # --- verifications ---------------------------------------------------------------------

    async def _record(self, service: records.Service, sid: str, statuses: tuple[str, ...] = (PENDING,)) -> Record:
        """The service's verification `sid`, in one of `statuses` (else 20404: approved,
        canceled and expired ones are gone, as on Twilio)."""
        record = None
        if records.SID.fullmatch(sid) and sid.startswith("VE"):
            record = await self.store.get_record(records.VERIFICATION, sid)
        if record is None or record["service_sid"] != service.sid or record["status"] not in statuses:
            raise ApiError(20404, f"The requested resource /Services/{service.sid}/Verifications/{sid} was not found")
        return record

    async def _close(self, service: records.Service, record: Record, status: str) -> Record:
        """The verification in its final `status`; a new create for the number starts a new one.
        After max_attempts_reached the pointer still leads a check by `To` to the session (locked:
        60202, in the round trips of any check), marked `closed` so that no create resends it."""
        record = {**record, "status": status, "updated": time.time()}
        await self.store.put_record(records.VERIFICATION, record["sid"], record, ttl=service.ttl + CLOSED_GRACE)
        pointer = {**record, "status": PENDING, "closed": status} if status == MAX_ATTEMPTS else {"sid": None}
        await self.store.put_record(records.PENDING, f"{service.sid}:{record['to']}", pointer, ttl=service.ttl)
        return record

    def _number(self, to: str) -> phone.Number:
        """The number to call, its E.164 form checked already (params.CREATE)."""
        try:
            number = phone.parse(to, "To")
        except ConfigError as exc:
            raise ApiError(60200, f"Invalid parameter `To`: {exc.message}") from None
        if not self.sandbox and policy.country_refusal(number, self.settings.allowed_countries) is not None:
            raise ApiError(60605, f"Verification delivery attempt blocked: calls to {number.region} are not allowed "
                                  "by this server (VOICE2FA_ALLOWED_COUNTRIES)")
        if policy.number_type_refusal(number, self.settings.allowed_number_types) is not None:
            raise ApiError(60605, f"Verification delivery attempt blocked: {policy.REVENUE_SHARING[number.kind]}, "
                                  "which this server does not call (it charges the caller extra)")
        return number

    @staticmethod
    def _texts(service: records.Service, form: Mapping[str, str]) -> tuple[str | None, str | None]:
        """Who the call says is calling and its message: the request's, where the service
        accepts them (CustomMessage only when the operator allowed it), else the service's own
        (its name; its fixed message, if any)."""
        caller, message = form.get("CustomFriendlyName") or None, form.get("CustomMessage") or None
        if caller is not None and not service.friendly_name:
            raise ApiError(60200, "Invalid parameter `CustomFriendlyName`: this service does not accept it "
                                  "(its calls say the service's name)")
        if message is not None and not service.custom_message:
            raise ApiError(60200, "Invalid parameter `CustomMessage`: this service does not accept it")
        if caller is None:
            with contextlib.suppress(ValueError):  # a name the call cannot say: no caller name
                caller = phrases.clean_caller_name(service.name, "the service name")
        return caller, message or service.message

    def _voice(self, service: records.Service, number: phone.Number, form: Mapping[str, str]) -> speech.Voice:
        from voice2fa_cli.voice.options import OptionError, voice_options

        caller, message = self._texts(service, form)
        locale = form.get("Locale")
        language = locales.language(locale) if locale else service.language
        tts = service.voice
        if tts is not None and language is not None and (phrases.voice_language(tts) or language).lower() != \
                language.lower():
            tts = None  # the service's voice (TtsName) does not speak the language asked for: the standard one
        try:
            voice, _ = voice_options(language=language, voice=tts, message=message, caller=caller,
                                     region=number.region, caller_setting="CustomFriendlyName")
        except OptionError as exc:
            if exc.option == "language" and exc.shape:
                raise ApiError(60200, "Invalid parameter `Locale`: a language tag such as en, fr or pt-BR") from None
            if exc.option == "language":  # Twilio answers an unsupported locale with a 404
                raise ApiError(20404, f"Locale `{locale}` is not supported by this server's calls: retry without "
                                      "Locale (the call then speaks the language of the number's country, or English); "
                                      f"supported: {', '.join(SPOKEN_LOCALES)}") from None
            field = {"message": "CustomMessage", "caller": "CustomFriendlyName"}[exc.option]
            raise ApiError(60200, f"Invalid parameter `{field}`: {exc.detail}") from None
        return voice

    @staticmethod
    def _custom_code(service: records.Service, code: str | None) -> str | None:
        """A request's CustomCode, where the service enables custom codes (Twilio's 60204
        otherwise): 6 to 10 digits, the code the call reads (stored, as any code, only as its
        keyed hash)."""
        if not code:
            return None
        if not service.custom_code:
            raise ApiError(60204, "Custom code not allowed: this service does not enable custom codes "
                                  "(CustomCodeEnabled)")
        if not (code.isascii() and code.isdigit() and len(code) in records.CODE_LENGTHS):
            raise ApiError(60200, f"Invalid parameter `CustomCode`: {records.CODE_LENGTHS.start} to "
                                  f"{records.CODE_LENGTHS.stop - 1} digits")
        return code

    async def create(self, service: records.Service, form: Mapping[str, str]) -> Record:
        if self.draining:
            raise ApiError(20001, status=503)
        params.validate(form, params.CREATE)
        number = self._number(form["To"])
        channel = form.get("Channel")
        if channel != "call":
            raise ApiError(60200, "Invalid parameter `Channel`: this server verifies by voice call only (Channel=call)")
        voice = self._voice(service, number, form)
        if service.code_length not in records.CODE_LENGTHS:  # a service stored by an older voice2fa
            raise ApiError(60200, f"Invalid parameter: this service's codes have {service.code_length} digits; "
                                  f"voice2fa needs {records.CODE_LENGTHS.start} to {records.CODE_LENGTHS.stop - 1}: "
                                  "create a service with --code-length 6 or more")
        options = flow.SendOptions(number=number, digits=service.code_length, ttl=service.ttl, voice=voice,
                                   keypress=service.keypress, preflight=False, service=service.sid)
        # before the reservation: nothing here can fail after it but the dial
        call = flow.new_call(options, code=self._custom_code(service, form.get("CustomCode")))
        now = time.time()
        pending_id = f"{service.sid}:{number.e164}"
        before, rev, record = await self._claim(service, pending_id, number.e164, now)
        attempt_sid = records.new_sid("VL")
        recorded = asyncio.Event()  # the attempt is in the store: its call's end may be written
        try:
            async with flow.reserved(self.store, number.e164, self.settings.max_calls_per_hour, service=service.sid,
                                     service_max=policy.service_share(self.settings.max_calls_per_hour,
                                                                      service.max_calls_per_hour)):
                task, placed = await self._dial(service, record, options, call, attempt_sid, recorded)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # nothing was placed: the claim is given back
                await self.store.swap_record(records.PENDING, pending_id, {**before, "rev": rev + 2},
                                             rev=rev + 1, ttl=service.ttl)
            if isinstance(exc, PolicyRefused):
                if exc.kind is Problem.NUMBER_LOCKED:
                    self.metrics.refused("locked")
                    raise ApiError(60202, f"Max check attempts reached: {shapes.refusal(exc)}") from None
                self.metrics.refused("send_limit")
                raise ApiError(60203, f"Max send attempts reached: {shapes.refusal(exc)}") from None
            if isinstance(exc, (ProviderError, StoreError)):
                raise ApiError(20500, f"The call could not be placed: {exc.message}", status=502) from None
            raise
        previous = self.flights.get(record["sid"])
        session = placed.result()
        self.flights[record["sid"]] = Flight(call, task)
        if previous is not None and not previous.task.done():
            previous.task.cancel()  # the new attempt supersedes the call still ringing
        record = {**record, "session": session.id, "updated": now,
                  "call": self.calls.record_id(call.token) if self.calls is not None else None,
                  "call_id": call.call_sid if self.inline is not None else None,
                  "send_code_attempts": [*record["send_code_attempts"],
                                         {"time": now, "channel": "call", "attempt_sid": attempt_sid}]}
        try:
            await asyncio.gather(
                self.store.put_record(records.VERIFICATION, record["sid"], record, ttl=service.ttl),
                # The claim's next revision; when another instance claimed meanwhile, it resends
                # this same verification (it read the claim) and its write is the newer one.
                self.store.swap_record(records.PENDING, pending_id, {**record, "rev": rev + 2}, rev=rev + 1,
                                       ttl=service.ttl),
                self.attempts.placed(attempt_sid, record, country=number.region, code_length=service.code_length,
                                     locale=voice.language, call_sid=call.call_sid))
        finally:
            recorded.set()
        self._expire_later(service, record)
        self.metrics.placed()
        self.log.write("verification", verification=record["sid"], service=service.sid, event="created",
                       attempt=len(record["send_code_attempts"]))
        return shapes.verification(record, self.api_url)

    async def _claim(self, service: records.Service, pending_id: str, to: str, now: float
                     ) -> tuple[Record, int, Record]:
        """One pending verification per service and number, across instances: the pending
        record is claimed by compare-and-set on its `rev` before anything is dialed. Returns
        what it held (to give back if nothing is placed), its rev, and the verification to call
        for (the pending one again: a resend; else a new one)."""
        for _ in range(CLAIM_TRIES):
            before = await self.store.get_record(records.PENDING, pending_id) or {"sid": None}
            rev = int(before.get("rev", 0))
            record = before if before.get("status") == PENDING and "closed" not in before else None
            if record is None:
                record = {"sid": records.new_sid("VE"), "service_sid": service.sid, "account_sid": self.account,
                          "to": to, "status": "pending", "created": now, "send_code_attempts": []}
            record = {**record, "rev": rev + 1}
            if await self.store.swap_record(records.PENDING, pending_id, record, rev=rev, ttl=service.ttl):
                return before, rev, record
        raise ApiError(20429, "Too many concurrent requests for this number: try again", status=429)

    async def _dial(self, service: records.Service, verification: Record, options: flow.SendOptions,
                    call: CallState, attempt: str, recorded: asyncio.Event
                    ) -> tuple[asyncio.Task[None], asyncio.Future[Session]]:
        """Start the call that follows a verification: once the platform took it and its session
        is stored, the task following it and the session (in `placed`). A failure before that is
        raised here (the call, if any, was hung up)."""
        if self.calls is not None:
            await self.calls.publish(call)  # before it is dialed: any instance may get its webhook
        placed: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._follow(service, verification, options, call, placed, attempt, recorded))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        waiters: set[asyncio.Future[Any]] = {placed, task}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not placed.done():
            failure = task.exception()
            if isinstance(failure, Voice2faError):
                raise failure
            raise ApiError(20500)
        return task, placed

    async def _follow(self, service: records.Service, verification: Record, options: flow.SendOptions,
                      call: CallState, placed: asyncio.Future[Session], attempt: str, recorded: asyncio.Event
                      ) -> None:
        from voice2fa_cli.voice.webhook import CALLS

        sid = verification["sid"]

        reporter = CallReporter(self.log, sid, sandbox=self.sandbox)
        calls = self.calls
        syncing = None
        if calls is not None:
            me = asyncio.current_task()
            assert me is not None
            syncing = asyncio.create_task(calls.follow(call, SYNC_INTERVAL, me.cancel))  # canceled elsewhere: hang up
        try:
            if self.inline is not None:
                result = await inline.place_call(self.settings, options, self.store, reporter, self.inline, call,
                                                 placed)
            else:
                assert self.webhook is not None
                result = await flow.place_call(self.settings, options, self.store, reporter, self.client,
                                               self.webhook, call, placed,
                                               refresh=None if calls is None else (lambda: calls.sync(call)))
            self.metrics.call_ended()
            if result.delivered:
                self.metrics.delivered()
            self.log.write("call", verification=sid, event="ended", status=result.call_status,
                           delivered=result.delivered)
            await self._attempt_ended(sid, recorded, self.attempts.ended(attempt, result))
            self.events.post(service, verification, PENDING, AttemptSid=attempt, CallSid=result.call_sid,
                             CallStatus=result.call_status, CallDuration=result.duration,
                             CodeDelivered=result.delivered, Error=result.problem)
        except asyncio.CancelledError:  # canceled by an update or a resend: flow hung up
            if placed.done():
                await self._attempt_ended(sid, recorded, self.attempts.failed(attempt, "canceled", "canceled"))
            raise
        except Exception as exc:
            if not placed.done():
                raise  # the create waits on this task and answers for it
            # Placed, then failed (the store or the platform went away): flow hung up and
            # recorded what it could; nobody else awaits this task, so the failure is told here,
            # in one line (never asyncio's "Task exception was never retrieved").
            problem = exc.message if isinstance(exc, Voice2faError) else type(exc).__name__
            self.log.write("call", verification=sid, event="failed", error=problem)
            await self._attempt_ended(sid, recorded, self.attempts.failed(attempt, problem))
        finally:
            if syncing is not None and calls is not None:
                syncing.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(calls.sync(call), self.settings.timing.api_timeout)
            flight = self.flights.get(sid)
            if flight is not None and flight.call is call:
                del self.flights[sid]
            if self.webhook is not None:
                loop = asyncio.get_running_loop()
                loop.call_later(self.linger, self.webhook[CALLS].pop, call.token, None)

    def _expire_later(self, service: records.Service, record: Record) -> None:
        """The `expired` event, once the verification's record has outlived its TTL unchanged
        (a resend or a close on any instance writes it again, and its timer takes over)."""
        if service.callback_url is None:
            return

        async def expire() -> None:
            with contextlib.suppress(Exception):
                if await self.store.get_record(records.VERIFICATION, record["sid"]) is None:
                    self.events.post(service, record, "expired")

        def fire() -> None:
            self.timers.discard(handle)
            task = asyncio.create_task(expire())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        handle = asyncio.get_running_loop().call_later(service.ttl + EXPIRY_DELAY, fire)
        self.timers.add(handle)

    async def _attempt_ended(self, sid: str, recorded: asyncio.Event, write: Coroutine[Any, Any, None]) -> None:
        """The end of a call written on its attempt, once the create wrote the attempt; a store
        that fails here is one line in the log (the call itself is over)."""
        try:
            await recorded.wait()
            await write
        except Exception as exc:
            self.log.write("error", verification=sid, error=exc.message if isinstance(exc, Voice2faError)
                           else type(exc).__name__)
        finally:
            write.close()  # not awaited when the wait failed

    async def fetch(self, service: records.Service, sid: str) -> Record:
        return shapes.verification(await self._record(service, sid, (PENDING, MAX_ATTEMPTS)), self.api_url)

    async def update(self, service: records.Service, sid: str, form: Mapping[str, str]) -> Record:
        params.validate(form, params.UPDATE)
        status = form["Status"]
        record = await self._record(service, sid)
        record = await self._close(service, record, status)
        if record.get("session"):  # its code can no longer be checked
            await self.store.record_call(record["session"], state=UPDATE_STATUSES[status])
        flight = self.flights.get(sid)
        if flight is not None and not flight.task.done():
            flight.task.cancel()  # hangs up and records
        elif self.calls is not None and record.get("call"):
            await self.calls.hang_up(record["call"])  # placed by another instance: it hangs up
        elif self.inline is not None and record.get("call_id"):  # placed inline by another instance
            with contextlib.suppress(ProviderError):  # a call already over cannot be ended again
                await self.inline.hang_up(record["call_id"])
        self.log.write("verification", verification=sid, service=service.sid, event=status)
        self.events.post(service, record, status)
        return shapes.verification(record, self.api_url)

    async def check(self, service: records.Service, form: Mapping[str, str]) -> Record:
        params.validate(form, params.CHECK)
        code = form.get("Code") or ""
        if not (code.isascii() and code.isdigit() and MIN_CODE <= len(code) <= MAX_CODE):
            raise ApiError(60200, f"Invalid parameter `Code`: the {MIN_CODE} to {MAX_CODE} digits the callee heard")
        if form.get("VerificationSid"):
            record = await self._record(service, form["VerificationSid"], (PENDING, MAX_ATTEMPTS))
            if record["status"] == MAX_ATTEMPTS:
                raise ApiError(60202)
            verdict = await self.store.check(record["to"], code, record.get("session"), service.sid)
        elif form.get("To"):
            found = await self.store.check_pending(records.PENDING, f"{service.sid}:{form['To']}", form["To"], code,
                                                   service.sid)
            if found is None:
                raise ApiError(20404, f"The requested resource /Services/{service.sid}/VerificationCheck was not found")
            record, verdict = found
        else:
            raise ApiError(60200, "Invalid parameter: To or VerificationSid is required")
        if verdict.verified:
            record, _ = await asyncio.gather(self._close(service, record, "approved"),
                                             self.attempts.converted(record))
            self.metrics.checked("approved")
            self.log.write("check", verification=record["sid"], outcome="approved")
            self.events.post(service, record, "approved")
            return shapes.verification_check(record, "approved")
        if verdict.kind.locked:
            self.metrics.checked("locked")
            self.log.write("check", verification=record["sid"], outcome="locked")
            raise ApiError(60202)
        if verdict.kind.expired:
            self.metrics.checked("expired")
            raise ApiError(20404, f"The requested resource /Services/{service.sid}/VerificationCheck was not found")
        if verdict.kind is Kind.LOCKOUT:  # the last attempt: Twilio's max_attempts_reached
            record = await self._close(service, record, MAX_ATTEMPTS)
            self.metrics.checked("lockout")
            self.log.write("check", verification=record["sid"], outcome="lockout")
            self.events.post(service, record, MAX_ATTEMPTS)
            return shapes.verification_check(record, MAX_ATTEMPTS)
        self.metrics.checked("wrong")
        self.log.write("check", verification=record["sid"], outcome="wrong")
        return shapes.verification_check(record, PENDING)

    def heard(self, call_sid: str, lines: list[str]) -> None:
        """What the sandbox's simulated callee heard on call `call_sid`, to its flow here."""
        if not self.sandbox:
            return
        for flight in self.flights.values():
            if flight.call.call_sid == call_sid:
                flight.call.note_heard(lines)

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
        for handle in self.timers:  # expiries still to come are not told (the README says so)
            handle.cancel()
        await self.events.close(self.settings.timing.api_timeout)
