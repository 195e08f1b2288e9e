"""What a delivery of the call takes and gives, whichever way the call gets its script (the
webhook, or inline): the send's options, its reporter, its result, the words for a call that
did not deliver the code."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voice2fa_cli import otp, policy
from voice2fa_cli.phone import Number
from voice2fa_cli.policy import Session
from voice2fa_cli.voice.speech import KEY_WINDOW, Voice

if TYPE_CHECKING:
    from voice2fa_cli import config
    from voice2fa_cli.voice.call import CallState


class Reporter(Protocol):
    def warn(self, text: str) -> None: ...
    def debug(self, text: str) -> None: ...
    def step(self, event: str, elapsed: float, detail: str | None = None) -> None: ...
    def heard(self, lines: list[str]) -> None: ...


@dataclass(frozen=True)
class SendOptions:
    number: Number
    digits: int = otp.DEFAULT_DIGITS
    ttl: int = policy.DEFAULT_TTL
    voice: Voice = Voice()  # noqa: RUF009 (a frozen dataclass: one shared default is safe)
    keypress: bool = True
    max_attempts: int = policy.MAX_ATTEMPTS
    preflight: bool = True
    service: str = ""  # the serve service the session belongs to ("" the CLI's own)


@dataclass(frozen=True)
class SendResult:
    session: Session
    call_sid: str
    call_status: str
    delivered: bool | None  # None: answered, but whether the code was heard is not known (inline delivery)
    problem: str | None  # why the code was not delivered
    duration: int | None


_UNDELIVERED = {
    "busy": "the line was busy: the code was not delivered",
    "no-answer": "nobody answered: the code was not delivered",
    "failed": "the call failed (the number may be unreachable): the code was not delivered",
    "canceled": "the call was canceled before it was answered: the code was not delivered",
}


def why_undelivered(call: CallState, settings: config.Settings) -> str:
    """Why an ended call did not deliver the code, from what is known of it."""
    problem = _UNDELIVERED.get(call.status)
    if problem is not None:
        return problem
    if not call.fetched and settings.delivery == "inline":  # no script fetched: never answered
        return "the call ended before it was answered: the code was not delivered"
    if not call.fetched:
        return (f"SignalWire never reached {settings.public_url}: is the tunnel running? "
                f"(it must forward to {settings.listen})")
    if call.key is not None and call.wrong_keys:
        return f"the code was not delivered: wrong key pressed {call.wrong_keys} times (not {call.key})"
    if call.key is not None and call.duration is not None and call.duration < KEY_WINDOW:
        # too short a call to have waited out the key window: the callee hung up
        return f"the code was not delivered: the callee hung up before pressing {call.key}"
    if call.key is not None:
        return f"the code was not delivered: nobody pressed {call.key} (voicemail?)"
    return "the call ended before the code was read"


async def woken(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` up to `timeout`. Unlike asyncio.wait_for on Python < 3.12, this never
    swallows a cancellation (Ctrl-C) that lands as the event fires."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
        return bool(done)
    finally:
        waiter.cancel()
