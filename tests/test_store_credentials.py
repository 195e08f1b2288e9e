"""No credential of a store URL is ever shown (issue 18, item 5): a real redis-server that wants
a password, reached with the password in every form redis-py reads (the userinfo, `password=`,
`username=`), and every command's output and serve's log swept for it."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import run_cli, serve_process
from tests.redis_server import REDIS_SERVER, RedisServer
from voice2fa_cli.stores.base import safe_url

PASSWORD = "pw-Zq81x7Hh2v"  # the secret the sweep looks for
WRONG = "pw-wrong-4Ld0c"
NUMBER = "+15551234567"


def test_safe_url_hides_the_userinfo_and_every_query_value_that_may_be_a_credential():
    assert safe_url("redis://alice:s3cret@10.0.0.1:6379/0") == "redis://***@10.0.0.1:6379/0"
    assert safe_url("rediss://:s3cret@[::1]:6380") == "rediss://***@[::1]:6380"
    assert safe_url("redis://token-as-user@cache.internal") == "redis://***@cache.internal"
    assert safe_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    assert safe_url("unix:///run/redis.sock?password=s3cret&db=2") == "unix:///run/redis.sock?password=***&db=2"
    assert safe_url("unix:///r.sock?username=desk&password=s3cret#x") == "unix:///r.sock?username=***&password=***"
    assert safe_url("unix:///r.sock?api_token=s3cret") == "unix:///r.sock?api_token=***"
    assert safe_url("redis://:s3cret@host:99999999/0") == "redis://***"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A redis-server with a password, and a state dir and key file for voice2fa."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    pytest.importorskip("redis")
    base = tmp_path_factory.mktemp("guarded")
    server = RedisServer(base, extra=["--requirepass", PASSWORD]).start()
    key = base / "shared.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    yield server, base, key
    server.stop()


def urls(server: RedisServer, base) -> dict[str, str]:
    sock = server.socket
    return {
        "query password": f"unix://{sock}?password={PASSWORD}",
        "user and query password": f"unix://{sock}?username=default&password={PASSWORD}",
        "userinfo": f"unix://default:{PASSWORD}@{sock}",
        "wrong password": f"unix://{sock}?password={WRONG}",
        "no such socket": f"unix://{base}/none.sock?password={PASSWORD}",
        "tcp, nothing listening": f"redis://:{PASSWORD}@127.0.0.1:1/0",
    }


COMMANDS = [
    ["keys", "list"], ["services", "list"], ["doctor"], ["doctor", "--json"],
    ["verify", NUMBER, "--code", "123456"], ["verify", NUMBER, "--code", "123456", "--json"], ["sessions"],
    ["sessions", "--json"],
]


def env_for(base, key, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    state = base / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    env.update(VOICE2FA_STATE_DIR=str(state), VOICE2FA_KEY_FILE=str(key), VOICE2FA_STORE=url,
               VOICE2FA_STORE_TIMEOUT="1")
    return env


@pytest.mark.parametrize("form", ["query password", "user and query password", "userinfo", "wrong password",
                                  "no such socket", "tcp, nothing listening"])
def test_no_command_shows_the_store_password(guarded, form):
    server, base, key = guarded
    url = urls(server, base)[form]
    shown = []
    for args in COMMANDS:
        result = run_cli(args, env_for(base, key, url), timeout=30)
        for stream in (result.stdout, result.stderr):
            if PASSWORD in stream or WRONG in stream:
                shown.append((args, stream))
    assert shown == []


def test_the_commands_still_say_which_store_and_what_went_wrong(guarded):
    server, base, key = guarded
    good = run_cli(["doctor", "--json"], env_for(base, key, urls(server, base)["query password"]), timeout=30)
    row = next(c for c in json.loads(good.stdout)["checks"] if c["name"] == "VOICE2FA_STORE")
    assert row["detail"].startswith(f"Redis at unix://{server.socket}?password=***: reached")
    bad = run_cli(["keys", "list"], env_for(base, key, urls(server, base)["wrong password"]), timeout=30)
    assert bad.returncode == 2
    assert bad.stderr == (f"error: the store unix://{server.socket}?password=*** refused the credentials: "
                          "check the user and password in VOICE2FA_STORE\n")


def test_serve_logs_the_store_without_its_password(guarded):
    server, base, key = guarded
    env = env_for(base, key, urls(server, base)["user and query password"])
    with serve_process(env, timeout=30) as (started, done):
        pass
    assert (started["event"], started["store"]) == ("started", f"Redis at unix://{server.socket}?username=***&password=***")
    assert done["returncode"] == 0, done["err"]
    assert PASSWORD not in done["out"] + done["err"]
