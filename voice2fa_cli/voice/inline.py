"""The delivery that needs no tunnel: the whole call in one request (the Calling API's dial
with the SWML document inline: swml.py), followed by polling its voice log until it ends. Beside
webhook.py, behind the same SendResult; flow chooses between them (config.Settings.delivery).

Nothing inbound: no listening socket, no public URL, no preflight. The code travels in the
authenticated HTTPS body of the dial, never in a URL. What the call did inside (which keys,
whether the code was read) is not observable here: an answered call's `delivered` is None
(unknown), its session stays open, and the person reading the code back is the proof."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from voice2fa_cli.delivery import SendResult, why_undelivered, woken
from voice2fa_cli.errors import NotDelivered, ProviderError, StoreError
from voice2fa_cli.signalwire.client import FINAL_STATUSES
from voice2fa_cli.voice import swml

if TYPE_CHECKING:
    from voice2fa_cli import config
    from voice2fa_cli.delivery import Reporter, SendOptions
    from voice2fa_cli.policy import Session
    from voice2fa_cli.signalwire.calling import CallingClient, Log
    from voice2fa_cli.stores.base import AsyncSessionStore
    from voice2fa_cli.voice.call import CallState

POLL_FIRST = 0.1  # seconds before the first poll of the log (or VOICE2FA_POLL_INTERVAL when shorter)
POLL_MAX = 4.0  # seconds between two polls, at most: the wait doubles while nothing changes
LOG_MISSES = 3  # polls that find no log by the dial's id before the list is searched
POLL_FAILURES = 3  # failed polls in a row before the follow gives up (ProviderError)
STEPS = {"queued": "queued", "initiated": "initiated", "ringing": "ringing", "in-progress": "running"}


async def place_call(settings: config.Settings, options: SendOptions, store: AsyncSessionStore, reporter: Reporter,
                     client: CallingClient, call: CallState,
                     placed: asyncio.Future[Session] | None = None) -> SendResult:
    """Dial with the document inline, store the session, follow the log to the call's end."""
    started = time.monotonic()
    since = time.time()
    reporter.step("dialing", 0.0, options.number.described)
    document = swml.document(call.code, call.voice, call.key)
    call_id = await client.dial(to=options.number.e164, caller=settings.caller, swml=document,
                                ring_timeout=settings.timing.ring_timeout,
                                max_price_per_minute=settings.max_price_per_minute)
    call.call_sid = call_id
    session = None
    try:
        session = await store.create_session(
            session_id=call.session_id, number=options.number.e164, code=call.code, ttl=options.ttl,
            max_attempts=options.max_attempts, call_sid=call_id, call_status="queued", service=options.service)
        reporter.step("created", time.monotonic() - started, call_id)
        reporter.step("expires", time.monotonic() - started, repr(session.expires_at))
        if placed is not None and not placed.done():
            placed.set_result(session)
        await _Follower(call, client, reporter, settings, options, started, since).run()
    except BaseException as exc:
        if not call.ended:  # Ctrl-C, or the API or the store failed while the phone may ring
            call.hung_up = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(client.hang_up(call_id), settings.timing.api_timeout)
                reporter.step("hung-up", time.monotonic() - started)
        if session is not None:
            with contextlib.suppress(Exception):
                await store.record_call(session.id, state="undelivered" if not answered(call) else None,
                                        call_status=call.status if call.ended else "canceled")
        if isinstance(exc, StoreError):
            raise NotDelivered(f"the call was hung up because the store failed: {exc.message}") from None
        raise
    return await _recorded(store, session, call, settings)


def answered(call: CallState) -> bool:
    """Whether the callee answered (the document ran: the code may have been heard)."""
    return call.fetched


async def _recorded(store: AsyncSessionStore, session: Session, call: CallState,
                    settings: config.Settings) -> SendResult:
    heard = answered(call)
    try:
        await store.record_call(session.id, state=None if heard else "undelivered", call_status=call.status)
        stored = await store.get(session.id)
    except StoreError as exc:
        raise NotDelivered(f"the call ended but the store failed: {exc.message}") from None
    problem = None if heard else why_undelivered(call, settings)
    return SendResult(session=stored or session, call_sid=call.call_sid or "", call_status=call.status,
                      delivered=None if heard else False, problem=problem, duration=call.duration)


class _Follower:
    """Polls the call's voice log (bounded, with backoff) until a final status."""

    def __init__(self, call: CallState, client: CallingClient, reporter: Reporter, settings: config.Settings,
                 options: SendOptions, started: float, since: float) -> None:
        self.call = call
        self.client = client
        self.reporter = reporter
        self.settings = settings
        self.options = options
        self.started = started
        self.since = since
        self.log_id = call.call_sid or ""
        self.misses = 0
        self.seen = 0  # the call's history reported so far (what a sandbox callee heard)

    def _report_heard(self) -> None:
        call = self.call
        for index, (_, event) in enumerate(call.history[self.seen:], self.seen):
            if event == "heard":
                self.reporter.heard(list(call.transcript.get(index, ())))
        self.seen = len(call.history)

    async def _poll(self) -> Log | None:
        log = await self.client.fetch_log(self.log_id)
        if log is not None:
            return log
        self.misses += 1
        if self.misses < LOG_MISSES:
            return None
        found = await self.client.find_log(to=self.options.number.e164, caller=self.settings.caller,
                                           since=self.since)
        if found is not None:
            self.reporter.debug(f"the call's log is {found.id}, not the dial's id {self.log_id}")
            self.log_id = found.id
        return found

    def _apply(self, log: Log) -> None:
        call = self.call
        if log.status == call.status or (log.status not in STEPS and log.status not in FINAL_STATUSES):
            return
        elapsed = time.monotonic() - self.started
        if log.status in FINAL_STATUSES:
            if log.status == "completed" and (call.fetched or (log.duration or 0) > 0):
                call.fetched = True
                call.duration = log.duration
                self.reporter.step("answered-for", elapsed, f"{log.duration} s" if log.duration is not None else "")
            call.set_status(log.status, duration=log.duration)
            if log.status != "completed" or not call.fetched:
                self.reporter.step(log.status, elapsed)
            return
        if log.status == "in-progress":
            call.fetched = True
        call.set_status(log.status)
        self.reporter.step(STEPS[log.status], elapsed)

    async def run(self) -> None:
        timing = self.settings.timing
        give_up = self.started + timing.ring_timeout + timing.webhook_grace + swml.MAX_CALL_SECONDS
        first = min(POLL_FIRST, timing.poll_interval)
        wait = first
        failures = 0
        while not self.call.ended:
            due = time.monotonic() + max(0.0, min(wait, give_up - time.monotonic()))
            while (left := due - time.monotonic()) > 0:  # what a sandbox callee hears, as it happens
                if await woken(self.call.changed, left):
                    self.call.changed.clear()
                    self._report_heard()
            if time.monotonic() >= give_up:
                raise ProviderError(f"SignalWire never reported the end of call {self.log_id} in its voice log "
                                    f"within {give_up - self.started:.0f} s: it was hung up")
            try:
                log = await self._poll()
                failures = 0
            except ProviderError as exc:
                failures += 1
                if failures >= POLL_FAILURES:
                    raise
                self.reporter.warn(f"could not read the call's log: {exc.message}")
                continue
            if log is not None:
                before = self.call.status
                self._apply(log)
                wait = first if self.call.status != before else min(wait * 2, POLL_MAX)
        self._report_heard()
