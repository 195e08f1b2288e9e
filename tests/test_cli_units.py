"""The Click layer in process (CliRunner): error mapping, one-line usage errors, help texts."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from voice2fa_cli import cli
from voice2fa_cli.commands import edge
from voice2fa_cli.errors import NotDelivered


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), input=input)


def test_an_unexpected_exception_is_one_line_and_exit_70():
    @click.command()
    @click.option("-v", "verbose", is_flag=True)
    def broken(verbose):
        with edge.exit_codes(False, verbose):
            raise RuntimeError("secret detail 123456")

    quiet = CliRunner().invoke(broken, [])
    assert quiet.exit_code == 70
    assert quiet.output == "error: internal error (RuntimeError) (a bug in voice2fa: run with -v for the traceback and report it)\n"
    loud = CliRunner().invoke(broken, ["-v"])
    assert loud.exit_code == 70 and "Traceback" in loud.output and "secret detail" in loud.output


def test_domain_errors_carry_their_exit_code_and_json():
    @click.command()
    def failing():
        with edge.exit_codes(True) as payload:
            payload.update(number="+15551234567")
            raise NotDelivered("the line was busy: the code was not delivered")

    result = CliRunner().invoke(failing, [])
    assert result.exit_code == 3
    assert result.output.splitlines() == [
        "error: the line was busy: the code was not delivered",
        '{"number":"+15551234567","error":"the line was busy: the code was not delivered","exit_code":3}',
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send"], "error: Missing argument 'NUMBER'. (see `voice2fa send --help`)"),
        (["send", "+15551234567", "--digits", "5"], "error: Invalid value for '--digits': 5 is not in the range 6<=x<=10. (see `voice2fa send --help`)"),
        (["send", "+15551234567", "--ttl", "11m"], "error: Invalid value for '--ttl': must be between 30 seconds and 10 minutes (see `voice2fa send --help`)"),
        (["send", "+15551234567", "--ttl", "ten"], "error: Invalid value for '--ttl': give seconds (e.g. 300) or minutes (e.g. 5m) (see `voice2fa send --help`)"),
        (["send", "+15551234567", "--max-attempts", "6"], "error: Invalid value for '--max-attempts': 6 is not in the range 1<=x<=5. (see `voice2fa send --help`)"),
        (["send", "+15551234567", "--language", "fr_FR!"], "error: Invalid value for --language: a language code such as en-US or fr-FR (see `voice2fa send --help`)"),
        (["send", "+15551234567", "--message", "x" * 201], "error: Invalid value for --message: plain printable text of 1 to 200 characters (see `voice2fa send --help`)"),
        (["frobnicate"], "error: No such command 'frobnicate'. (see `voice2fa --help`)"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args, message, capfd):
    with pytest.raises(SystemExit) as info:
        cli.main.main(args, prog_name="voice2fa")
    assert info.value.code == 2
    assert capfd.readouterr().err.splitlines() == [message]


@pytest.mark.parametrize("command", ["send", "verify", "sessions", "doctor", "preview"])
def test_every_command_has_help_with_examples(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output


def test_version():
    result = run("--version")
    assert (result.exit_code, result.output) == (0, "voice2fa 0.1.0\n")


def test_importing_the_cli_imports_no_aiohttp_rich_or_phonenumbers():
    import subprocess
    import sys

    code = "import sys, voice2fa_cli.cli; print(sorted(m for m in ('aiohttp', 'rich', 'phonenumbers', 'sqlite3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_command_modules_import_nothing_heavy_and_cli_imports_them_only_when_used():
    import subprocess
    import sys

    code = ("import sys, voice2fa_cli.cli; loaded = sorted(m for m in sys.modules if m.startswith('voice2fa_cli.commands.'));"
            " from voice2fa_cli.commands import admin, check, send, tools;"
            " print(loaded, sorted(m for m in ('aiohttp', 'rich', 'phonenumbers', 'sqlite3', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['voice2fa_cli.commands.edge'] []"


def test_every_command_is_registered_and_listed_in_order():
    names = cli.main.list_commands(click.Context(cli.main))
    assert names == ["completion", "doctor", "keys", "preview", "sandbox", "send", "serve", "services", "sessions",
                     "verify"]
    for name in names:
        assert cli.main.get_command(click.Context(cli.main), name).name == name


def test_a_pipe_guard_swallows_a_closed_pipe_once_and_for_all(tmp_path):
    import io
    import os

    from voice2fa_cli import ui

    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=True)
    guard = ui.PipeGuard(stream)
    assert guard.write("first line\n") == len("first line\n")  # EPIPE: swallowed
    assert guard.reader_gone
    guard.write("more\n")
    guard.flush()  # now /dev/null: nothing raised
    assert os.path.samefile(f"/proc/self/fd/{write_end}", os.devnull)
    stream.close()


def test_a_usage_error_with_json_still_prints_the_shape(capfd):
    from tests import json_schemas

    with pytest.raises(SystemExit) as info:
        cli.main.main(["verify", "+15551234567", "--json", "--code"], prog_name="voice2fa")
    assert info.value.code == 2
    out = capfd.readouterr().out
    data = json_schemas.check(["verify", "--json"], out)
    assert (data["exit_code"], data["error"]) == (2, "Option '--code' requires an argument.")


def test_every_json_shape_matches_its_schema():
    from tests import json_schemas

    for command, shape in edge.JSON_SHAPES.items():
        schema = json_schemas.schema("sessions-purge" if command == "purge" else command)
        assert list(shape) == list(schema["properties"]), command
        assert set(schema["required"]) == set(shape), command
