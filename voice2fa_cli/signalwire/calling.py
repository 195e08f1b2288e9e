"""SignalWire's Calling API (`POST {space}/api/calling/calls`: dial with inline SWML, hang up)
and Voice Logs API (`GET {space}/api/voice/logs[/{id}]`), over the same aiohttp client as the
Compatibility API (client.py): the delivery that needs no tunnel.

Facts (signalwire/docs @668371b2): specs/signalwire-rest/calling-api/calls/models/requests.tsp
(dial: `from`, `to`, `swml` an object, `timeout` 1-600, `max_price_per_minute` >= 0;
`calling.end` with a top-level `id` and `params.reason`), .../responses.tsp (200 and the call's
`id`), specs/signalwire-rest/types/status-codes/main.tsp (400/401/404/500 `{"error": text}`,
422 `{"errors": [{type, code, message, attribute, url}]}`), specs/signalwire-rest/voice-api/
logs/ (a log's `status`, `duration`, `to`, `from`, `created_at`; the list's `data` and
`links.next`; filters `created_after`, `page_size`).

What only a live Space settles, met defensively: a dial whose `swml` object is rejected (422
naming `swml`) is sent again once with the document as a JSON string (a guide's form); a log not
found by the dial's id is looked for among the logs created since the dial, by `to` and `from`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

from voice2fa_cli.errors import ProviderError
from voice2fa_cli.signalwire.client import Client, one_line

# Voice log statuses (voice-api/enums.tsp VoiceLogStatus) as the call's (client.FINAL_STATUSES)
STATUS = {"queued": "queued", "created": "queued", "initiated": "initiated", "ringing": "ringing",
          "answered": "in-progress", "in-progress": "in-progress", "joined": "in-progress", "ending": "in-progress",
          "ended": "completed", "completed": "completed", "busy": "busy", "failed": "failed",
          "no-answer": "no-answer", "canceled": "canceled"}
LIST_PAGES = 5  # pages of the log list read when looking for a call's log (page_size 50 each)
PAGE_SIZE = 50
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a call's or a log's id (a uuid): it goes into a URL path


@dataclass(frozen=True)
class Log:
    """A call's voice log: its status as the call's, its length once ended."""

    id: str
    status: str
    duration: int | None


class CallingClient(Client):
    """One aiohttp session against `{space}/api`, basic auth with the project and token."""

    def __init__(self, space: str, project: str, token: str, *, timeout: float) -> None:
        super().__init__(space + "/api", project, token, timeout=timeout)

    @staticmethod
    def _error(status: int, data: object, what: str) -> ProviderError:
        message, attribute = _reason(data)
        if status in (402, 403):
            error = ProviderError(f"SignalWire refused {what} ({status}): the API token needs the Voice permission "
                                  "(API page of your SignalWire Dashboard)")
            error.auth_refused = True
        elif status in (401, 429) or status >= 500:
            error = Client._error(status, data, what)  # the same words as the Compatibility API's
        else:
            detail = f"SignalWire rejected {what} ({status})"
            if message and not (attribute or "").startswith("swml"):
                # a rejection of the document may quote it, and the document holds the code: only
                # where it was refused is said, never the platform's words about it
                detail += f": {message}"
            if attribute:
                detail += f" ({attribute})"
            error = ProviderError(detail)
        error.rejected = attribute
        return error

    async def dial(self, *, to: str, caller: str, swml: dict, ring_timeout: int,
                   max_price_per_minute: float | None) -> str:
        """The call placed with the document inline; its id. Never retried once it may have
        reached the platform (a retry can ring the person twice): only a rejection of the
        `swml` object (422, nothing dialed) is sent again, with the document as a string."""
        params: dict[str, object] = {"from": caller, "to": to, "timeout": ring_timeout, "swml": swml}
        if max_price_per_minute is not None:
            params["max_price_per_minute"] = max_price_per_minute
        try:
            data = await self._dial(params)
        except ProviderError as error:
            if error.status != 422 or error.rejected not in ("swml", "params.swml"):
                raise
            data = await self._dial({**params, "swml": json.dumps(swml, separators=(",", ":"))})
        call_id = data.get("id")
        if not isinstance(call_id, str) or not _ID.fullmatch(call_id):
            raise ProviderError("SignalWire accepted the call request but returned no call id: the call may ring; "
                                "voice2fa cannot follow or hang up a call it cannot name")
        return call_id

    async def _dial(self, params: dict) -> dict:
        try:
            return await self._request("POST", "/calling/calls", "the call request",
                                       payload={"command": "dial", "params": params})
        except ProviderError as error:
            error.dialed = error.timed_out
            raise

    async def hang_up(self, sid: str) -> None:
        await self._request("POST", "/calling/calls", "the hang-up request",
                            payload={"id": sid, "command": "calling.end", "params": {"reason": "hangup"}})

    async def fetch_log(self, log_id: str) -> Log | None:
        """The call's log, None when the platform has none by that id (404)."""
        try:
            data = await self._request("GET", f"/voice/logs/{log_id}", "the call log request")
        except ProviderError as error:
            if error.status == 404:
                return None
            raise
        return _log(data, log_id)

    async def newest_log(self) -> None:
        """Read the newest voice log (changes nothing): a check that the token has the Voice
        permission (doctor)."""
        await self._request("GET", "/voice/logs?page_size=1", "the call log list request")

    async def find_log(self, *, to: str, caller: str, since: float) -> Log | None:
        """The newest log from `caller` to `to` created at or after `since` (a Unix time), from
        the list (a log's id need not be the dial's)."""
        day = datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%d")
        query = urlencode({"created_after": day, "page_size": PAGE_SIZE})
        path = f"/voice/logs?{query}"
        found: list[tuple[float, Log]] = []
        for _ in range(LIST_PAGES):
            data = await self._request("GET", path, "the call log list request")
            items = data.get("data")
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or item.get("to") != to or item.get("from") != caller:
                    continue
                created = _time(item.get("created_at"))
                log_id = item.get("id")
                if created is not None and created >= since - 5 and isinstance(log_id, str) and _ID.fullmatch(log_id):
                    found.append((created, _log(item, log_id)))  # (the platform's clock may be a little behind)
            links = data.get("links")
            following = links.get("next") if isinstance(links, dict) else None
            if not isinstance(following, str) or not following:
                break
            parts = urlsplit(following)
            path = parts.path.removeprefix("/api") + (f"?{parts.query}" if parts.query else "")
        return max(found, key=lambda pair: pair[0])[1] if found else None


def _log(data: dict, log_id: str) -> Log:
    raw = data.get("status")
    status = STATUS.get(raw, "unknown") if isinstance(raw, str) else "unknown"
    duration = data.get("duration")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
        duration = None
    return Log(id=log_id, status=status, duration=duration)


def _time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _reason(data: object) -> tuple[str | None, str | None]:
    """(message, attribute) from either documented error body; anything else is ignored."""
    if not isinstance(data, dict):
        return None, None
    errors = data.get("errors")
    if isinstance(errors, list):
        items = [item for item in errors[:10] if isinstance(item, dict)]
        messages = [text for item in items if (text := one_line(item.get("message")))]
        attribute = one_line(items[0].get("attribute")) if items else None
        return "; ".join(messages)[:300] or None, attribute
    return one_line(data.get("error")), None
