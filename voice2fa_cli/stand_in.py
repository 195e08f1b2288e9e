"""The edge that chooses `--sandbox`: it starts the platform's stand-in (voice2fa_cli.sandbox)
and hands its URL and credentials to the same code path as a real Space. `flow` and `serve`
never import the sandbox; `send --sandbox` and `serve --sandbox` come through here.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from voice2fa_cli import config
from voice2fa_cli.web.server import local_url

if TYPE_CHECKING:
    from voice2fa_cli.flow import Reporter, SendOptions, SendResult
    from voice2fa_cli.sandbox import Scenario
    from voice2fa_cli.voice.call import CallState


class Platform(Protocol):
    """What the real code path needs of a running stand-in."""

    url: str  # its API's base, http:// on loopback
    project: str
    token: str
    caller: str | None
    signing_key: str | None


def platform(on_heard: Callable[[str, list[str]], None] | None = None,
             ) -> contextlib.AbstractAsyncContextManager[Platform]:
    """A stand-in of the platform, served on loopback while the context lasts; `on_heard` gets
    each call's sid and what its simulated callee heard."""
    from voice2fa_cli.sandbox import SANDBOX_CALLER, Sandbox, SimCall

    def heard(sim: SimCall, lines: list[str]) -> None:
        if on_heard is not None:
            on_heard(sim.sid, lines)

    return Sandbox(caller=SANDBOX_CALLER, on_heard=heard)


def settings(sandbox: Platform, env: Mapping[str, str], sock: socket.socket | None, ring_timeout: int | None = None,
             max_calls_per_hour: int = config.Settings.max_calls_per_hour, delivery: str = "webhook"
             ) -> config.Settings:
    """Settings that point the real code path at a running stand-in: its API, its credentials
    and signing key, the webhook served on `sock` and reached at its local URL (the inline
    delivery: no socket); the store and the timing as the environment says."""
    from voice2fa_cli.sandbox import SANDBOX_CALLER

    return config.Settings(
        space=sandbox.url,
        project=sandbox.project,
        token=sandbox.token,
        caller=sandbox.caller or SANDBOX_CALLER,
        signing_key=sandbox.signing_key,
        public_url=local_url(sock) if sock is not None else "",
        listen=config.Listen(*sock.getsockname()[:2]) if sock is not None else config.Listen("127.0.0.1", 0),
        state_dir=config.state_dir(env),
        timing=config.timing(env, ring_timeout),
        max_calls_per_hour=max_calls_per_hour,
        allowed_number_types=config.allowed_number_types(env),
        store=config.store_spec(env),
        delivery=delivery,
        max_price_per_minute=config.max_price_per_minute(env),
    )


async def send(env: Mapping[str, str], options: SendOptions, reporter: Reporter, listen: config.Listen,
               ring_timeout: int | None = None, scenario: Scenario | None = None,
               delivery: str = "webhook", on_call: Callable[[CallState], None] | None = None) -> SendResult:
    """`send --sandbox`: one simulated call through an in-process stand-in; nothing is dialed
    (the inline delivery: nothing listens either)."""
    from voice2fa_cli import flow
    from voice2fa_cli.sandbox import SANDBOX_CALLER, Sandbox, SimCall
    from voice2fa_cli.web.server import bind

    live: list[CallState] = []  # the call's state, once flow has made it

    def made(call: CallState) -> None:
        live.append(call)
        if on_call is not None:
            on_call(call)

    def heard(_sim: SimCall, lines: list[str]) -> None:
        if live:
            live[0].note_heard(lines)

    sandbox = Sandbox(caller=SANDBOX_CALLER, on_heard=heard)
    if scenario is not None:
        sandbox.scenario = scenario
    sock = bind(listen.host, listen.port) if delivery == "webhook" else None
    try:
        async with sandbox:
            run = settings(sandbox, env, sock, ring_timeout, delivery=delivery)
            return await flow.send(run, options, reporter, sandbox=True, sock=sock, on_call=made)
    finally:
        if sock is not None:
            sock.close()
