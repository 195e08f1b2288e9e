"""`voice2fa doctor` as a subprocess against the sandbox: the same checks as `send`, one row
per setting, every row shown, each failure with the fix that fits its cause."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading

import pytest

from tests.helpers import NUMBER, free_port, run_cli

SETTINGS = [
    ".env", "SIGNALWIRE_SPACE", "SIGNALWIRE_PROJECT", "SIGNALWIRE_TOKEN", "SIGNALWIRE_NUMBER",
    "SIGNALWIRE_SIGNING_KEY", "VOICE2FA_CALLER_NAME", "VOICE2FA_DELIVERY", "VOICE2FA_PUBLIC_URL", "VOICE2FA_LISTEN", "VOICE2FA_STATE_DIR", "VOICE2FA_STORE",
    "VOICE2FA_ALLOWED_COUNTRIES", "VOICE2FA_ALLOW_NUMBER_TYPES", "VOICE2FA_MAX_CALLS_PER_HOUR", "VOICE2FA_DEFAULT_REGION",
    "VOICE2FA_ALLOW_SPACE_HOST", "VOICE2FA_API_TIMEOUT", "VOICE2FA_POLL_INTERVAL", "VOICE2FA_WEBHOOK_GRACE",
    "credentials", "tunnel",
]


def table(stderr: str) -> dict[str, tuple[str, str, str | None]]:
    """check name → (mark, detail, fix), from doctor's table."""
    out: dict[str, tuple[str, str, str | None]] = {}
    last = None
    for line in stderr.splitlines():
        if line[:1] in "✓!✗-" and line[1:2] == " ":
            name, _, detail = line[2:].partition("  ")
            last = name.strip()
            out[last] = (line[0], detail.strip(), None)
        elif line.strip().startswith("fix: ") and last is not None:
            mark, detail, _ = out[last]
            out[last] = (mark, detail, line.strip()[len("fix: "):])
    return out


def rows(stderr: str) -> dict[str, str]:
    return {name: mark for name, (mark, _, _) in table(stderr).items()}


def test_a_sound_setup_passes_after_asking_the_api(sandbox, cli_env):
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 0, result.stderr
    marks = rows(result.stderr)
    assert list(marks) == SETTINGS  # one row per setting, then the checks
    assert marks["credentials"] == "✓" and marks["tunnel"] == "✓"
    assert marks["VOICE2FA_PUBLIC_URL"] == "!"  # loopback URL: a warning only
    assert marks["SIGNALWIRE_NUMBER"] == "!"  # +1 555 0100: possible, not known to be assigned
    assert result.stderr.splitlines()[-1] == "ready (4 warnings)"
    assert [(r.method, r.path) for r in sandbox.requests] == [
        ("GET", f"/api/laml/2010-04-01/Accounts/{sandbox.project}.json")
    ]
    assert sandbox.calls == {}
    assert cli_env["SIGNALWIRE_TOKEN"] not in result.stderr + result.stdout
    assert cli_env["SIGNALWIRE_SIGNING_KEY"] not in result.stderr + result.stdout


def test_a_wrong_token_fails_naming_it(sandbox, cli_env):
    cli_env["SIGNALWIRE_TOKEN"] = "wrong"
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    mark, _, fix = table(result.stderr)["credentials"]
    assert (mark, fix) == (
        "✗", "check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN against the API page of your SignalWire Dashboard"
    )
    assert result.stderr.splitlines()[-1] == "error: 1 problem: credentials"


def test_an_unreachable_space_is_a_network_problem_not_the_credentials(cli_env):
    port = free_port()
    cli_env["SIGNALWIRE_SPACE"] = f"http://127.0.0.1:{port}"
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    mark, detail, fix = table(result.stderr)["credentials"]
    assert mark == "✗"
    assert detail == f"cannot reach SignalWire at http://127.0.0.1:{port}: connection failed (Connection refused)"
    assert fix == (f"check this machine's network connection, and that 127.0.0.1:{port} is your Space's domain "
                   "(SIGNALWIRE_SPACE)")
    assert "TOKEN" not in fix


def test_a_public_url_that_reaches_nothing_is_named_without_flags_doctor_lacks(sandbox, cli_env):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli(["doctor", "--public-url", dead], cli_env)
    assert result.returncode == 2
    mark, detail, fix = table(result.stderr)["tunnel"]
    assert mark == "✗" and dead in detail
    assert fix == (f"start a tunnel that forwards to {cli_env['VOICE2FA_LISTEN']} (e.g. `ngrok http "
                   f"{cli_env['VOICE2FA_LISTEN'].rsplit(':', 1)[1]}`) and set VOICE2FA_PUBLIC_URL (or --public-url) "
                   "to its URL")
    assert "--skip-preflight" not in result.stderr  # doctor has no such flag
    assert result.stderr.splitlines()[-1] == "error: 1 problem: tunnel"


def test_a_port_in_use_is_a_listen_problem_not_a_tunnel_one(sandbox, cli_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cli_env["VOICE2FA_LISTEN"] = f"127.0.0.1:{port}"
        result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    found = table(result.stderr)
    assert found["VOICE2FA_LISTEN"] == (
        "✗", f"VOICE2FA_LISTEN 127.0.0.1:{port}: the address is already in use: choose another port",
        "stop the program that holds it, or choose another port with --listen or VOICE2FA_LISTEN (and point the "
        "tunnel at it)",
    )
    assert found["tunnel"] == ("-", "not checked: VOICE2FA_LISTEN above must be fixed first", None)
    assert "start a tunnel" not in result.stderr
    assert result.stderr.splitlines()[-1] == "error: 1 problem: VOICE2FA_LISTEN"


def test_the_example_env_placeholder_host_is_flagged(sandbox, cli_env):
    cli_env["SIGNALWIRE_SPACE"] = "example.signalwire.com"
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    assert table(result.stderr)["SIGNALWIRE_SPACE"][:2] == (
        "✗", "SIGNALWIRE_SPACE is example.signalwire.com, the placeholder from example.env: put your own Space's "
        "domain (top of your SignalWire Dashboard)"
    )
    assert table(result.stderr)["credentials"][0] == "-"
    assert sandbox.requests == []


def test_a_state_dir_that_is_a_file(sandbox, cli_env, state_dir):
    state_dir.write_text("not a directory")
    state_dir.chmod(0o644)
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    assert table(result.stderr)["VOICE2FA_STATE_DIR"] == (
        "✗", f"the state dir {state_dir} exists and is not a directory",
        "move that file away, or set VOICE2FA_STATE_DIR to a directory of your own",
    )
    assert "chmod" not in result.stderr


def test_a_garbage_database_is_a_problem(sandbox, cli_env, state_dir):
    state_dir.mkdir(mode=0o700)
    db = state_dir / "sessions.sqlite3"
    db.write_bytes(os.urandom(4096))
    db.chmod(0o600)
    key = state_dir / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    mark, detail, _ = table(result.stderr)["VOICE2FA_STATE_DIR"]
    assert mark == "✗" and str(db) in detail and "damaged or not voice2fa's" in detail, result.stderr


# --- doctor runs send's own checks: what send refuses, doctor flags on its row ------------------------------

DISAGREEMENTS = [
    ("SIGNALWIRE_PROJECT", "my project"),
    ("VOICE2FA_MAX_CALLS_PER_HOUR", "lots"),
    ("VOICE2FA_MAX_CALLS_PER_HOUR", "²"),
    ("VOICE2FA_ALLOWED_COUNTRIES", "USA,France"),
    ("VOICE2FA_POLL_INTERVAL", "soon"),
    ("VOICE2FA_API_TIMEOUT", "+5"),
    ("VOICE2FA_WEBHOOK_GRACE", "1e3"),
    ("VOICE2FA_DEFAULT_REGION", "UK"),
    ("SIGNALWIRE_SPACE", "example.signalwire.com"),
    ("SIGNALWIRE_SPACE", "https://evil.example"),
    ("SIGNALWIRE_NUMBER", "+1 555"),
    ("VOICE2FA_LISTEN", "127.0.0.1:５000"),
    ("VOICE2FA_PUBLIC_URL", "ftp://x.example"),
    ("VOICE2FA_CALLER_NAME", "Acme <support>"),
]


@pytest.mark.parametrize(("name", "value"), DISAGREEMENTS)
def test_doctor_and_send_agree(sandbox, cli_env, name, value):
    cli_env[name] = value
    sent = run_cli(["send", "5551234567", "--no-prompt"], cli_env)
    assert sent.returncode == 2, sent.stderr
    refusal = sent.stderr.splitlines()[-1].removeprefix("error: ")
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    found = table(result.stderr)
    assert list(found) == SETTINGS  # every row shown, even with a failure
    assert found[name][:2] == ("✗", refusal)
    assert result.stderr.splitlines()[-1].startswith("error: 1 problem")
    assert sandbox.calls == {}


def test_every_row_is_shown_when_many_fail(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(tmp_path / "none"), VOICE2FA_LISTEN=f"127.0.0.1:{free_port()}",
               VOICE2FA_POLL_INTERVAL="x", VOICE2FA_MAX_CALLS_PER_HOUR="lots")
    result = run_cli(["doctor"], env)
    assert result.returncode == 2
    found = table(result.stderr)
    assert list(found) == SETTINGS
    assert result.stderr.splitlines()[-1] == (
        "error: 7 problems: SIGNALWIRE_SPACE, SIGNALWIRE_PROJECT, SIGNALWIRE_TOKEN, SIGNALWIRE_NUMBER, "
        "VOICE2FA_PUBLIC_URL, VOICE2FA_MAX_CALLS_PER_HOUR, VOICE2FA_POLL_INTERVAL"
    )
    assert found["VOICE2FA_STATE_DIR"][0] == "✓"  # not created yet: the first send makes it
    assert found["credentials"][0] == found["tunnel"][0] == "-"


def test_json_for_scripts_matches_the_rows(sandbox, cli_env):
    del cli_env["SIGNALWIRE_SIGNING_KEY"]
    result = run_cli(["doctor", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["ok"], data["problems"], data["dotenv"]) == (True, 0, None)
    assert result.stderr == ""  # --json: data only (issue 10); the same rows as the table
    table = run_cli(["doctor"], cli_env)
    assert [(c["name"], {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}[c["status"]]) for c in data["checks"]] == (
        list(rows(table.stderr).items())
    )
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["SIGNALWIRE_SIGNING_KEY"]["status"] == "warn"
    assert by_name["SIGNALWIRE_TOKEN"] == {
        "name": "SIGNALWIRE_TOKEN", "status": "ok", "detail": f"set ({len(cli_env['SIGNALWIRE_TOKEN'])} characters)",
        "fix": None,
    }
    assert "\x1b[" not in result.stdout + result.stderr


# --- the .env it read ----------------------------------------------------------------------------------------


def test_the_dotenv_read_is_named(sandbox, cli_env, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    (work / ".env").write_text("VOICE2FA_MAX_CALLS_PER_HOUR=9\nSIGNALWIRE_NUMBER=+15550100000\n")
    result = run_cli(["doctor"], cli_env, cwd=work)
    assert result.returncode == 0, result.stderr
    assert table(result.stderr)[".env"][:2] == (
        "✓", f"read {work / '.env'}: 1 setting taken from it (the real environment wins over it)"
    )
    assert json.loads(run_cli(["doctor", "--json"], cli_env, cwd=work).stdout)["dotenv"] == str(work / ".env")


def test_a_refused_dotenv_is_a_row_and_the_rest_is_still_checked(sandbox, cli_env, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    os.mkfifo(work / ".env")
    result = run_cli(["doctor"], cli_env, cwd=work, timeout=60)
    assert result.returncode == 2
    found = table(result.stderr)
    assert list(found) == SETTINGS
    assert found[".env"][:2] == ("✗", f"{work / '.env'} is a FIFO, not a regular file: remove it or replace it with a file")
    assert found["credentials"][0] == "✓"
    assert result.stderr.splitlines()[-1] == "error: 1 problem: .env"


# --- the attack: a .env that points the Space elsewhere gets no credentials ----------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "active"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("host", ["localhost", "evil.localhost", "evil.example"])
def test_a_dotenv_cannot_send_the_credentials_elsewhere(cli_env, tmp_path, recorder, host):
    work = tmp_path / "cloned-project"
    work.mkdir()
    del cli_env["SIGNALWIRE_SPACE"]  # the credentials are in the real environment; the Space is not
    (work / ".env").write_text(f"SIGNALWIRE_SPACE=http://{host}:{recorder}\n")
    result = run_cli(["doctor"], cli_env, cwd=work)
    assert result.returncode == 2
    assert Recorder.seen == []  # no basic-auth header, no request at all
    mark, detail, _ = table(result.stderr)["SIGNALWIRE_SPACE"]
    assert mark == "✗" and f"host {host} is not a SignalWire Space" in detail
    sent = run_cli(["send", NUMBER, "--no-prompt"], cli_env, cwd=work)
    assert sent.returncode == 2 and Recorder.seen == []


def test_an_opt_in_in_the_dotenv_does_not_count(cli_env, tmp_path, recorder):
    work = tmp_path / "cloned-project"
    work.mkdir()
    del cli_env["SIGNALWIRE_SPACE"]
    (work / ".env").write_text(f"SIGNALWIRE_SPACE=http://localhost:{recorder}\nVOICE2FA_ALLOW_SPACE_HOST=localhost\n")
    result = run_cli(["doctor"], cli_env, cwd=work)
    assert result.returncode == 2
    assert Recorder.seen == []
    assert table(result.stderr)["VOICE2FA_ALLOW_SPACE_HOST"][:2] == (
        "✗", f"VOICE2FA_ALLOW_SPACE_HOST is read only from the real environment, not from {work / '.env'}: "
        "export it in your shell"
    )


def test_the_operators_own_opt_in_is_honoured(cli_env, tmp_path, recorder):
    # The control: the same recorder does receive the credentials when the operator allows its host.
    cli_env.update(SIGNALWIRE_SPACE=f"http://localhost:{recorder}", VOICE2FA_ALLOW_SPACE_HOST="localhost")
    result = run_cli(["doctor"], cli_env)
    assert table(result.stderr)["credentials"][0] == "✓", result.stderr
    assert table(result.stderr)["VOICE2FA_ALLOW_SPACE_HOST"] == (
        "!", "localhost (the API credentials may be sent to this host)", None
    )
    assert [h.get("Authorization", "").startswith("Basic ") for h in Recorder.seen] == [True]


def test_the_caller_name_is_shown_and_checked(sandbox, cli_env):
    result = run_cli(["doctor", "--json"], cli_env)
    by_name = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert by_name["VOICE2FA_CALLER_NAME"] == {
        "name": "VOICE2FA_CALLER_NAME", "status": "warn", "detail": "not set: the call does not say who is calling",
        "fix": "set VOICE2FA_CALLER_NAME to the name the callee knows you by, e.g. Acme support",
    }
    cli_env["VOICE2FA_CALLER_NAME"] = "  Acme   support "
    result = run_cli(["doctor", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    by_name = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert (by_name["VOICE2FA_CALLER_NAME"]["status"], by_name["VOICE2FA_CALLER_NAME"]["detail"]) == ("ok", "Acme support")
    cli_env["VOICE2FA_CALLER_NAME"] = "Acme\x1b[2J"
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 2
    assert "\x1b[2J" not in result.stderr
    assert result.stderr.splitlines()[-1] == "error: 1 problem: VOICE2FA_CALLER_NAME"
