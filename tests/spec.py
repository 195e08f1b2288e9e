"""The spec facts in tests/fixtures/compat_api_spec.json, and checks against them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema

FIXTURE = Path(__file__).parent / "fixtures" / "compat_api_spec.json"


@cache
def spec() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def form_problems(operation: str, form: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[str]:
    """What is wrong with a request's form fields against the spec's parameters for
    `operation` (create | update): unknown names, missing required ones, repeats of names that
    do not repeat, values outside their allowed values or range. Empty: it conforms."""
    facts = spec()[operation]
    parameters = facts["parameters"]
    problems = []
    names = [name for name, _ in form]
    for name in facts["required"]:
        if name not in names:
            problems.append(f"{name} missing")
    for name, value in form:
        schema = parameters.get(name)
        if schema is None:
            problems.append(f"{name} is not a parameter of {operation}")
            continue
        if names.count(name) > 1 and name not in facts["repeatable"]:
            problems.append(f"{name} repeated")
        checked = {k: v for k, v in schema.items() if k not in ("minimum_value", "maximum_value")}
        try:
            jsonschema.validate(value, checked)
        except jsonschema.ValidationError as exc:
            problems.append(f"{name}={value!r}: {exc.message}")
            continue
        if "minimum_value" in schema and not schema["minimum_value"] <= int(value) <= schema["maximum_value"]:
            problems.append(f"{name}={value} outside {schema['minimum_value']}..{schema['maximum_value']}")
    return problems


def check_call(body: object) -> None:
    jsonschema.validate(body, spec()["call"]["schema"])


def check_callback(form: dict[str, str]) -> None:
    jsonschema.validate(form, spec()["status_callback"]["schema"])


def check_error(operation: str, status: int, body: object) -> str:
    """The error body conforms to the shape the spec gives `operation` for `status`; returns
    that shape's name (error_object | error_array)."""
    shape = spec()[operation]["errors"].get(str(status), "error_object")
    jsonschema.validate(body, spec()["errors"][shape]["schema"])
    if shape == "error_object":
        assert body["status"] == status
    return shape
