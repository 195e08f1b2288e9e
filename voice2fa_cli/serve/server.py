"""The server: the webhook listener (call routes only, reached by the platform through the public
URL) and the API listener (the API, /healthz and /metrics; loopback by default), one platform
client, many calls at once on one webhook app, each with its own token routes.

serve/core.py holds what the API does (verifications over the store); `Serving` starts and stops it all.
On `stop()` new verifications get 503, the calls in flight get up to `drain` seconds to finish
(then they are hung up and recorded), and both listeners close."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from voice2fa_cli import config, flow, policy, stand_in
from voice2fa_cli.serve.core import CALL_LINGER, Core
from voice2fa_cli.serve.log import Log, ServerReporter
from voice2fa_cli.stores.base import AsyncSessionStore, StoreSpec
from voice2fa_cli.stores.onloop import StoreThread, open_async_store
from voice2fa_cli.web.server import bind, local_url

if TYPE_CHECKING:
    from voice2fa_cli.web.server import Limits

STORE_WORKERS = 4  # threads working a shared (Redis Cluster) store at once; SQLite always gets one


class Serving:
    """Everything `voice2fa serve` runs, as an async context manager. Sockets bound by the caller
    (so that bad addresses fail before anything starts)."""

    def __init__(self, env: Mapping[str, str], *, api_sock: socket.socket, webhook_sock: socket.socket | None,
                 sandbox: bool, log: Log, public_url: str | None = None, drain: float = 30.0,
                 preflight: bool = True, linger: float = CALL_LINGER, shared_calls: bool | None = None,
                 limits: Limits | None = None, metrics_sock: socket.socket | None = None,
                 delivery: str | None = None) -> None:
        """`webhook_sock` None: the inline delivery (`delivery`, else VOICE2FA_DELIVERY), which
        has no webhook listener: nothing inbound but the API."""
        self.env = env
        self.api_sock = api_sock
        self.webhook_sock = webhook_sock
        self.sandbox_mode = sandbox
        self.log = log
        self.public_url = public_url
        self.drain_bound = drain
        self.preflight = preflight
        self.linger = linger
        self.shared_calls = shared_calls  # None: with a shared store (Redis)
        self.limits = limits  # web.server.Limits for both listeners (None: the defaults)
        self.sandbox: stand_in.Platform | None = None
        self.core: Core | None = None
        self.delivery = config.delivery(env, delivery)
        if (webhook_sock is None) != (self.delivery == "inline"):
            raise ValueError("a webhook socket is for the webhook delivery, and only for it")
        self.api_url = local_url(api_sock)
        self.webhook_url = local_url(webhook_sock) if webhook_sock is not None else None
        # /metrics on a listener of its own (loopback, any free port, unless the caller bound one)
        self.metrics_sock = metrics_sock if metrics_sock is not None else bind("127.0.0.1", 0)
        self.metrics_url = local_url(self.metrics_sock)
        self._stack = contextlib.AsyncExitStack()

    def _settings(self) -> config.Settings:
        env = self.env
        if self.sandbox is None:
            listen = config.Listen(*self.webhook_sock.getsockname()[:2]) if self.webhook_sock is not None else None
            return config.send_settings(env, public_url=self.public_url,
                                        listen_flag=str(listen) if listen is not None else None,
                                        delivery_flag=self.delivery)
        return stand_in.settings(self.sandbox, env, self.webhook_sock,
                                 max_calls_per_hour=config.max_calls_per_hour(env), delivery=self.delivery)

    async def __aenter__(self) -> Serving:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        from voice2fa_cli.serve import api, metrics
        from voice2fa_cli.signalwire.client import Client
        from voice2fa_cli.voice.webhook import ServerConfig, make_app
        from voice2fa_cli.web.server import Server

        stack = self._stack
        stack.callback(self.api_sock.close)
        if self.webhook_sock is not None:
            stack.callback(self.webhook_sock.close)
        stack.callback(self.metrics_sock.close)
        if self.sandbox_mode:
            self.sandbox = await stack.enter_async_context(stand_in.platform(on_heard=self._heard))
        settings = self._settings()
        spec = config.store_spec(self.env)
        creds = await self._open_store(spec, sandbox=False)
        store = creds
        if self.sandbox_mode:
            store = await self._open_store(spec, sandbox=True)
        registry = metrics.Metrics()
        server_config = ServerConfig(settings.public_url, settings.signing_key)
        if self.limits is not None:
            server_config = ServerConfig(settings.public_url, settings.signing_key, limits=self.limits)
        webhook = None
        calls = None
        inline_client = None
        if self.webhook_sock is None:  # the inline delivery: no webhook app, nothing inbound but the API
            from voice2fa_cli.signalwire.calling import CallingClient

            inline_client = await stack.enter_async_context(
                CallingClient(settings.space, settings.project, settings.token, timeout=settings.timing.api_timeout))
        else:
            webhook = make_app(server_config)
            if self.shared_calls if self.shared_calls is not None else spec.shared:
                from voice2fa_cli.serve.calls import StoredCalls
                from voice2fa_cli.voice.webhook import CALLS, SHARED

                # On a blocking store, the webhook's own threads on the same store: the platform's
                # requests never queue behind the API's work there. The asyncio store is shared.
                hook_store: AsyncSessionStore = store
                if isinstance(store, StoreThread):
                    hook_store = await stack.enter_async_context(store.sibling(STORE_WORKERS))
                calls = await StoredCalls.open(hook_store, webhook[CALLS], ttl=policy.MAX_TTL + policy.HOUR)
                webhook[SHARED] = calls
            metrics.observe_webhook(webhook, registry)
            api.log_requests(webhook, self.log, "webhook")
            await stack.enter_async_context(Server(webhook, self.webhook_sock, ServerReporter(self.log, "webhook")))
        client = await stack.enter_async_context(
            Client(settings.api_base, settings.project, settings.token, timeout=settings.timing.api_timeout)
        )
        self.core = Core(settings, creds, store, client, webhook, self.log, registry, sandbox=self.sandbox_mode,
                         api_url=self.api_url, linger=self.linger, calls=calls, inline=inline_client)
        await self.core.start()
        app = api.make_app(self.core, server_config.limits)
        api.log_requests(app, self.log, "api")
        await stack.enter_async_context(Server(app, self.api_sock, ServerReporter(self.log, "api"), name="API"))
        scrape = api.make_metrics_app(self.core, server_config.limits)
        api.log_requests(scrape, self.log, "metrics")
        await stack.enter_async_context(Server(scrape, self.metrics_sock, ServerReporter(self.log, "metrics"),
                                               name="metrics listener"))
        if self.preflight and not self.sandbox_mode and webhook is not None:
            await flow.preflight(server_config, settings.listen, settings.timing.api_timeout)
        self.log.write("server", event="started", api=self.api_url, metrics=self.metrics_url,
                       webhook=settings.public_url or None, delivery=self.delivery, sandbox=self.sandbox_mode,
                       store=spec.describe())

    def _heard(self, call_sid: str, lines: list[str]) -> None:
        """The stand-in's callee heard `lines` (--sandbox only): to the call's flow, which logs the code."""
        if self.core is not None:
            self.core.heard(call_sid, lines)

    async def _open_store(self, spec: StoreSpec, *, sandbox: bool) -> AsyncSessionStore:
        """On a standalone Redis the asyncio driver; else the store worked from threads (SQLite: one)."""
        store = await open_async_store(spec, sandbox=sandbox, workers=STORE_WORKERS)
        self._stack.push_async_callback(store.aclose)
        return store

    async def stop(self) -> None:
        """Stop taking verifications, let the calls in flight end (up to the bound), close."""
        if self.core is not None:
            self.core.draining = True
            self.log.write("server", event="stopping", calls_in_flight=len(self.core.flights))
            await self.core.drain(self.drain_bound)
        await self._stack.aclose()
        self.log.write("server", event="stopped")

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
