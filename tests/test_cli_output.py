"""Issue 10: what a newcomer meets at the edges: closed pipes, the sandbox transcript, the
timeline, the prompt off a terminal, output modes, JSON shapes, help and completion, and
`send --sandbox --outcome`. Subprocesses of the installed CLI; terminals are in test_cli_pty."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests import json_schemas
from tests.helpers import NUMBER, run_cli, start_cli, voice2fa_command
from voice2fa_cli import ui
from voice2fa_cli.stores.sqlite import Store


def plain_env(state_dir, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_")) and k != "NO_COLOR"}
    env.update(VOICE2FA_STATE_DIR=str(state_dir), VOICE2FA_POLL_INTERVAL="0.2", VOICE2FA_WEBHOOK_GRACE="1.5", **extra)
    return env


def closed_pipe_run(args: list[str], env: dict[str, str], close: str, input: str = "") -> tuple[int, str]:
    """Run the CLI with stdout or stderr (or both) a pipe whose reader is already gone;
    returns the exit code and whatever reached the other stream."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before the first line: every write is EPIPE
    kwargs = {}
    if close in ("stdout", "both"):
        kwargs["stdout"] = write_end
    else:
        kwargs["stdout"] = subprocess.PIPE
    if close in ("stderr", "both"):
        kwargs["stderr"] = write_end
    else:
        kwargs["stderr"] = subprocess.PIPE
    proc = subprocess.Popen(voice2fa_command() + args, env=env, stdin=subprocess.PIPE, text=True, **kwargs)
    os.close(write_end)
    out, err = proc.communicate(input, timeout=60)
    return proc.returncode, (out or "") + (err or "")


def add_sessions(state_dir, count: int = 3, sandbox: bool = False) -> list[str]:
    ids = []
    with Store.open(state_dir, sandbox=sandbox) as store:
        for i in range(count):
            session = store.create_session(
                session_id=f"{i:016x}", number=f"+1555123456{i}", code="123456", ttl=600, max_attempts=5,
                call_sid=f"CA{i:032x}", call_status="completed",
            )
            ids.append(session.id)
    return ids


def read_until(proc, text: str, timeout: float = 60) -> list[str]:
    """stderr lines up to the first that holds `text`; the process is killed (and the test
    fails) if it never comes, instead of waiting on a prompt forever."""
    import threading

    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines: list[str] = []
    try:
        while not any(text in line for line in lines):
            line = proc.stderr.readline()
            if not line:
                proc.kill()
                raise AssertionError("".join(lines) + repr(proc.communicate()) + str(proc.returncode))
            lines.append(line)
    finally:
        timer.cancel()
    return lines


def answer(proc, text: str, timeout: float = 60) -> tuple[str, str]:
    """Type `text`, then collect the rest of stdout and stderr. (Not communicate(): it reads
    the raw pipes and would lose what read_until's readline has already buffered.)"""
    import threading

    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        proc.stdin.write(text)
        proc.stdin.close()
        err = proc.stderr.read()
        out = proc.stdout.read()
        proc.wait()
    finally:
        timer.cancel()
    json_schemas.check(proc.cli_args, out)
    return out, err


# --- 1. closed pipes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["sessions"], 0),
        (["sessions", "--json"], 0),
        (["preview"], 0),
        (["sessions", "purge", "--json"], 0),
        (["verify", NUMBER, "--code", "123456", "--json"], 1),
        (["doctor", "--json"], 2),
    ],
)
def test_a_closed_stdout_stops_quietly(state_dir, args, code):
    add_sessions(state_dir)
    returncode, err = closed_pipe_run(args, plain_env(state_dir), "stdout")
    assert returncode == code, err
    assert "internal error" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    if code == 0:
        assert err in ("", "removed 0 expired sessions\n")


def test_a_closed_pipe_never_changes_what_happens_to_the_call(state_dir):
    # `send --sandbox NUMBER --no-prompt 2>&1 | head -3`: the reader goes away mid-call.
    returncode, _ = closed_pipe_run(["send", "--sandbox", NUMBER, "--no-prompt", "--json"], plain_env(state_dir), "both")
    assert returncode == 0
    with Store.open(state_dir, sandbox=True) as store:
        session = store.newest(NUMBER)
    assert (session.state, session.call_status) == ("delivered", "completed")  # never canceled


def test_a_closed_stderr_still_checks_the_code(state_dir):
    env = plain_env(state_dir)
    returncode, out = closed_pipe_run(["send", "--sandbox", NUMBER, "--json"], env, "stderr", input="000000\n")
    assert returncode == 1  # the outcome's own code: a wrong code, rejected
    data = json_schemas.check(["send", "--json"], out)
    assert (data["verified"], data["exit_code"], data["attempts_left"]) == (False, 1, 4)


# --- 4. the sandbox transcript ----------------------------------------------------------


def test_the_sandbox_names_the_code_once_and_labels_simulated_time(state_dir):
    proc = start_cli(["send", "--sandbox", NUMBER], plain_env(state_dir))
    lines = read_until(proc, "the callee heard the code")
    summary = [line for line in lines if "the callee heard the code" in line]
    match = re.fullmatch(r"\[ *\d+\.\ds\] the callee heard the code (\d{3}) (\d{3}), twice\n", summary[0])
    assert match, summary
    out, err = answer(proc, match.group(1) + match.group(2) + "\n")
    assert proc.returncode == 0, err
    transcript = "".join(lines) + err
    assert "callee heard:" not in transcript  # no line per sentence (that is -v)
    assert re.search(r"call completed \(\d+ s of simulated call time\)", transcript), transcript


@pytest.mark.parametrize(
    "lines",
    [
        ["Your code is:", "7, 2, 4, 3, 5, 3", "Once again, your code is:", "7, 2, 4, 3, 5, 3", "Goodbye."],
        ["Your code is", "7", "2", "4", "3", "5", "3", "", "Again", "7", "2", "4", "3", "5", "3"],
        ["Your code is 7. 2. 4. 3. 5. 3.", "Once again: 7 2 4 3 5 3.", "[hangs up]"],
        ["7", "2", "4", "3", "5", "3", "7", "2", "4", "3", "5", "3"],
        ["Your code is:", "7 2 4 — 3 5 3", "Once again:", "7 2 4 — 3 5 3", "Press 1 to hear the code again."],
    ],
)
def test_the_summary_finds_the_code_however_it_is_rendered(lines):
    assert ui.heard_summary(lines) == "the callee heard the code 724 353, twice"


def test_the_summary_groups_longer_codes():
    assert ui.heard_summary(["1, 2, 3, 4, 5, 6, 7, 8"]) == "the callee heard the code 1234 5678, once"
    assert ui.heard_summary(["1234567890", "1234567890", "1234567890"]) == (
        "the callee heard the code 123 456 7890, three times"
    )
    assert ui.heard_summary(["Hello.", "Press 7 to hear your code.", "[presses 7]"]) is None


# --- 5. the timeline ---------------------------------------------------------------------


def test_the_timeline_shows_the_call_id_and_the_expiry(state_dir):
    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "--json"], plain_env(state_dir, TZ="Asia/Kolkata"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert f"] call {data['call_sid']}\n" in result.stderr
    expires = time.mktime(time.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    os.environ["TZ"] = "Asia/Kolkata"
    try:
        time.tzset()
        # the date too when the expiry falls on another day there (a run near midnight in Kolkata)
        same_day = time.strftime("%Y-%m-%d", time.localtime(expires)) == time.strftime("%Y-%m-%d")
        local = time.strftime("%H:%M" if same_day else "%b %d %H:%M", time.localtime(expires))
    finally:
        del os.environ["TZ"]
        time.tzset()
    assert f"] the code expires at {local} (in 10 min)\n" in result.stderr


def test_the_ring_timeout_is_told_apart_from_the_grace(sandbox, cli_env):
    sandbox.set_scenario(outcome="hold")
    result = run_cli(["send", NUMBER, "--ring-timeout", "5"], cli_env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        3, "error: the call was not answered within 5 s (the ring timeout), nor reported in the 1.5 s allowed "
           "after it: the code was not delivered",
    )


# --- 6. the prompt off a terminal --------------------------------------------------------


def test_no_prompt_text_when_stdin_is_not_a_terminal(state_dir):
    result = run_cli(["send", "--sandbox", NUMBER], plain_env(state_dir), input="000000\n")
    assert result.returncode == 1
    assert "Code read back" not in result.stderr
    result = run_cli(["verify", NUMBER], plain_env(state_dir), input="000000\n")
    assert "Code:" not in result.stderr


# --- 7. output modes ----------------------------------------------------------------------

LINE = re.compile(r"\[ *\d+\.\ds\] \S.*|(sandbox|warning|error|debug|verified|delivered|rejected): \S.*")


def test_off_a_terminal_every_line_has_one_format(state_dir):
    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "-v"], plain_env(state_dir, TERM="xterm-256color"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if not LINE.fullmatch(line.strip())] == [], result.stderr
    assert not re.search(r"\b\d\d:\d\d:\d\d\b", result.stderr)  # no clock times: elapsed only


def test_quiet_is_the_verdict_and_errors_only(state_dir, sandbox, cli_env):
    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "-q"], plain_env(state_dir))
    assert (result.returncode, result.stderr) == (
        0, f"delivered: check the code with `voice2fa verify --sandbox {NUMBER}`\n"
    )
    del cli_env["SIGNALWIRE_SIGNING_KEY"]  # a warning, which -q leaves out
    result = run_cli(["send", NUMBER, "--no-prompt", "-q"], cli_env)
    assert (result.returncode, result.stderr) == (0, f"delivered: check the code with `voice2fa verify {NUMBER}`\n")
    sandbox.set_scenario(outcome="busy")
    result = run_cli(["send", NUMBER, "-q"], cli_env)
    assert (result.returncode, result.stderr) == (3, "error: the line was busy: the code was not delivered\n")


def test_sessions_shows_local_times_and_json_utc(state_dir):
    add_sessions(state_dir, 1)
    env = plain_env(state_dir, TZ="Asia/Kolkata")
    table = run_cli(["sessions"], env)
    data = run_cli(["sessions", "--json"], env)
    row = json.loads(data.stdout)["sessions"][0]
    assert row["created_at"].endswith("Z") and row["expires_at"].endswith("Z")
    header, line = table.stdout.splitlines()
    assert header.split() == ["SESSION", "NUMBER", "STATE", "EXPIRES", "KIND", "LEFT", "CREATED"]
    created = time.mktime(time.strptime(row["created_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    local = time.strftime("%H:%M", time.gmtime(created + 5.5 * 3600))
    assert line.split() == [row["session_id"], row["number"], "open", "in", "10", "min", "real", "5", local]


# --- 9. JSON: one shape per command --------------------------------------------------------


def keys(result) -> list[str]:
    return list(json.loads(result.stdout))


def test_send_has_one_shape_on_every_outcome(state_dir, sandbox, cli_env):
    shapes = {}
    shapes["usage"] = run_cli(["send", "--sandbox", NUMBER, "--digits", "5", "--json"], plain_env(state_dir))
    shapes["bad number"] = run_cli(["send", "--sandbox", "call-me", "--json"], plain_env(state_dir))
    shapes["delivered"] = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "--json"], plain_env(state_dir))
    shapes["rejected"] = run_cli(["send", "--sandbox", NUMBER, "--json"], plain_env(state_dir), input="000000\n")
    shapes["policy"] = run_cli(["send", "+33612345678", "--json"], cli_env)
    sandbox.set_scenario(api_status=500)
    shapes["provider"] = run_cli(["send", NUMBER, "--json"], cli_env)
    assert {name: r.returncode for name, r in shapes.items()} == {
        "usage": 2, "bad number": 2, "delivered": 0, "rejected": 1, "policy": 5, "provider": 4,
    }
    assert all(keys(r) == list(json_schemas.schema("send")["properties"]) for r in shapes.values())
    assert json.loads(shapes["policy"].stdout)["delivered"] is None  # nothing was dialed
    assert json.loads(shapes["delivered"].stdout)["attempts_left"] == 5


def test_a_verified_send_and_sessions_agree_on_attempts_left(state_dir):
    proc = start_cli(["send", "--sandbox", NUMBER, "--json"], plain_env(state_dir))
    line = read_until(proc, "the callee heard the code")[-1]
    code = "".join(re.search(r"the code (\d+) (\d+)", line).groups())
    out, err = answer(proc, code + "\n")
    assert proc.returncode == 0, err
    sent = json.loads(out)
    listed = json.loads(run_cli(["sessions", "--json"], plain_env(state_dir)).stdout)["sessions"][0]
    assert (sent["verified"], sent["attempts_left"], listed["attempts_left"], listed["state"]) == (True, 0, 0, "verified")


def test_verify_has_one_shape_on_every_outcome(state_dir):
    env = plain_env(state_dir)
    assert run_cli(["send", "--sandbox", NUMBER, "--no-prompt"], env).returncode == 0
    session_id = json.loads(run_cli(["sessions", "--json"], env).stdout)["sessions"][0]["session_id"]
    wrong = run_cli(["verify", "--sandbox", NUMBER, "--json"], env, input="000000\n")
    none = run_cli(["verify", "--sandbox", NUMBER, "--json"], env, input="")
    usage = run_cli(["verify", "--sandbox", NUMBER, "--code", "12", "--json"], env)
    other = run_cli(["verify", "+15557654321", "--code", "123456", "--json"], env)
    assert [r.returncode for r in (wrong, none, usage, other)] == [1, 1, 2, 1]
    order = list(json_schemas.schema("verify")["properties"])
    assert all(keys(r) == order for r in (wrong, none, usage, other))
    assert json.loads(wrong.stdout) | {"reason": None, "error": None} == {
        "number": NUMBER, "verified": False, "session_id": session_id, "reason": None, "attempts_left": 4,
        "sandbox": True, "error": None, "exit_code": 1,
    }
    assert json.loads(none.stdout) == {
        "number": NUMBER, "verified": False, "session_id": session_id, "reason": "no code entered",
        "attempts_left": 4, "sandbox": True, "error": "no code entered", "exit_code": 1,
    }


def test_sessions_purge_json(state_dir):
    result = run_cli(["sessions", "purge", "--json"], plain_env(state_dir))
    assert (result.returncode, json.loads(result.stdout)) == (0, {"removed": 0, "error": None, "exit_code": 0})


def test_doctor_json_prints_nothing_on_stderr(state_dir):
    result = run_cli(["doctor", "--json"], plain_env(state_dir))
    assert (result.returncode, result.stderr) == (2, "")
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["problems"] == sum(c["status"] == "fail" for c in data["checks"])


# --- 10. help and completion ---------------------------------------------------------------


def test_send_help_lists_every_exit_code():
    text = " ".join(run_cli(["send", "--help"], dict(os.environ)).stdout.split())
    for code in ("0 verified", "1 rejected", "2 usage", "3 code not delivered", "4 SignalWire", "5 refused by policy",
                 "70 internal error", "130 interrupted"):
        assert code in text


def test_a_bare_voice2fa_prints_the_help_and_exits_0():
    result = run_cli([], dict(os.environ))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: voice2fa") and "Examples:" in result.stdout
    commands = result.stdout.split("Commands:")[1].split("Examples:")[0]
    assert "..." not in commands  # no summary cut short
    assert "Check the configuration, the credentials and the tunnel before a call costs money." in " ".join(
        commands.split()
    )
    assert "completion" in result.stdout


@pytest.mark.parametrize("command", [["sessions", "purge"], ["completion"]])
def test_more_help_with_examples(command):
    result = run_cli(command + ["--help"], dict(os.environ))
    assert result.returncode == 0 and "Examples:" in result.stdout


def test_preview_voice_help_speaks_of_nothing_it_does_not_show():
    assert "cXML" not in run_cli(["preview", "--help"], dict(os.environ)).stdout


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")])
def test_completion_scripts(shell, marker):
    result = run_cli(["completion", shell], dict(os.environ))
    assert result.returncode == 0 and marker in result.stdout and "_VOICE2FA_COMPLETE" in result.stdout


def test_completion_completes_commands():
    env = dict(os.environ, _VOICE2FA_COMPLETE="bash_complete", COMP_WORDS="voice2fa se", COMP_CWORD="1")
    result = run_cli([], env)
    assert result.stdout.split() == ["plain,send", "plain,serve", "plain,services", "plain,sessions"]


# --- Beyond: send --sandbox --outcome -------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "code", "last"),
    [
        ("answer", 0, f"delivered: check the code with `voice2fa verify --sandbox {NUMBER}`"),
        ("busy", 3, "error: the line was busy: the code was not delivered"),
        ("no-answer", 3, "error: nobody answered: the code was not delivered"),
        ("failed", 3, "error: the call failed (the number may be unreachable): the code was not delivered"),
        ("voicemail", 3, "error: the code was not delivered: nobody pressed {key} (voicemail?)"),
        ("wrong-key", 3, "error: the code was not delivered: wrong key pressed 3 times (not {key})"),
        ("hangup", 3, "error: the code was not delivered: the callee hung up before pressing {key}"),
        ("lost-callbacks", 0, f"delivered: check the code with `voice2fa verify --sandbox {NUMBER}`"),
        ("auth-error", 4, "error: SignalWire refused the credentials: check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"),
        ("server-error", 4, "error: SignalWire failed on the call request (500): try again later"),
        ("rate-limited", 4, "error: SignalWire is rate-limiting this account (429 Too Many Requests): wait and try again"),
    ],
)
def test_sandbox_outcomes(state_dir, outcome, code, last):
    result = run_cli(["send", "--sandbox", NUMBER, "--no-prompt", "--outcome", outcome, "--json"], plain_env(state_dir))
    assert result.returncode == code, result.stderr
    assert re.fullmatch(re.escape(last).replace(re.escape("{key}"), "[1-9]"), result.stderr.splitlines()[-1])
    assert json.loads(result.stdout)["exit_code"] == code


def test_outcome_needs_the_sandbox(cli_env):
    result = run_cli(["send", NUMBER, "--outcome", "busy"], cli_env)
    assert (result.returncode, result.stderr) == (
        2, "error: Invalid value for --outcome: only with --sandbox (a real call ends as it ends) "
           "(see `voice2fa send --help`)\n",
    )
