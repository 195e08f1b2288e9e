"""The embedded callback server: an aiohttp app from a factory, its state under AppKeys.

Routes, under the public URL's path:
  POST {prefix}/v/{token}          the first cXML document (the key-press gate, or the code)
  POST {prefix}/v/{token}/key      the gate's <Gather> action: the right key gets the code
  POST {prefix}/v/{token}/read     the code's <Gather> action: the callee repeats or slows it
  POST {prefix}/v/{token}/status   status callbacks (memory only, never the store)
  GET  {prefix}/health/{nonce}     preflight: proves the public URL reaches this very server

Each request is checked in this order: unknown token 404, wrong method 405, body over 64 KiB
413, malformed form 400, missing or bad signature 403 (when a key is set), call over 410.
Only the code document carries the code.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from voice2fa_cli import signature, speech
from voice2fa_cli.errors import ConfigError
from voice2fa_cli.signalwire import FINAL_STATUSES

MAX_BODY = 64 * 1024
MAX_FIELDS = 200
MAX_HISTORY = 64
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
GATE_TRIES = 3
MAX_CODE_READS = 3  # code documents served per call: the first reading and at most two repeats
XML = "application/xml"
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
    duration: int | None = None
    history: list[tuple[float, str]] = field(default_factory=list)
    gate: bytes | None = field(default=None, repr=False)  # the first document, built once
    transcript: dict[int, tuple[str, ...]] = field(default_factory=dict, repr=False)  # sandbox only
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

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

    def set_status(self, status: str, sequence: int | None = None) -> None:
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
        self.status = status
        self.note(status)


@dataclass(frozen=True)
class ServerConfig:
    public_url: str  # as configured, no trailing slash
    signing_key: str | None = field(repr=False)
    health_nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
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


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=XML, charset="utf-8")


async def _form(request: web.Request) -> list[tuple[str, str]] | web.Response:
    """The form fields, or the error response (413 / 400)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _plain(413, "request body too large")
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return _plain(400, "compressed request bodies are not accepted")  # SignalWire sends plain forms
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _plain(413, "request body too large")
    except Exception:  # the client vanished mid-body, or sent a body that cannot be read
        return _plain(400, "unreadable request body")
    if not body:
        return []
    ctype = request.content_type
    if ctype not in ("application/x-www-form-urlencoded", "application/octet-stream"):
        return _plain(400, "expected an application/x-www-form-urlencoded body")
    try:
        text = body.decode("utf-8")
        if _BAD_ESCAPE.search(text):
            raise ValueError("bad percent escape")
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        return _plain(400, "malformed form body")


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


async def handle_call(request: web.Request) -> web.StreamResponse:
    app = request.app
    call: CallState | None = app[CALLS].get(request.match_info["token"])
    if call is None:
        return _plain(404, "not found")
    if request.method != "POST":
        return web.Response(status=405, text="method not allowed\n", headers={"Allow": "POST"})
    fields = await _form(request)
    if isinstance(fields, web.Response):
        return fields
    config = app[CONFIG]
    if not _signed(request, config, fields):
        return _plain(403, "invalid signature")
    if call.ended:
        return _plain(410, "this call is over")
    form = dict(fields)
    tail = request.match_info.get("tail", "")
    if tail == "/status":
        return _status(call, form)
    sid = form.get("CallSid")
    if sid and call.call_sid and sid != call.call_sid:
        return _plain(410, "not this call")
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
    """The code document, counted against MAX_CODE_READS; the last one offers no repeat."""
    if call.code_reads >= MAX_CODE_READS:
        return _xml(speech.goodbye_document(call.voice, no_more=True))
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
            if status in FINAL_STATUSES:
                try:
                    call.duration = int(form.get("CallDuration", ""))
                except ValueError:
                    pass
            call.set_status(status, seq)
    return web.Response(status=200)


async def handle_health(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if not secrets.compare_digest(request.match_info["nonce"].encode(), config.health_nonce.encode()):
        return _plain(404, "not found")
    return web.Response(text=f"voice2fa {config.health_nonce}\n")


def make_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[CONFIG] = config
    app[CALLS] = {}
    prefix = config.prefix
    app.router.add_route("*", prefix + "/v/{token}{tail:(/key|/status|/read)?}", handle_call)
    app.router.add_get(prefix + "/health/{nonce}", handle_health)
    return app


def register(app: web.Application, call: CallState) -> None:
    app[CALLS][call.token] = call


def bind(host: str, port: int, what: str = "--listen") -> socket.socket:
    """A listening socket on HOST:PORT, or a ConfigError naming the problem."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"{what} {shown}: cannot resolve {host!r} to an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{what} {shown}: the address is already in use: choose another port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{what} {shown}: {host} is not an address of this machine") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"{what} {shown}: permission denied: use a port above 1023") from None
        raise ConfigError(f"{what} {shown}: cannot listen there ({exc.strerror})") from None
    sock.setblocking(False)
    return sock


def quiet_logger() -> logging.Logger:
    """aiohttp logs a traceback at ERROR for every malformed HTTP request it answers 400; a
    server facing the internet must not print those. An unregistered logger that drops them."""
    return logging.Logger("voice2fa.webhook", level=logging.CRITICAL + 1)


class Server:
    """The app served on an already bound socket with AppRunner/SockSite; an async context
    manager that stops listening on exit, whatever the outcome."""

    def __init__(self, app: web.Application, sock: socket.socket) -> None:
        self.app = app
        self.sock = sock
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Server:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, logger=quiet_logger())
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, self.sock).start()
        except BaseException:
            await self._runner.cleanup()
            self.sock.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.sock.close()
