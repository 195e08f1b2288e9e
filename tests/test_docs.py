"""The documentation keeps up with the code: every variable the code reads is in example.env
and the README, and the README starts with the two fresh-machine commands CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def variables_in_code() -> set[str]:
    names = set()
    for path in (ROOT / "voice2fa_cli").rglob("*.py"):
        names |= set(re.findall(r'"((?:SIGNALWIRE|VOICE2FA)_[A-Z_]+)"', path.read_text()))
    return names


def test_every_variable_is_documented():
    names = variables_in_code()
    assert {"SIGNALWIRE_SPACE", "VOICE2FA_STATE_DIR", "VOICE2FA_ALLOWED_COUNTRIES"} <= names
    example = (ROOT / "example.env").read_text()
    readme = (ROOT / "README.md").read_text()
    assert sorted(n for n in names if n not in example) == []
    assert sorted(n for n in names if n not in readme) == []


def test_readme_starts_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.split("```sh", 1)[1].split("```", 1)[0].splitlines()
                if line and not line.startswith("#")]
    assert commands == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && voice2fa send --sandbox +15551234567",
        "python3 -m venv .venv && . .venv/bin/activate && pip install '.[test]' && python -m pytest -q",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pip install -q '.[test]'" in ci and "python -m pytest -q" in ci
