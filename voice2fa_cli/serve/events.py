"""Status events for an application: each status change of a verification (pending with its
call's outcome, approved, canceled, max_attempts_reached, expired) posted to the service's
callback URL as a form, signed as Twilio signs its webhooks (X-Twilio-Signature:
base64(HMAC-SHA1(secret, url + the fields sorted by name, each name then value))) under the
service's callback secret, which the official SDKs' RequestValidator checks. Never the code.

Retried CALLBACK_TRIES times with exponential backoff until a 2xx answer; each try bounded. A
callback URL reaches only public addresses unless the service allows private ones: the host's
addresses are resolved and filtered at every connection (a name that resolves to loopback, the
local network or link-local is refused, whatever it resolved to when the service was made)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from voice2fa_cli.serve import records, shapes
from voice2fa_cli.signalwire import signature
from voice2fa_cli.signalwire.client import describe

if TYPE_CHECKING:
    from voice2fa_cli.serve.log import Log
    from voice2fa_cli.stores.base import AsyncSessionStore, Record

CALLBACK_TRIES = 5
CALLBACK_BACKOFF = 1.0  # seconds before the second try; doubled after each failure
CALLBACK_TIMEOUT = 5.0  # each try
SIGNATURE_HEADER = "X-Twilio-Signature"


async def callback_secret(creds: AsyncSessionStore, service_sid: str) -> str:
    """The service's callback secret (derived from the store key: every instance has it, and
    nothing stores it)."""
    return records.callback_secret(await creds.derive_key(records.callback_label(service_sid)))


class PrivateAddress(OSError):
    """A callback host that resolves to no public address (never retried)."""


def _public_resolver() -> Any:
    from aiohttp.abc import AbstractResolver
    from aiohttp.resolver import DefaultResolver

    class PublicResolver(AbstractResolver):
        """The host's addresses that are global; none: the connection is refused."""

        def __init__(self) -> None:
            self.inner = DefaultResolver()

        async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
            found = [a for a in await self.inner.resolve(host, port, family)
                     if ipaddress.ip_address(a["host"]).is_global]
            if not found:
                raise PrivateAddress(f"{host} resolves to no public address")
            return found

        async def close(self) -> None:
            await self.inner.close()

    return PublicResolver()


class Events:
    def __init__(self, creds: AsyncSessionStore, log: Log, *, tries: int = CALLBACK_TRIES,
                 backoff: float = CALLBACK_BACKOFF, timeout: float = CALLBACK_TIMEOUT) -> None:
        self.creds = creds
        self.log = log
        self.tries, self.backoff, self.timeout = tries, backoff, timeout
        self.tasks: set[asyncio.Task[None]] = set()
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # private allowed → its session

    def _session(self, private: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(private)
        if session is None:
            connector = aiohttp.TCPConnector(resolver=None if private else _public_resolver(), limit=32)
            session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._sessions[private] = session
        return session

    def post(self, service: records.Service, verification: Record, status: str, **call: object) -> None:
        """Post the event in the background (nothing when the service names no callback URL)."""
        if service.callback_url is None:
            return
        fields = {"VerificationSid": verification["sid"], "ServiceSid": verification["service_sid"],
                  "AccountSid": verification["account_sid"], "To": verification["to"], "Channel": "call",
                  "Status": status, "DateUpdated": shapes.iso(time.time()),
                  **{name: "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
                     for name, value in call.items()}}
        task = asyncio.create_task(self._deliver(service, fields))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, service: records.Service, fields: dict[str, str]) -> None:
        url = service.callback_url
        assert url is not None
        secret = await callback_secret(self.creds, service.sid)
        headers = {SIGNATURE_HEADER: signature.compute(secret, url, fields.items())}
        private = service.callback_private
        problem = "not tried"
        host = urlsplit(url).hostname or ""
        for attempt in range(self.tries):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            if not private and not records.public_host(host):
                problem = f"{host} is not a public address"
                break
            try:
                async with self._session(private).post(url, data=fields, headers=headers,
                                                       allow_redirects=False) as response:
                    if 200 <= response.status < 300:
                        self.log.write("callback", verification=fields["VerificationSid"], status=fields["Status"],
                                       answer=response.status, tries=attempt + 1)
                        return
                    problem = f"HTTP {response.status}"
            except Exception as exc:  # a timeout, a refused connection, an aiohttp error: told, never raised
                cause = getattr(exc, "os_error", None)  # aiohttp's connector error wraps the resolver's
                if isinstance(cause, PrivateAddress):
                    problem = str(cause)
                    break
                # in a few words, never the URL (its query may carry the application's secret)
                problem = "no answer in time" if isinstance(exc, asyncio.TimeoutError) else (
                    describe(exc) if isinstance(exc, aiohttp.ClientError) else type(exc).__name__)
        self.log.write("callback", verification=fields["VerificationSid"], status=fields["Status"],
                       error=f"not delivered after {attempt + 1} {'try' if attempt == 0 else 'tries'}: {problem}")

    async def close(self, bound: float) -> None:
        """Let the events in flight go out (up to `bound` s), then stop."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=bound)
        for task in set(self.tasks):
            task.cancel()
        for session in self._sessions.values():
            with contextlib.suppress(Exception):
                await session.close()
