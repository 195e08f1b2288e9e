"""Twilio Verify v2's Verification Attempts API on `voice2fa serve`: each call a verification
placed (a send attempt, `VL…`) kept in the store with what became of it (the call's final
status, its length, whether the code was read, why not), and whether the callee then gave the
right code (its conversion); listed and summed up with the spec's filters (date, country,
service, verification, number, prefix, conversion).

An attempt is written when its call is placed and again when the call ends; the attempt whose
code a VerificationCheck approves becomes `converted` (an approval by an update, without a code,
converts nothing: Twilio's conversion is the user giving the correct code). Never the code. A
key scoped to services sees only their attempts. Attempts are kept for RETENTION_DAYS."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from voice2fa_cli.errors import StoreError
from voice2fa_cli.serve import params, records, shapes
from voice2fa_cli.serve.shapes import ApiError

if TYPE_CHECKING:
    from voice2fa_cli.flow import SendResult
    from voice2fa_cli.stores.base import AsyncSessionStore, Record

RETENTION_DAYS = 30
RETENTION = RETENTION_DAYS * 86400.0
DEFAULT_PAGE_SIZE = 50
CONVERTED, UNCONVERTED = "converted", "unconverted"
CHANGE_TRIES = 8


def _when(value: str) -> float:
    """A validated DATE parameter (params.DATE) as a timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _selects(query: Mapping[str, str], attempt: Record) -> bool:
    """Whether `attempt` passes the filters of a list or summary `query` (validated already)."""
    after, before = query.get("DateCreatedAfter"), query.get("DateCreatedBefore")
    tests = (
        not after or attempt["created"] > _when(after),
        not before or attempt["created"] < _when(before),
        not query.get("Channel") or query["Channel"] == "call",
        not query.get("Country") or query["Country"] == attempt["country"],
        not query.get("VerifyServiceSid") or query["VerifyServiceSid"] == attempt["service_sid"],
        not query.get("VerificationSid") or query["VerificationSid"] == attempt["verification_sid"],
        not query.get("ChannelData.To") or query["ChannelData.To"] == attempt["to"],
        not query.get("DestinationPrefix") or attempt["to"].startswith(query["DestinationPrefix"]),
        not query.get("Status") or query["Status"] == attempt["conversion"],
    )
    return all(tests)


class Attempts:
    def __init__(self, store: AsyncSessionStore, api_url: str) -> None:
        self.store = store  # the verifications' store (the sandbox's with --sandbox)
        self.api_url = api_url

    # --- written by the core -----------------------------------------------------------------

    async def placed(self, sid: str, verification: Record, *, country: str, code_length: int, locale: str | None,
                     call_sid: str | None) -> None:
        now = time.time()
        attempt = {"sid": sid, "account_sid": verification["account_sid"], "service_sid": verification["service_sid"],
                   "verification_sid": verification["sid"], "to": verification["to"], "country": country,
                   "code_length": code_length, "locale": locale, "created": now, "updated": now,
                   "call_sid": call_sid, "call_status": "initiated", "duration": None, "delivered": None,
                   "problem": None, "conversion": UNCONVERTED}
        await self.store.put_record(records.ATTEMPT, sid, attempt, ttl=RETENTION)

    async def _change(self, sid: str, **changes: object) -> None:
        """Compare and set on the attempt's `rev`: the call's end and the conversion, written
        by different requests (and instances), never undo each other."""
        for _ in range(CHANGE_TRIES):
            attempt = await self.store.get_record(records.ATTEMPT, sid)
            if attempt is None:
                return  # past its retention
            rev = int(attempt.get("rev", 0))
            body = {**attempt, **changes, "updated": time.time(), "rev": rev + 1}
            if await self.store.swap_record(records.ATTEMPT, sid, body, rev=rev,
                                            ttl=max(1.0, attempt["created"] + RETENTION - time.time())):
                return
        raise StoreError(f"attempt {sid} changed {CHANGE_TRIES} times while being written")

    async def ended(self, sid: str, result: SendResult) -> None:
        await self._change(sid, call_sid=result.call_sid or None, call_status=result.call_status,
                           duration=result.duration, delivered=result.delivered, problem=result.problem)

    async def failed(self, sid: str, problem: str, call_status: str = "unknown") -> None:
        """The call was placed, then canceled (an update, a resend) or following it failed (the
        store or the platform went away)."""
        await self._change(sid, call_status=call_status, delivered=False, problem=problem)

    async def converted(self, verification: Record) -> None:
        """The verification's last attempt (the call that read the code just approved)."""
        if verification["send_code_attempts"]:
            await self._change(verification["send_code_attempts"][-1]["attempt_sid"], conversion=CONVERTED)

    # --- the API ---------------------------------------------------------------------------

    async def _visible(self, query: Mapping[str, str], key: records.ApiKey) -> list[Record]:
        """The attempts `key` may see that pass the filters, newest first."""
        found = [a for a in await self.store.list_records(records.ATTEMPT)
                 if key.reaches(a["service_sid"]) and _selects(query, a)]
        return sorted(found, key=lambda a: (-a["created"], a["sid"]))

    def _shape(self, attempt: Record) -> dict:
        return shapes.attempt(attempt, self.api_url)

    async def list(self, query: Mapping[str, str], key: records.ApiKey) -> dict:
        params.validate(query, params.ATTEMPTS)
        size = int(query.get("PageSize") or DEFAULT_PAGE_SIZE)
        number = int(query.get("Page") or 0)
        found = await self._visible(query, key)
        items = [self._shape(a) for a in found[number * size:(number + 1) * size]]
        filters = {name: value for name, value in query.items() if name in params.ATTEMPTS and name not in params.PAGE}
        return shapes.page("attempts", items, f"{self.api_url}/v2/Attempts", number, size, len(found), filters)

    async def fetch(self, sid: str, key: records.ApiKey) -> dict:
        attempt = None
        if records.SID.fullmatch(sid) and sid.startswith("VL"):
            attempt = await self.store.get_record(records.ATTEMPT, sid)
        if attempt is None or not key.reaches(attempt["service_sid"]):
            raise ApiError(20404, f"The requested resource /Attempts/{sid[:40]} was not found")
        return self._shape(attempt)

    async def summary(self, query: Mapping[str, str], key: records.ApiKey) -> dict:
        params.validate(query, params.SUMMARY)
        found = await self._visible(query, key)
        converted = sum(1 for a in found if a["conversion"] == CONVERTED)
        return shapes.attempts_summary(len(found), converted, self.api_url)
