"""A writer of the shared Redis who lacks the key file (issue 18, items 1, 2, 6 and 7): each
test performs one of the review's attacks on a real redis-server with a plain Redis client, then
asserts that voice2fa refuses what it forged, moved or rolled back as tampering (one line) and
never answers "verified" or "approved"."""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode

import pytest

from tests.helpers import CALLER, FAST, NUMBER, run_cli, sandbox_code_shown
from tests.redis_server import REDIS_SERVER
from tests.serve_helpers import ServeThread, basic, client_for, twilio_error
from tests.test_webhook import CODE, SID, fields_for, hooks, no_code, spoken_code  # noqa: F401 (hooks: a fixture)
from voice2fa_cli.serve import records
from voice2fa_cli.stores import open_store
from voice2fa_cli.stores.base import StoreSpec
from voice2fa_cli.web.server import bind

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
redis = pytest.importorskip("redis")

VICTIM = NUMBER
ATTACKER = "+15557654321"  # the attacker's own phone: they hear its code
P = "voice2fa:"
T_TAMPERED = "that does not authenticate (altered, moved or forged by a writer of Redis): refused"


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "shared.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    return path


@pytest.fixture
def db(redis_server):
    """The attacker's view: a plain client on the shared Redis (no key file)."""
    redis_server.flush()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def shared(db, redis_server, sandbox, tmp_path, key_file):
    """One `voice2fa serve` (real mode, the sandbox as the platform) on the shared Redis, with a
    service and an account-wide key."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    hook = bind("127.0.0.1", 0)
    env = {"SIGNALWIRE_SPACE": sandbox.url, "SIGNALWIRE_PROJECT": sandbox.project, "SIGNALWIRE_TOKEN": sandbox.token,
           "SIGNALWIRE_NUMBER": CALLER, "SIGNALWIRE_SIGNING_KEY": sandbox.signing_key, **FAST,
           "VOICE2FA_STORE": redis_server.url, "VOICE2FA_KEY_FILE": str(key_file), "VOICE2FA_STATE_DIR": str(state)}
    spec = StoreSpec(state_dir=state, url=redis_server.url, key_file=key_file)
    with open_store(spec) as store:
        service = records.create_service(store, "Acme")
        key, secret = records.create_key(store, "backend")
    server = ServeThread(env, sandbox=False, public_url=f"http://127.0.0.1:{hook.getsockname()[1]}",
                         webhook_sock=hook, preflight=False, linger=0.5, drain=5)
    yield server, service, key, secret, spec
    server.stop()


def tampered(server: ServeThread) -> list[dict]:
    return [line for line in server.lines() if line["kind"] == "tampered"]


def record_key(kind: str, record_id: str) -> str:
    return f"{P}{{rec:{kind}}}:{record_id}"


# --- item 1: a session moved to the victim's number -------------------------------------------


def test_the_attackers_session_moved_onto_the_victims_number_is_never_approved(shared, sandbox, db):
    """The review's attack: verifications for the victim and for the attacker's own phone; the
    attacker's session, and the records that point at it, copied over the victim's; then the
    attacker's code checked for the victim, by number and by verification SID."""
    server, service, key, secret, _ = shared
    verify = client_for(server, key.sid, secret).verify.v2.services(service.sid)
    victim = verify.verifications.create(to=VICTIM, channel="call")
    sandbox.wait_code()
    server.settle()
    theirs = verify.verifications.create(to=ATTACKER, channel="call")
    server.settle()
    code = sandbox.heard_code(list(sandbox.calls)[-1])
    victim_h, attacker_h = (f"{P}{{{n}}}:{service.sid}:h" for n in (VICTIM, ATTACKER))
    session = db.hget(attacker_h, "newest")
    db.hset(victim_h, mapping={f"s:{session}": db.hget(attacker_h, f"s:{session}"), "newest": session})
    db.set(f"{P}id:{session}", f"{VICTIM}\n{service.sid}")
    db.set(record_key("pending", f"{service.sid}:{VICTIM}"), db.get(record_key("pending", f"{service.sid}:{ATTACKER}")))
    db.set(record_key("verification", victim.sid), db.get(record_key("verification", theirs.sid)))

    by_number = twilio_error(lambda: verify.verification_checks.create(to=VICTIM, code=code))
    by_sid = twilio_error(lambda: verify.verification_checks.create(verification_sid=victim.sid, code=code))
    assert (by_number.status, by_number.code) == (by_sid.status, by_sid.code) == (500, 20500)
    lines = tampered(server)
    assert [line["error"].split(" holds ")[1] for line in lines] == [
        f"the record {{rec:pending}}:{service.sid}:{VICTIM} {T_TAMPERED}; see the README's security section",
        f"the record {{rec:verification}}:{victim.sid} {T_TAMPERED}; see the README's security section"]
    assert code not in server.log.getvalue()


def test_a_session_copied_over_the_victims_own_session_is_refused(shared, sandbox, db):
    """The records left alone: only the victim's session is replaced by the attacker's (its id
    changed to the victim's). The session's MAC (and the code's binding to the number) refuse it."""
    server, service, key, secret, _ = shared
    verify = client_for(server, key.sid, secret).verify.v2.services(service.sid)
    verify.verifications.create(to=VICTIM, channel="call")
    sandbox.wait_code()
    server.settle()
    verify.verifications.create(to=ATTACKER, channel="call")
    server.settle()
    code = sandbox.heard_code(list(sandbox.calls)[-1])
    victim_h, attacker_h = (f"{P}{{{n}}}:{service.sid}:h" for n in (VICTIM, ATTACKER))
    mine, theirs = db.hget(victim_h, "newest"), db.hget(attacker_h, "newest")
    forged = json.loads(db.hget(attacker_h, f"s:{theirs}"))
    forged["id"], forged["number"] = mine, VICTIM
    db.hset(victim_h, f"s:{mine}", json.dumps(forged))

    err = twilio_error(lambda: verify.verification_checks.create(to=VICTIM, code=code))
    assert (err.status, err.code) == (500, 20500)
    (line,) = tampered(server)
    assert line["error"].endswith(f"holds a session {T_TAMPERED}; see the README's security section")


def test_a_sandbox_session_copied_into_the_real_space_does_not_verify(cli_env, db, redis_server, key_file):
    """`send --sandbox` (whose code the terminal shows), its keys copied to the real namespace:
    `voice2fa verify` refuses the session as tampering, exit 2, and never says verified."""
    env = {**cli_env, "VOICE2FA_STORE": redis_server.url, "VOICE2FA_KEY_FILE": str(key_file)}
    sent = run_cli(["send", "--sandbox", VICTIM, "--no-prompt", "--json"], env)
    assert sent.returncode == 0, sent.stderr
    code = sandbox_code_shown(sent.stderr)
    copied = [key for key in db.scan_iter(f"{P}sandbox:*")]
    assert copied
    for key in copied:
        db.copy(key, P + key.removeprefix(f"{P}sandbox:"), replace=True)

    got = run_cli(["verify", VICTIM, "--json"], env, input=code + "\n")
    assert got.returncode == 2, (got.stdout, got.stderr)
    assert json.loads(got.stdout)["verified"] is False
    assert got.stderr.strip().endswith(f"holds a session {T_TAMPERED}; see the README's security section")
    again = run_cli(["verify", "--sandbox", VICTIM], env, input=code + "\n")
    assert again.returncode == 0  # the sandbox's own session is untouched


# --- item 2: API keys minted or un-revoked ------------------------------------------------------


def test_a_key_record_minted_by_a_writer_does_not_authenticate(shared, db):
    """Three forgeries: the old record's shape (an scrypt hash at N=2 of the attacker's secret),
    the real key's record copied under a new SID, and the real record with its hash replaced."""
    import hashlib

    server, service, key, secret, _ = shared
    url = f"{server.api_url}/v2/Services/{service.sid}/Verifications/VE{'0' * 32}"
    real = db.get(record_key("key", key.sid))
    salt = os.urandom(16)
    weak = {"sid": "SK" + "a" * 32, "name": "mine", "created": 1.0, "revoked": False, "salt": salt.hex(), "n": 2,
            "hash": hashlib.scrypt(b"hunter2", salt=salt, n=2, r=8, p=1).hex()}
    db.set(record_key("key", weak["sid"]), json.dumps({"body": weak, "expires_at": None, "mac": "0" * 64}))
    db.set(record_key("key", "SK" + "b" * 32), real)
    altered = json.loads(real)
    altered["body"]["hash"] = hashlib.sha256(b"x").hexdigest()
    db.set(record_key("key", "SK" + "c" * 32), json.dumps(altered))

    import asyncio

    import aiohttp

    async def get(user, password):
        async with aiohttp.ClientSession() as http, http.get(url, headers=basic(user, password)) as r:
            return r.status, (await r.json())["code"]

    for user, password in ((weak["sid"], "hunter2"), ("SK" + "b" * 32, secret), ("SK" + "c" * 32, "x")):
        assert asyncio.run(get(user, password)) == (401, 20003)
    assert len(tampered(server)) == 3
    assert asyncio.run(get(key.sid, secret)) == (404, 20404)  # the real key still works


def test_a_revoked_key_flipped_back_by_a_writer_stays_revoked(shared, db):
    server, service, key, secret, spec = shared
    with open_store(spec) as store:
        assert records.revoke_key(store, key.sid)
    stored = json.loads(db.get(record_key("key", key.sid)))
    assert stored["body"]["revoked"] is True
    stored["body"]["revoked"] = False
    db.set(record_key("key", key.sid), json.dumps(stored), keepttl=True)
    verify = client_for(server, key.sid, secret).verify.v2.services(service.sid)
    err = twilio_error(lambda: verify.verifications.create(to=VICTIM, channel="call"))
    assert (err.status, err.code) == (401, 20003)
    assert len(tampered(server)) == 1
    assert server.serving.sandbox is None or not server.serving.sandbox.calls


# --- item 6: a call's old state written back ------------------------------------------------------


async def test_an_old_call_record_written_back_is_not_served_again(db, redis_server, key_file, tmp_path, hooks):  # noqa: F811
    """The code read its MAX_CODE_READS times through a captured signed key press; the record as
    it was before the last read written back; the capture replayed: no code, ever again."""
    from voice2fa_cli.serve.calls import StoredCalls
    from voice2fa_cli.stores.onloop import open_async_store
    from voice2fa_cli.voice import speech
    from voice2fa_cli.voice.call import CallState
    from voice2fa_cli.voice.webhook import MAX_CODE_READS

    store = await open_async_store(StoreSpec(state_dir=tmp_path, url=redis_server.url, key_file=key_file),
                                   sandbox=False)
    try:
        calls = await StoredCalls.open(store, {}, ttl=600)
        hook = await hooks(shared=calls)
        call = CallState(session_id="s1", code=CODE, voice=speech.Voice(), key="7", call_sid=SID)
        await calls.publish(call)
        stored = record_key("call", calls.record_id(call.token))
        assert (await hook.post(call)).status == 200  # the gate
        fields = fields_for(Digits="7")
        path = hook.path(call, "/key")
        body, sig = urlencode(fields).encode(), hook.sign(path, fields)
        before = []
        for _ in range(MAX_CODE_READS):
            before.append(db.get(stored))
            assert spoken_code(await hook.send("POST", path, body=body, sig=sig))
        refused = await hook.send("POST", path, body=body, sig=sig)
        assert (refused.status, refused.text) == (410, "the code has been read enough times\n")
        for old in before:  # each earlier revision, written back in turn
            db.set(stored, old, keepttl=True)
            replay = await hook.send("POST", path, body=body, sig=sig)
            assert (replay.status, replay.text) == (404, "not found\n")
            no_code(replay)
    finally:
        await store.aclose()


# --- item 7: deleting what Redis holds ---------------------------------------------------------------


WRONG = "000000"


def snapshot(db) -> dict[str, bytes]:
    return {key: db.dump(key) for key in db.scan_iter()}


def restore(db, saved: dict[str, bytes]) -> None:
    db.flushall()
    for key, value in saved.items():
        db.restore(key, 0, value)


def deletions(db):
    """Every key, and every field of every hash, one at a time."""
    for key in sorted(db.scan_iter()):
        yield ("DEL", key)
        if db.type(key) == "hash":
            for name in sorted(db.hkeys(key)):
                yield ("HDEL", key, name)


@pytest.mark.parametrize("service", ["", "VA" + "1" * 32])
def test_no_deletion_makes_a_wrong_code_verify(db, redis_server, key_file, service):
    """A session with two wrong codes and then a lockout (in another session); every key and
    every hash field deleted in turn, and a wrong code checked after each: never verified."""
    from voice2fa_cli import policy
    from voice2fa_cli.stores.redis import RedisStore

    with RedisStore.open(redis_server.url, key_file.read_bytes()) as store:
        for i in range(policy.NUMBER_FAILURE_LIMIT):  # the number locked, across sessions
            store.create_session(session_id=f"old{i}", number=VICTIM, code="482915", ttl=600, call_sid=None,
                                 call_status=None, service=service)
            assert not store.check(VICTIM, WRONG, service=service).verified
        store.create_session(session_id="live", number=VICTIM, code="482915", ttl=600, call_sid=None,
                             call_status=None, service=service)
        assert store.check(VICTIM, WRONG, service=service).kind.locked
        saved = snapshot(db)
        tried = 0
        for deletion in list(deletions(db)):
            db.execute_command(*deletion)
            for session_id in (None, "live"):
                try:
                    verdict = store.check(VICTIM, WRONG, session_id, service)
                except Exception as exc:  # noqa: BLE001 (a refusal of any kind is fine; a verified is not)
                    assert "verified" not in str(exc)
                else:
                    assert not verdict.verified, deletion
            tried += 1
            restore(db, saved)
        assert tried > 10
        # What deletion can undo (the README says so): the failures gone, the lockout is lifted;
        # the right code then verifies, and a wrong one still does not.
        db.delete(store.layout.number_keys(VICTIM, service)[1])
        assert not store.check(VICTIM, WRONG, service=service).verified
        assert store.check(VICTIM, "482915", service=service).verified
