"""Every JSON output the tests produce is checked against its command's schema
(voice2fa_cli/schemas/*.json, shipped with the package and documented in the README)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema

import voice2fa_cli

SCHEMAS = Path(voice2fa_cli.__file__).parent / "schemas"
COMMANDS = {"send": "send", "verify": "verify", "doctor": "doctor", "sessions": "sessions", "sandbox": "sandbox"}


@functools.cache
def schema(name: str) -> dict:
    data = json.loads((SCHEMAS / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def schema_name(args: list[str]) -> str | None:
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] not in COMMANDS:
        return None
    if words[0] == "sessions" and "purge" in words[1:2]:
        return "sessions-purge"
    return COMMANDS[words[0]]


def check(args: list[str], stdout: str) -> dict | None:
    """When `args` asked for --json: stdout is one JSON object on one line, valid against the
    command's schema. Returns it (None when no JSON was asked for)."""
    if "--json" not in args or "--help" in args or "-h" in args:
        return None
    name = schema_name(args)
    assert name is not None, f"no schema for {args}"
    lines = stdout.splitlines()
    assert len(lines) == 1, f"--json must print one line on stdout, got {stdout!r}"
    data = json.loads(lines[0])
    jsonschema.validate(data, schema(name), cls=jsonschema.Draft202012Validator)
    assert (data["error"] is None) == (data["exit_code"] == 0), data
    return data
