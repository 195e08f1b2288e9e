"""Text from the network reaches the terminal with no control character and no live Rich
markup: platform error messages, call statuses, what the sandbox heard (issue 9, item 4)."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import threading

import pytest

from tests.helpers import CALLER, NUMBER, free_port, run_cli, voice2fa_command
from voice2fa_cli import ui

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[H[bold]boom[/bold]\x9b31m\u202eevil\r\nnext"
SHOWN = "]0;pwned[2J[H[bold]boom[/bold]31mevil  next"


class Hostile(http.server.BaseHTTPRequestHandler):
    """A stand-in that refuses everything with a message made to take over a terminal."""

    more_info = "x"

    def _refuse(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"code": 21211, "message": HOSTILE, "more_info": self.more_info, "status": 400}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_env(state_dir):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_", "NO_COLOR"))}
    env.update(
        SIGNALWIRE_SPACE=f"http://127.0.0.1:{server.server_address[1]}", SIGNALWIRE_PROJECT="p",
        SIGNALWIRE_TOKEN="t", SIGNALWIRE_NUMBER=CALLER, VOICE2FA_PUBLIC_URL=f"http://127.0.0.1:{port}",
        VOICE2FA_LISTEN=f"127.0.0.1:{port}", VOICE2FA_STATE_DIR=str(state_dir), VOICE2FA_API_TIMEOUT="5",
    )
    yield env
    server.shutdown()
    server.server_close()


def controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c == "\u202e"]


def test_a_platform_error_reaches_a_pipe_without_escapes_or_markup(hostile_env):
    result = run_cli(["send", NUMBER, "--skip-preflight"], hostile_env)
    assert result.returncode == 4
    assert controls(result.stderr) == []
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: SignalWire rejected the call request (400, error 21211): ")
    assert "[bold]boom[/bold]" in last and "pwned" in last  # shown, literally, not obeyed


def test_a_platform_error_reaches_a_terminal_without_escapes_and_with_literal_markup(hostile_env):
    pexpect = pytest.importorskip("pexpect")
    env = {**hostile_env, "TERM": "xterm-256color", "COLUMNS": "200"}
    command = voice2fa_command()
    child = pexpect.spawn(command[0], command[1:] + ["send", NUMBER, "--skip-preflight"], env=env, timeout=60,
                          dimensions=(40, 200))
    child.expect(pexpect.EOF)
    child.close()
    raw = child.before.decode("utf-8", "replace")
    assert child.exitstatus == 4, raw
    # Rich's own sequences (colours, hiding the cursor, redrawing the spinner line) are fine;
    # nothing that came from the network is: no OSC, no clear-screen, no cursor-home, no bell.
    own = re.sub(r"\x1b\[(?:[0-9;]*m|\?25[lh]|[0-9]*A|2K|[0-9]*G)", "", raw)
    assert "\x1b" not in own and "\x07" not in own, repr(own)
    assert "[bold]boom[/bold]" in own


def test_doctor_shows_the_platforms_message_cleaned(hostile_env):
    result = run_cli(["doctor"], hostile_env)
    assert result.returncode == 2
    assert controls(result.stderr) == []
    assert "SignalWire rejected the account request (400, error 21211): " in result.stderr
    assert "[bold]boom[/bold]" in result.stderr


@pytest.mark.parametrize("fancy", [False, True])
def test_call_statuses_and_heard_lines_are_cleaned(monkeypatch, fancy):
    stream = io.StringIO()
    monkeypatch.setattr(ui, "live", lambda s: fancy)  # a terminal, or not (issue 10: ui.live)
    reporter = ui.Reporter(stream=stream)
    reporter.step("\x1b]0;x\x07[red]weird\x1b[2J", 1.0)
    reporter.heard(["\x1b[2Jhello [link=http://evil]x[/link]\x07"])
    reporter.warn("\x9b2J")
    reporter.finish()
    out = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "[red]weird[2J" in out and "hello [link=http://evil]x[/link]" in out


def test_the_platforms_more_info_link_is_cleaned_too(hostile_env):
    Hostile.more_info = "https://x.example/\x1b]8;;http://evil\x07click\x1b]8;;\x07"
    try:
        result = run_cli(["send", NUMBER, "--skip-preflight", "-v"], hostile_env)
    finally:
        Hostile.more_info = "x"
    assert result.returncode == 4
    assert controls(result.stderr) == []  # the link is dropped (signalwire.py) or cleaned (ui.sanitize)


def test_sanitize():
    assert ui.sanitize(HOSTILE) == SHOWN
    assert ui.sanitize("a\tb\nc\u2028d") == "a b c d"
    assert ui.sanitize("[bold]x[/bold]", markup=True) == "\\[bold]x\\[/bold]"
    assert ui.sanitize("café ✓ 東京") == "café ✓ 東京"
    assert ui.sanitize(None) == "None"


class HostileApp(http.server.BaseHTTPRequestHandler):
    """An application under test whose call script says text made to take over a terminal
    (XML allows C1 controls such as U+009B and format characters such as U+202E)."""

    document = ('<?xml version="1.0" encoding="UTF-8"?><Response><Say>hello \u009b31mred\u009b0m \u202eevil'
                '</Say><Hangup/></Response>').encode()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.document)))
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *args):
        pass


def test_the_foreground_sandbox_logs_what_the_callee_heard_cleaned(tmp_path):
    """`voice2fa sandbox` serves any client: what that client's documents say is untrusted."""
    import base64
    import signal
    import subprocess
    import urllib.parse
    import urllib.request

    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileApp)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}
    proc = subprocess.Popen(voice2fa_command() + ["sandbox"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        settings = dict(proc.stdout.readline().rstrip("\n").split("=", 1) for _ in range(5))
        space, project, token = (settings[k] for k in ("SIGNALWIRE_SPACE", "SIGNALWIRE_PROJECT", "SIGNALWIRE_TOKEN"))
        form = urllib.parse.urlencode({"From": CALLER, "To": NUMBER, "Url": f"http://127.0.0.1:{app.server_port}/"})
        request = urllib.request.Request(f"{space}/api/laml/2010-04-01/Accounts/{project}/Calls.json",
                                         data=form.encode())
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{project}:{token}".encode()).decode())
        sid = json.loads(urllib.request.urlopen(request, timeout=30).read())["sid"]
        err = ""
        while f"call {sid} to {NUMBER}: completed" not in err:
            line = proc.stderr.readline()
            assert line, err
            err += line
        proc.send_signal(signal.SIGTERM)
        err += proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        app.shutdown()
    assert f"sandbox: call {sid} callee heard: hello 31mred0m evil\n" in err
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]", err)
