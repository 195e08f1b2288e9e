"""The README's serve section, run as written: its shell path from install to `approved` in
bash (with curl and jq, as a reader would), then its SDK snippets executed against a real
`voice2fa serve --sandbox` process, and the official `twilio` SDK driving every operation the
section names (verifications, checks, services, attempts) against that same process."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.helpers import FAST, NUMBER, free_port, run_cli, voice2fa_command

README = Path(__file__).resolve().parent.parent / "README.md"
US_NUMBER = "+15551234567"  # the README's number


def serve_section() -> str:
    text = README.read_text()
    start = text.index("## serve: ")
    return text[start:text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", serve_section(), flags=re.S)


def shell_env(tmp_path: Path) -> dict[str, str]:
    bindir = str(Path(voice2fa_command()[0]).parent) if shutil.which("voice2fa") else str(Path(sys.executable).parent)
    return {**os.environ, **FAST, "VOICE2FA_STATE_DIR": str(tmp_path / "state"),
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def json_values(text: str) -> list:
    """The JSON values printed one after another (curl prints no newline after a body)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text) or text[at] not in "{[":
            return values
        value, at = decoder.raw_decode(text, at)
        values.append(value)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq (.ci/run installs them)")
def test_the_readmes_shell_path_reaches_approved(tmp_path):
    path = blocks("sh")[0]
    lines = path.rstrip("\n").split("\n")
    assert lines[0].startswith("pip install '.[serve]'")  # installed already, as .ci/run installs '.[test]'
    port = free_port()
    script = ["set -euo pipefail"]
    for line in lines[1:]:
        line = line.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        if line.startswith("voice2fa serve --sandbox"):
            line = line.replace("voice2fa serve --sandbox",
                                f"voice2fa serve --sandbox --listen-api 127.0.0.1:{port} --listen-metrics 127.0.0.1:0")
            script.append(line)
            # a reader types the next line a moment later; the test waits for the API instead
            script.append(f"for i in $(seq 100); do curl -sf http://127.0.0.1:{port}/healthz >/dev/null && break; "
                          "sleep 0.1; done")
            continue
        if line.startswith("CODE="):  # likewise: the simulated call takes a moment
            script.append("for i in $(seq 100); do grep -q '\"kind\":\"sandbox\"' serve.log && break; sleep 0.1; done")
        if line.startswith("kill %1"):
            script += [line, "wait %1 && echo serve-exited-0 || echo serve-exited-$?"]
            continue
        script.append(line)
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=shell_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout, done.stderr, (tmp_path / "serve.log").read_text())
    created, checked = json_values(done.stdout)
    assert (created["status"], created["to"], created["channel"]) == ("pending", US_NUMBER, "call")
    assert (checked["status"], checked["valid"], checked["sid"]) == ("approved", True, created["sid"])
    assert done.stdout.rstrip().endswith("serve-exited-0")
    log = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    [heard] = [line["heard"] for line in log if line["kind"] == "sandbox"]
    assert not [line for line in log if line["kind"] != "sandbox" and heard in json.dumps(line)]


class ServeProcess:
    """`voice2fa serve --sandbox 2> serve.log` on free loopback ports, in `cwd`."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.log_path = cwd / "serve.log"
        self.stderr = self.log_path.open("w")
        self.proc = subprocess.Popen(voice2fa_command() + ["serve", "--sandbox", "--listen-api", "127.0.0.1:0",
                                                           "--listen-metrics", "127.0.0.1:0", "--drain", "2"],
                                     cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = self.lines()
            if lines:
                assert lines[0]["event"] == "started", lines
                self.api_url = lines[0]["api"]
                return
            time.sleep(0.05)
        raise AssertionError("serve did not start")

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.endswith("}")]

    def heard(self, sid: str, count: int = 1, timeout: float = 10.0) -> str:
        """The code the `count`th call of verification `sid` read, once it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line["heard"] for line in self.lines() if line["kind"] == "sandbox" and line["verification"] == sid]
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no sandbox line for {sid}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.stderr.close()


def run_snippet(source: str, namespace: dict, api_url: str) -> list:
    """The README snippet's statements, one by one; the values of its expression statements."""
    source = source.replace("http://127.0.0.1:8080", api_url)
    values = []
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Expr):
            values.append(eval(compile(ast.Expression(statement.value), "README.md", "eval"), namespace))
        else:
            exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
    return values


def twilio_code(call) -> int:
    with pytest.raises(TwilioRestException) as raised:
        call()
    return raised.value.code


def test_the_readmes_sdk_snippets_and_every_operation_through_the_sdk(tmp_path, monkeypatch, capsys):
    env = shell_env(tmp_path)
    made = run_cli(["services", "create", "Acme login"], env)
    key = run_cli(["keys", "create", "backend"], env)
    admin_key = run_cli(["keys", "create", "ops", "--admin"], env)  # as "Services through the API" says
    assert (made.returncode, key.returncode, admin_key.returncode) == (0, 0, 0), (made.stderr, key.stderr)
    va, key, admin_key = json.loads(made.stdout)["sid"], json.loads(key.stdout), json.loads(admin_key.stdout)
    monkeypatch.chdir(tmp_path)  # the snippet reads serve.log where serve writes it
    serve = ServeProcess(tmp_path, env)
    try:
        namespace = {"KEY_SID": key["sid"], "KEY_SECRET": key["secret"], "VA": va,
                     "ADMIN_KEY_SID": admin_key["sid"], "ADMIN_KEY_SECRET": admin_key["secret"]}
        snippets = [b for b in blocks("python") if "RequestValidator(CALLBACK_SECRET)" not in b]
        assert len(snippets) == 3  # the check, services, attempts
        *_, status = run_snippet(snippets[0], namespace, serve.api_url)
        assert status == "approved"
        run_snippet(snippets[1], namespace, serve.api_url)
        made_by_sdk = namespace["service"]
        assert (made_by_sdk.friendly_name, made_by_sdk.code_length, made_by_sdk.custom_code_enabled) == ("Acme", 8, True)
        capsys.readouterr()
        [rate] = run_snippet(snippets[2], namespace, serve.api_url)
        assert rate == "100.0"  # one call, converted
        [printed] = capsys.readouterr().out.splitlines()
        assert printed.endswith(f" {US_NUMBER} completed converted"), printed

        client = namespace["client"]
        service = client.verify.v2.services(va)
        first = namespace["verification"]
        assert twilio_code(lambda: service.verifications(first.sid).fetch()) == 20404  # approved: gone, as on Twilio

        created = service.verifications.create(to=NUMBER, channel="call")
        serve.heard(created.sid)
        again = service.verifications.create(to=NUMBER, channel="call")  # a resend: a new call, a new code
        assert again.sid == created.sid and len(again.send_code_attempts) == 2
        code = serve.heard(created.sid, 2)
        assert service.verifications(created.sid).fetch().status == "pending"
        wrong = "000000" if code != "000000" else "111111"
        assert service.verification_checks.create(verification_sid=created.sid, code=wrong).status == "pending"
        assert service.verification_checks.create(verification_sid=created.sid, code=code).status == "approved"

        canceled = service.verifications.create(to=NUMBER, channel="call")
        serve.heard(canceled.sid)
        assert service.verifications(canceled.sid).update(status="canceled").status == "canceled"
        approved = service.verifications.create(to=NUMBER, channel="call")
        serve.heard(approved.sid)
        assert service.verifications(approved.sid).update(status="approved").status == "approved"

        attempts = client.verify.v2.verification_attempts.list(verification_sid=created.sid)
        assert [a.conversion_status for a in attempts] == ["converted", "unconverted"]  # newest first
        fetched = client.verify.v2.verification_attempts(attempts[0].sid).fetch()
        assert (fetched.verification_sid, fetched.channel_data["call_status"]) == (created.sid, "completed")
        summary = client.verify.v2.verification_attempts_summary().fetch(verify_service_sid=va)
        # attempts: the README's (converted), two of the resent verification (one converted), one
        # canceled, one approved by an update (converts nothing)
        assert (summary.total_attempts, summary.total_converted, summary.total_unconverted) == (5, 2, 3)
        assert summary.conversion_rate_percentage == "40.0"

        admin = namespace["admin"]
        assert {s.sid for s in admin.verify.v2.services.list()} == {va, made_by_sdk.sid}
        assert admin.verify.v2.services(va).fetch().friendly_name == "Acme login"
        assert admin.verify.v2.services(va).update(friendly_name="Acme sign-in").friendly_name == "Acme sign-in"
        assert twilio_code(lambda: service.update(friendly_name="not an admin")) == 20403
        assert admin.verify.v2.services(made_by_sdk.sid).delete() is True
        assert twilio_code(lambda: admin.verify.v2.services(made_by_sdk.sid).fetch()) == 20404
        assert [s.sid for s in client.verify.v2.services.list()] == [va]
    finally:
        returncode = serve.stop()
    assert returncode == 0
    lines = serve.lines()
    codes = {line["heard"] for line in lines if line["kind"] == "sandbox"}
    assert len(codes) >= 4
    assert not [line for line in lines if line["kind"] != "sandbox" and any(c in json.dumps(line) for c in codes)]
