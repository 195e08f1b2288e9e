"""`voice2fa sandbox` as a subprocess: the settings it prints point a client (here voice2fa
itself) at it; its flags choose the callee's behaviour; SIGINT and SIGTERM stop it with exit 0.
And the -v detail of a platform error (more_info) end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import pytest

from tests import json_schemas
from tests.helpers import FAST, NUMBER, free_port, run_cli, voice2fa_command

KEYS = ["SIGNALWIRE_SPACE", "SIGNALWIRE_PROJECT", "SIGNALWIRE_TOKEN", "SIGNALWIRE_NUMBER", "SIGNALWIRE_SIGNING_KEY"]


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))} | {"NO_COLOR": "1"}


class Running:
    def __init__(self, args: list[str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            voice2fa_command() + ["sandbox", "--listen", f"127.0.0.1:{self.port}", *args],
            env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def stop(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err

    def listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0


@pytest.fixture
def running():
    started: list[Running] = []

    def start(*args: str) -> Running:
        started.append(Running(list(args)))
        return started[-1]

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.communicate(timeout=30)


def read_env_lines(r: Running) -> dict[str, str]:
    lines = [r.proc.stdout.readline() for _ in KEYS]
    assert all(line.endswith("\n") for line in lines), lines
    pairs = [line.rstrip("\n").split("=", 1) for line in lines]
    assert [name for name, _ in pairs] == KEYS
    return dict(pairs)


def send_env(tmp_path, settings: dict[str, str]) -> tuple[dict[str, str], object]:
    """voice2fa configured through a .env file holding exactly what the sandbox printed."""
    work = tmp_path / "app"
    work.mkdir()
    (work / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    port = free_port()
    env = base_env() | FAST | {
        "VOICE2FA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "VOICE2FA_LISTEN": f"127.0.0.1:{port}",
        "VOICE2FA_STATE_DIR": str(tmp_path / "state"),
    }
    return env, work


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_env_lines_point_a_client_at_it_and_a_signal_stops_it_with_exit_0(running, tmp_path, sig):
    r = running()
    settings = read_env_lines(r)
    assert settings["SIGNALWIRE_SPACE"] == f"http://127.0.0.1:{r.port}"
    assert settings["SIGNALWIRE_NUMBER"] == "+15550100000"
    assert len(settings["SIGNALWIRE_TOKEN"]) >= 24 and len(settings["SIGNALWIRE_SIGNING_KEY"]) >= 24
    env, work = send_env(tmp_path, settings)
    result = run_cli(["send", NUMBER, "--no-prompt", "--json"], env, cwd=work)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["call_status"] == "completed"
    code, err = r.stop(sig)
    assert code == 0
    assert err.splitlines()[0] == f"sandbox: SignalWire stand-in at http://127.0.0.1:{r.port}; Ctrl-C stops it"
    assert err.splitlines()[-1] == "sandbox: stopped"
    assert f"call {data['call_sid']} to {NUMBER}: ringing" in err
    assert not r.listening()


def test_json_settings(running):
    r = running("--json")
    line = r.proc.stdout.readline()
    data = json_schemas.check(["sandbox", "--json"], line)  # voice2fa_cli/schemas/sandbox.json
    assert list(data) == KEYS + ["error", "exit_code"]
    assert data["SIGNALWIRE_SPACE"] == f"http://127.0.0.1:{r.port}"
    assert (data["error"], data["exit_code"]) == (None, 0)
    assert r.stop(signal.SIGTERM)[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "0.0.0.0:8765"], "--listen 0.0.0.0:8765: the sandbox listens on loopback only (e.g. 127.0.0.1:8765)"),
        (["--api-code", "21211"], "--api-code needs --api-error"),
        (["--outcome", "bogus"], "Invalid value for '--outcome': 'bogus' is not one of 'answer', 'busy', 'no-answer', "
                                 "'voicemail', 'failed', 'hold'."),
    ],
)
def test_json_errors_have_the_same_shape(args, message):
    result = run_cli(["sandbox", "--json", *args], base_env())  # checked against sandbox.json
    data = json.loads(result.stdout)
    assert (result.returncode, data["error"], data["exit_code"]) == (2, message, 2)
    assert [data[k] for k in KEYS] == [None] * len(KEYS)


def test_unsigned_prints_an_empty_signing_key(running):
    r = running("--unsigned")
    assert read_env_lines(r)["SIGNALWIRE_SIGNING_KEY"] == ""
    assert r.stop(signal.SIGINT)[0] == 0


@pytest.mark.parametrize(
    "flags, exit_code, last_line",
    [
        (["--outcome", "busy"], 3, "error: the line was busy: the code was not delivered"),
        (["--outcome", "no-answer"], 3, "error: nobody answered: the code was not delivered"),
        (["--api-error", "401"], 4, "error: SignalWire refused the credentials: check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN"),
        (["--api-error", "429"], 4, "error: SignalWire is rate-limiting this account (429 Too Many Requests): wait and try again"),
        (["--api-error", "500"], 4, "error: SignalWire failed on the call request (500): try again later"),
        (["--api-error", "400", "--api-code", "21219"], 4,
         "error: SignalWire rejected the call request (400, error 21219): The 'To' phone number is not a verified caller "
         "ID and the account is in Trial mode — a trial account can call only verified numbers: verify this number or "
         "upgrade the account"),
    ],
)
def test_flags_choose_what_the_platform_does(running, tmp_path, flags, exit_code, last_line):
    r = running(*flags)
    env, work = send_env(tmp_path, read_env_lines(r))
    result = run_cli(["send", NUMBER, "--no-prompt"], env, cwd=work)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (exit_code, last_line)
    assert r.stop(signal.SIGINT)[0] == 0


def test_voicemail_hears_the_prompt_and_presses_nothing(running, tmp_path):
    r = running("--outcome", "voicemail")
    env, work = send_env(tmp_path, read_env_lines(r))
    result = run_cli(["send", NUMBER, "--no-prompt"], env, cwd=work)
    assert result.returncode == 3, result.stderr
    code, err = r.stop(signal.SIGINT)
    assert code == 0
    assert "callee heard: [waits for a key]" in err
    assert "presses" not in err


def test_more_info_only_with_verbose(running, tmp_path):
    r = running("--api-error", "400", "--api-code", "21211")
    env, work = send_env(tmp_path, read_env_lines(r))
    link = "debug: more about this error: https://signalwire.com/docs/rest/compatibility-api/error-codes#21211"
    quiet = run_cli(["send", NUMBER, "--no-prompt"], env, cwd=work)
    verbose = run_cli(["send", NUMBER, "--no-prompt", "-v"], env, cwd=work)
    assert quiet.returncode == verbose.returncode == 4
    assert link not in quiet.stderr
    assert link in verbose.stderr.splitlines()
    assert verbose.stderr.splitlines()[-1].startswith("error: SignalWire rejected the call request (400, error 21211)")
    assert r.stop(signal.SIGINT)[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "0.0.0.0:8765"], "error: --listen 0.0.0.0:8765: the sandbox listens on loopback only (e.g. 127.0.0.1:8765)"),
        (["--listen", "example.com:80"], "error: --listen example.com:80: the sandbox listens on loopback only (e.g. 127.0.0.1:8765)"),
        (["--press", "12"], "error: --press '12': give one key (0-9, * or #), asked or none"),
        (["--press", "\x1b[2J"], "error: --press '\\x1b[2J': give one key (0-9, * or #), asked or none"),
        (["--api-code", "21211"], "error: --api-code needs --api-error"),
    ],
)
def test_bad_flags_exit_2(args, message):
    result = subprocess.run(voice2fa_command() + ["sandbox", *args], env=base_env(), capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr.splitlines()[-1]) == (2, "", message)


@pytest.mark.parametrize("where", ["evil.localhost:8765", "localhost.example.com:8765", "10.0.0.1:8765"])
def test_the_sandbox_listens_where_config_is_loopback_says_only(where):
    result = subprocess.run(voice2fa_command() + ["sandbox", "--listen", where], env=base_env(), capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"error: --listen {where}: the sandbox listens on loopback only (e.g. 127.0.0.1:8765)"
    )


def test_a_port_in_use_exits_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(voice2fa_command() + ["sandbox", "--listen", f"127.0.0.1:{port}"], env=base_env(),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"error: --listen 127.0.0.1:{port}: cannot listen there (")
    assert result.stdout == ""


def test_voice2fa_send_through_the_printed_env_needs_no_tunnel(running, tmp_path):
    """The README's way: `voice2fa sandbox > .env`, then `voice2fa send` in that directory. The
    only missing setting is the public URL, and a local stand-in needs no tunnel: the message
    says what to set (not "start a tunnel"), and with that line added the call goes through."""
    r = running()
    work = tmp_path / "app"
    work.mkdir()
    dotenv = work / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in read_env_lines(r).items()))
    port = free_port()
    env = base_env() | FAST | {"VOICE2FA_STATE_DIR": str(tmp_path / "state"), "VOICE2FA_LISTEN": f"127.0.0.1:{port}"}
    result = run_cli(["send", NUMBER, "--no-prompt"], env, cwd=work)
    assert (result.returncode, result.stderr) == (
        2, "error: VOICE2FA_PUBLIC_URL is not set: SIGNALWIRE_SPACE is a local stand-in, which reaches this "
           "machine without a tunnel: set VOICE2FA_PUBLIC_URL to http:// and the --listen address, e.g. "
           "http://127.0.0.1:5000\n",
    )
    with dotenv.open("a") as f:
        f.write(f"VOICE2FA_PUBLIC_URL=http://127.0.0.1:{port}\n")
    result = run_cli(["send", NUMBER, "--no-prompt"], env, cwd=work)
    assert result.returncode == 0, result.stderr
    assert r.stop(signal.SIGTERM)[0] == 0


def listening_sockets(pid: int) -> set[int]:
    """The inodes of the TCP sockets process `pid` holds in the LISTEN state (Linux /proc)."""
    import re

    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", target):
            held.add(int(m.group(1)))
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    listening.add(int(fields[9]))
    return held & listening


@pytest.mark.parametrize(("delivery", "listens"), [("inline", False), ("webhook", True)])
def test_send_inline_through_voice2fa_sandbox_holds_no_listening_socket(running, tmp_path, delivery, listens):
    """`voice2fa send --delivery inline` against a `voice2fa sandbox` process: the call goes
    through with nothing listening in the send process (and no public URL); the webhook delivery,
    checked the same way, does listen."""
    r = running()
    env, work = send_env(tmp_path, read_env_lines(r))
    if delivery == "inline":
        env = {k: v for k, v in env.items() if k not in ("VOICE2FA_PUBLIC_URL", "VOICE2FA_LISTEN")}
    proc = subprocess.Popen(voice2fa_command() + ["send", NUMBER, "--delivery", delivery], env=env, cwd=work,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen, held = [], []
        while True:  # every line of the call, until it has ended and send waits for the code
            line = proc.stderr.readline()
            assert line, (seen, proc.poll())
            seen.append(line)
            held.append(bool(listening_sockets(proc.pid)))
            if "answered, " in line or "call completed" in line:
                break
        assert any(held) is listens, (seen, held)
        out, err = proc.communicate("000000\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, "".join(seen) + err
    assert err.strip().splitlines()[-1] == "error: wrong code (4 attempts left)"
    assert r.stop(signal.SIGINT)[0] == 0


@pytest.mark.parametrize(("flags", "exit_code", "permission"), [
    ([], 0, ("ok", "the API token may dial and read voice logs (Calling API)")),
    (["--api-error", "401", "--api-on", "fetch"], 2,
     ("fail", "SignalWire refused the credentials: check SIGNALWIRE_PROJECT and SIGNALWIRE_TOKEN")),
])
def test_doctor_for_the_inline_delivery_checks_the_voice_permission_and_needs_no_tunnel(running, tmp_path, flags,
                                                                                         exit_code, permission):
    r = running(*flags)
    env, work = send_env(tmp_path, read_env_lines(r))
    env = {k: v for k, v in env.items() if k not in ("VOICE2FA_PUBLIC_URL", "VOICE2FA_LISTEN")}
    result = run_cli(["doctor", "--delivery", "inline", "--json"], env, cwd=work)
    assert result.returncode == exit_code, result.stdout
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert (checks["voice permission"]["status"], checks["voice permission"]["detail"]) == permission
    assert (checks["tunnel"]["status"], checks["tunnel"]["detail"]) == (
        "ok", "not needed: the inline delivery carries the whole call in the dial (nothing listens here, nothing "
              "reaches this machine)")
    assert checks["VOICE2FA_DELIVERY"]["detail"] == "inline (from --delivery)"
    assert "VOICE2FA_PUBLIC_URL" not in checks and "VOICE2FA_LISTEN" not in checks
    assert (checks["caller ID"]["status"], checks["caller ID"]["detail"]) == (
        ("ok", "+15550100000 is a number of this project") if not exit_code else
        ("warn", "not checked: the API token may not list the project's numbers"))
    if exit_code:
        assert checks["voice permission"]["fix"] == ("give the API token the Voice permission on the API page of "
                                                    "your SignalWire Dashboard")
    assert r.stop(signal.SIGINT)[0] == 0


def test_a_token_without_the_voice_permission_is_told_so_inline(running, tmp_path):
    r = running("--api-error", "403")
    env, work = send_env(tmp_path, read_env_lines(r))
    result = run_cli(["send", NUMBER, "--no-prompt", "--delivery", "inline"], env, cwd=work)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        4, "error: SignalWire refused the call request (403): the API token needs the Voice permission (API page of "
           "your SignalWire Dashboard)")
    assert r.stop(signal.SIGINT)[0] == 0


def test_doctor_inline_fails_a_caller_id_that_is_not_the_projects(running, tmp_path):
    r = running()
    env, work = send_env(tmp_path, read_env_lines(r))
    env = {k: v for k, v in env.items() if k not in ("VOICE2FA_PUBLIC_URL", "VOICE2FA_LISTEN")}
    result = run_cli(["doctor", "--delivery", "inline", "--json"], {**env, "SIGNALWIRE_NUMBER": "+15550100999"},
                     cwd=work)
    assert result.returncode == 2
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert (checks["caller ID"]["status"], checks["caller ID"]["detail"], checks["caller ID"]["fix"]) == (
        "fail", "+15550100999 is not a number of this project: SignalWire refuses to call from it",
        "pick one from the Phone Numbers page of your SignalWire Dashboard")
    assert r.stop(signal.SIGINT)[0] == 0
