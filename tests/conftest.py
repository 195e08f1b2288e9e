"""Fixtures: a clean environment per test, a state dir, and the sandbox (the SignalWire
stand-in, a real aiohttp server on 127.0.0.1) in a background thread, so that the installed
`voice2fa` can be driven as a subprocess against it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import CALLER, FAST, ThreadedSandbox, free_port
from tests.redis_server import REDIS_SERVER, RedisServer


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No SIGNALWIRE_* / VOICE2FA_* from the machine, no .env: each test starts from nothing."""
    for name in list(os.environ):
        if name.startswith(("SIGNALWIRE_", "VOICE2FA_")) or name in ("NO_COLOR",):
            monkeypatch.delenv(name, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("VOICE2FA_STATE_DIR", str(path))
    return path


@pytest.fixture
def sandbox():
    sb = ThreadedSandbox(caller=CALLER)
    yield sb
    sb.stop()


@pytest.fixture
def cli_env(sandbox, state_dir, tmp_path) -> dict[str, str]:
    """Environment for `voice2fa send` against the sandbox, as a real account would be set."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(
        SIGNALWIRE_SPACE=sandbox.url,
        SIGNALWIRE_PROJECT=sandbox.project,
        SIGNALWIRE_TOKEN=sandbox.token,
        SIGNALWIRE_NUMBER=CALLER,
        SIGNALWIRE_SIGNING_KEY=sandbox.signing_key,
        VOICE2FA_PUBLIC_URL=f"http://127.0.0.1:{port}",
        VOICE2FA_LISTEN=f"127.0.0.1:{port}",
        VOICE2FA_STATE_DIR=str(state_dir),
        NO_COLOR="1",
        **FAST,
    )
    return env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server (Debian's package) on a temporary Unix socket for the whole run;
    each test that uses it empties it first (`redis_server.flush()`)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
