"""The call webhook: an aiohttp app from a factory, its state under AppKeys.

Routes, under the public URL's path:
  POST {prefix}/v/{token}          the first cXML document (the key-press gate, or the code)
  POST {prefix}/v/{token}/key      the gate's <Gather> action: the right key gets the code
  POST {prefix}/v/{token}/read     the code's <Gather> action: the callee repeats or slows it
  POST {prefix}/v/{token}/status   status callbacks (memory only, never the store)
  GET  {prefix}/health/{nonce}     preflight: proves the public URL reaches this very server

Each request is checked in this order: unknown token 404, wrong method 405, body over 64 KiB
413, malformed form 400, missing or bad signature 403 (when a key is set), then for the cXML
routes a call that is over (or hung up) 410, and a code read MAX_CODE_READS times 410. The status
route of a known call answers 200 for as long as the server runs (the platform's final callback
comes after the end, and it retries what fails). Only the code document carries the code.

The app is served by web.server.Server (time limits, a cap on connections, no tracebacks);
the call's state is voice.call.CallState.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web

from voice2fa_cli.errors import StoreError
from voice2fa_cli.signalwire import signature
from voice2fa_cli.signalwire.client import FINAL_STATUSES
from voice2fa_cli.voice import speech
from voice2fa_cli.voice.call import KNOWN_STATUSES, CallState

# The call's rules, both deliveries' (speech.py); beyond MAX_CODE_READS even a captured signed
# request replayed gets 410.
from voice2fa_cli.voice.speech import GATE_TRIES as GATE_TRIES
from voice2fa_cli.voice.speech import MAX_CODE_READS as MAX_CODE_READS
from voice2fa_cli.web.forms import MAX_BODY, plain, read_form
from voice2fa_cli.web.server import LIMITS, Limits, in_handler

XML = "application/xml"


@dataclass(frozen=True)
class ServerConfig:
    public_url: str  # as configured, no trailing slash
    signing_key: str | None = field(repr=False)
    health_nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    # The health route's proof: HMAC-SHA256 of the nonce under a secret that never leaves this
    # process, so that only this run's server can answer the preflight (not an echo of the path).
    health_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    limits: Limits = field(default_factory=Limits)
    # Derived once (not per request): the URL's path prefix, and its origin with and without
    # the default port, as the platform may sign either.
    prefix: str = field(init=False)
    origins: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.public_url)
        object.__setattr__(self, "prefix", parts.path.rstrip("/"))
        object.__setattr__(self, "origins", tuple(signature.url_variants(f"{parts.scheme}://{parts.netloc}")))

    def url(self, path: str) -> str:
        return f"{self.public_url}{path}"


CALLS = web.AppKey("calls", dict)  # token → CallState
CONFIG = web.AppKey("config", ServerConfig)


def call_url(config: ServerConfig, call: CallState, tail: str = "") -> str:
    return config.url(f"/v/{call.token}{tail}")


def health_url(config: ServerConfig) -> str:
    return config.url(f"/health/{config.health_nonce}")


def health_answer(config: ServerConfig) -> bytes:
    """The health route's body: a proof only this process can make (the preflight checks it)."""
    proof = hmac.new(config.health_secret, config.health_nonce.encode(), hashlib.sha256).hexdigest()
    return f"voice2fa {proof}\n".encode()


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=XML, charset="utf-8")


def _signed(request: web.Request, config: ServerConfig, fields: list[tuple[str, str]]) -> bool:
    if config.signing_key is None:
        return True
    path = request.raw_path  # signed against the URL the platform was given, not the Host header
    sig = None
    for header in signature.HEADERS:
        sig = request.headers.get(header)
        if sig:
            break
    return signature.valid_for_any(config.signing_key, [origin + path for origin in config.origins], fields, sig)


class SharedCalls(Protocol):
    """Where the calls' state lives when several servers answer the platform (voice2fa serve on
    a shared store): every request loads the call's state, and saves it before answering."""

    async def load(self, token: str) -> tuple[CallState, int] | None: ...
    def guess(self, token: str) -> tuple[CallState, int] | None: ...
    async def save(self, token: str, call: CallState, rev: int) -> bool: ...
    def merge(self, token: str, seen: CallState) -> None: ...


SHARED = web.AppKey("shared", SharedCalls)
SHARED_TRIES = 5


async def handle_call(request: web.Request) -> web.StreamResponse:
    app = request.app
    token = request.match_info["token"]
    shared = app.get(SHARED)
    if shared is None:
        return await _answer(request, app[CALLS].get(token), None)
    try:
        return await _answer(request, None, shared)
    except StoreError:
        # The shared store is away: the platform gets a document that ends the call politely
        # (in the call's language when this instance placed it), never aiohttp's HTML 500.
        if request.match_info.get("tail") == "/status":
            return web.Response(status=200)
        local = app[CALLS].get(token)
        return _xml(speech.unavailable_document(local.voice if local is not None else speech.Voice()))


async def _answer(request: web.Request, call: CallState | None, shared: SharedCalls | None) -> web.StreamResponse:
    app = request.app
    token = request.match_info["token"]
    loaded: tuple[CallState, int] | None = None
    if shared is not None:  # the mirror of a call placed here, else (or if it is behind) the record
        loaded = shared.guess(token) or await shared.load(token)
        call = loaded[0] if loaded is not None else None
    if call is None:
        return plain(404, "not found")
    if request.method != "POST":
        return web.Response(status=405, text="method not allowed\n", headers={"Allow": "POST"})
    config = app[CONFIG]
    fields = await read_form(request, config.limits.body)
    if isinstance(fields, web.Response):
        return fields
    if not _signed(request, config, fields):
        return plain(403, "invalid signature")
    form = dict(fields)
    tail = request.match_info.get("tail", "")
    if shared is None:
        return _respond(call, config, form, tail)
    for _ in range(SHARED_TRIES):
        if loaded is None:  # the call's record expired (or was removed) meanwhile
            return plain(404, "not found")
        call, rev = loaded
        response = _respond(call, config, form, tail)
        if await shared.save(token, call, rev):
            shared.merge(token, call)
            return response
        loaded = await shared.load(token)  # another server changed the call meanwhile: again
    return plain(503, "the call's state kept changing: try again")


def _respond(call: CallState, config: ServerConfig, form: dict[str, str], tail: str) -> web.Response:
    """The answer to a call route's request, from the call's state (which it updates)."""
    if tail == "/status":
        return _status(call, form)  # 200 for as long as the server runs, the call over or not
    if call.over:
        return plain(410, "this call is over")
    sid = form.get("CallSid")
    if sid and call.call_sid and sid != call.call_sid:
        return plain(410, "not this call")
    if not call.fetched:
        call.fetched = True
        if call.call_sid is None and sid:
            call.call_sid = sid
        call.note("fetched")
        call.set_status("in-progress")
    if tail == "/key":
        return _key(call, config, form.get("Digits", ""))
    if call.key is not None and not call.delivered:
        if call.gate is None:
            call.gate = speech.gate_document(call.key, call_url(config, call, "/key"), call.voice)
        return _xml(call.gate)
    if tail == "/read":
        return _read(call, config, form.get("Digits", ""))
    return _code(call, config)


def _code(call: CallState, config: ServerConfig, *, slow: bool = False) -> web.Response:
    """The code document, counted against MAX_CODE_READS (every way to the code comes here); the
    last one offers no repeat, and beyond it the answer is 410."""
    if call.code_reads >= MAX_CODE_READS:
        return plain(410, "the code has been read enough times")
    call.code_reads += 1
    more = call.code_reads < MAX_CODE_READS
    body = speech.code_document(
        call.code, call.voice, after_gate=call.key is not None or call.code_reads > 1, slow=slow,
        action=call_url(config, call, "/read") if more else None,
    )
    if not call.delivered:
        call.delivered = True
        call.note("delivered")
    return _xml(body)


def _read(call: CallState, config: ServerConfig, digits: str) -> web.Response:
    """The code's action (reached only once the code was read): the callee steers."""
    if digits == speech.REPEAT_KEY:
        return _code(call, config)
    if digits == speech.SLOWER_KEY:
        return _code(call, config, slow=True)
    call.wrong_keys += 1
    if call.wrong_keys >= GATE_TRIES or call.code_reads >= MAX_CODE_READS:
        return _xml(speech.goodbye_document(call.voice))
    return _xml(speech.unknown_key_document(call_url(config, call, "/read"), call.voice))


def _key(call: CallState, config: ServerConfig, digits: str) -> web.Response:
    """The gate's action: the right key gets the code; GATE_TRIES wrong keys end the gate for
    good (goodbye, and never the code after that)."""
    if call.key is None or call.delivered:
        return _code(call, config)
    if call.wrong_keys < GATE_TRIES:
        if digits == call.key:
            call.note("key-pressed")
            return _code(call, config)
        call.wrong_keys += 1
        call.note("wrong-key")
    if call.wrong_keys >= GATE_TRIES:
        return _xml(speech.goodbye_document(call.voice))
    return _xml(speech.gate_document(call.key, call_url(config, call, "/key"), call.voice, retry=True))


def _status(call: CallState, form: dict[str, str]) -> web.Response:
    status = form.get("CallStatus", "")
    if status in KNOWN_STATUSES:
        sid = form.get("CallSid")
        if not (sid and call.call_sid and sid != call.call_sid):
            try:
                seq = int(form["SequenceNumber"]) if "SequenceNumber" in form else None
            except ValueError:
                seq = None
            duration = None
            if status in FINAL_STATUSES:
                value = form.get("CallDuration", "")
                if value.isascii() and value.isdigit() and len(value) <= 9:
                    duration = int(value)
            call.set_status(status, seq, duration)
    return web.Response(status=200)


async def handle_health(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if not secrets.compare_digest(request.match_info["nonce"].encode(), config.health_nonce.encode()):
        return plain(404, "not found")
    return web.Response(body=health_answer(config), content_type="text/plain")


def make_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[CONFIG] = config
    app[LIMITS] = config.limits
    app[CALLS] = {}
    prefix = config.prefix
    app.router.add_route("*", prefix + "/v/{token}{tail:(/key|/status|/read)?}", in_handler(handle_call))
    app.router.add_get(prefix + "/health/{nonce}", in_handler(handle_health))
    return app


def register(app: web.Application, call: CallState) -> None:
    app[CALLS][call.token] = call
