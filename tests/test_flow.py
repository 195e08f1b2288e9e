"""flow.send in process against the sandbox in the same event loop: polling when callbacks are
lost, hanging up when the webhook is never fetched, send limits, countries and lockouts."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers import CALLER, NUMBER, free_port
from voice2fa_cli import flow, phone, sessions, stand_in
from voice2fa_cli.config import Listen, Settings, Timing
from voice2fa_cli.errors import ConfigError, PolicyRefused, ProviderError
from voice2fa_cli.policy import clock_text
from voice2fa_cli.sandbox import Sandbox, Scenario
from voice2fa_cli.stores.onloop import StoreThread
from voice2fa_cli.stores.sqlite import Store


class Recorder:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.warnings: list[str] = []
        self.lines: list[str] = []
        self.debug_lines: list[str] = []

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def debug(self, text: str) -> None:
        self.debug_lines.append(text)

    def step(self, event: str, elapsed: float, detail: str | None = None) -> None:
        self.steps.append(event)

    def heard(self, lines: list[str]) -> None:
        self.lines.extend(lines)


def settings_for(sb: Sandbox, state_dir, **changes) -> Settings:
    port = free_port()
    values = dict(
        space=sb.url, project=sb.project, token=sb.token, caller=CALLER, signing_key=sb.signing_key,
        public_url=f"http://127.0.0.1:{port}", listen=Listen("127.0.0.1", port), state_dir=state_dir,
        timing=Timing(ring_timeout=5, poll_interval=0.05, webhook_grace=0.5, api_timeout=2),
        allowed_countries=frozenset({"US"}), max_calls_per_hour=30,
    )
    values.update(changes)
    return Settings(**values)


def options(number: str = NUMBER, **changes) -> flow.SendOptions:
    return flow.SendOptions(number=phone.parse(number), **changes)


@pytest.fixture
async def sb():
    async with Sandbox(caller=CALLER) as sandbox:
        yield sandbox


def creates(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests if r.method == "POST" and r.path.endswith("/Calls.json"))


async def test_a_call_end_to_end(sb, tmp_path):
    rec = Recorder()
    result = await flow.send(settings_for(sb, tmp_path / "s"), options(), rec)
    assert (result.delivered, result.call_status, result.problem) == (True, "completed", None)
    assert rec.steps == [
        "dialing", "created", "expires", "initiated", "ringing", "in-progress", "fetched", "key-pressed", "delivered",
        "completed",
    ]
    with Store.open(tmp_path / "s") as store:
        assert store.newest(NUMBER).state == "delivered"
    verdict = sessions.check(tmp_path / "s", NUMBER, sb.heard_code())
    assert (verdict.verified, verdict.reason) == (True, "verified")


async def test_lost_callbacks_are_made_up_by_polling(sb, tmp_path):
    sb.scenario = Scenario(callbacks=False)
    result = await flow.send(settings_for(sb, tmp_path / "s"), options(), Recorder())
    assert (result.delivered, result.call_status) == (True, "completed")
    polls = [r for r in sb.requests if r.method == "GET" and r.path.endswith(f"/Calls/{result.call_sid}.json")]
    assert polls, "the client never asked the API how the call ended"


async def test_lost_callbacks_on_a_busy_line(sb, tmp_path):
    sb.scenario = Scenario(outcome="busy", callbacks=False)
    result = await flow.send(settings_for(sb, tmp_path / "s"), options(), Recorder())
    assert (result.delivered, result.call_status, result.problem) == (
        False, "busy", "the line was busy: the code was not delivered"
    )


async def test_answered_but_never_fetched_hangs_up(sb, tmp_path):
    sb.scenario = Scenario(fetch=False)
    settings = settings_for(sb, tmp_path / "s")
    result = await asyncio.wait_for(flow.send(settings, options(), Recorder()), 30)  # not the 10-minute give-up
    assert result.delivered is False
    assert result.problem == (
        f"SignalWire never reached {settings.public_url}: is the tunnel running? (it must forward to {settings.listen})"
    )
    hang_ups = [r.form for r in sb.requests if r.method == "POST" and r.path.endswith(f"/Calls/{result.call_sid}.json")]
    assert hang_ups == [(("Status", "completed"),)]
    with Store.open(tmp_path / "s") as store:
        assert store.newest(NUMBER).state == "undelivered"


async def test_ringing_forever_is_hung_up(sb, tmp_path):
    sb.scenario = Scenario(outcome="hold")
    settings = settings_for(sb, tmp_path / "s", timing=Timing(ring_timeout=1, poll_interval=0.05, webhook_grace=0.3, api_timeout=2))
    result = await flow.send(settings, options(), Recorder())
    assert (result.delivered, result.call_status) == (False, "canceled")
    # The ring timeout asked for, and the grace after it, named apart (issue 10, defect 5).
    assert result.problem == (
        "the call was not answered within 1 s (the ring timeout), nor reported in the 0.3 s allowed after it: "
        "the code was not delivered"
    )


async def test_countries_not_allowed_are_refused_before_dialing(sb, tmp_path):
    for number, region in (("+33612345678", "FR"), ("+1 876 555 0100", "JM")):
        with pytest.raises(PolicyRefused) as info:
            await flow.send(settings_for(sb, tmp_path / "s"), options(number), Recorder())
        e164 = phone.parse(number).e164
        assert info.value.message == (
            f"calls to {region} ({e164}) are not allowed: VOICE2FA_ALLOWED_COUNTRIES is US; add {region} to allow them"
        )
        assert info.value.exit_code == 5
    assert sb.requests == []
    settings = settings_for(sb, tmp_path / "s", allowed_countries=frozenset({"US", "FR"}))
    result = await flow.send(settings, options("+33612345678", keypress=False), Recorder())
    assert result.delivered


async def test_five_calls_per_number_per_ten_minutes(sb, tmp_path):
    before = time.time()  # the first call is counted between this and its session's creation
    for _ in range(5):
        assert (await flow.send(settings_for(sb, tmp_path / "s"), options(), Recorder())).delivered
    with Store.open(tmp_path / "s") as store:
        first = store.recent(10)[-1].created_at
    assert first - before < 1
    with pytest.raises(PolicyRefused) as info:
        await flow.send(settings_for(sb, tmp_path / "s"), options(), Recorder())
    assert info.value.message in {
        f"send limit reached: 5 calls to {NUMBER} in the last 10 minutes; try again after {clock_text(t + 600)}"
        for t in (before, first)
    }
    assert creates(sb) == 5
    # Another number is not affected.
    assert (await flow.send(settings_for(sb, tmp_path / "s"), options("+15551234568"), Recorder())).delivered


async def test_hourly_cap_across_numbers(sb, tmp_path):
    settings = settings_for(sb, tmp_path / "s", max_calls_per_hour=2)
    for number in ("+15551234561", "+15551234562"):
        await flow.send(settings, options(number), Recorder())
    with pytest.raises(PolicyRefused) as info:
        await flow.send(settings, options("+15551234563"), Recorder())
    assert info.value.message.startswith(
        "send limit reached: 2 calls in the last hour (VOICE2FA_MAX_CALLS_PER_HOUR=2); try again after "
    )


async def test_refused_creates_do_not_count_against_the_limit(sb, tmp_path):
    sb.scenario = Scenario(api_status=500)
    for _ in range(6):
        with pytest.raises(ProviderError):
            await flow.send(settings_for(sb, tmp_path / "s"), options(), Recorder())
    sb.scenario = Scenario()
    assert (await flow.send(settings_for(sb, tmp_path / "s"), options(), Recorder())).delivered


async def test_a_locked_number_gets_no_new_calls(sb, tmp_path):
    state = tmp_path / "s"
    for _ in range(2):
        await flow.send(settings_for(sb, state), options(), Recorder())
        right = sb.heard_code()
        wrong = "000000" if right != "000000" else "111111"
        for _ in range(5):
            assert sessions.check(state, NUMBER, wrong).verified is False
    with Store.open(state) as store:
        until = store.number_locked_until(NUMBER)
    assert until is not None
    with pytest.raises(PolicyRefused) as info:
        await flow.send(settings_for(sb, state), options(), Recorder())
    assert info.value.message == f"{NUMBER} is locked after too many wrong codes: no calls until {clock_text(until)}"
    assert creates(sb) == 2


async def test_sandbox_send_shows_what_the_callee_heard(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE2FA_STATE_DIR", str(tmp_path / "s"))
    rec = Recorder()
    import os

    result = await stand_in.send(dict(os.environ), options(), rec, Listen("127.0.0.1", 0))
    assert result.delivered and result.session.sandbox
    readings = [line for line in rec.lines if line.replace(", ", "").isdigit()]
    assert len(readings) == 2 and readings[0] == readings[1]
    code = readings[0].replace(", ", "")
    assert sessions.check(tmp_path / "s", NUMBER, code).verified is False  # never a real session
    assert sessions.check(tmp_path / "s", NUMBER, code, sandbox=True).verified


async def test_sandbox_sends_are_not_limited(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("VOICE2FA_STATE_DIR", str(tmp_path / "s"))
    for _ in range(7):
        result = await stand_in.send(dict(os.environ), options("+447700900123"), Recorder(), Listen("127.0.0.1", 0))
        assert result.delivered


async def test_a_taken_listen_address_does_not_count_as_a_send(sb, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        settings = settings_for(sb, tmp_path / "s", listen=Listen("127.0.0.1", port))
        for _ in range(6):
            with pytest.raises(ConfigError):
                await flow.send(settings, options(), Recorder())
    assert sb.requests == []
    assert (await flow.send(settings_for(sb, tmp_path / "s"), options(), Recorder())).delivered


async def test_a_store_failure_after_the_call_was_created_hangs_up(sb, tmp_path):
    from voice2fa_cli.errors import NotDelivered, StoreError
    from voice2fa_cli.web.server import bind

    class FullDisk(Store):
        def create_session(self, **kwargs):
            raise StoreError("the disk holding the database is full: free some space and try again")

    sb.scenario = Scenario(outcome="hold")
    settings = settings_for(sb, tmp_path / "s")
    sock = bind(settings.listen.host, settings.listen.port)
    with pytest.raises(NotDelivered) as info:
        async with StoreThread(FullDisk.open(tmp_path / "s")) as store:
            await flow._call(settings, options(), store, Recorder(), sock)
    assert info.value.exit_code == 3  # a call was placed: never 2, which says nothing was called
    assert info.value.message == ("the call was hung up because the store failed: "
                                  "the disk holding the database is full: free some space and try again")
    sid = next(iter(sb.calls))
    hang_ups = [r.form for r in sb.requests if r.method == "POST" and r.path.endswith(f"/Calls/{sid}.json")]
    assert hang_ups == [(("Status", "completed"),)]


# --- a busy store never freezes the call (issue 9) -----------------------------------------------

HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def hold_write_lock(db):
    """Another process holding the database's write lock until told to let go."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


async def test_a_locked_store_never_freezes_the_call(sb, tmp_path):
    from voice2fa_cli.stores.statedir import SANDBOX_DB_NAME
    from voice2fa_cli.web.server import bind

    state = tmp_path / "s"
    Store.open(state, sandbox=True).close()
    settings = settings_for(sb, state)
    sock = bind(settings.listen.host, settings.listen.port)
    holder = hold_write_lock(state / SANDBOX_DB_NAME)
    try:
        async with StoreThread(Store.open(state, sandbox=True)) as store:
            call = asyncio.create_task(flow._call(settings, options(), store, Recorder(), sock))
            for _ in range(2000):  # the platform fetches the webhook and hears the code meanwhile
                if sb.heard_code() or call.done():
                    break
                await asyncio.sleep(0.01)
            assert sb.heard_code() is not None and not call.done()
            holder.stdin.write("release\n")
            holder.stdin.flush()
            result = await asyncio.wait_for(call, 60)
    finally:
        holder.kill()
        holder.wait()
    assert (result.delivered, result.problem) == (True, None)
    assert sessions.check(state, NUMBER, sb.heard_code(), sandbox=True).verified


async def test_a_store_that_stays_locked_hangs_up_and_never_exits_2(sb, tmp_path):
    from voice2fa_cli.errors import NotDelivered
    from voice2fa_cli.stores.statedir import DB_NAME
    from voice2fa_cli.web.server import bind

    state = tmp_path / "s"
    Store.open(state).close()
    sb.scenario = Scenario(outcome="hold")
    settings = settings_for(sb, state)
    sock = bind(settings.listen.host, settings.listen.port)
    holder = hold_write_lock(state / DB_NAME)
    try:
        with pytest.raises(NotDelivered) as info:
            async with StoreThread(Store.open(state, busy_timeout=0.2)) as store:
                await flow._call(settings, options(), store, Recorder(), sock)
    finally:
        holder.kill()
        holder.wait()
    assert info.value.exit_code == 3
    assert info.value.message == (
        f"the call was hung up because the store failed: the database {state / DB_NAME} stayed locked by "
        "another voice2fa: try again"
    )
    sid = next(iter(sb.calls))
    hang_ups = [r.form for r in sb.requests if r.method == "POST" and r.path.endswith(f"/Calls/{sid}.json")]
    assert hang_ups == [(("Status", "completed"),)]
