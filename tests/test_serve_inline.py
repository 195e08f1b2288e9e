"""`voice2fa serve` in the inline delivery: no webhook listener at all (nothing inbound but the
API), calls dialed with their SWML and followed by their voice logs; several instances on one
Redis store, a cancel on either hangs the call up through the Calling API."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.helpers import CALLER, NUMBER
from tests.redis_server import REDIS_SERVER
from tests.serve_helpers import ServeThread, client_for, env, setup  # noqa: F401
from voice2fa_cli.serve import records
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec


@pytest.fixture
def inline_server(env, setup):
    s = ServeThread(env, inline=True, linger=0.5, drain=5)
    yield s
    s.stop()


def test_serve_inline_has_no_webhook_and_a_check_approves_what_the_callee_heard(inline_server, setup):
    service, key, secret = setup
    verify = client_for(inline_server, key.sid, secret).verify.v2.services(service.sid)
    created = verify.verifications.create(to=NUMBER, channel="call")
    code = inline_server.heard()
    assert verify.verification_checks.create(to=NUMBER, code=code).status == "approved"
    started = inline_server.lines()[0]
    assert (started["event"], started["webhook"], started["delivery"]) == ("started", None, "inline")
    assert inline_server.serving.webhook_url is None
    assert [line for line in inline_server.lines() if line["kind"] == "access" and line["listener"] == "webhook"] == []
    (dial,) = [r for r in inline_server.serving.sandbox.requests if r.path == "/api/calling/calls"]
    assert json.loads(dict(dial.form)["body"])["params"]["to"] == NUMBER
    deadline = time.monotonic() + 10
    while True:  # until its voice log said the call ended
        attempts = client_for(inline_server, key.sid, secret).verify.v2.verification_attempts.list(
            verification_sid=created.sid)
        if attempts[0].channel_data["call_status"] != "initiated" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert attempts[0].channel_data["code_delivered"] is None  # not observable inline
    assert attempts[0].channel_data["call_status"] == "completed"
    assert attempts[0].conversion_status == "converted"


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_a_cancel_on_the_other_instance_hangs_the_inline_call_up(redis_server, sandbox, tmp_path):
    pytest.importorskip("redis")
    redis_server.flush()
    key_file = tmp_path / "shared.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    base = {"SIGNALWIRE_SPACE": sandbox.url, "SIGNALWIRE_PROJECT": sandbox.project, "SIGNALWIRE_TOKEN": sandbox.token,
            "SIGNALWIRE_NUMBER": CALLER, "VOICE2FA_STORE": redis_server.url, "VOICE2FA_KEY_FILE": str(key_file),
            "VOICE2FA_POLL_INTERVAL": "0.2", "VOICE2FA_API_TIMEOUT": "3"}
    servers = []
    for name in "ab":
        state = tmp_path / f"state-{name}"
        state.mkdir(mode=0o700)
        servers.append(ServeThread({**base, "VOICE2FA_STATE_DIR": str(state)}, sandbox=False, inline=True,
                                   preflight=False, linger=0.5, drain=5))
    a, b = servers
    try:
        with open_store(StoreSpec(state_dir=tmp_path / "state-a", url=redis_server.url, key_file=key_file)) as store:
            service = records.create_service(store, "Acme")
            key, secret = records.create_key(store, "backend")
        sandbox.set_scenario(outcome="hold")  # rings until hung up
        created = client_for(a, key.sid, secret).verify.v2.services(service.sid).verifications.create(
            to=NUMBER, channel="call")
        canceled = client_for(b, key.sid, secret).verify.v2.services(service.sid).verifications(created.sid).update(
            status="canceled")
        assert canceled.status == "canceled"
        (call,) = sandbox.calls.values()
        deadline = time.monotonic() + 10
        while call.status != "canceled" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert call.status == "canceled"
        ends = [json.loads(dict(r.form)["body"]) for r in sandbox.requests
                if r.path == "/api/calling/calls" and "calling.end" in dict(r.form).get("body", "")]
        assert ends[0] == {"id": call.sid, "command": "calling.end", "params": {"reason": "hangup"}}
    finally:
        a.stop()
        b.stop()
