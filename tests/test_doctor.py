"""`voice2fa doctor` as a subprocess against the sandbox."""

from __future__ import annotations

import json

from tests.helpers import free_port, run_cli


def rows(stderr: str) -> dict[str, str]:
    """check name → mark, from doctor's table."""
    out = {}
    for line in stderr.splitlines():
        if line[:1] in "✓!✗" and len(line) > 2:
            out[line[2:].split("  ")[0].strip()] = line[0]
    return out


def test_a_sound_setup_passes_after_asking_the_api(sandbox, cli_env):
    result = run_cli(["doctor"], cli_env)
    assert result.returncode == 0, result.stderr
    marks = rows(result.stderr)
    assert marks["credentials"] == "✓" and marks["public URL"] == "!"  # loopback URL: a warning only
    assert marks["SIGNALWIRE_NUMBER"] == "!"  # +1 555 0100: possible, not known to be assigned
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
    assert "✗ credentials" in result.stderr and "SIGNALWIRE_TOKEN" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: 1 check failed: credentials"


def test_a_public_url_that_reaches_nothing_is_named(sandbox, cli_env):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli(["doctor", "--public-url", dead], cli_env)
    assert result.returncode == 2
    assert "✗ public URL" in result.stderr and dead in result.stderr
    assert result.stderr.splitlines()[-1] == "error: 1 check failed: public URL"


def test_json_for_scripts(sandbox, cli_env):
    del cli_env["SIGNALWIRE_SIGNING_KEY"]
    result = run_cli(["doctor", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["SIGNALWIRE_SIGNING_KEY"]["status"] == "warn"
    assert by_name["SIGNALWIRE_TOKEN"] == {
        "name": "SIGNALWIRE_TOKEN", "status": "ok", "detail": f"set ({len(cli_env['SIGNALWIRE_TOKEN'])} characters)", "fix": None
    }
    assert "\x1b[" not in result.stdout + result.stderr


def test_nothing_configured(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(tmp_path / "none"), VOICE2FA_LISTEN=f"127.0.0.1:{free_port()}")
    result = run_cli(["doctor"], env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "error: 6 checks failed: SIGNALWIRE_SPACE, SIGNALWIRE_PROJECT, SIGNALWIRE_TOKEN, SIGNALWIRE_NUMBER, "
        "credentials, public URL"
    )
    assert "! state dir" in result.stderr  # not created yet: a warning, not a failure


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
    assert result.stderr.splitlines()[-1] == "error: 1 check failed: VOICE2FA_CALLER_NAME"
