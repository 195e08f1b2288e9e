"""One call's state, shared by the webhook's handlers (which write it), the flow that follows
the call, and serve (which keeps it in a shared store when several servers answer)."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

from voice2fa_cli.signalwire.client import FINAL_STATUSES
from voice2fa_cli.voice import speech

MAX_HISTORY = 64
KNOWN_STATUSES = frozenset({"initiated", "queued", "ringing", "answered", "in-progress"}) | FINAL_STATUSES


@dataclass(eq=False)
class CallState:
    """One call, shared by the webhook handlers (which write) and the flow (which reads)."""

    session_id: str
    code: str = field(repr=False)
    voice: speech.Voice
    key: str | None = None  # the key the callee must press first; None reads the code at once
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    call_sid: str | None = None
    status: str = "queued"
    sequence: int = -1
    fetched: bool = False  # the platform fetched the first document: the call was answered
    delivered: bool = False  # the code document was served
    wrong_keys: int = 0
    code_reads: int = 0  # code documents served (each reads the code twice), at most MAX_CODE_READS
    hung_up: bool = False  # voice2fa hung up: no document any more; the status route still listens
    duration: int | None = None
    history: list[tuple[float, str]] = field(default_factory=list)
    gate: bytes | None = field(default=None, repr=False)  # the first document, built once
    transcript: dict[int, tuple[str, ...]] = field(default_factory=dict, repr=False)  # sandbox only
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def over(self) -> bool:
        """No document (and never the code) is served any more."""
        return self.ended or self.hung_up

    def note(self, event: str) -> None:
        """Record an event for the flow (bounded) and wake it."""
        if len(self.history) < MAX_HISTORY:
            self.history.append((time.monotonic(), event))
        self.changed.set()

    def note_heard(self, lines: list[str]) -> None:
        """What a simulated callee heard (the sandbox), in order with the other events."""
        if len(self.history) < MAX_HISTORY:
            self.transcript[len(self.history)] = tuple(lines)
            self.note("heard")

    def set_status(self, status: str, sequence: int | None = None, duration: int | None = None) -> None:
        """Apply a status (a callback's, or polled); `duration` is kept with a final status."""
        if self.ended:
            return
        if sequence is not None:
            if sequence <= self.sequence:
                return  # a duplicate, or older than what we know
            self.sequence = sequence
        if status == "answered":
            status = "in-progress"
        if status == self.status:
            return
        if status == "ringing" and self.status == "in-progress":
            return  # out of order without sequence numbers
        if status in FINAL_STATUSES and duration is not None:
            self.duration = duration
        self.status = status
        self.note(status)
