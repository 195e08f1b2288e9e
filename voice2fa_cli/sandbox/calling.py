"""The sandbox's Calling API and Voice Logs API, as SignalWire's spec has them, and the call a
dial's inline SWML makes with the simulated callee (swml.py runs it). Mixed into Sandbox.

Facts (signalwire/docs @668371b217817d9037657f5079d2345945ad9331):
- CALLS  = specs/signalwire-rest/calling-api/calls/main.tsp, models/requests.tsp, models/responses.tsp:
  POST /api/calling/calls, JSON {command, params}; `dial` needs params.from and params.swml (or
  url) and params.to; `timeout` 1..600; `max_price_per_minute` >= 0; answers 200 with the call
  (`id`, `status` "queued", …). `calling.end` takes a top-level `id`, params.reason one of
  HANGUP_REASONS.
- CODES  = specs/signalwire-rest/types/status-codes/main.tsp: 400/401/404/500 {"error": "Bad
  Request" | "Unauthorized" | "Not Found" | "Internal Server Error"}; 422 {"errors": [{type,
  code, message, attribute, url}]}.
- LOGS   = specs/signalwire-rest/voice-api/logs/: GET /api/voice/logs/{id} (the log itself, 404
  unknown), GET /api/voice/logs (filters created_after/created_before/created_on as dates,
  page_size 1..1000 default 50; {links: {self, first, next?}, data: [...]}).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from voice2fa_cli.sandbox import platform, swml
from voice2fa_cli.sandbox.cxml import keys_named

SimCall = Any  # server.SimCall (server.py mixes these routes in: it is not imported here)

HANGUP_REASONS = ("hangup", "cancel", "busy", "noAnswer", "decline", "error")  # CALLS HangupReason
TIMEOUT_RANGE = (1, 600)
PAGE_SIZE = (1, 1000, 50)
ERROR_URL = "https://signalwire.com/docs/apis/error-codes"  # CODES RestApiErrorItem.url example
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def error(status: int) -> web.Response:
    text = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}[status]
    return web.json_response({"error": text}, status=status)


def invalid(attribute: str | None, message: str, code: str = "invalid_parameter") -> web.Response:
    item = {"type": "validation_error", "code": code, "message": message, "attribute": attribute, "url": ERROR_URL}
    return web.json_response({"errors": [item]}, status=422)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class CallingRoutes:
    """Sandbox's routes of the Calling and Voice Logs APIs (Sandbox provides the state)."""

    calls: dict[str, SimCall]
    project: str
    token: str
    caller: str | None
    scenario: Any

    def add_calling_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/calling/calls", self._calling)
        app.router.add_get("/api/voice/logs", self._logs)
        app.router.add_get("/api/voice/logs/{id}", self._log)

    def _refused(self, request: web.Request, body: str, operation: str | None) -> web.Response | None:
        """Every request of these APIs: recorded, then its basic auth checked (401), then the
        scenario's scripted error for `operation`, if any."""
        self._record(request, body)  # type: ignore[attr-defined]
        if not self._authorised_basic(request):  # type: ignore[attr-defined]
            return error(401)
        return self._scripted_calling(operation) if operation is not None else None

    async def _calling(self, request: web.Request) -> web.Response:
        body_text = await request.text()
        if refused := self._refused(request, body_text, None):
            return refused
        try:
            body = json.loads(body_text)
        except ValueError:
            return error(400)
        if not isinstance(body, dict) or not isinstance(body.get("command"), str):
            return invalid("command", "command is required", "missing_required_parameter")
        if body["command"] == "dial":
            if scripted := self._scripted_calling("create"):
                return scripted
            return await self._dial(body.get("params"))
        if body["command"] == "calling.end":
            if scripted := self._scripted_calling("update"):
                return scripted
            return self._end_call(body)
        return invalid("command", f"the sandbox does not simulate the command {str(body['command'])[:40]}")

    def _scripted_calling(self, operation: str) -> web.Response | None:
        scenario = self.scenario
        if scenario.api_status is None or scenario.api_on != operation:
            return None
        status = scenario.api_status
        if status == 422:
            return invalid(None, "the scenario rejects this request")
        words = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}
        return web.json_response({"error": words.get(status, "Internal Server Error")}, status=status)

    async def _dial(self, params: object) -> web.Response:
        if not isinstance(params, dict):
            return invalid("params", "params is required", "missing_required_parameter")
        to, caller = params.get("to"), params.get("from")
        if not isinstance(caller, str) or not caller:
            return invalid("from", "from is required", "missing_required_parameter")
        if not isinstance(to, str) or not _E164.fullmatch(to):
            return invalid("to", "to must be a phone number in E.164")
        if not _E164.fullmatch(caller) or (self.caller and caller != self.caller):
            return invalid("from", "from must be a number of this project")
        timeout = params.get("timeout", 60)
        low, high = TIMEOUT_RANGE
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not low <= timeout <= high:
            return invalid("timeout", f"timeout is a whole number of seconds from {low} to {high}")
        price = params.get("max_price_per_minute")
        if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0):
            return invalid("max_price_per_minute", "max_price_per_minute is a number of dollars, at least 0")
        document = params.get("swml")
        if document is None:
            return invalid("swml", "url or swml is required", "missing_required_parameter")
        if self.scenario.swml_string:  # the scenario of a Space that wants it as an escaped JSON string
            if not isinstance(document, str):
                return invalid("swml", "swml must be an escaped JSON string")
            try:
                document = json.loads(document)
            except ValueError:
                return invalid("swml", "swml is not valid JSON")
        elif isinstance(document, str):
            return invalid("swml", "swml must be an object")
        try:
            swml.check(document)
        except swml.Invalid as exc:
            return invalid(exc.attribute, exc.message)
        call_id = str(uuid.uuid4())
        call = self._new_call(call_id, to, caller)  # type: ignore[attr-defined]
        call.swml = document
        call.log_id = call_id if self.scenario.log_by_id else str(uuid.uuid4())
        self.calls[call_id] = call
        call.task = self._track(self._simulate_swml(call))  # type: ignore[attr-defined]
        return web.json_response(self._leg(call), status=200)

    def _end_call(self, body: dict) -> web.Response:
        call = self.calls.get(str(body.get("id")))
        if call is None or call.swml is None:
            return error(404)
        params = body.get("params", {})
        if not isinstance(params, dict):
            return invalid("params", "params must be an object")
        if params.get("reason", "hangup") not in HANGUP_REASONS:
            return invalid("params.reason", f"reason is one of {', '.join(HANGUP_REASONS)}")
        if call.status not in platform.FINAL:
            if call.task is not None:
                call.task.cancel()
            if call.answered and call.started is not None:
                call.duration = max(1, int((datetime.now(timezone.utc) - call.started).total_seconds()))
            self._status(call, "completed" if call.answered else "canceled")  # type: ignore[attr-defined]
        return web.json_response(self._leg(call))

    def _leg(self, call: SimCall) -> dict:
        """CALLS CallLeg: the dial's answer."""
        return {"id": call.sid, "from": call.caller, "to": call.to, "direction": "outbound-api",
                "source": "realtime_api", "url": None, "charge": 0.0, "created_at": iso(call.created),
                "charge_details": [], "status": self._log_status(call), "duration": call.duration or None,
                "duration_ms": call.duration * 1000 if call.duration else None, "billing_ms": None,
                "type": "relay_pstn_call", "parent_id": None}

    @staticmethod
    def _log_status(call: SimCall) -> str:
        return "answered" if call.status == "in-progress" else call.status

    def _voice_log(self, call: SimCall) -> dict:
        """LOGS RelayVoiceLog."""
        return {"id": call.log_id, "from": call.caller, "to": call.to, "source": "realtime_api", "charge": 0.0,
                "charge_details": [], "created_at": iso(call.created), "type": "relay_pstn_call", "url": None,
                "direction": "outbound-api", "status": self._log_status(call),
                "duration": call.duration if call.status in platform.FINAL else None,
                "duration_ms": call.duration * 1000 if call.status in platform.FINAL else None, "billing_ms": None,
                "parent_id": None}

    async def _log(self, request: web.Request) -> web.Response:
        if refused := self._refused(request, "", "fetch"):
            return refused
        wanted = request.match_info["id"]
        for call in self.calls.values():
            if call.swml is not None and call.log_id == wanted:
                return web.json_response(self._voice_log(call))
        return error(404)

    async def _logs(self, request: web.Request) -> web.Response:
        if refused := self._refused(request, "", "fetch"):
            return refused
        query = request.query
        for name in ("created_after", "created_before", "created_on"):
            if name in query and not _DATE.fullmatch(query[name]):
                return invalid(name, f"{name} is a date, YYYY-MM-DD")
        raw = query.get("page_size", str(PAGE_SIZE[2]))
        if not raw.isdigit() or not PAGE_SIZE[0] <= int(raw) <= PAGE_SIZE[1]:
            return invalid("page_size", f"page_size is from {PAGE_SIZE[0]} to {PAGE_SIZE[1]}")
        size = int(raw)
        logs = [c for c in self.calls.values() if c.swml is not None
                and ("created_after" not in query or iso(c.created)[:10] >= query["created_after"])]
        logs.sort(key=lambda c: c.created, reverse=True)
        page = int(query.get("page_number", "0") or 0) if query.get("page_number", "0").isdigit() else 0
        chosen = logs[page * size:(page + 1) * size]
        base = f"/api/voice/logs?page_size={size}"
        links = {"self": f"{base}&page_number={page}", "first": f"{base}&page_number=0"}
        if (page + 1) * size < len(logs):
            links["next"] = f"{base}&page_number={page + 1}&page_token=PA{page + 1}"
        return web.json_response({"links": links, "data": [self._voice_log(c) for c in chosen]})

    # --- the call -------------------------------------------------------------------------

    async def _simulate_swml(self, call: SimCall) -> None:
        scenario = call.scenario
        pause = self._pause  # type: ignore[attr-defined]
        status = self._status  # type: ignore[attr-defined]
        await pause(call)
        status(call, "initiated")
        await pause(call)
        status(call, "ringing")
        await pause(call)
        if scenario.outcome == "hold":
            await asyncio.Event().wait()  # until hung up (which cancels this task)
        if scenario.outcome not in ("answer", "voicemail"):
            status(call, scenario.outcome)
            return
        call.answered = True
        status(call, "in-progress")
        run = swml.Run(call.swml or {})
        try:
            if scenario.hang_up_after_fetch:  # the callee hangs up as soon as the call is answered
                run.pending.append("[the callee hangs up]")
            else:
                await self._run(call, run, "main")
        except swml.ScriptError as exc:
            run.pending.append(f"[script error: {exc}: the call ends]")
        finally:
            self._tell(call, run)
        call.duration = max(1, 2 * len(call.heard) + int(run.waited))
        status(call, "completed")

    async def _run(self, call: SimCall, run: swml.Run, section: str) -> None:
        sections = run.document["sections"]
        if section not in sections:
            raise swml.ScriptError(f"no section {section}")
        methods = sections[section]
        labels = {m["label"]: i for i, m in enumerate(methods) if "label" in m}
        jumps: dict[int, int] = {}
        index = 0
        while index < len(methods):
            ((name, params),) = methods[index].items()
            index += 1
            if name == "goto":
                if "when" in params:
                    raise swml.ScriptError("the sandbox does not evaluate expressions (goto.when)")
                target = labels.get(params["label"])
                if target is None:
                    raise swml.ScriptError(f"no label {params['label']}")
                jumps[index] = jumps.get(index, 0) + 1
                if jumps[index] <= params.get("max", swml.GOTO_MAX[1]):
                    self._count(run)
                    index = target
                continue
            ended = await self._method(call, run, name, params)
            if ended is not None:
                if ended != "hangup":
                    self._count(run)
                    await self._run(call, run, ended)
                return

    @staticmethod
    def _count(run: swml.Run) -> None:
        run.transfers += 1
        if run.transfers > swml.MAX_TRANSFERS:
            raise swml.ScriptError("relay_script_too_many_transfers")

    def _tell(self, call: SimCall, run: swml.Run, *lines: str) -> None:
        """What the callee heard since the last key press (and `lines`), told as one batch, as
        a cXML document's lines are."""
        heard, run.pending = [*run.pending, *lines], []
        if heard:
            self._heard(call, heard)  # type: ignore[attr-defined]

    async def _method(self, call: SimCall, run: swml.Run, name: str, params: Any) -> str | None:
        """One method; "hangup" when the call ends here, a section's name to go on in it."""
        if name == "hangup":
            run.pending.append("[hangs up]")
            return "hangup"
        if name == "play":
            run.pending += swml.spoken(params["urls"] if "urls" in params else [params["url"]])
            return None
        if name == "prompt":
            urls = params["play"] if isinstance(params["play"], list) else [params["play"]]
            lines = swml.spoken(urls)
            key = self._key(call, keys_named(lines))  # type: ignore[attr-defined]  # as at a cXML <Gather>
            if key is None:
                run.waited += float(params.get("initial_timeout", 5))
                run.pending += [*lines, "[waits for a key]"]
                run.variables.update(prompt_value="", prompt_result="no_input")
            else:
                run.pending += [*lines, "[waits for a key]"]
                self._tell(call, run, f"[presses {key}]")
                call.pressed.append(key)
                await self._pause(call)  # type: ignore[attr-defined]  # as after a key at a cXML <Gather>
                run.variables.update(prompt_value=key, prompt_result="match_digits")
            return None
        if name == "switch":
            value = str(run.variables.get(params["variable"], ""))
            branch = params["case"].get(value, params.get("default"))
            if branch is None:
                raise swml.ScriptError("relay_script_method_no_matching_condition")
            for method in branch:
                ((inner, inner_params),) = method.items()
                ended = await self._method(call, run, inner, inner_params)
                if ended is not None:
                    return ended
            return None
        if name == "transfer":
            return str(params["dest"])
        if name == "set":
            run.variables.update(params)
            return None
        if name in ("answer", "label"):
            return None
        if name == "unset":
            for key in [params] if isinstance(params, str) else params:
                run.variables.pop(key, None)
            return None
        raise swml.ScriptError(f"the sandbox does not run {name}")
