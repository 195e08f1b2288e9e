"""A hardened aiohttp server for the package's apps (the call webhook, serve's API): bound by
`bind` to a socket with a clear error for every address that cannot be used, served with time
limits on a request's headers and body and on idle connections, a cap on open connections (the
oldest connection with no request under way makes room for a new one), the open-file limit
raised to its maximum, and no traceback from asyncio or aiohttp on the terminal.

An app states its limits under LIMITS (the defaults otherwise) and wraps each route handler in
`in_handler`, so that a connection in a handler is never closed to make room.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from voice2fa_cli.errors import ConfigError, Problem


@dataclass(frozen=True)
class Limits:
    """How long a connection may take and how many may be open. The platform's own webhook
    timeouts are 2 s to connect and 5 s to read, and it sends a whole request at once."""

    idle: float = 5.0  # a connection with no request under way: kept alive, or never used
    head: float = 5.0  # from a request's first byte to the end of its headers
    body: float = 5.0  # reading a request's body
    connections: int = 1000  # open at most (fewer when the open-file limit leaves less room)
    fd_reserve: int = 64  # descriptors left for everything else: the store, the API, the sandbox


LIMITS = web.AppKey("limits", Limits)


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


def local_url(sock: socket.socket) -> str:
    """The http:// URL that reaches a bound loopback or wildcard socket from this machine."""
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return f"http://[{'::1' if host == '::' else host}]:{port}"
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


def quiet_logger() -> logging.Logger:
    """aiohttp logs a traceback at ERROR for every malformed HTTP request it answers 400; a
    server facing the internet must not print those. An unregistered logger that drops them."""
    return logging.Logger("voice2fa.web", level=logging.CRITICAL + 1)


IDLE, HEAD, BUSY = 0, 1, 2  # a connection's phase: no request under way, headers coming, in a handler
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
MIN_CONNECTIONS = 16


class Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, its deadline and its place in the pool
    outside. Only the public asyncio.Protocol interface is used on either side."""

    __slots__ = ("deadline", "inner", "phase", "pool", "transport")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.inner: asyncio.Protocol | None = None  # made once admitted
        self.transport: asyncio.Transport | None = None
        self.phase = IDLE
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
        if self.phase == IDLE:  # a request begins: its headers have until the deadline
            self.phase = HEAD
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
        self.phase = BUSY
        self.deadline += self.pool.limits.body

    def idle(self) -> None:
        self.phase = IDLE
        self.deadline = self.pool.clock + self.pool.limits.idle
        self.pool.touch(self)


class Pool:
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
        self.open: dict[Connection, None] = {}
        self.now = asyncio.get_running_loop().time
        self.clock = self.now()
        self.closed_for_room = 0
        self.refused = 0
        self.expired = 0
        tick = min(limits.idle, limits.head, limits.body) / 10
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(min(max(tick, 0.02), 0.5)))

    def __call__(self) -> Connection:
        return Connection(self)

    def admit(self, conn: Connection) -> bool:
        if len(self.open) >= self.capacity:
            self.on_full()
            victim = next((c for c in self.open if c.phase != BUSY), None)
            if victim is None:
                self.refused += 1
                return False
            self.closed_for_room += 1
            self.close(victim)
        self.open[conn] = None
        return True

    def touch(self, conn: Connection) -> None:
        if self.open.pop(conn, False) is None:
            self.open[conn] = None

    def discard(self, conn: Connection) -> None:
        self.open.pop(conn, None)

    def close(self, conn: Connection) -> None:
        self.open.pop(conn, None)
        if conn.transport is not None:
            conn.transport.abort()

    def shed(self, count: int) -> None:
        """Out of descriptors: close up to `count` of the least recently active idle connections."""
        for conn in [c for c in self.open if c.phase != BUSY][:count]:
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


def in_handler(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """The route handler, telling the request's connection (when served by Server) that a
    handler runs, and when it is done. (A wrapper per route rather than a middleware: cheaper.
    Requests no route matches are answered at once and count as still reading their headers.)"""

    async def in_handler(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        conn = transport.get_protocol() if transport is not None else None
        if type(conn) is not Connection:
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


class Quiet:
    """While serving: no traceback from asyncio or aiohttp ever reaches the terminal. Running out
    of open files (accept failing with EMFILE, in a flood) and hitting the connection cap are one
    warning line each; everything else is a debug line (shown with -v), never a traceback."""

    LOGGERS = ("asyncio", "aiohttp")

    def __init__(self, reporter, file_limit: int | None, name: str = "webhook") -> None:
        self.reporter = reporter
        self.name = name
        self.file_limit = file_limit
        self.warned: set[str] = set()
        self.pool: Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None

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
            f"the {self.name} has {capacity} connections open (a flood?): idle and slow ones are closed to make room",
        )

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES:
            limit = f" (limit {self.file_limit})" if self.file_limit else ""
            self.warn_once(
                "files",
                f"the {self.name} ran out of open files{limit}: new connections wait while idle ones are closed",
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
    the connection cap from the app's LIMITS."""

    BACKLOG = 128  # also how many sockets asyncio accepts in a row (see connection_capacity)

    def __init__(self, app: web.Application, sock: socket.socket, reporter=None, name: str = "webhook") -> None:
        self.app = app
        self.name = name  # in the warnings: "the webhook has 1000 connections open …"
        self.sock = sock
        self.reporter = reporter
        self.pool: Pool | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._quiet: Quiet | None = None

    async def __aenter__(self) -> Server:
        loop = asyncio.get_running_loop()
        limits = self.app.get(LIMITS, Limits())
        file_limit = raise_open_file_limit()
        self._quiet = Quiet(self.reporter, file_limit, self.name)
        self._quiet.install(loop)
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, logger=quiet_logger(),
            keepalive_timeout=limits.idle, lingering_time=limits.body,
        )
        try:
            await self._runner.setup()
            capacity = connection_capacity(limits, file_limit, _descriptors_in_use(), self.BACKLOG)
            protocol = self._runner.server
            if protocol is None:
                raise RuntimeError("the app runner has no server after setup()")
            self.pool = Pool(limits, capacity, protocol, self._quiet.full)
            self._quiet.pool = self.pool
            self._listener = await loop.create_server(self.pool, sock=self.sock, backlog=self.BACKLOG)
        except BaseException:
            await self._close()
            raise
        if file_limit is not None:
            self._quiet.debug(f"{self.name}: at most {capacity} connections (open-file limit {file_limit})")
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
