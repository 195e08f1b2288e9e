"""`voice2fa sandbox`: the stand-in as a server in the foreground, for any client to be pointed
at (an official SDK, your own code). SIGINT and SIGTERM stop it cleanly."""

from __future__ import annotations

from collections.abc import Callable

from voice2fa_cli.sandbox import platform
from voice2fa_cli.sandbox.server import SANDBOX_CALLER, Sandbox, Scenario, SimCall
from voice2fa_cli.signals import until_stopped


def settings(sb: Sandbox) -> dict[str, str]:
    """What points a client at the sandbox, as the variables a real account would set."""
    return {
        "SIGNALWIRE_SPACE": sb.url,
        "SIGNALWIRE_PROJECT": sb.project,
        "SIGNALWIRE_TOKEN": sb.token,
        "SIGNALWIRE_NUMBER": sb.caller or SANDBOX_CALLER,
        "SIGNALWIRE_SIGNING_KEY": sb.signing_key or "",
    }


def api_base(sb: Sandbox) -> str:
    return f"{sb.url}{platform.API_ROOT}"


async def serve(
    host: str,
    port: int,
    scenario: Scenario,
    *,
    signed: bool,
    ready: Callable[[Sandbox], None],
    say: Callable[[str], None],
) -> None:
    """Run until SIGINT or SIGTERM; `ready` is called once it listens, `say` gets one line per
    event of every call (its status, what the callee heard)."""
    def on_status(call: SimCall) -> None:
        say(f"call {call.sid} to {call.to}: {call.status}")

    def on_heard(call: SimCall, lines: list[str]) -> None:
        for line in lines:
            say(f"call {call.sid} callee heard: {line}")

    sb = Sandbox(caller=SANDBOX_CALLER, scenario=scenario, signing_key="" if signed else None,
                 on_status=on_status, on_heard=on_heard)
    try:
        with until_stopped() as stop:
            await sb.start(host, port)
            ready(sb)
            await stop.wait()
    finally:
        await sb.close()
