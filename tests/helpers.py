"""Helpers for the tests: the sandbox in a background thread, running the installed CLI."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from aiohttp import web

from voice2fa_cli.sandbox import Sandbox, Scenario

CALLER = "+15550100000"
NUMBER = "+15551234567"

# Timings made short through settings (never by sleeping in tests).
FAST = {
    "VOICE2FA_POLL_INTERVAL": "0.2",
    "VOICE2FA_WEBHOOK_GRACE": "1.5",
    "VOICE2FA_API_TIMEOUT": "3",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedSandbox:
    """The sandbox on its own event loop in a daemon thread."""

    def __init__(self, **kwargs) -> None:
        self.loop = asyncio.new_event_loop()
        self.sandbox: Sandbox | None = None
        self._kwargs = kwargs
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                self.sandbox = Sandbox(**self._kwargs)
                await self.sandbox.start()

            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the sandbox did not start")

    def __getattr__(self, name):
        return getattr(self.sandbox, name)

    def set_scenario(self, **kwargs) -> None:
        self.sandbox.scenario = Scenario(**kwargs)

    def wait_code(self, timeout: float = 10.0) -> str:
        """The code the callee heard in the newest call."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.sandbox.heard_code()
            if code:
                return code
            time.sleep(0.01)
        raise AssertionError(f"the callee heard no code: {[c.heard for c in self.sandbox.calls.values()]}")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sandbox.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def voice2fa_command() -> list[str]:
    exe = shutil.which("voice2fa")
    return [exe] if exe else [sys.executable, "-m", "voice2fa_cli"]


def sandbox_code_shown(stderr: str) -> str:
    """The code the sandbox's simulated callee heard, from what `send --sandbox` showed."""
    codes = re.findall(r"the callee heard the code ([0-9 ]+), twice", stderr)
    assert codes, stderr
    return codes[0].replace(" ", "")


def run_cli(args: list[str], env: dict[str, str], input: str | None = "", cwd: Path | None = None, timeout: float = 60):
    """The installed CLI; a --json output is checked against its schema (tests/json_schemas.py)."""
    from tests import json_schemas

    result = subprocess.run(
        voice2fa_command() + args, env=env, input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    json_schemas.check(args, result.stdout)
    return result


class CheckedPopen(subprocess.Popen):
    """A CLI process whose --json output is checked against its schema when it is collected."""

    def __init__(self, args: list[str], *rest, **kwargs) -> None:
        self.cli_args = args
        super().__init__(voice2fa_command() + args, *rest, **kwargs)

    def communicate(self, *args, **kwargs):
        from tests import json_schemas

        out, err = super().communicate(*args, **kwargs)
        if self.returncode is not None and out is not None and self.returncode >= 0:
            json_schemas.check(self.cli_args, out)
        return out, err


def start_cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    return CheckedPopen(
        args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )


def digit_runs(root: ET.Element) -> list[str]:
    """Runs of consecutive single-digit <Say>s (at any depth; a <Pause> between groups of
    digits does not end a run), as strings."""
    runs, current = [], ""
    for child in root.iter():
        if child.tag == "Say" and re.fullmatch(r"[0-9]", (child.text or "").strip()):
            current += child.text.strip()
        elif child.tag == "Pause" or child is root:
            continue
        else:
            if current:
                runs.append(current)
            current = ""
    if current:
        runs.append(current)
    return runs


@contextlib.asynccontextmanager
async def serving(app: web.Application):
    """An aiohttp app on 127.0.0.1 (a free port) for the duration; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def serve_process(env: dict[str, str], timeout: float = 60):
    """A real `voice2fa serve --sandbox` process on free loopback ports: yields its "started"
    log line and a dict that gets `out`, `err` and `returncode` once it was sent SIGTERM on exit."""
    import json
    import signal

    proc = subprocess.Popen(voice2fa_command() + ["serve", "--sandbox", "--listen-api", "127.0.0.1:0",
                                                  "--listen-metrics", "127.0.0.1:0", "--drain", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done: dict = {}
    try:
        started = json.loads(proc.stderr.readline())
        yield started, done
        proc.send_signal(signal.SIGTERM)
        done["out"], done["err"] = proc.communicate(timeout=timeout)
        done["returncode"] = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
