"""Issue 10 in a real terminal: a pseudo-terminal (pexpect) at 120, 80 and 60 columns.

Every line fits the terminal, nothing is broken mid-word (the words at a narrow width are the
words at a wide one), NO_COLOR changes colour only, and the prompt and Ctrl-C behave."""

from __future__ import annotations

import os
import re
from collections import Counter

import pexpect
import pytest

from tests.helpers import CALLER, NUMBER, voice2fa_command
from tests.test_cli_output import add_sessions

WIDTHS = [120, 80, 60]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def spawn(args: list[str], env: dict[str, str], columns: int, cwd: str | None = None) -> pexpect.spawn:
    command = voice2fa_command()
    return pexpect.spawn(command[0], command[1:] + args, env=env, dimensions=(40, columns), encoding="utf-8",
                         timeout=60, cwd=cwd)


def term_env(state_dir, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNALWIRE_", "VOICE2FA_", "COLUMNS", "LINES")) and k != "NO_COLOR"}
    env.update(VOICE2FA_STATE_DIR=str(state_dir), TERM="xterm-256color", VOICE2FA_POLL_INTERVAL="0.2",
               VOICE2FA_WEBHOOK_GRACE="1.5", **extra)
    return env


def screen_lines(text: str) -> list[str]:
    """The lines as a terminal shows them: escapes stripped; a spinner's redraws dropped."""
    lines = []
    for raw in text.split("\n"):
        line = ANSI.sub("", raw.rstrip("\r").rsplit("\r", 1)[-1])  # a carriage return redraws the line
        if re.match(r"^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]", line):
            continue
        lines.append(line.rstrip())
    return lines


def run_in_terminal(args, env, columns, input: str | None = None, cwd: str | None = None) -> tuple[int, list[str]]:
    child = spawn(args, env, columns, cwd)
    if input is not None:
        child.send(input)
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, screen_lines(child.before)


def words(lines: list[str]) -> Counter:
    return Counter(" ".join(lines).split())


def assert_fits(lines: list[str], columns: int, wide: list[str] | None = None) -> None:
    too_wide = [line for line in lines if len(line) > columns]
    assert too_wide == [], f"lines wider than {columns}: {too_wide}"
    if wide is not None:  # the same words as on a wide terminal: nothing broken mid-word
        assert words(lines) == words(wide)


HELPS = [[], ["send"], ["verify"], ["sessions"], ["sessions", "purge"], ["doctor"], ["preview"], ["completion"], ["sandbox"], ["serve"],
         ["services", "create"]]


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("command", HELPS, ids=lambda c: " ".join(c) or "voice2fa")
def test_help_fits_the_terminal(state_dir, command, columns):
    status, lines = run_in_terminal(command + ["--help"], term_env(state_dir), columns)
    _, wide = run_in_terminal(command + ["--help"], term_env(state_dir), 200)
    assert status == 0
    # Click rewraps paragraphs (fine, at word boundaries); the examples are never rewrapped.
    assert_fits(lines, columns)
    examples = lines[lines.index(next(line for line in lines if line.strip() == "Examples:")):]
    wide_examples = wide[wide.index(next(line for line in wide if line.strip() == "Examples:")):]
    assert examples == wide_examples
    assert words(lines) == words(wide)


@pytest.mark.parametrize("columns", WIDTHS)
def test_verify_help_examples_are_aligned(state_dir, columns):
    _, lines = run_in_terminal(["verify", "--help"], term_env(state_dir), columns)
    start = [line.strip() for line in lines].index("Examples:")
    body = [line for line in lines[start + 1:] if line.strip()]
    commands = [line for line in body if line.lstrip().startswith(("voice2fa", "printf"))]
    comments = [line for line in body if line.lstrip().startswith("#")]
    assert len(commands) == 3 and len(comments) == 3
    assert len({len(line) - len(line.lstrip()) for line in commands + comments}) == 1


@pytest.mark.parametrize("columns", WIDTHS)
def test_doctor_fits_the_terminal(columns):
    import tempfile

    state_dir = tempfile.mkdtemp(prefix="v2fa")  # short paths (state dir, cwd): a path longer than a line is cut
    env = term_env(state_dir, SIGNALWIRE_SPACE="http://example.invalid", VOICE2FA_PUBLIC_URL="https://abc.invalid")
    try:
        status, lines = run_in_terminal(["doctor"], env, columns, cwd=state_dir)
        _, wide = run_in_terminal(["doctor"], env, 300, cwd=state_dir)
    finally:
        __import__("shutil").rmtree(state_dir, ignore_errors=True)
    assert status == 2
    assert any("fix:" in line for line in lines)
    assert_fits(lines, columns, wide)


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_sandbox_run_fits_the_terminal(state_dir, columns):
    status, lines = run_in_terminal(["send", "--sandbox", NUMBER, "--no-prompt"], term_env(state_dir), columns)
    assert status == 0, lines
    assert_fits(lines, columns)
    assert any(line.startswith("sandbox: a simulated call") for line in lines)
    assert any(re.search(r"the callee heard the code \d{3} \d{3}, twice", line) for line in lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_sessions_table_fits_and_never_splits_an_id(state_dir, columns):
    ids = add_sessions(state_dir, 3) + []
    status, lines = run_in_terminal(["sessions"], term_env(state_dir), columns)
    assert status == 0
    assert_fits(lines, columns)
    listed = [line.split()[0] for line in lines[1:] if line.strip()]
    assert listed == list(reversed(ids))
    assert lines[0].split()[:3] == ["SESSION", "NUMBER", "STATE"]


def normalised(lines: list[str]) -> list[str]:
    return [re.sub(r"\d", "0", re.sub(r"call \S+$", "call …", line)) for line in lines if line.strip()]


def test_no_color_changes_colour_only(state_dir):
    coloured = spawn(["send", "--sandbox", NUMBER, "--no-prompt"], term_env(state_dir), 100)
    coloured.expect(pexpect.EOF)
    plain = spawn(["send", "--sandbox", NUMBER, "--no-prompt"], term_env(state_dir, NO_COLOR="1"), 100)
    plain.expect(pexpect.EOF)
    assert re.search(r"\x1b\[[0-9;]*3[0-9]m", coloured.before)  # colour on a terminal
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]m", plain.before)  # none with NO_COLOR
    assert normalised(screen_lines(plain.before)) == normalised(screen_lines(coloured.before))
    assert not re.search(r"\d\d:\d\d:\d\d", plain.before)  # no clock times appear


def wait_for_prompt(child) -> None:
    child.expect_exact("Code read back by the callee: ")


def test_an_empty_enter_asks_again_and_ctrl_d_ends_on_its_own_line(state_dir):
    child = spawn(["send", "--sandbox", NUMBER], term_env(state_dir), 80)
    wait_for_prompt(child)
    child.send("\r")
    wait_for_prompt(child)  # asked again, nothing counted
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    text = "\n".join(screen_lines(child.before))
    assert f"\nerror: no code entered; the session stays open for `voice2fa verify --sandbox\n  {NUMBER}`\n" in text


def test_ctrl_c_at_the_prompt_says_the_session_stays_open(state_dir):
    child = spawn(["send", "--sandbox", NUMBER], term_env(state_dir), 80)
    wait_for_prompt(child)
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    lines = screen_lines(child.before)
    assert lines[-3:] == [f"error: interrupted; the session stays open: `voice2fa verify --sandbox", f"  {NUMBER}`", ""]
    assert lines[-4].endswith("^C")  # the terminal's echo, then the message on a line of its own


def test_ringing_shows_a_timer_and_ctrl_c_hangs_up(sandbox, state_dir):
    sandbox.set_scenario(outcome="hold")
    env = term_env(state_dir, SIGNALWIRE_SPACE=sandbox.url, SIGNALWIRE_PROJECT=sandbox.project,
                   SIGNALWIRE_TOKEN=sandbox.token, SIGNALWIRE_NUMBER=CALLER,
                   SIGNALWIRE_SIGNING_KEY=sandbox.signing_key)
    port = __import__("tests.helpers", fromlist=["free_port"]).free_port()
    env.update(VOICE2FA_PUBLIC_URL=f"http://127.0.0.1:{port}", VOICE2FA_LISTEN=f"127.0.0.1:{port}")
    child = spawn(["send", NUMBER, "--ring-timeout", "60"], env, 80)
    child.expect(r"ringing… 1 s of 60 s")  # the timer counts while the phone rings
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    lines = screen_lines(child.before)
    assert any(re.fullmatch(r"\[ *\d+\.\ds\] hung up the call", line) for line in lines), lines
    assert lines[-2:] == ["error: interrupted", ""]
