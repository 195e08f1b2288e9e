"""End to end: the installed `voice2fa` as a subprocess against the sandbox over loopback HTTP,
configured exactly as a real account would be (SIGNALWIRE_SPACE=http://127.0.0.1:PORT)."""

from __future__ import annotations

import json
import re
import signal
import socket
import time

import pytest

from tests.helpers import NUMBER, free_port, run_cli, sandbox_code_shown, start_cli
from tests.test_cli_output import answer, read_until
from voice2fa_cli.stores.sqlite import Store


def finish_with_code(proc, sandbox, entry: str | None = None, timeout: float = 30):
    """Wait for the code to be read to the callee, type `entry` (default: the right code)."""
    code = sandbox.wait_code()
    text = (code if entry is None else entry) + "\n"
    out, err = proc.communicate(text, timeout=timeout)
    return code, out, err


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until_ringing(sandbox) -> None:
    deadline = time.monotonic() + 10
    while not (sandbox.calls and next(iter(sandbox.calls.values())).status == "ringing"):
        assert time.monotonic() < deadline, "the call never rang"
        time.sleep(0.01)


def platform_received(sandbox) -> str:
    return repr([(r.method, r.path, r.form) for r in sandbox.requests])


def test_right_code_read_back_verifies(sandbox, cli_env, state_dir):
    proc = start_cli(["send", NUMBER], cli_env)
    code, out, err = finish_with_code(proc, sandbox)
    assert proc.returncode == 0, err
    assert out == ""
    assert err.splitlines()[-1].endswith(f"verified: {NUMBER}")
    # The code is in nothing printed, and in nothing sent to the platform.
    assert code not in out + err
    assert code not in platform_received(sandbox)
    # Progress on stderr, in order.
    labels = ["calling +1 555-123-4567, United States", "ringing", "answered", "code read to the callee", "call completed"]
    positions = [err.index(label) for label in labels]
    assert positions == sorted(positions)
    # Nothing listens on --listen any more.
    assert not listening(int(cli_env["VOICE2FA_LISTEN"].rsplit(":", 1)[1]))
    with Store.open(state_dir) as store:
        session = store.newest(NUMBER)
    assert (session.state, session.attempts, session.call_status) == ("verified", 0, "completed")


def test_what_the_platform_received(sandbox, cli_env):
    proc = start_cli(["send", NUMBER, "--no-prompt", "--ring-timeout", "25"], cli_env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    create = sandbox.requests[0]
    assert create.method == "POST" and create.path.endswith(f"/Accounts/{sandbox.project}/Calls.json")
    form = dict(create.form)
    public = cli_env["VOICE2FA_PUBLIC_URL"]
    assert form["From"] == "+15550100000" and form["To"] == NUMBER
    assert form["Method"] == "POST" and form["StatusCallbackMethod"] == "POST" and form["Timeout"] == "25"
    assert [v for k, v in create.form if k == "StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    token = form["Url"].removeprefix(public + "/v/")
    assert len(token) >= 43 and "/" not in token  # token_urlsafe(32): 256 bits
    assert form["StatusCallback"] == f"{public}/v/{token}/status"
    assert len(sandbox.requests) == 1  # no retry, no hang-up of a finished call


def test_wrong_code_is_rejected(sandbox, cli_env, state_dir):
    proc = start_cli(["send", NUMBER], cli_env)
    code, out, err = finish_with_code(proc, sandbox, entry="000000" if sandbox.heard_code() != "000000" else "111111")
    assert proc.returncode == 1
    assert err.splitlines()[-1] == "error: wrong code (4 attempts left)"
    with Store.open(state_dir) as store:
        assert store.newest(NUMBER).attempts == 1


def test_no_prompt_then_verify_in_another_process(sandbox, cli_env, state_dir):
    result = run_cli(["send", NUMBER, "--no-prompt", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data)[:6] == ["session_id", "number", "call_sid", "call_status", "verified", "expires_at"]
    assert (data["number"], data["call_status"], data["verified"], data["delivered"]) == (NUMBER, "completed", None, True)
    assert data["call_sid"] == next(iter(sandbox.calls))
    code = sandbox.heard_code()
    assert code not in result.stdout + result.stderr
    verify_env = {k: v for k, v in cli_env.items() if not k.startswith("SIGNALWIRE_")}
    verify_env.pop("VOICE2FA_PUBLIC_URL")
    ok = run_cli(["verify", NUMBER, "--json"], verify_env, input=code + "\n")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {
        "number": NUMBER, "verified": True, "session_id": data["session_id"], "reason": "verified",
        "attempts_left": 0, "sandbox": False, "error": None, "exit_code": 0,
    }
    again = run_cli(["verify", NUMBER], verify_env, input=code + "\n")
    assert (again.returncode, again.stderr.splitlines()[-1]) == (1, "error: this code was already used: send a new one")


def test_end_of_input_leaves_the_session_open(sandbox, cli_env, state_dir):
    proc = start_cli(["send", NUMBER], cli_env)
    code = sandbox.wait_code()
    out, err = proc.communicate("", timeout=30)
    assert proc.returncode == 1
    assert err.splitlines()[-1] == f"error: no code entered; the session stays open for `voice2fa verify {NUMBER}`"
    with Store.open(state_dir) as store:
        assert (store.newest(NUMBER).state, store.newest(NUMBER).attempts) == ("delivered", 0)
    ok = run_cli(["verify", NUMBER, "--code", code], cli_env)
    assert ok.returncode == 0, ok.stderr


def test_empty_line_counts_no_attempt(sandbox, cli_env, state_dir):
    proc = start_cli(["send", NUMBER], cli_env)
    _, out, err = finish_with_code(proc, sandbox, entry="")
    assert proc.returncode == 1 and "no code entered" in err
    with Store.open(state_dir) as store:
        assert store.newest(NUMBER).attempts == 0


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ("busy", "error: the line was busy: the code was not delivered"),
        ("no-answer", "error: nobody answered: the code was not delivered"),
        ("failed", "error: the call failed (the number may be unreachable): the code was not delivered"),
    ],
)
def test_call_outcomes_that_deliver_nothing_exit_3(sandbox, cli_env, state_dir, outcome, message):
    sandbox.set_scenario(outcome=outcome)
    result = run_cli(["send", NUMBER, "--json"], cli_env)
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == message
    data = json.loads(result.stdout)
    assert (data["call_status"], data["verified"], data["exit_code"]) == (outcome, None, 3)
    with Store.open(state_dir) as store:
        assert store.newest(NUMBER).state == "undelivered"


def test_nobody_presses_the_key(sandbox, cli_env):
    sandbox.set_scenario(press=None)
    result = run_cli(["send", NUMBER], cli_env)
    assert result.returncode == 3
    call = next(iter(sandbox.calls.values()))
    assert not any(line.replace(", ", "").isdigit() for line in call.heard)  # the code was never read
    key = [line for line in call.heard if line.startswith("Press ")][0].split()[1]
    assert result.stderr.splitlines()[-1] == f"error: the code was not delivered: nobody pressed {key} (voicemail?)"


def test_a_callee_who_hangs_up_at_the_key_prompt_is_not_called_a_voicemail(sandbox, cli_env, state_dir):
    sandbox.set_scenario(hang_up_after_fetch=True)
    result = run_cli(["send", NUMBER, "--json"], cli_env)
    assert result.returncode == 3
    call = next(iter(sandbox.calls.values()))
    assert call.duration < 12  # hung up before the 12-second key window could run out
    key = re.search(r"Press ([1-9])", call.documents[0].decode()).group(1)
    assert result.stderr.splitlines()[-1] == f"error: the code was not delivered: the callee hung up before pressing {key}"
    assert json.loads(result.stdout)["error"] == f"the code was not delivered: the callee hung up before pressing {key}"


def test_a_voicemail_waits_out_the_key_window(sandbox, cli_env):
    sandbox.set_scenario(outcome="voicemail")
    result = run_cli(["send", NUMBER], cli_env)
    assert result.returncode == 3
    call = next(iter(sandbox.calls.values()))
    assert call.duration >= 12  # the simulated time includes the <Gather>'s timeout
    key = re.search(r"Press ([1-9])", call.documents[0].decode()).group(1)
    assert result.stderr.splitlines()[-1] == f"error: the code was not delivered: nobody pressed {key} (voicemail?)"


def test_wrong_keys_never_hear_the_code(sandbox, cli_env):
    sandbox.set_scenario(press="0")  # the gate asks for 1–9
    result = run_cli(["send", NUMBER], cli_env)
    assert result.returncode == 3
    call = next(iter(sandbox.calls.values()))
    assert call.pressed == ["0", "0", "0"]
    assert sandbox.heard_code() is None
    assert "wrong key pressed 3 times" in result.stderr.splitlines()[-1]


def test_no_keypress_reads_the_code_at_once(sandbox, cli_env):
    sandbox.set_scenario(press=None)
    proc = start_cli(["send", NUMBER, "--no-keypress"], cli_env)
    code, out, err = finish_with_code(proc, sandbox)
    assert proc.returncode == 0, err
    assert next(iter(sandbox.calls.values())).pressed == []


def test_preflight_catches_a_dead_tunnel_before_dialing(sandbox, cli_env, state_dir):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli(["send", NUMBER, "--public-url", dead], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2,
        f"error: the public URL {dead} cannot be reached (ClientConnectorError): is the tunnel running and "
        f"forwarding to {cli_env['VOICE2FA_LISTEN']}? (--skip-preflight to skip this check)",
    )
    assert sandbox.requests == []


def test_preflight_catches_a_tunnel_to_another_server(sandbox, cli_env):
    # The "tunnel" points at the sandbox itself: something answers, but not this voice2fa.
    result = run_cli(["send", NUMBER, "--public-url", sandbox.url], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2,
        f"error: the public URL {sandbox.url} answered 404, not this voice2fa: is the tunnel running and "
        f"forwarding to {cli_env['VOICE2FA_LISTEN']}? (--skip-preflight to skip this check)",
    )
    assert sandbox.requests == []


def test_platform_never_reaches_the_public_url(sandbox, cli_env, state_dir):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli(["send", NUMBER, "--public-url", dead, "--skip-preflight"], cli_env)
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == (
        f"error: SignalWire never reached {dead}: is the tunnel running? "
        f"(it must forward to {cli_env['VOICE2FA_LISTEN']})"
    )


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "error: SignalWire refused the credentials: check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"),
        (500, "error: SignalWire failed on the call request (500): try again later"),
        (429, "error: SignalWire is rate-limiting this account (429 Too Many Requests): wait and try again"),
    ],
)
def test_api_errors_exit_4_and_store_nothing(sandbox, cli_env, state_dir, status, message):
    sandbox.set_scenario(api_status=status)
    result = run_cli(["send", NUMBER], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (4, message)
    assert len(sandbox.requests) == 1  # never retried
    with Store.open(state_dir) as store:
        assert store.newest(NUMBER) is None


def test_wrong_token_exits_4(sandbox, cli_env):
    cli_env["SIGNALWIRE_TOKEN"] = "not-the-token"
    result = run_cli(["send", NUMBER], cli_env)
    assert result.returncode == 4
    assert "SIGNALWIRE_TOKEN" in result.stderr.splitlines()[-1]
    assert sandbox.calls == {}


def test_unreachable_signalwire_exits_4(cli_env):
    port = free_port()
    cli_env["SIGNALWIRE_SPACE"] = f"http://127.0.0.1:{port}"
    result = run_cli(["send", NUMBER], cli_env)
    assert result.returncode == 4
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot reach SignalWire at http://127.0.0.1:{port}: connection failed (Connection refused)"
    )


def test_platform_rejects_the_number(sandbox, cli_env):
    sandbox.sandbox.caller = "+15550199999"  # the project does not own our caller ID
    result = run_cli(["send", NUMBER], cli_env)
    assert result.returncode == 4
    assert result.stderr.splitlines()[-1] == (
        "error: SignalWire rejected the call request (400, error 21210): 'From' phone number not verified: "
        "+15550100000 — SIGNALWIRE_NUMBER is not a number of this project: pick one from the Phone Numbers page"
    )


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("", "error: the number is empty: give it in E.164 form, e.g. +15551234567"),
        ("call-me", "error: the number 'call-me' contains letters: give it in E.164 form, e.g. +15551234567"),
        ("+1555", "error: the number '+1555' is too short for its country (+1)"),
        ("+1 555 123 4567 ext 9", "error: the number '+1 555 123 4567 ext 9' contains letters: give it in E.164 form, e.g. +15551234567"),
    ],
)
def test_invalid_numbers_exit_2_and_call_nothing(sandbox, cli_env, state_dir, number, message):
    result = run_cli(["send", number], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, message)
    assert sandbox.requests == []
    assert not state_dir.exists()


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("SIGNALWIRE_TOKEN", "error: SIGNALWIRE_TOKEN is not set: create an API token on the API page of your SignalWire Dashboard"),
        ("SIGNALWIRE_PROJECT", "error: SIGNALWIRE_PROJECT is not set: copy the Project ID from the API page of your SignalWire Dashboard"),
        # the sandbox is a local stand-in: no tunnel (a real Space's message: test_config.py)
        ("VOICE2FA_PUBLIC_URL", "error: VOICE2FA_PUBLIC_URL is not set: SIGNALWIRE_SPACE is a local stand-in, which "
                                "reaches this machine without a tunnel: set VOICE2FA_PUBLIC_URL to http:// and the "
                                "--listen address, e.g. http://127.0.0.1:5000"),
    ],
)
def test_missing_variable_is_named(sandbox, cli_env, variable, message):
    del cli_env[variable]
    result = run_cli(["send", NUMBER], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, message)
    assert sandbox.requests == []


def test_http_space_that_is_not_loopback_is_refused(sandbox, cli_env):
    cli_env["SIGNALWIRE_SPACE"] = "http://acme.signalwire.com"
    result = run_cli(["send", NUMBER], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, "error: SIGNALWIRE_SPACE uses http:// for a host that is not loopback: use https://"
    )


def test_listen_address_taken(sandbox, cli_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli(["send", NUMBER, "--listen", f"127.0.0.1:{port}"], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"error: --listen 127.0.0.1:{port}: the address is already in use: choose another port"
    )
    assert sandbox.requests == []


def test_malformed_listen(sandbox, cli_env):
    result = run_cli(["send", NUMBER, "--listen", "localhost"], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, "error: --listen 'localhost' is not HOST:PORT (e.g. 127.0.0.1:5000)"
    )


def test_dotenv_is_read_and_junk_lines_are_named(sandbox, cli_env, tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    env = dict(cli_env)
    token = env.pop("SIGNALWIRE_TOKEN")
    (work / ".env").write_text(f"SIGNALWIRE_TOKEN={token}\nSIGNALWIRE_SPACE=http://127.0.0.1:1\n")
    result = run_cli(["send", NUMBER, "--no-prompt"], env, cwd=work)
    assert result.returncode == 0, result.stderr  # the token came from .env; the real SPACE won
    (work / ".env").write_text(f"SIGNALWIRE_TOKEN={token}\nthis is junk {token}\n")
    result = run_cli(["send", NUMBER], env, cwd=work)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"error: {work / '.env'} line 2 is not KEY=VALUE: fix or remove that line"
    )
    assert token not in result.stderr


def test_interrupt_hangs_up_and_exits_130(sandbox, cli_env, state_dir):
    sandbox.set_scenario(outcome="hold")
    proc = start_cli(["send", NUMBER], cli_env)
    wait_until_ringing(sandbox)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted"
    sid = next(iter(sandbox.calls))
    hang_up = [r for r in sandbox.requests if r.path.endswith(f"/Calls/{sid}.json") and r.method == "POST"]
    assert [r.form for r in hang_up] == [(("Status", "completed"),)]
    assert not listening(int(cli_env["VOICE2FA_LISTEN"].rsplit(":", 1)[1]))
    with Store.open(state_dir) as store:
        assert (store.newest(NUMBER).state, store.newest(NUMBER).call_status) == ("undelivered", "canceled")


def test_sandbox_demo_needs_no_account(state_dir, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env.update(VOICE2FA_STATE_DIR=str(state_dir), NO_COLOR="1")
    proc = start_cli(["send", "--sandbox", NUMBER], env)
    # The operator is shown the code the callee heard, on one line (issue 10).
    lines = read_until(proc, "the callee heard the code")
    code = re.search(r"the callee heard the code (\d{3}) (\d{3}), twice", lines[-1]).group(1, 2)
    code = "".join(code)
    out, err = answer(proc, code + "\n")
    assert proc.returncode == 0, err
    assert err.splitlines()[-1].endswith(f"verified: {NUMBER}")


def test_verify_without_any_session(state_dir):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env["VOICE2FA_STATE_DIR"] = str(state_dir)
    result = run_cli(["verify", NUMBER, "--code", "123456"], env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        1, f"error: no open session for {NUMBER}: run `voice2fa send {NUMBER}` first"
    )
    assert not state_dir.exists()  # verify creates nothing


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["verify", NUMBER, "--code", "12ab56"], "", "error: the code must be 6 to 10 digits"),
        (["verify", NUMBER, "--code", "12345"], "", "error: the code must be 6 to 10 digits"),
        (["verify", NUMBER], "12345678901\n", "error: the code must be 6 to 10 digits"),
        (["verify", "+1-800-FLOWERS", "--code", "123456"], "", "error: the number '+1-800-FLOWERS' contains letters: give it in E.164 form, e.g. +15551234567"),
    ],
)
def test_verify_malformed_input_exits_2(state_dir, args, stdin, message):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env["VOICE2FA_STATE_DIR"] = str(state_dir)
    result = run_cli(args, env, input=stdin)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, message)


def test_verify_empty_stdin_is_no_code(state_dir):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    env["VOICE2FA_STATE_DIR"] = str(state_dir)
    result = run_cli(["verify", NUMBER], env, input="")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (1, "error: no code entered")


def languages_heard(sandbox) -> set[str]:
    from voice2fa_cli.voice import speech

    call = next(iter(sandbox.calls.values()))
    return {lang for doc in call.documents for lang in speech.render(doc).languages}


def test_the_callee_country_chooses_the_language(sandbox, cli_env):
    cli_env["VOICE2FA_ALLOWED_COUNTRIES"] = "US,FR"
    result = run_cli(["send", "+33612345678", "--no-prompt"], cli_env)
    assert result.returncode == 0, result.stderr
    assert languages_heard(sandbox) == {"fr-FR"}
    assert "Appuyez sur" in " ".join(next(iter(sandbox.calls.values())).heard)


def test_language_flag_wins_over_the_country(sandbox, cli_env):
    cli_env["VOICE2FA_ALLOWED_COUNTRIES"] = "FR,US"
    result = run_cli(["send", "+33612345678", "--no-prompt", "--language", "es-ES"], cli_env)
    assert result.returncode == 0, result.stderr
    assert languages_heard(sandbox) == {"es-ES"}


def test_a_country_not_allowed_exits_5_before_dialing(sandbox, cli_env):
    result = run_cli(["send", "+33612345678", "--json"], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        5, "error: calls to FR (+33612345678) are not allowed: VOICE2FA_ALLOWED_COUNTRIES is US; add FR to allow them"
    )
    assert json.loads(result.stdout)["exit_code"] == 5
    assert sandbox.requests == []


def test_bad_allowed_countries_is_a_configuration_error(sandbox, cli_env):
    cli_env["VOICE2FA_ALLOWED_COUNTRIES"] = "US,XX"
    result = run_cli(["send", NUMBER], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, "error: VOICE2FA_ALLOWED_COUNTRIES lists 'XX': give ISO country codes such as US,CA,GB"
    )


def test_sessions_lists_without_codes(sandbox, cli_env):
    assert run_cli(["send", NUMBER, "--no-prompt"], cli_env).returncode == 0
    code = sandbox.heard_code()
    listing = run_cli(["sessions"], cli_env)
    assert listing.returncode == 0
    header, row = listing.stdout.splitlines()
    assert header.split() == ["SESSION", "NUMBER", "STATE", "EXPIRES", "KIND", "LEFT", "CREATED"]
    assert row.split()[1:3] == [NUMBER, "open"] and row.split()[6:8] == ["real", "5"]
    data = json.loads(run_cli(["sessions", "--json"], cli_env).stdout)
    assert [s["state"] for s in data["sessions"]] == ["open"]
    assert code not in listing.stdout + json.dumps(data)
    purged = run_cli(["sessions", "purge"], cli_env)
    assert (purged.returncode, purged.stderr.strip()) == (0, "removed 0 expired sessions")


def test_no_ansi_escapes_when_not_a_terminal(state_dir):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_")) and k != "NO_COLOR"}
    env.update(VOICE2FA_STATE_DIR=str(state_dir), TERM="xterm-256color", FORCE_COLOR="")
    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    json.loads(result.stdout)
    # Plain lines, one format: no clock times (tests/test_cli_output.py checks the format).
    assert not any(line[:8].count(":") == 2 for line in result.stderr.splitlines())


def test_full_round_trip_leaves_no_code_in_the_state_dir(sandbox, cli_env, state_dir):
    assert run_cli(["send", NUMBER, "--no-prompt"], cli_env).returncode == 0
    code = sandbox.heard_code()
    assert run_cli(["verify", NUMBER], cli_env, input=code + "\n").returncode == 0
    for path in state_dir.rglob("*"):
        data = path.read_bytes()
        for form in (code.encode(), code.encode("utf-16-le"), code.encode("utf-16-be")):
            assert form not in data, path


def test_kill_9_mid_call_leaves_a_usable_store(sandbox, cli_env, state_dir):
    sandbox.set_scenario(outcome="hold")
    proc = start_cli(["send", NUMBER], cli_env)
    wait_until_ringing(sandbox)
    proc.kill()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    listing = run_cli(["sessions", "--json"], cli_env)
    assert listing.returncode == 0
    assert [s["state"] for s in json.loads(listing.stdout)["sessions"]] == ["open"]  # calling: never finished
    assert run_cli(["verify", NUMBER, "--code", "000000"], cli_env).returncode == 1
    sandbox.set_scenario()
    proc = start_cli(["send", NUMBER], cli_env)
    code, out, err = finish_with_code(proc, sandbox)
    assert proc.returncode == 0, err
    with Store.open(state_dir) as store:
        assert [s.state for s in store.recent(5)] == ["verified", "superseded"]


def test_a_sandbox_code_never_verifies_a_real_number(sandbox, cli_env, state_dir):
    """The audit's attack (issue 9): a real send, then a sandbox send to the same number, then
    verify with each code. The sandbox session supersedes nothing real and verifies only with
    --sandbox; every JSON object says which kind of session it reports."""
    import os

    real = run_cli(["send", NUMBER, "--no-prompt", "--json"], cli_env)
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["sandbox"] is False
    real_code = sandbox.heard_code()

    bare = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    bare.update(VOICE2FA_STATE_DIR=str(state_dir), NO_COLOR="1")
    simulated = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "--json"], bare)
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["sandbox"] is True
    sandbox_code = sandbox_code_shown(simulated.stderr)
    if sandbox_code == real_code:
        pytest.skip("the two codes happen to be equal (one in a million)")

    listed = json.loads(run_cli(["sessions", "--json"], bare).stdout)["sessions"]
    assert sorted((s["sandbox"], s["state"]) for s in listed) == [(False, "open"), (True, "open")]

    wrong_kind = run_cli(["verify", NUMBER, "--json"], bare, input=sandbox_code + "\n")
    assert wrong_kind.returncode == 1
    assert json.loads(wrong_kind.stdout) == {"number": NUMBER, "verified": False, "sandbox": False,
                                             "session_id": json.loads(real.stdout)["session_id"],
                                             "reason": "wrong code (4 attempts left)", "attempts_left": 4,
                                             "error": "wrong code (4 attempts left)", "exit_code": 1}
    assert run_cli(["verify", "--sandbox", NUMBER], bare, input=real_code + "\n").returncode == 1

    ok_real = run_cli(["verify", NUMBER], bare, input=real_code + "\n")
    assert (ok_real.returncode, ok_real.stderr.splitlines()[-1]) == (0, f"verified: {NUMBER}")
    ok_sandbox = run_cli(["verify", "--sandbox", NUMBER, "--json"], bare, input=sandbox_code + "\n")
    assert ok_sandbox.returncode == 0, ok_sandbox.stderr
    assert json.loads(ok_sandbox.stdout) == {"number": NUMBER, "verified": True, "sandbox": True,
                                             "session_id": json.loads(simulated.stdout)["session_id"],
                                             "reason": "verified", "attempts_left": 0, "error": None,
                                             "exit_code": 0}
    assert ok_sandbox.stderr.splitlines()[-1] == f"verified: {NUMBER} (a sandbox session: simulated, nothing was dialed)"


# --- what the callee hears: who calls, keys that steer the reading, languages (issue 11) ---------------


def test_the_callee_presses_repeat_then_slower(sandbox, cli_env, state_dir):
    from voice2fa_cli.voice import speech

    sandbox.set_scenario(steer=(speech.REPEAT_KEY, speech.SLOWER_KEY))
    cli_env["VOICE2FA_CALLER_NAME"] = "Acme support"
    result = run_cli(["send", NUMBER, "--no-prompt", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    call = next(iter(sandbox.calls.values()))
    assert call.pressed[1:] == ["1", "2"]
    heard = call.heard
    assert heard[:2] == [
        "Hello. Acme support asked to check that this phone number is yours.",
        "You will hear a code. Read it only to the person from Acme support you are speaking with now. "
        "If you are not expecting this call, hang up.",
    ]
    code = sandbox.heard_code()
    readings = [line for line in heard if line.replace(", ", "") == code]
    assert len(readings) == 6  # three documents, each reading it twice
    steered = heard[heard.index("Your code is:"):]  # after the gate (whose random key may be 1 or 2)
    assert steered.count("[presses 1]") == 1 and steered.count("[presses 2]") == 1
    assert steered[steered.index("[presses 2]") + 1] == "Slowly now. Your code is:"
    assert heard[-2:] == ["Goodbye.", "[hangs up]"]  # the last reading offers no more keys
    assert "[waits for a key]" not in steered[steered.index("[presses 2]"):]
    slow = call.documents[-1]
    assert slow.count(b'<Pause length="1" />') >= 2 * (len(code) - 2)
    assert code not in result.stdout + result.stderr


def test_a_country_without_phrases_is_called_in_english_and_the_operator_is_told_first(sandbox, cli_env):
    cli_env["VOICE2FA_ALLOWED_COUNTRIES"] = "US,JP"
    result = run_cli(["send", "+81312345678", "--no-prompt"], cli_env)
    assert result.returncode == 0, result.stderr
    warning = ("warning: voice2fa has no phrases for callees in JP: the whole call will be in English (en-US); "
               "use --language to choose another")
    assert warning in result.stderr
    assert result.stderr.index(warning) < result.stderr.index("calling +81 3-1234-5678, Japan")
    assert languages_heard(sandbox) == {"en-US"}


def test_a_named_voice_brings_its_language(sandbox, cli_env):
    cli_env["VOICE2FA_ALLOWED_COUNTRIES"] = "US,FR"
    result = run_cli(["send", "+33612345678", "--no-prompt", "--voice", "Polly.Joanna"], cli_env)
    assert result.returncode == 0, result.stderr
    assert languages_heard(sandbox) == {"en-US"}
    call = next(iter(sandbox.calls.values()))
    assert all(b'voice="Polly.Joanna"' in doc for doc in call.documents)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--voice", "Polly.Joanna", "--language", "fr-FR"], {},
     "error: --voice Polly.Joanna speaks en-US, not --language fr-FR: drop one of them or make them agree "
     "(see `voice2fa send --help`)"),
    (["--language", "ko-KR"], {},
     "error: --language ko-KR: SignalWire's standard voices do not speak it (they speak en-US, en-GB, en-IN, "
     "en-AU, en-CA, de-DE, es-ES, it-IT, ja-JP, fr-FR) (see `voice2fa send --help`)"),
    ([], {"VOICE2FA_CALLER_NAME": "Acme</Say><Redirect>x</Redirect>"},
     "error: VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '<')"),
    (["--caller-name", "Acme\u0007support"], {},
     "error: --caller-name may hold letters, digits, spaces and & ' . , - only (found '\\x07')"),
])
def test_what_the_call_cannot_say_is_refused_before_dialing(sandbox, cli_env, args, env, message):
    cli_env.update(env)
    result = run_cli(["send", NUMBER, "--json", *args], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, message)
    assert sandbox.requests == []


def test_send_sandbox_refuses_a_number_the_sandbox_locked(state_dir):
    """Ten wrong sandbox codes lock the number in the sandbox: `verify --sandbox` rejects, and
    `send --sandbox` refuses (exit 5) instead of reading a code that could never verify."""
    from tests.test_cli_output import plain_env
    from voice2fa_cli.policy import clock_text

    with Store.open(state_dir, sandbox=True) as store:
        for sid in ("a", "b"):
            store.create_session(session_id=sid, number=NUMBER, code="111111", ttl=600, max_attempts=5,
                                 call_sid=None, call_status=None)
            for _ in range(5):
                assert store.check(NUMBER, "999999").verified is False
        until = store.number_locked_until(NUMBER)
    assert until is not None
    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "--json"], plain_env(state_dir))
    message = f"{NUMBER} is locked after too many wrong codes: no calls until {clock_text(until)}"
    assert (result.returncode, result.stderr.splitlines()[-1]) == (5, f"error: {message}")
    assert json.loads(result.stdout)["error"] == message
    assert "calling" not in result.stderr  # nothing was placed
    with Store.open(state_dir, sandbox=True) as store:
        assert [s.id for s in store.recent()] == ["b", "a"]
    with Store.open(state_dir) as store:  # the real sessions know nothing of it
        assert store.number_locked_until(NUMBER) is None


def test_no_code_entered_after_a_sandbox_call_names_verify_sandbox(state_dir):
    """The hint must work when followed: a sandbox session verifies only with --sandbox."""
    from tests.test_cli_output import plain_env

    result = run_cli(["send", "--sandbox", NUMBER, "--json"], plain_env(state_dir), input="")
    hint = f"no code entered; the session stays open for `voice2fa verify --sandbox {NUMBER}`"
    assert (result.returncode, result.stderr.splitlines()[-1]) == (1, f"error: {hint}")
    assert json.loads(result.stdout)["error"] == hint
    followed = run_cli(["verify", "--sandbox", NUMBER], plain_env(state_dir), input="000000\n")
    assert followed.stderr.splitlines()[-1] != f"error: no open session for {NUMBER}: run `voice2fa send {NUMBER}` first"


@pytest.mark.parametrize("args", [
    ["send", "--sandbox", NUMBER, "--no-prompt", "--json"],
    ["verify", NUMBER, "--json"],
    ["sessions", "--json"],
    ["sessions", "purge", "--json"],
])
def test_the_shared_store_without_the_redis_package_is_one_line_exit_2(state_dir, tmp_path, args):
    """`pip install .` (the README's first command) has no redis package: a VOICE2FA_STORE URL
    says how to install it, never an internal error."""
    from tests.test_cli_output import plain_env

    missing = tmp_path / "no-redis"  # first on the path: `import redis` fails as if not installed
    (missing / "redis").mkdir(parents=True)
    (missing / "redis" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'redis'\")\n")
    env = plain_env(state_dir, VOICE2FA_STORE="redis://127.0.0.1:6379/0", PYTHONPATH=str(missing))
    result = run_cli(args, env, input="123456\n")
    message = ("VOICE2FA_STORE names a Redis store, which needs the redis package: "
               "pip install '.[redis]' in voice2fa's checkout")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, f"error: {message}")
    assert json.loads(result.stdout)["error"] == message


def test_doctor_names_the_missing_redis_package(state_dir, tmp_path):
    from tests.test_cli_output import plain_env

    missing = tmp_path / "no-redis"
    (missing / "redis").mkdir(parents=True)
    (missing / "redis" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'redis'\")\n")
    env = plain_env(state_dir, VOICE2FA_STORE="redis://127.0.0.1:6379/0", PYTHONPATH=str(missing))
    result = run_cli(["doctor", "--json"], env)
    assert result.returncode == 2
    row = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "VOICE2FA_STORE")
    assert row["status"] == "fail" and "needs the redis package" in row["detail"]
