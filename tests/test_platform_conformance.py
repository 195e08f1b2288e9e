"""Every request voice2fa sends conforms to the spec facts (tests/fixtures/compat_api_spec.json),
whatever the call does; and the final callback that follows voice2fa's own hang-up is sent and
what voice2fa answered to it is recorded."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests import spec
from tests.helpers import NUMBER, run_cli, start_cli
from tests.test_cli_e2e import finish_with_code, wait_until_ringing

CALL_PATH = re.compile(r"^/api/laml/2010-04-01/Accounts/([^/]+)/Calls/([^/]+)\.json$")
CREATE_PATH = re.compile(r"^/api/laml/2010-04-01/Accounts/([^/]+)/Calls\.json$")


def settle(sandbox) -> None:
    asyncio.run_coroutine_threadsafe(sandbox.sandbox.settle(), sandbox.loop).result(30)


def check_requests(sandbox) -> list[str]:
    """Every request the platform received from voice2fa, checked; returns their kinds."""
    kinds = []
    for request in sandbox.requests:
        if request.method == "POST" and (m := CREATE_PATH.match(request.path)):
            assert m.group(1) == sandbox.project
            assert spec.form_problems("create", request.form) == [], request.form
            assert [v for k, v in request.form if k == "StatusCallbackEvent"] == [
                "initiated", "ringing", "answered", "completed"]
            kinds.append("create")
        elif (m := CALL_PATH.match(request.path)) and request.method in ("GET", "POST"):
            assert m.group(2) in sandbox.calls
            if request.method == "POST":
                assert spec.form_problems("update", request.form) == [], request.form
                kinds.append("update")
            else:
                assert request.form == ()
                kinds.append("fetch")
        else:
            raise AssertionError(f"not a documented request: {request.method} {request.path}")
    return kinds


def test_a_verified_call(sandbox, cli_env):
    proc = start_cli(["send", NUMBER], cli_env)
    _code, _out, err = finish_with_code(proc, sandbox)
    assert proc.returncode == 0, err
    assert check_requests(sandbox)[0] == "create"


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
def test_undelivered_calls(sandbox, cli_env, outcome):
    sandbox.set_scenario(outcome=outcome)
    assert run_cli(["send", NUMBER, "--no-prompt"], cli_env).returncode == 3
    assert check_requests(sandbox)[0] == "create"


def test_lost_callbacks_make_voice2fa_poll(sandbox, cli_env):
    sandbox.set_scenario(callbacks=False)
    result = run_cli(["send", NUMBER, "--no-prompt"], cli_env)
    assert result.returncode == 0, result.stderr
    kinds = check_requests(sandbox)
    assert kinds[0] == "create" and "fetch" in kinds


def test_interrupted_while_ringing(sandbox, cli_env):
    sandbox.set_scenario(outcome="hold")
    proc = start_cli(["send", NUMBER], cli_env)
    wait_until_ringing(sandbox)
    proc.send_signal(2)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert check_requests(sandbox) == ["create", "update"]


def test_the_final_callback_after_voice2fa_hangs_up(sandbox, cli_env):
    """Answered but the webhook never fetched: voice2fa gives up and hangs up; the platform
    then sends the `completed` callback. The sandbox sends it and records what it got (today
    voice2fa answers 410, or has stopped listening; the trust work makes it 200)."""
    sandbox.set_scenario(fetch=False)
    result = run_cli(["send", NUMBER, "--no-prompt"], cli_env)
    assert result.returncode == 3, result.stderr
    assert "update" in check_requests(sandbox)
    settle(sandbox)
    [call] = sandbox.calls.values()
    assert [d.status for d in call.deliveries] == ["initiated", "ringing", "in-progress", "completed"]
    final = call.deliveries[-1]
    assert final.answers  # it was sent
    assert final.delivered or len(final.answers) == 3  # tried three times when not accepted
    assert (call.status, call.answered) == ("completed", True)
