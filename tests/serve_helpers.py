"""`voice2fa serve` in a thread for the tests (sandbox mode by default), the official `twilio`
client pointed at it, and the fixtures the serve tests share: a service and an API key in the
store, a server, the SDK's Verify v2 service."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient

from tests.helpers import FAST
from voice2fa_cli.serve import records
from voice2fa_cli.serve.log import Log
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec
from voice2fa_cli.web.server import bind


class ServeThread:
    """`Serving` (sandbox mode) on its own event loop in a thread; its log in a StringIO."""

    def __init__(self, env: dict, *, api_sock=None, webhook_sock=None, sandbox: bool = True, inline: bool = False,
                 **kwargs) -> None:
        from voice2fa_cli.serve.server import Serving

        self.loop = asyncio.new_event_loop()
        self.log = io.StringIO()
        self.serving = None
        ready = threading.Event()
        failure: list = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start():
                self.serving = Serving(env, api_sock=api_sock or bind("127.0.0.1", 0),
                                       webhook_sock=None if inline else webhook_sock or bind("127.0.0.1", 0),
                                       sandbox=sandbox, log=Log(self.log),
                                       delivery="inline" if inline else "webhook", **kwargs)
                await self.serving.__aenter__()

            try:
                self.loop.run_until_complete(start())
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]

    @property
    def api_url(self) -> str:
        return self.serving.api_url

    @property
    def core(self):
        return self.serving.core

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def heard(self, count: int = 1, timeout: float = 20.0) -> str:
        """The code the callee heard in the newest call, once `count` calls delivered one."""
        deadline = time.monotonic() + timeout
        sb = self.serving.sandbox
        while time.monotonic() < deadline:
            calls = list(sb.calls.values())
            if len(calls) >= count:
                code = sb.heard_code(calls[count - 1].sid)
                if code:
                    return code
            time.sleep(0.02)
        raise AssertionError("the callee heard no code")

    def settle(self, timeout: float = 20.0) -> None:
        """Until no call is in flight."""
        deadline = time.monotonic() + timeout
        while self.core.flights and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.call(self.serving.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


@pytest.fixture
def env(state_dir) -> dict:
    return {"VOICE2FA_STATE_DIR": str(state_dir), **FAST}


@pytest.fixture
def setup(env, state_dir):
    """A service and an API key in the store (as `voice2fa services create` / `keys create` make them)."""
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        service = records.create_service(store, "Acme", records.ServiceOptions(code_length=6, ttl=600))
        key, secret = records.create_key(store, "backend")
    return service, key, secret


@pytest.fixture
def server(env, setup):
    s = ServeThread(env, linger=0.5, drain=5)
    yield s
    s.stop()


def client_for(server: ServeThread, sid: str, secret: str) -> TwilioClient:
    client = TwilioClient(sid, secret, "AC" + "0" * 32)
    client.verify.base_url = server.api_url
    return client


@pytest.fixture
def verify(server, setup):
    service, key, secret = setup
    return client_for(server, key.sid, secret).verify.v2.services(service.sid)


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def twilio_error(call) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as info:
        call()
    return info.value
