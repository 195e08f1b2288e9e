"""Services that cannot harm each other, and keys that reach only what they are given (issue 18,
item 3 and the info items): two services of one `voice2fa serve` share a number, a key scoped to
one service, the hourly cap's share, an old key, basic auth's padding, two instances racing, the
shared store stopped while the phone rings."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import threading

import aiohttp
import pytest

from tests import twilio_verify as facts
from tests.helpers import FAST, NUMBER, run_cli
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.serve_helpers import ServeThread, client_for, twilio_error
from tests.test_serve_shared import pair  # noqa: F401 (a fixture)
from tests.test_webhook import SID, fields_for, hooks, no_code  # noqa: F401 (hooks: a fixture)
from voice2fa_cli import policy
from voice2fa_cli.serve import records
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec

OTHER = "+15557654321"
THIRD = "+15557654322"


@pytest.fixture
def two(env, state_dir):
    """Services A and B and an account-wide key, on one `serve --sandbox`."""
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        a = records.create_service(store, "Alpha")
        b = records.create_service(store, "Beta")
        key, secret = records.create_key(store, "backend")
    server = ServeThread(env, linger=0.5, drain=5)
    client = client_for(server, key.sid, secret)
    yield server, client.verify.v2.services(a.sid), client.verify.v2.services(b.sid)
    server.stop()


@pytest.fixture
def env(state_dir) -> dict:
    return {"VOICE2FA_STATE_DIR": str(state_dir), **FAST}


def newest_code(server: ServeThread) -> str:
    server.settle()
    sandbox = server.serving.sandbox
    return sandbox.heard_code(list(sandbox.calls)[-1])


def test_another_services_verification_does_not_supersede_this_ones(two):
    server, alpha, beta = two
    mine = alpha.verifications.create(to=NUMBER, channel="call")
    code_a = newest_code(server)
    theirs = beta.verifications.create(to=NUMBER, channel="call")
    code_b = newest_code(server)
    assert mine.sid != theirs.sid
    assert alpha.verifications(mine.sid).fetch().status == "pending"
    assert (alpha.verification_checks.create(to=NUMBER, code=code_a).status,
            beta.verification_checks.create(to=NUMBER, code=code_b).status) == ("approved", "approved")


def test_wrong_codes_through_one_service_do_not_lock_the_number_for_another(two):
    server, alpha, beta = two
    wrong = 0
    while wrong < policy.NUMBER_FAILURE_LIMIT:
        beta.verifications.create(to=NUMBER, channel="call")
        code = newest_code(server)
        for _ in range(min(policy.MAX_ATTEMPTS, policy.NUMBER_FAILURE_LIMIT - wrong)):
            beta.verification_checks.create(to=NUMBER, code="000000" if code != "000000" else "111111")
            wrong += 1
    calls = len(server.serving.sandbox.calls)
    locked = twilio_error(lambda: beta.verifications.create(to=NUMBER, channel="call"))
    assert (locked.status, locked.code) == (429, 60202)  # the number is locked for Beta ...
    assert len(server.serving.sandbox.calls) == calls
    alpha.verifications.create(to=NUMBER, channel="call")
    code = newest_code(server)
    assert alpha.verification_checks.create(to=NUMBER, code=code).status == "approved"  # ... not Alpha's


def test_a_service_uses_only_its_share_of_the_hourly_cap(env, state_dir):
    """VOICE2FA_MAX_CALLS_PER_HOUR=4: each service has 2 (half) by default, or its own setting."""
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        a = records.create_service(store, "Alpha")
        b = records.create_service(store, "Beta", records.ServiceOptions(max_calls_per_hour=1))
        c = records.create_service(store, "Gamma")
        key, secret = records.create_key(store, "backend")
    server = ServeThread({**env, "VOICE2FA_MAX_CALLS_PER_HOUR": "4"}, linger=0.5, drain=5)
    try:
        client = client_for(server, key.sid, secret)
        alpha, beta, gamma = (client.verify.v2.services(s.sid) for s in (a, b, c))
        for number in (NUMBER, OTHER):
            alpha.verifications.create(to=number, channel="call")
            server.settle()
        err = twilio_error(lambda: alpha.verifications.create(to=THIRD, channel="call"))
        assert (err.status, err.code) == (429, 60203)
        assert re.fullmatch(re.escape(f"Unable to create record: Max send attempts reached: send limit reached: 2 calls "
                                      f"of service {a.sid} in the last hour (its share of the hourly cap is 2); "
                                      "try again after ") + facts.DATE_PATTERN + r" \(in [0-9]+ s\)", err.msg), err.msg
        beta.verifications.create(to=THIRD, channel="call")
        server.settle()
        assert twilio_error(lambda: beta.verifications.create(to=NUMBER, channel="call")).code == 60203
        gamma.verifications.create(to=THIRD, channel="call")  # the cap's fourth call
        server.settle()
        assert len(server.serving.sandbox.calls) == 4
    finally:
        server.stop()


def test_a_key_scoped_to_one_service_does_not_reach_another(env, state_dir):
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        a = records.create_service(store, "Alpha")
        b = records.create_service(store, "Beta")
        key, secret = records.create_key(store, "alpha only", (a.sid,))
    server = ServeThread(env, linger=0.5, drain=5)
    try:
        client = client_for(server, key.sid, secret)
        err = twilio_error(lambda: client.verify.v2.services(b.sid).verifications.create(to=NUMBER, channel="call"))
        assert (err.status, err.code, err.msg) == (404, 20404, f"Unable to create record: The requested resource /Services/{b.sid} was not found")
        assert server.serving.sandbox.calls == {}
        assert client.verify.v2.services(a.sid).verifications.create(to=NUMBER, channel="call").status == "pending"
    finally:
        server.stop()


def test_keys_create_with_a_service_makes_a_scoped_key_and_refuses_an_unknown_one(env, state_dir):
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        a = records.create_service(store, "Alpha")
    full = {**os.environ, **env}
    made = run_cli(["keys", "create", "ops", "--service", a.sid], full)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["services"] == [a.sid]
    unknown = "VA" + "9" * 32
    refused = run_cli(["keys", "create", "ops", "--service", unknown], full)
    message = f"no service '{unknown}': see `voice2fa services list`"
    assert (refused.returncode, json.loads(refused.stdout)) == (2, {"error": message, "exit_code": 2})
    assert refused.stderr.strip() == f"error: {message}"
    listed = [json.loads(line) for line in run_cli(["keys", "list"], full).stdout.splitlines()]
    assert [(k["name"], k["services"], k["usable"]) for k in listed] == [("ops", [a.sid], True)]


def test_a_key_made_by_an_older_voice2fa_is_refused_and_listed_as_unusable(env, state_dir):
    """A key record of KEY_VERSION 1 (an scrypt hash, its cost in the record): never checked
    with the stored cost, refused (20003); `keys list` says to make a new one."""
    import hashlib

    salt = os.urandom(16)
    old = {"sid": "SK" + "d" * 32, "name": "legacy", "created": 1.0, "revoked": False, "salt": salt.hex(),
           "n": 2, "hash": hashlib.scrypt(b"old-secret", salt=salt, n=2, r=8, p=1).hex()}
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        service = records.create_service(store, "Alpha")
        store.put_record(records.KEY, old["sid"], old, only_new=True)
    listed = [json.loads(line) for line in run_cli(["keys", "list"], {**os.environ, **env}).stdout.splitlines()]
    assert listed == [{"sid": old["sid"], "name": "legacy", "created": "1970-01-01T00:00:01Z", "revoked": False, "services": "all",
                       "admin": False, "usable": False,
                       "why": "made by an older voice2fa (an scrypt hash): make a new key and revoke this one"}]
    server = ServeThread(env, linger=0.5, drain=5)
    try:
        verify = client_for(server, old["sid"], "old-secret").verify.v2.services(service.sid)
        err = twilio_error(lambda: verify.verifications.create(to=NUMBER, channel="call"))
        assert (err.status, err.code) == (401, 20003)
    finally:
        server.stop()


def test_basic_auth_is_read_strictly(env, state_dir):
    """The decision (README): RFC 4648 §4 base64 exactly, padding included, nothing else (the
    padding itself: tests/test_basic_auth.py; a key's SID and secret are 78 bytes, never padded)."""
    with open_store(StoreSpec(state_dir=state_dir)) as store:
        service = records.create_service(store, "Alpha")
        key, secret = records.create_key(store, "backend")
    token = base64.b64encode(f"{key.sid}:{secret}".encode()).decode()
    server = ServeThread(env, linger=0.5, drain=5)
    url = f"{server.api_url}/v2/Services/{service.sid}/Verifications/VE{'0' * 32}"

    async def status(value):
        async with aiohttp.ClientSession() as http, http.get(url, headers={"Authorization": value}) as r:
            return r.status, (await r.json())["code"]

    try:
        assert asyncio.run(status(f"Basic {token}")) == (404, 20404)
        assert asyncio.run(status(f"basic {token}")) == (404, 20404)  # the scheme's case is free
        urlsafe = token.replace("+", "-").replace("/", "_")
        for value in (f"Basic {token}=", f"Basic {token}==", f"Basic  {token}", f"Basic {token[:-2]} {token[-2:]}",
                      f"Basic {base64.b64encode(f'{key.sid}:{secret}='.encode()).decode()}",
                      f"Basic {urlsafe}" if urlsafe != token else f"Basic {token[:-1]}-"):
            assert asyncio.run(status(value)) == (401, 20003), value
    finally:
        server.stop()


# --- several instances ------------------------------------------------------------------------------


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_two_instances_racing_twelve_creates_make_one_verification(pair):  # noqa: F811
    a, b, service, key, secret = pair
    clients = [client_for(s, key.sid, secret).verify.v2.services(service.sid) for s in (a, b)]
    sids: list[str] = []
    refused: list[int] = []
    start = threading.Barrier(12)

    def create(i: int) -> None:
        start.wait()
        try:
            sids.append(clients[i % 2].verifications.create(to=NUMBER, channel="call").sid)
        except Exception as exc:  # noqa: BLE001
            refused.append(getattr(exc, "code", None))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a.settle()
    b.settle()
    assert len(sids) + len(refused) == 12 and sids
    assert len(set(sids)) == 1, sids  # every create that was taken resent one verification
    assert set(refused) <= {60203, 20429}, refused


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
async def test_the_shared_store_stopped_while_the_phone_rings_ends_the_call_politely(tmp_path, hooks):  # noqa: F811
    """Redis goes away between the dial and the platform's first request: the platform gets a
    cXML apology that hangs up (never aiohttp's HTML 500), and a 200 for status callbacks."""
    from voice2fa_cli.serve.calls import StoredCalls
    from voice2fa_cli.stores.onloop import open_async_store
    from voice2fa_cli.voice import speech
    from voice2fa_cli.voice.call import CallState

    key_file = tmp_path / "shared.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    store = await open_async_store(StoreSpec(state_dir=tmp_path, url=server.url, key_file=key_file), sandbox=False)
    try:
        calls = await StoredCalls.open(store, {}, ttl=600)
        hook = await hooks(shared=calls)
        call = CallState(session_id="s1", code="40719386", voice=speech.Voice(), key=None, call_sid=SID)
        await calls.publish(call)
        server.stop()
        reply = await hook.post(call)
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/xml")
        assert reply.body == speech.unavailable_document(speech.Voice())
        assert b"<Hangup />" in reply.body or b"<Hangup/>" in reply.body
        no_code(reply)
        status = await hook.send("POST", hook.path(call, "/status"),
                                 [*fields_for(), ("CallStatus", "completed")])
        assert (status.status, status.body) == (200, b"")
    finally:
        server.stop()
        await store.aclose()
