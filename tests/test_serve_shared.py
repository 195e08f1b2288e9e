"""Several `voice2fa serve` instances on one real redis-server, no sticky sessions: the platform's
webhook requests for a call one instance placed go to the other, which reads the right code from
the store (sealed: nothing readable in Redis), and the placing instance follows the call."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.helpers import CALLER, NUMBER
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.serve_helpers import ServeThread, client_for
from voice2fa_cli.serve import records
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec
from voice2fa_cli.stores.onloop import StoreThread
from voice2fa_cli.web.server import bind

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


@pytest.fixture
def pair(redis_server, sandbox, tmp_path):
    """Instances A and B, each with its own state dir, sharing the Redis store and its key.
    A's public URL is B's webhook listener: every webhook request of A's calls reaches B."""
    pytest.importorskip("redis")
    redis_server.flush()
    key_file = tmp_path / "shared.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    b_hook = bind("127.0.0.1", 0)
    b_url = f"http://127.0.0.1:{b_hook.getsockname()[1]}"
    base = {
        "SIGNALWIRE_SPACE": sandbox.url, "SIGNALWIRE_PROJECT": sandbox.project, "SIGNALWIRE_TOKEN": sandbox.token,
        "SIGNALWIRE_NUMBER": CALLER, "SIGNALWIRE_SIGNING_KEY": sandbox.signing_key,
        "VOICE2FA_STORE": redis_server.url, "VOICE2FA_KEY_FILE": str(key_file),
        "VOICE2FA_POLL_INTERVAL": "0.2", "VOICE2FA_WEBHOOK_GRACE": "3", "VOICE2FA_API_TIMEOUT": "3",
    }
    dirs = {}
    for name in "ab":
        dirs[name] = tmp_path / f"state-{name}"
        dirs[name].mkdir(mode=0o700)
    spec = StoreSpec(state_dir=dirs["a"], url=redis_server.url, key_file=key_file)
    with open_store(spec) as store:
        service = records.create_service(store, "Acme")
        key, secret = records.create_key(store, "backend")
    a = ServeThread({**base, "VOICE2FA_STATE_DIR": str(dirs["a"])}, sandbox=False, public_url=b_url,
                    preflight=False, linger=0.5, drain=5)
    b = ServeThread({**base, "VOICE2FA_STATE_DIR": str(dirs["b"])}, sandbox=False, public_url=b_url,
                    webhook_sock=b_hook, preflight=False, linger=0.5, drain=5)
    yield a, b, service, key, secret
    a.stop()
    b.stop()


def webhook_requests(server: ServeThread) -> list[dict]:
    return [line for line in server.lines() if line["kind"] == "access" and line["listener"] == "webhook"]


def test_the_other_instance_reads_the_right_code_and_the_placer_follows(pair, sandbox, redis_server):
    a, b, service, key, secret = pair
    verify_a = client_for(a, key.sid, secret).verify.v2.services(service.sid)
    verify_b = client_for(b, key.sid, secret).verify.v2.services(service.sid)
    created = verify_a.verifications.create(to=NUMBER, channel="call")
    code = sandbox.wait_code()
    a.settle()
    # B served every webhook request (documents and status callbacks); A none.
    assert webhook_requests(a) == []
    assert {line["path"] for line in webhook_requests(b)} >= {"/v/-", "/v/-/key", "/v/-/status"}
    # A, which placed the call, learnt through the store that it was answered and delivered.
    ended = [line for line in a.lines() if line["kind"] == "call" and line.get("event") == "ended"]
    assert ended and ended[-1]["status"] == "completed" and ended[-1]["delivered"] is True
    # A check reaching B approves A's verification.
    checked = verify_b.verification_checks.create(to=NUMBER, code=code)
    assert (checked.status, checked.sid) == ("approved", created.sid)
    # The attempt A wrote (placed, then its call's end) B converted, and either instance lists it.
    [attempt] = client_for(a, key.sid, secret).verify.v2.verification_attempts.list()
    assert attempt.sid == created.send_code_attempts[0]["attempt_sid"]
    assert (attempt.conversion_status, attempt.channel_data["call_status"], attempt.channel_data["code_delivered"]) \
        == ("converted", "completed", True)
    assert client_for(b, key.sid, secret).verify.v2.verification_attempts_summary().fetch().total_converted == 1
    # Nothing in Redis holds the code or the call's token in a readable form.
    tokens = [call.url.split("/v/")[1].split("/")[0] for call in sandbox.calls.values()]
    dump = redis_dump(redis_server)
    assert code not in dump and all(token not in dump for token in tokens)


def test_limits_and_lockouts_hold_whatever_instance_is_asked(pair, sandbox):
    a, b, service, key, secret = pair
    assert a.core.account == b.core.account  # the deployment's account SID, from the shared key
    instances = [client_for(s, key.sid, secret).verify.v2.services(service.sid) for s in (a, b)]
    instances[0].verifications.create(to=NUMBER, channel="call")
    code = sandbox.wait_code()
    a.settle()
    wrong = "000000" if code != "000000" else "111111"
    statuses = [instances[i % 2].verification_checks.create(to=NUMBER, code=wrong).status for i in range(5)]
    assert statuses == ["pending"] * 4 + ["max_attempts_reached"]
    from twilio.base.exceptions import TwilioRestException

    with pytest.raises(TwilioRestException) as info:
        instances[1].verification_checks.create(to=NUMBER, code=code)
    assert info.value.code == 60202


def redis_dump(server: RedisServer) -> str:
    import redis

    r = redis.Redis.from_url(server.url, decode_responses=False)
    out = []
    for key in r.scan_iter():
        kind = r.type(key)
        if kind == b"string":
            out.append(r.get(key))
        elif kind == b"hash":
            out.extend(k + b"=" + v for k, v in r.hgetall(key).items())
        elif kind == b"zset":
            out.extend(r.zrange(key, 0, -1))
        out.append(key)
    r.close()
    return b"\n".join(out).decode("utf-8", "replace")


async def test_a_call_record_altered_moved_or_under_another_key_is_not_served(state_dir, tmp_path):
    import base64

    from voice2fa_cli.serve.calls import KIND, StoredCalls
    from voice2fa_cli.voice import speech
    from voice2fa_cli.voice.call import CallState

    async with await StoreThread.open(StoreSpec(state_dir=state_dir)) as store:
        calls = await StoredCalls.open(store, {}, ttl=600)
        call = CallState(session_id="s1", code="40719386", voice=speech.Voice(), key="7")
        other = CallState(session_id="s2", code="11112222", voice=speech.Voice(), key="3")
        await calls.publish(call)
        await calls.publish(other)
        loaded, rev = await calls.load(call.token)
        assert (loaded.code, loaded.key, rev) == ("40719386", "7", 1)
        rid = calls.record_id(call.token)
        body = await store.get_record(KIND, rid)
        assert "40719386" not in json.dumps(body) and call.token not in json.dumps(body)
        blob = bytearray(base64.b64decode(body["blob"]))
        blob[20] ^= 1
        await store.put_record(KIND, rid, {"rev": 2, "blob": base64.b64encode(bytes(blob)).decode()}, ttl=60)
        assert await calls.load(call.token) is None  # altered
        moved = await store.get_record(KIND, calls.record_id(other.token))
        await store.put_record(KIND, rid, moved, ttl=60)
        assert await calls.load(call.token) is None  # another call's blob under this call's id
        stranger = StoredCalls(store, os.urandom(32), calls.id_key, {}, ttl=600)
        assert await stranger.load(other.token) is None  # another key
        for token in ("", "x", "../../etc", "a" * 65, other.token + "\n", "é" * 20):
            assert await calls.load(token) is None
        assert await calls.save(other.token, other, 0) is False  # a stale rev never overwrites


async def test_the_placing_instances_mirror_is_a_guess_that_another_instances_change_defeats(state_dir):
    """A webhook request for a call placed here works on the mirror and saves in one round trip;
    when another instance changed the call since, that save fails (compare-and-set) and the
    mirror is no guess again until it is back in step with the newest revision seen."""
    from voice2fa_cli.serve.calls import StoredCalls
    from voice2fa_cli.voice import speech
    from voice2fa_cli.voice.call import CallState

    async with await StoreThread.open(StoreSpec(state_dir=state_dir)) as store:
        call = CallState(session_id="s1", code="40719386", voice=speech.Voice(), key="7")
        a = await StoredCalls.open(store, {call.token: call}, ttl=600)  # placed it: holds the mirror
        b = await StoredCalls.open(store, {}, ttl=600)
        await a.publish(call)
        assert b.guess(call.token) is None  # no mirror there
        guessed, rev = a.guess(call.token)
        assert (guessed is not call, guessed.code, guessed.key, rev) == (True, "40719386", "7", 1)
        seen, rev_b = await b.load(call.token)
        seen.code_reads = 1
        assert await b.save(call.token, seen, rev_b)  # another instance read the code meanwhile
        guessed.code_reads = 1
        assert await a.save(call.token, guessed, 1) is False  # the guess lost: nothing overwritten
        loaded, rev = await a.load(call.token)
        assert (loaded.code_reads, rev) == (1, 2)
        assert a.guess(call.token) is None  # seen 2, the mirror in step with 1
        loaded.code_reads = 2
        assert await a.save(call.token, loaded, 2)
        a.merge(call.token, loaded)
        guessed, rev = a.guess(call.token)
        assert (call.code_reads, guessed.code_reads, rev) == (2, 2, 3)


def test_a_cancel_reaching_the_other_instance_hangs_up_the_call(pair, sandbox):
    import time

    a, b, service, key, secret = pair
    sandbox.set_scenario(outcome="hold")  # rings until hung up
    verify_a = client_for(a, key.sid, secret).verify.v2.services(service.sid)
    verify_b = client_for(b, key.sid, secret).verify.v2.services(service.sid)
    created = verify_a.verifications.create(to=NUMBER, channel="call")
    assert verify_b.verifications(created.sid).update(status="canceled").status == "canceled"
    a.settle()
    assert not a.core.flights
    (call,) = sandbox.calls.values()
    deadline = time.monotonic() + 10
    while call.status not in ("canceled", "completed") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert call.status == "canceled"  # A hung it up while it rang
    assert [r for r in sandbox.requests if r.method == "POST" and ("Status", "completed") in r.form]


def test_a_store_that_fails_during_a_call_is_one_log_line_and_no_traceback(sandbox, tmp_path, capfd):
    """The call was placed, then the store went away while the phone rang: the follower's
    failure is logged as one JSON line, and asyncio never prints "Task exception was never
    retrieved" with a traceback."""
    import gc

    from tests.helpers import CALLER

    own = RedisServer(tmp_path / "own")
    (tmp_path / "own").mkdir()
    own.start()
    key_file = tmp_path / "shared.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {
        "SIGNALWIRE_SPACE": sandbox.url, "SIGNALWIRE_PROJECT": sandbox.project, "SIGNALWIRE_TOKEN": sandbox.token,
        "SIGNALWIRE_NUMBER": CALLER, "SIGNALWIRE_SIGNING_KEY": sandbox.signing_key,
        "VOICE2FA_STORE": own.url, "VOICE2FA_KEY_FILE": str(key_file), "VOICE2FA_STATE_DIR": str(state),
        "VOICE2FA_POLL_INTERVAL": "0.2", "VOICE2FA_WEBHOOK_GRACE": "1", "VOICE2FA_API_TIMEOUT": "1",
        "VOICE2FA_STORE_TIMEOUT": "0.5",
    }
    with open_store(StoreSpec(state_dir=state, url=own.url, key_file=key_file)) as store:
        service = records.create_service(store, "Acme")
        key, secret = records.create_key(store, "backend")
    sandbox.set_scenario(fetch=False)  # answered, never fetched: voice2fa waits the grace (1 s), hangs up, records
    hook = bind("127.0.0.1", 0)
    server = ServeThread(env, sandbox=False, public_url=f"http://127.0.0.1:{hook.getsockname()[1]}",
                         webhook_sock=hook, preflight=False, linger=0.2, drain=2)
    try:
        verify = client_for(server, key.sid, secret).verify.v2.services(service.sid)
        verify.verifications.create(to=NUMBER, channel="call")
        own.stop()  # the store goes away during the call
        deadline = time.monotonic() + 30
        while not [line for line in server.lines() if line.get("event") == "failed"]:
            assert time.monotonic() < deadline, server.lines()
            time.sleep(0.05)
    finally:
        server.stop()
    gc.collect()
    failed = [line for line in server.lines() if line.get("event") == "failed"]
    assert len(failed) == 1 and "the store" in failed[0]["error"], failed
    err = capfd.readouterr().err
    assert "Traceback" not in err and "never retrieved" not in err, err[-3000:]
