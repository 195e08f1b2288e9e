"""Several machines, one Redis: the installed `voice2fa` on three "machines" (each its own
state dir and home) sharing a real redis-server and one key file, against the sandbox
stand-in over loopback as a real account would be set up."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.helpers import NUMBER, run_cli, start_cli, voice2fa_command
from tests.redis_server import REDIS_SERVER, RedisServer

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
redis = pytest.importorskip("redis")

from voice2fa_cli.stores.redis import RedisStore  # noqa: E402

T_LOCKED = "locked: too many wrong codes"


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "shared.key"
    path.write_bytes(secrets.token_bytes(32))
    path.chmod(0o600)
    return path


@pytest.fixture
def machines(redis_server, cli_env, key_file, tmp_path) -> list[dict[str, str]]:
    """Three machines' environments: their own state dir and home, one store and one key."""
    redis_server.flush()
    envs = []
    for name in ("a", "b", "c"):
        home = tmp_path / f"machine-{name}"
        home.mkdir()
        envs.append(dict(cli_env, HOME=str(home), VOICE2FA_STATE_DIR=str(home / "state"),
                         VOICE2FA_STORE=redis_server.url, VOICE2FA_KEY_FILE=str(key_file)))
    return envs


def shared_store(redis_server, key_file) -> RedisStore:
    return RedisStore.open(redis_server.url, key_file.read_bytes())


def test_send_on_one_machine_verify_on_another(sandbox, machines, redis_server, key_file):
    a, b, c = machines
    proc = run_cli(["send", NUMBER, "--no-prompt", "--json"], a)
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout)
    code = sandbox.heard_code()
    verified = run_cli(["verify", NUMBER, "--json"], b, input=code + "\n")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["session_id"] == sent["session_id"]
    again = run_cli(["verify", NUMBER], c, input=code + "\n")
    assert again.returncode == 1
    assert again.stderr.strip().endswith("this code was already used: send a new one")
    # Nothing of the session is on the machines themselves.
    for env in machines:
        state = Path(env["VOICE2FA_STATE_DIR"])
        assert not state.exists() or not any(p.name.endswith(("sqlite3", ".db")) for p in state.iterdir())
    with shared_store(redis_server, key_file) as store:
        assert store.newest(NUMBER).state == "verified"


def test_twelve_processes_on_three_machines_verify_once(machines, redis_server, key_file):
    with shared_store(redis_server, key_file) as store:
        store.create_session(session_id="race", number=NUMBER, code="724353", ttl=600, call_sid=None,
                             call_status=None)
    procs = [
        subprocess.Popen(voice2fa_command() + ["verify", NUMBER], env=machines[i % 3], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(12)
    ]
    results = [p.communicate("724353\n", timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0] + [1] * 11, results
    used = [err for (_, err), p in zip(results, procs) if p.returncode == 1]
    assert all(err.strip().endswith("this code was already used: send a new one") for err in used)


def test_wrong_codes_across_machines_lock_the_number_everywhere(sandbox, machines, redis_server, key_file):
    with shared_store(redis_server, key_file) as store:
        for n in range(2):
            store.create_session(session_id=f"s{n}", number=NUMBER, code="724353", ttl=600, call_sid=None,
                                 call_status=None)
            for i in range(5):
                result = run_cli(["verify", NUMBER], machines[(n * 5 + i) % 3], input="000000\n")
                assert result.returncode == 1
    locked = run_cli(["verify", NUMBER], machines[2], input="724353\n")
    assert locked.returncode == 1 and T_LOCKED in locked.stderr
    refused = run_cli(["send", NUMBER, "--no-prompt"], machines[0])
    assert refused.returncode == 5
    assert f"{NUMBER} is locked after too many wrong codes" in refused.stderr
    assert sandbox.requests == []  # nothing was dialed


def test_send_limits_count_every_machine(sandbox, machines, redis_server, key_file):
    with shared_store(redis_server, key_file) as store:
        for _ in range(5):
            store.reserve_call(NUMBER, 30)
    refused = run_cli(["send", NUMBER, "--no-prompt"], machines[1])
    assert refused.returncode == 5
    assert f"send limit reached: 5 calls to {NUMBER} in the last 10 minutes" in refused.stderr
    assert sandbox.requests == []


def test_a_machine_with_another_key_is_refused_in_one_line(sandbox, machines, redis_server, key_file, tmp_path):
    ok = run_cli(["verify", NUMBER], machines[0], input="724353\n")
    assert ok.returncode == 1  # no session, but the store now knows the shared key
    stranger = tmp_path / "stranger.key"
    stranger.write_bytes(secrets.token_bytes(32))
    stranger.chmod(0o600)
    env = dict(machines[1], VOICE2FA_KEY_FILE=str(stranger))
    for args, stdin in ((["verify", NUMBER], "724353\n"), (["send", NUMBER, "--no-prompt"], "")):
        result = run_cli(args, env, input=stdin)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and "was set up with another key" in errors[0]
        assert "Traceback" not in result.stderr
    assert sandbox.requests == []


def test_store_down_fails_closed(sandbox, machines, tmp_path):
    down = f"unix://{tmp_path}/gone.sock"
    for args, stdin in ((["verify", NUMBER], "724353\n"), (["send", NUMBER, "--no-prompt"], "")):
        result = run_cli(args, dict(machines[0], VOICE2FA_STORE=down), input=stdin)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and f"the store {down} cannot be reached: " in errors[0]
        assert "Traceback" not in result.stderr
    assert sandbox.requests == []  # send refused before dialing


def test_sessions_lists_the_shared_sessions(machines, redis_server, key_file):
    with shared_store(redis_server, key_file) as store:
        store.create_session(session_id="listed", number=NUMBER, code="724353", ttl=600, call_sid="c1",
                             call_status="completed")
    result = run_cli(["sessions", "--json"], machines[2])
    assert result.returncode == 0, result.stderr
    assert [s["session_id"] for s in json.loads(result.stdout)["sessions"]] == ["listed"]


def test_verify_on_sqlite_does_not_import_redis(cli_env):
    code = ("import sys, runpy; sys.argv = ['voice2fa', 'verify', '+15551234567', '--code', '123456'];"
            "\ntry: runpy.run_module('voice2fa_cli', run_name='__main__')\nexcept SystemExit: pass\n"
            "print('redis' in sys.modules)")
    import sys

    out = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip().endswith("False"), out.stderr
    assert os.environ.get("VOICE2FA_STORE") is None


def _doctor_rows(env: dict[str, str]) -> dict[str, dict]:
    result = run_cli(["doctor", "--json"], env)
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_doctor_checks_the_connection_the_key_and_persistence(machines, redis_server, key_file, tmp_path):
    from voice2fa_cli.stores.redis_keys import fingerprint_of

    rows = _doctor_rows(machines[0])
    assert rows["VOICE2FA_STORE"]["status"] == "ok"
    assert rows["VOICE2FA_STORE"]["detail"] == f"Redis at {redis_server.url}: reached, and it was set up with this machine's key"
    assert rows["VOICE2FA_KEY_FILE"] == {"name": "VOICE2FA_KEY_FILE", "status": "ok", "fix": None,
                                         "detail": f"{key_file} (fingerprint {fingerprint_of(key_file.read_bytes())})"}
    assert rows["store persistence"]["status"] == "warn"  # the test server runs with neither AOF nor RDB
    assert rows["store persistence"]["fix"] == "run Redis with `appendonly yes` (or `save` snapshots)"
    stranger = tmp_path / "stranger.key"
    stranger.write_bytes(secrets.token_bytes(32))
    stranger.chmod(0o600)
    rows = _doctor_rows(dict(machines[1], VOICE2FA_KEY_FILE=str(stranger)))
    assert rows["VOICE2FA_STORE"]["status"] == "fail"
    assert "was set up with another key" in rows["VOICE2FA_STORE"]["detail"]
    assert rows["VOICE2FA_STORE"]["fix"] == "copy the key file every other machine uses and set VOICE2FA_KEY_FILE to it"


def test_doctor_with_aof_on_and_a_store_that_is_down(machines, tmp_path, key_file):
    aof = RedisServer(tmp_path / "aof", appendonly=True)
    (tmp_path / "aof").mkdir()
    aof.start()
    try:
        rows = _doctor_rows(dict(machines[0], VOICE2FA_STORE=aof.url))
        assert rows["store persistence"] == {"name": "store persistence", "status": "ok", "fix": None,
                                             "detail": "the server keeps its data in the append-only file"}
    finally:
        aof.stop()
    rows = _doctor_rows(dict(machines[0], VOICE2FA_STORE=aof.url))
    assert rows["VOICE2FA_STORE"]["status"] == "fail"
    assert rows["VOICE2FA_STORE"]["fix"] == (
        "start Redis, or check the host, port or socket in VOICE2FA_STORE and the network to it"
    )


def test_the_store_failing_during_a_call_hangs_up_and_never_exits_2(sandbox, cli_env, key_file, tmp_path):
    from tests.test_cli_e2e import wait_until_ringing

    own = RedisServer(tmp_path / "own")
    (tmp_path / "own").mkdir()
    own.start()
    env = dict(cli_env, VOICE2FA_STORE=own.url, VOICE2FA_KEY_FILE=str(key_file))
    sandbox.set_scenario(outcome="hold")  # it rings until voice2fa hangs up
    try:
        proc = start_cli(["send", NUMBER, "--no-prompt", "--ring-timeout", "5"], env)
        try:
            wait_until_ringing(sandbox)
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.communicate()) from None
    finally:
        own.stop()  # the store goes away while the phone rings
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert f"the store {own.url} cannot be reached" in err
    assert "nothing was called" not in err
    hang_ups = [r for r in sandbox.requests if r.method == "POST" and dict(r.form).get("Status") == "completed"]
    assert len(hang_ups) == 1  # the call was hung up
