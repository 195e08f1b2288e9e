"""The embedded callback server: an aiohttp app from a factory, its state under AppKeys.

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

The server (Server) also defends itself against being starved: time limits on a request's
headers and body and on idle connections, a cap on open connections (the oldest connection with
no request under way makes room for a new one), the open-file limit raised to its maximum, and
no traceback from asyncio or aiohttp on the terminal.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from voice2fa_cli import signature, speech
from voice2fa_cli.errors import ConfigError, Problem
from voice2fa_cli.signalwire import FINAL_STATUSES

MAX_BODY = 64 * 1024
MAX_FIELDS = 200
MAX_HISTORY = 64
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
GATE_TRIES = 3
# Code documents served per call: the first reading and at most two repeats (the callee's keys;
# a retry of the platform counts too). Beyond it, even a captured signed request replayed gets 410.
MAX_CODE_READS = 3
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


@dataclass(frozen=True)
class Limits:
    """How long a connection may take and how many may be open. The platform's own webhook
    timeouts are 2 s to connect and 5 s to read, and it sends a whole request at once."""

    idle: float = 5.0  # a connection with no request under way: kept alive, or never used
    head: float = 5.0  # from a request's first byte to the end of its headers
    body: float = 5.0  # reading a request's body
    connections: int = 1000  # open at most (fewer when the open-file limit leaves less room)
    fd_reserve: int = 64  # descriptors left for everything else: the store, the API, the sandbox


@dataclass(frozen=True)
class ServerConfig:
    public_url: str  # as configured, no trailing slash
    signing_key: str | None = field(repr=False)
    health_nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    # The health route's proof: HMAC-SHA256 of the nonce under a secret that never leaves this
    # process, so that only this run's server can answer the preflight (not an echo of the path).
    health_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    limits: Limits = Limits()
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


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=XML, charset="utf-8")


async def _form(request: web.Request, limit: float) -> list[tuple[str, str]] | web.Response:
    """The form fields, or the error response (413 / 408 / 400)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _plain(413, "request body too large")
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        return _plain(400, "compressed request bodies are not accepted")  # SignalWire sends plain forms
    try:
        if request.content.is_eof():  # the whole body came with the headers (the platform's case)
            body = await request.read()
        else:
            body = await asyncio.wait_for(request.read(), limit)
    except asyncio.TimeoutError:
        response = _plain(408, "the request body did not arrive in time")
        response.force_close()
        return response
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


class SharedCalls(Protocol):
    """Where the calls' state lives when several servers answer the platform (voice2fa serve on
    a shared store): every request loads the call's state, and saves it before answering."""

    async def load(self, token: str) -> tuple[CallState, int] | None: ...
    async def save(self, token: str, call: CallState, rev: int) -> bool: ...
    def merge(self, token: str, seen: CallState) -> None: ...


SHARED = web.AppKey("shared", SharedCalls)
SHARED_TRIES = 5


async def handle_call(request: web.Request) -> web.StreamResponse:
    app = request.app
    token = request.match_info["token"]
    shared = app.get(SHARED)
    call: CallState | None = app[CALLS].get(token)
    loaded = None
    if shared is not None:
        loaded = await shared.load(token)
        if loaded is None:
            return _plain(404, "not found")
        call = loaded[0]
    if call is None:
        return _plain(404, "not found")
    if request.method != "POST":
        return web.Response(status=405, text="method not allowed\n", headers={"Allow": "POST"})
    config = app[CONFIG]
    fields = await _form(request, config.limits.body)
    if isinstance(fields, web.Response):
        return fields
    if not _signed(request, config, fields):
        return _plain(403, "invalid signature")
    form = dict(fields)
    tail = request.match_info.get("tail", "")
    if shared is None:
        return _respond(call, config, form, tail)
    for _ in range(SHARED_TRIES):
        call, rev = loaded
        response = _respond(call, config, form, tail)
        if await shared.save(token, call, rev):
            shared.merge(token, call)
            return response
        loaded = await shared.load(token)  # another server changed the call meanwhile: again
        if loaded is None:
            return _plain(404, "not found")
    return _plain(503, "the call's state kept changing: try again")


def _respond(call: CallState, config: ServerConfig, form: dict[str, str], tail: str) -> web.Response:
    """The answer to a call route's request, from the call's state (which it updates)."""
    if tail == "/status":
        return _status(call, form)  # 200 for as long as the server runs, the call over or not
    if call.over:
        return _plain(410, "this call is over")
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
    """The code document, counted against MAX_CODE_READS (every way to the code comes here); the
    last one offers no repeat, and beyond it the answer is 410."""
    if call.code_reads >= MAX_CODE_READS:
        return _plain(410, "the code has been read enough times")
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
        return _plain(404, "not found")
    return web.Response(body=health_answer(config), content_type="text/plain")


def make_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[CONFIG] = config
    app[CALLS] = {}
    prefix = config.prefix
    app.router.add_route("*", prefix + "/v/{token}{tail:(/key|/status|/read)?}", _in_handler(handle_call))
    app.router.add_get(prefix + "/health/{nonce}", _in_handler(handle_health))
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
            raise ConfigError(f"{what} {shown}: the address is already in use: choose another port",
                              kind=Problem.ADDRESS_IN_USE) from None
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


# --- the server: time limits, a cap on connections, no tracebacks ---------------------------------

_IDLE, _HEAD, _BUSY = 0, 1, 2  # a connection's phase: no request under way, headers coming, in a handler
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
MIN_CONNECTIONS = 16


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, its deadline and its place in the pool
    outside. Only the public asyncio.Protocol interface is used on either side."""

    __slots__ = ("pool", "inner", "transport", "phase", "deadline")

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.inner: asyncio.Protocol | None = None  # made once admitted
        self.transport: asyncio.Transport | None = None
        self.phase = _IDLE
        self.deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.pool.admit(self):
            transport.abort()  # type: ignore[attr-defined]  # at the cap, every connection busy: closed at once
            return
        self.deadline = self.pool.clock + self.pool.limits.idle
        self.inner = self.pool.factory()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.phase == _IDLE:  # a request begins: its headers have until the deadline
            self.phase = _HEAD
            self.deadline = self.pool.clock + self.pool.limits.head
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.discard(self)
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def busy(self) -> None:
        """The headers are in and a handler runs: the request has its body's time on top (the
        handler limits its own body read; this is a backstop)."""
        self.phase = _BUSY
        self.deadline += self.pool.limits.body

    def idle(self) -> None:
        self.phase = _IDLE
        self.deadline = self.pool.clock + self.pool.limits.idle
        self.pool.touch(self)


class _Pool:
    """The open connections, least recently active first, and the protocol factory handed to
    loop.create_server. At the cap, the least recently active connection with no request under
    way is closed to make room; when every one is in a handler, the new one is closed at once.
    A sweep closes every connection past its deadline. Deadlines are reckoned on `clock`, the
    loop's time as of the last sweep (a tick of at most 0.5 s, a tenth of a limit or less): no
    clock read per request."""

    def __init__(self, limits: Limits, capacity: int, factory: Callable[[], asyncio.Protocol],
                 on_full: Callable[[], None]) -> None:
        self.limits = limits
        self.capacity = capacity
        self.factory = factory
        self.on_full = on_full
        self.open: dict[_Connection, None] = {}
        self.now = asyncio.get_running_loop().time
        self.clock = self.now()
        self.closed_for_room = 0
        self.refused = 0
        self.expired = 0
        tick = min(limits.idle, limits.head, limits.body) / 10
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(min(max(tick, 0.02), 0.5)))

    def __call__(self) -> _Connection:
        return _Connection(self)

    def admit(self, conn: _Connection) -> bool:
        if len(self.open) >= self.capacity:
            self.on_full()
            victim = next((c for c in self.open if c.phase != _BUSY), None)
            if victim is None:
                self.refused += 1
                return False
            self.closed_for_room += 1
            self.close(victim)
        self.open[conn] = None
        return True

    def touch(self, conn: _Connection) -> None:
        if self.open.pop(conn, False) is None:
            self.open[conn] = None

    def discard(self, conn: _Connection) -> None:
        self.open.pop(conn, None)

    def close(self, conn: _Connection) -> None:
        self.open.pop(conn, None)
        if conn.transport is not None:
            conn.transport.abort()

    def shed(self, count: int) -> None:
        """Out of descriptors: close up to `count` of the least recently active idle connections."""
        for conn in [c for c in self.open if c.phase != _BUSY][:count]:
            self.close(conn)

    async def _sweep(self, tick: float) -> None:
        while True:
            await asyncio.sleep(tick)
            self.clock = now = self.now()
            for conn in [c for c in self.open if c.deadline <= now]:
                self.expired += 1
                self.close(conn)

    def close_all(self) -> None:
        self._sweeper.cancel()
        for conn in list(self.open):
            self.close(conn)


def _in_handler(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """The route handler, telling the request's connection (when served by Server) that a
    handler runs, and when it is done. (A wrapper per route rather than a middleware: cheaper.
    Requests no route matches are answered at once and count as still reading their headers.)"""

    async def in_handler(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        conn = transport.get_protocol() if transport is not None else None
        if type(conn) is not _Connection:
            return await handler(request)
        conn.busy()
        try:
            return await handler(request)
        finally:
            conn.idle()

    return in_handler


def raise_open_file_limit() -> int | None:
    """Raise the soft limit on open files to the hard limit; the limit now in force (None: unknown)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    for target in ([hard] if hard != resource.RLIM_INFINITY else []) + [1 << 16, 10240]:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            continue
    return soft


def _descriptors_in_use() -> int:
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path))
        except OSError:
            continue
    return 0


def connection_capacity(limits: Limits, file_limit: int | None, in_use: int, backlog: int) -> int:
    """How many connections may be open: the configured cap, less when the open-file limit
    leaves less room. Left free: the reserve (the store, the platform's API, the sandbox) and
    one backlog's worth, as asyncio accepts up to `backlog` sockets in a row before any of them
    reaches the pool."""
    if file_limit is None:
        return limits.connections
    return max(MIN_CONNECTIONS, min(limits.connections, file_limit - in_use - limits.fd_reserve - backlog))


class _Quiet:
    """While serving: no traceback from asyncio or aiohttp ever reaches the terminal. Running out
    of open files (accept failing with EMFILE, in a flood) and hitting the connection cap are one
    warning line each; everything else is a debug line (shown with -v), never a traceback."""

    LOGGERS = ("asyncio", "aiohttp")

    def __init__(self, reporter, file_limit: int | None) -> None:
        self.reporter = reporter
        self.file_limit = file_limit
        self.warned: set[str] = set()
        self.pool: _Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_error)
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self._log_record)

    def uninstall(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self._log_record)
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous)
            self._loop = None

    def warn_once(self, kind: str, text: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            if self.reporter is not None:
                self.reporter.warn(text)

    def debug(self, text: str) -> None:
        if self.reporter is not None:
            self.reporter.debug(text)

    def full(self) -> None:
        capacity = self.pool.capacity if self.pool is not None else "?"
        self.warn_once(
            "full",
            f"the webhook has {capacity} connections open (a flood?): idle and slow ones are closed to make room",
        )

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES:
            limit = f" (limit {self.file_limit})" if self.file_limit else ""
            self.warn_once(
                "files",
                f"the webhook ran out of open files{limit}: new connections wait while idle ones are closed",
            )
            if self.pool is not None:
                self.pool.shed(MIN_CONNECTIONS)
            return
        kind = f" ({type(exc).__name__})" if exc is not None else ""
        self.debug(f"event loop: {context.get('message', 'error')}{kind}")

    def _log_record(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.debug(f"{record.name}: {record.getMessage()}")
        return False  # never printed (and never a traceback)


class Server:
    """The app served on an already bound socket (AppRunner for the app, loop.create_server with
    a connection pool in front of aiohttp's protocol); an async context manager that stops
    listening on exit, whatever the outcome. `reporter` (warn/debug) hears about floods.

    On start it raises the soft open-file limit to the hard limit, and sets the time limits and
    the connection cap from the app's ServerConfig.limits."""

    BACKLOG = 128  # also how many sockets asyncio accepts in a row (see connection_capacity)

    def __init__(self, app: web.Application, sock: socket.socket, reporter=None) -> None:
        self.app = app
        self.sock = sock
        self.reporter = reporter
        self.pool: _Pool | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._quiet: _Quiet | None = None

    async def __aenter__(self) -> Server:
        loop = asyncio.get_running_loop()
        config = self.app.get(CONFIG)
        limits = config.limits if config is not None else Limits()
        file_limit = raise_open_file_limit()
        self._quiet = _Quiet(self.reporter, file_limit)
        self._quiet.install(loop)
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, logger=quiet_logger(),
            keepalive_timeout=limits.idle, lingering_time=limits.body,
        )
        try:
            await self._runner.setup()
            capacity = connection_capacity(limits, file_limit, _descriptors_in_use(), self.BACKLOG)
            self.pool = _Pool(limits, capacity, self._runner.server, self._quiet.full)
            self._quiet.pool = self.pool
            self._listener = await loop.create_server(self.pool, sock=self.sock, backlog=self.BACKLOG)
        except BaseException:
            await self._close()
            raise
        if file_limit is not None:
            self._quiet.debug(f"webhook: at most {capacity} connections (open-file limit {file_limit})")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self.pool is not None:
            self.pool.close_all()
        try:
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            self.sock.close()
            if self._quiet is not None:
                self._quiet.uninstall()
