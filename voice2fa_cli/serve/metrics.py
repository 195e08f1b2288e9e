"""Prometheus metrics of `voice2fa serve` (prometheus-client, imported only here): calls placed,
codes delivered, checks by outcome, lockouts and refused sends, the webhook's latency. One
registry per server (no global state)."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("voice2fa_calls_placed", "Calls placed (send attempts)", registry=self.registry)
        self.ended = Counter("voice2fa_calls_ended", "Calls followed to their end", registry=self.registry)
        self.codes = Counter("voice2fa_codes_delivered", "Calls that read the code to the callee",
                             registry=self.registry)
        self.checks = Counter("voice2fa_checks", "Verification checks by outcome", ["outcome"], registry=self.registry)
        self.refusals = Counter("voice2fa_refused", "Sends refused by a limit or a lockout", ["reason"],
                                registry=self.registry)
        self.webhook = Histogram(
            "voice2fa_webhook_seconds", "Time to answer the platform's webhook requests",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def placed(self) -> None:
        self.calls.inc()

    def call_ended(self) -> None:
        self.ended.inc()

    def delivered(self) -> None:
        self.codes.inc()

    def checked(self, outcome: str) -> None:
        self.checks.labels(outcome).inc()

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def exposition(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


def observe_webhook(app: web.Application, metrics: Metrics) -> None:
    """Time every webhook request into the latency histogram."""

    @web.middleware
    async def timed(request: web.Request, handler):
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            metrics.webhook.observe(time.perf_counter() - started)

    app.middlewares.append(timed)
