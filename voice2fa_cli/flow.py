"""One verification end to end: store a session, serve the call's webhook, have the platform
dial, follow the call to its end; and the check of a code read back."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from voice2fa_cli import config, otp, policy
from voice2fa_cli.delivery import Reporter as Reporter  # re-exported: flow is where the faces find them
from voice2fa_cli.delivery import SendOptions as SendOptions
from voice2fa_cli.delivery import SendResult as SendResult
from voice2fa_cli.delivery import why_undelivered, woken
from voice2fa_cli.errors import ConfigError, NotDelivered, ProviderError, StoreError
from voice2fa_cli.phone import Number
from voice2fa_cli.policy import Session
from voice2fa_cli.stores.base import AsyncSessionStore, Reservation
from voice2fa_cli.stores.onloop import StoreThread

if TYPE_CHECKING:
    from aiohttp import web

    from voice2fa_cli.signalwire.client import Call, Client
    from voice2fa_cli.voice.call import CallState
    from voice2fa_cli.voice.webhook import ServerConfig







def nothing_dialed(exc: BaseException) -> bool:
    """Whether a failure came before anything was dialed (so the call it reserved is released).
    A StoreError is one: once a call is dialed, a store failure is raised as NotDelivered."""
    return isinstance(exc, (ConfigError, StoreError)) or (isinstance(exc, ProviderError) and not exc.dialed)


@contextlib.asynccontextmanager
async def reserved(store: AsyncSessionStore, number: str, max_per_hour: int, *, service: str = "",
                   service_max: int | None = None) -> AsyncIterator[Reservation]:
    """The send policy before a real call: the number's lock and the send limits, counted in
    the store (PolicyRefused otherwise); the reservation is released again when the block fails
    before anything was dialed."""
    reservation = await store.reserve_call(number, max_per_hour, service=service, service_max=service_max)
    try:
        yield reservation
    except BaseException as exc:
        if nothing_dialed(exc):
            with contextlib.suppress(StoreError):  # a store that failed keeps the reservation: it fails closed
                await store.release_call(reservation)
        raise


async def refuse_locked(store: AsyncSessionStore, number: Number) -> None:
    """A simulated call (the sandbox): no send limits or countries apply, as nothing is dialed,
    but a number the sandbox locked gets no call, since its code could never verify."""
    until = await store.number_locked_until(number.e164)
    if until is not None:
        raise policy.number_locked_refusal(number.e164, until)


async def send(settings: config.Settings, options: SendOptions, reporter: Reporter, *, sandbox: bool = False,
               sock: socket.socket | None = None, on_call: Callable[[CallState], None] | None = None) -> SendResult:
    """One call through the Space the settings name: a real one (the send policy applies), or
    with `sandbox` a local stand-in the caller started (its sessions in their own store).
    `sock`: the socket to serve the webhook on (default: bind settings.listen); `on_call` is
    told the call's state before it is dialed."""
    from voice2fa_cli.web.server import bind

    refused = policy.number_type_refusal(options.number, settings.allowed_number_types)
    if refused is not None:  # the sandbox too, so that a newcomer sees it
        raise refused
    def placing() -> Awaitable[SendResult]:
        if settings.delivery == "inline":  # nothing inbound: no socket at all
            return _inline_call(settings, options, store, reporter, on_call)
        return _call(settings, options, store, reporter, sock or bind(settings.listen.host, settings.listen.port),
                     on_call)

    async with await StoreThread.open(settings.store or settings.state_dir, sandbox=sandbox) as store:
        if sandbox:
            await refuse_locked(store, options.number)
            return await placing()
        refused = policy.country_refusal(options.number, settings.allowed_countries)
        if refused is not None:
            raise refused
        async with reserved(store, options.number.e164, settings.max_calls_per_hour):
            return await placing()




def new_call(options: SendOptions, code: str | None = None) -> CallState:
    """A call's state for the webhook: its session id, a fresh code (or `code`, an API's custom
    code, checked by its caller), the voice, the gate's key."""
    from voice2fa_cli.voice.call import CallState

    return CallState(
        session_id=secrets.token_hex(8),
        code=code if code is not None else otp.generate(options.digits),
        voice=options.voice,
        key=str(1 + secrets.randbelow(9)) if options.keypress else None,
    )


async def _call(
    settings: config.Settings,
    options: SendOptions,
    store: AsyncSessionStore,
    reporter: Reporter,
    sock: socket.socket,
    on_call: Callable[[CallState], None] | None = None,
) -> SendResult:
    """The CLI's one call: a webhook server and an API client of its own for it."""
    from voice2fa_cli.signalwire.client import Client
    from voice2fa_cli.voice.webhook import ServerConfig, make_app
    from voice2fa_cli.web.server import Server

    call = new_call(options)
    if on_call is not None:
        on_call(call)
    server_config = ServerConfig(settings.public_url, settings.signing_key)
    app = make_app(server_config)
    timing = settings.timing
    async with Server(app, sock, reporter), Client(
        settings.api_base, settings.project, settings.token, timeout=timing.api_timeout
    ) as client:
        if options.preflight:
            await preflight(server_config, settings.listen, timing.api_timeout)
            reporter.debug(f"preflight: {settings.public_url} reaches this server")
        return await place_call(settings, options, store, reporter, client, app, call)


async def _inline_call(settings: config.Settings, options: SendOptions, store: AsyncSessionStore,
                       reporter: Reporter, on_call: Callable[[CallState], None] | None = None) -> SendResult:
    """The CLI's one call, delivered inline (voice/inline.py): a Calling API client, no server."""
    from voice2fa_cli.signalwire.calling import CallingClient
    from voice2fa_cli.voice import inline

    call = new_call(options)
    if on_call is not None:
        on_call(call)
    async with CallingClient(settings.space, settings.project, settings.token,
                             timeout=settings.timing.api_timeout) as client:
        return await inline.place_call(settings, options, store, reporter, client, call)


async def place_call(
    settings: config.Settings,
    options: SendOptions,
    store: AsyncSessionStore,
    reporter: Reporter,
    client: Client,
    app: web.Application,
    call: CallState,
    placed: asyncio.Future[Session] | None = None,
    refresh: Callable[[], Awaitable[object]] | None = None,
) -> SendResult:
    """One call on a serving webhook app (the CLI's own, or `voice2fa serve`'s shared one): its
    token routes registered, dialed, its session stored (then `placed` gets the Session),
    followed to its end and recorded. `refresh` (a coroutine function), when given, brings the
    call's state up to date once it has ended, before the outcome is read (several servers:
    another one may have served the call)."""
    timing = settings.timing
    started = time.monotonic()
    created = await _dial(settings, options, reporter, client, app, call)
    session = None
    try:
        session = await store.create_session(
            session_id=call.session_id,
            number=options.number.e164,
            code=call.code,
            ttl=options.ttl,
            max_attempts=options.max_attempts,
            call_sid=created.sid,
            call_status=created.status,
            service=options.service,
        )
        reporter.step("created", time.monotonic() - started, created.sid)
        reporter.step("expires", time.monotonic() - started, repr(session.expires_at))
        if placed is not None and not placed.done():
            placed.set_result(session)
        problem = await _Follower(call, created.sid, client, store, reporter, timing, started).run()
        if refresh is not None:
            await refresh()
    except BaseException as exc:
        # Interrupted (Ctrl-C), or the store or the API failed, while the phone may be
        # ringing: hang up first, then record what is known.
        await _abandon(call, created.sid, session, client, store, reporter, timing.api_timeout, started)
        if isinstance(exc, StoreError):  # a call was placed: never exit 2 ("nothing was called")
            raise NotDelivered(f"the call was hung up because the store failed: {exc.message}") from None
        raise
    if problem is None and not call.delivered:
        problem = why_undelivered(call, settings)
    return await _recorded(store, session, call, created.sid, problem)


async def _dial(settings: config.Settings, options: SendOptions, reporter: Reporter, client: Client,
                app: web.Application, call: CallState) -> Call:
    """The call's token routes registered on the app, then the call created on the platform."""
    from voice2fa_cli.voice.webhook import CONFIG, call_url, register

    server_config = app[CONFIG]
    register(app, call)
    reporter.step("dialing", 0.0, options.number.described)
    created = await client.create_call(
        to=options.number.e164,
        caller=settings.caller,
        url=call_url(server_config, call),
        status_callback=call_url(server_config, call, "/status"),
        ring_timeout=settings.timing.ring_timeout,
    )
    if call.call_sid is None:
        call.call_sid = created.sid
    reporter.debug(f"SignalWire created call {created.sid} ({created.status})")
    return created


async def _recorded(store: AsyncSessionStore, session: Session, call: CallState, sid: str,
                    problem: str | None) -> SendResult:
    """The call's outcome recorded on its session, and the result read back from the store."""
    try:
        await store.record_call(session.id, state=None if call.delivered else "undelivered", call_status=call.status)
        stored = await store.get(session.id)
    except StoreError as exc:
        raise NotDelivered(f"the call ended but the store failed: {exc.message}") from None
    return SendResult(
        session=stored or session,
        call_sid=sid,
        call_status=call.status,
        delivered=call.delivered,
        problem=None if call.delivered else problem,
        duration=call.duration,
    )


async def _abandon(call: CallState, sid: str, session: Session | None, client: Client, store: AsyncSessionStore,
                   reporter: Reporter, timeout: float, started: float) -> None:
    """A call given up while the phone may ring: hang up, then record what is known (best effort)."""
    if not call.ended:
        call.hung_up = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(client.hang_up(sid), timeout)
            reporter.step("hung-up", time.monotonic() - started)
    if session is not None:
        with contextlib.suppress(Exception):
            await store.record_call(
                session.id,
                state=None if call.delivered else "undelivered",
                call_status=call.status if call.ended else "canceled",
            )




async def preflight(server_config: ServerConfig, listen: config.Listen, timeout: float,
                    hint: str | None = None) -> None:
    """Fetch this run's health path through the public URL and check that this very server
    answered: its body must be the proof only this process can make (an HMAC of the nonce under
    a secret that never leaves it), so an echo of the path does not pass. Before anything is
    dialed; ConfigError (exit 2) otherwise."""
    import hmac

    import aiohttp

    from voice2fa_cli.voice.webhook import health_answer, health_url

    url = health_url(server_config)
    shown = server_config.public_url
    if hint is None:
        hint = f"is the tunnel running and forwarding to {listen}? (--skip-preflight to skip this check)"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, \
                http.get(url, allow_redirects=False) as resp:
            body = await resp.content.read(4096)
            status = resp.status
    except asyncio.TimeoutError:
        raise ConfigError(f"the public URL {shown} did not answer within {timeout:g} s: {hint}") from None
    except aiohttp.ClientError as exc:
        raise ConfigError(f"the public URL {shown} cannot be reached ({type(exc).__name__}): {hint}") from None
    if status != 200:
        raise ConfigError(f"the public URL {shown} answered {status}, not this voice2fa: {hint}")
    if not hmac.compare_digest(body, health_answer(server_config)):
        raise ConfigError(f"the public URL {shown} reaches another server, not this voice2fa: {hint}")


class _Follower:
    """Follows a call to its end: callbacks first, the REST API when they go quiet."""

    def __init__(self, call: CallState, sid: str, client: Client, store: AsyncSessionStore, reporter: Reporter,
                 timing: config.Timing, started: float) -> None:
        self.call = call
        self.sid = call.call_sid or sid  # the platform's id of the call
        self.client = client
        self.store = store
        self.reporter = reporter
        self.timing = timing
        self.started = started
        self.seen = 0
        self.recorded_delivery = False
        self.answered_at: float | None = None

    async def _drain(self) -> None:
        """Report what happened since the last look; record the delivery once. Events that
        arrive while the store records are reported too before returning."""
        call = self.call
        while True:
            for index, (at, event) in enumerate(call.history[self.seen :], self.seen):
                if event == "heard":
                    self.reporter.heard(list(call.transcript.get(index, ())))
                    continue
                if event == "in-progress" and self.answered_at is None:
                    self.answered_at = at
                detail = f"{call.duration} s" if event in ("completed",) and call.duration is not None else None
                self.reporter.step(event, at - self.started, detail)
            self.seen = len(call.history)
            if not call.delivered or self.recorded_delivery:
                return
            await self.store.record_call(call.session_id, state="delivered")
            self.recorded_delivery = True

    async def run(self) -> str | None:
        """Returns a problem text when the call had to be abandoned, else None."""
        call, timing = self.call, self.timing
        last_news = time.monotonic()
        give_up = self.started + timing.ring_timeout + timing.webhook_grace + policy.MAX_TTL
        poll_failures = 0
        while True:
            await self._drain()
            if call.ended:
                return None
            now = time.monotonic()
            deadline = give_up
            if not call.fetched:
                if self.answered_at is not None:
                    deadline = min(deadline, self.answered_at + timing.webhook_grace)
                else:
                    deadline = min(deadline, self.started + timing.ring_timeout + timing.webhook_grace)
            if now >= deadline:
                answered = call.fetched or self.answered_at is not None
                await self._hang_up()
                if not answered:
                    return (
                        f"the call was not answered within {timing.ring_timeout:g} s (the ring timeout), nor "
                        f"reported in the {timing.webhook_grace:g} s allowed after it: the code was not delivered"
                    )
                return None  # the caller explains from what is known (never fetched, …)
            wait = min(deadline, last_news + timing.poll_interval) - now
            if await woken(call.changed, max(wait, 0.0)):
                call.changed.clear()
                last_news = time.monotonic()
                continue
            if time.monotonic() - last_news < timing.poll_interval:
                continue
            try:
                polled = await self.client.fetch_call(self.sid)
                poll_failures = 0
            except ProviderError as exc:
                poll_failures += 1
                if poll_failures >= 3:
                    raise
                self.reporter.warn(f"could not poll the call: {exc.message}")
                last_news = time.monotonic()
                continue
            self.reporter.debug(f"polled the call after {timing.poll_interval:g} s of silence: {polled.status}")
            if polled.duration is not None:
                call.duration = polled.duration
            call.set_status(polled.status)
            last_news = time.monotonic()

    async def _hang_up(self) -> None:
        """Hang up, then wait (up to the grace period) for the platform's final status and its
        CallDuration: a callback, or the call polled when callbacks stay quiet. That is what gets
        recorded; only when neither comes is the outcome inferred."""
        call, timing = self.call, self.timing
        call.hung_up = True  # no document from now on; the status route still answers
        self.reporter.debug(f"hanging up {self.sid}")
        with contextlib.suppress(ProviderError):
            await self.client.hang_up(self.sid)
        deadline = time.monotonic() + timing.webhook_grace
        next_poll = time.monotonic() + timing.poll_interval
        while not call.ended:
            now = time.monotonic()
            if now >= deadline:
                break
            if await woken(call.changed, min(deadline, next_poll) - now):
                call.changed.clear()
                continue
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + timing.poll_interval
                with contextlib.suppress(ProviderError):
                    polled = await self.client.fetch_call(self.sid)
                    call.set_status(polled.status, duration=polled.duration)
        if not call.ended:
            call.set_status("completed" if call.fetched or self.answered_at else "canceled")
        await self._drain()
