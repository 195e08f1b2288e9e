"""Twilio's Verify v2 spec as cut into tests/fixtures/twilio_verify_v2.json (twilio/twilio-oai,
MIT), read for the tests: each served operation's parameters, and its response schemas as JSON
Schema validators."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import jsonschema

FIXTURE = Path(__file__).parent / "fixtures" / "twilio_verify_v2.json"


@functools.cache
def spec() -> dict:
    return json.loads(FIXTURE.read_text())


def resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref is None:
        return node
    return spec()["components"]["schemas"][ref.rsplit("/", 1)[1]]


def body_parameters(path: str, method: str = "post") -> dict[str, dict]:
    """name → its schema (references resolved) and whether it is required."""
    schema = spec()["paths"][path][method]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    required = set(schema.get("required", ()))
    return {name: {**resolve(prop), "required": name in required} for name, prop in schema["properties"].items()}


def query_parameters(path: str) -> dict[str, dict]:
    return {p["name"]: resolve(p["schema"]) for p in spec()["paths"][path]["get"].get("parameters", ())
            if p["in"] == "query"}


def _openapi_to_json_schema(node):
    """OpenAPI 3.0's `nullable` as JSON Schema's type lists; references into $defs."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_json_schema(v) for k, v in node.items() if k not in ("nullable", "x-twilio", "description")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "$ref" in out:
            out = {"anyOf": [{"$ref": out["$ref"]}, {"type": "null"}]}
        elif "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def response_validator(path: str, method: str, status: int) -> jsonschema.Draft202012Validator:
    """The spec's schema of an operation's answer (every property it declares, as declared;
    additional properties refused, so a field the spec does not name fails)."""
    responses = spec()["paths"][path][method]["responses"]
    schema = copy.deepcopy(responses[str(status)]["content"]["application/json"]["schema"])
    defs = {name: _openapi_to_json_schema(s) for name, s in spec()["components"]["schemas"].items()}
    for d in defs.values():
        if d.get("type") == "object" and "properties" in d:
            d["additionalProperties"] = False
    top = _openapi_to_json_schema(schema)
    if "properties" in top:
        top["additionalProperties"] = False
    top["$defs"] = defs
    return jsonschema.Draft202012Validator(top, format_checker=jsonschema.FormatChecker())
