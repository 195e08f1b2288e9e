"""SWML as the sandbox receives it: checked against the facts of SignalWire's reference (its own
code: it shares none with voice2fa_cli.voice.swml, which it tests), then run with the simulated
callee.

Facts (signalwire/docs @668371b217817d9037657f5079d2345945ad9331):
- SCHEMA = specs/swml/calling/tsp-output/@typespec/json-schema/SWMLObject.json
- REF    = fern/products/swml/pages/reference/methods/calling/<method>.mdx
- ERRORS = fern/products/swml/pages/reference/errors.mdx
The document: `version` (optional, only "1.0.0"), `sections` (required) with `main` (required);
nothing else at the root; each section a list of objects with exactly one method. What each
method takes is METHODS below (property → the types it accepts), required ones in REQUIRED.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

VERSION = "1.0.0"  # SCHEMA version: const
# SCHEMA play_url: http(s) URLs, ring:, say: (one optional space), silence: seconds
PLAY_URL = re.compile(r"(http://.*|https://.*|ring: ?[0-9.]*: ?[a-zA-Z]{2}|say: ?.*|silence: ?[0-9.]*"
                      r"|ring: ?[a-zA-Z]{2})")
VARIABLE = re.compile(r"[$%]\{.*\}")  # SCHEMA SWMLVar: a whole-value variable reference
MAX_TRANSFERS = 32  # ERRORS relay_script_too_many_transfers: transfers and gotos in one call
HANGUP_REASONS = ("hangup", "busy", "decline")  # REF hangup.mdx
GOTO_MAX = (1, 100)  # REF goto.mdx: max, default 100
VOLUME = (-40, 40)  # REF play/index.mdx, prompt.mdx
PROMPT_RESULTS = ("failed", "no_input", "match_speech", "match_digits", "no_match")  # REF prompt.mdx

STRING, INTEGER, NUMBER, BOOLEAN, OBJECT, LIST = "string", "integer", "number", "boolean", "object", "list"
SPEECH = {"say_voice": (STRING,), "say_language": (STRING,), "say_gender": (STRING,)}
METHODS: dict[str, dict[str, tuple[str, ...]]] = {
    "answer": {"max_duration": (INTEGER,), "codecs": (STRING,), "username": (STRING,), "password": (STRING,)},
    "hangup": {"reason": (STRING,)},
    "play": {"url": (STRING,), "urls": (LIST,), "auto_answer": (BOOLEAN,), "volume": (NUMBER,), "status_url": (STRING,),
             **SPEECH},
    "prompt": {"play": (STRING, LIST), "volume": (NUMBER,), "max_digits": (INTEGER,), "terminators": (STRING,),
               "digit_timeout": (NUMBER,), "initial_timeout": (NUMBER,), "speech_timeout": (NUMBER,),
               "speech_end_timeout": (NUMBER,), "speech_language": (STRING,), "speech_hints": (LIST,),
               "speech_engine": (STRING,), "status_url": (STRING,), **SPEECH},
    "switch": {"variable": (STRING,), "case": (OBJECT,), "default": (LIST,)},
    "transfer": {"dest": (STRING,), "params": (OBJECT,), "meta": (OBJECT,)},
    "goto": {"label": (STRING,), "when": (STRING,), "max": (INTEGER,)},
    "set": {},  # any keys (REF set.mdx)
}
REQUIRED = {"prompt": ("play",), "switch": ("variable", "case"), "transfer": ("dest",), "goto": ("label",)}
VALUE_METHODS = {"label": STRING, "unset": STRING}  # methods whose value is not an object


class Invalid(ValueError):
    """The document breaks a fact; `attribute` is the path of what is wrong."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.message = message


def _is(value: object, kind: str) -> bool:
    if isinstance(value, str) and VARIABLE.fullmatch(value) and kind in (INTEGER, NUMBER, BOOLEAN):
        return True
    return {
        STRING: isinstance(value, str),
        INTEGER: isinstance(value, int) and not isinstance(value, bool),
        NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool),
        BOOLEAN: isinstance(value, bool),
        OBJECT: isinstance(value, dict),
        LIST: isinstance(value, list),
    }[kind]


def check(document: object) -> None:
    """Raises Invalid for the first fact the document breaks."""
    if not isinstance(document, dict):
        raise Invalid("swml", "the SWML document must be an object")
    extra = set(document) - {"version", "sections"}
    if extra:
        raise Invalid(f"swml.{sorted(extra)[0]}", "unknown property of the SWML document")
    if "version" in document and document["version"] != VERSION:
        raise Invalid("swml.version", f"version must be {VERSION}")
    sections = document.get("sections")
    if not isinstance(sections, dict) or not isinstance(sections.get("main"), list):
        raise Invalid("swml.sections.main", "the document needs sections.main, a list of methods")
    for name, methods in sections.items():
        if not isinstance(methods, list):
            raise Invalid(f"swml.sections.{name}", "a section must be a list of methods")
        _methods(methods, f"swml.sections.{name}")


def _methods(methods: list, path: str) -> None:
    for index, item in enumerate(methods):
        where = f"{path}[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise Invalid(where, "each method is an object with exactly one key")
        ((name, params),) = item.items()
        _method(name, params, f"{where}.{name}")


def _method(name: str, params: object, where: str) -> None:
    if name in VALUE_METHODS:
        if not isinstance(params, str) and not (name == "unset" and isinstance(params, list)):
            raise Invalid(where, f"{name} takes a string")
        return
    if name not in METHODS:
        raise Invalid(where, f"unknown method {name} (relay_script_method_undefined)")
    if not isinstance(params, dict):
        raise Invalid(where, f"{name} takes an object")
    allowed = METHODS[name]
    for required in REQUIRED.get(name, ()):
        if required not in params:
            raise Invalid(f"{where}.{required}", f"{name} needs {required} (relay_script_method_parameter_missing)")
    if name == "set":
        return
    for key, value in params.items():
        if key not in allowed:
            raise Invalid(f"{where}.{key}", f"{name} has no property {key}")
        if not any(_is(value, kind) for kind in allowed[key]):
            raise Invalid(f"{where}.{key}", f"{name}.{key} must be {' or '.join(allowed[key])}")
    if name == "play":
        if ("url" in params) == ("urls" in params):
            raise Invalid(where, "play takes url or urls, one of them")
        urls = params["urls"] if "urls" in params else [params["url"]]
        _urls(urls, f"{where}.{'urls' if 'urls' in params else 'url'}")
    if name == "prompt":
        urls = params["play"] if isinstance(params["play"], list) else [params["play"]]
        _urls(urls, f"{where}.play")
        if isinstance(params.get("max_digits"), int) and params["max_digits"] < 1:
            raise Invalid(f"{where}.max_digits", "max_digits is at least 1")
    volume = params.get("volume")
    if name in ("play", "prompt") and isinstance(volume, (int, float)) and not VOLUME[0] <= volume <= VOLUME[1]:
        raise Invalid(f"{where}.volume", f"volume is from {VOLUME[0]} to {VOLUME[1]}")
    if name == "hangup" and params.get("reason", "hangup") not in HANGUP_REASONS:
        raise Invalid(f"{where}.reason", f"reason is one of {', '.join(HANGUP_REASONS)}")
    if name == "answer" and isinstance(params.get("max_duration"), int) and params["max_duration"] < 1:
        raise Invalid(f"{where}.max_duration", "max_duration is a number of seconds")
    if name == "goto" and isinstance(params.get("max"), int) and not GOTO_MAX[0] <= params["max"] <= GOTO_MAX[1]:
        raise Invalid(f"{where}.max", f"max is from {GOTO_MAX[0]} to {GOTO_MAX[1]}")
    if name == "switch":
        for case, branch in params["case"].items():
            if not isinstance(branch, list):
                raise Invalid(f"{where}.case.{case}", "a case is a list of methods")
            _methods(branch, f"{where}.case.{case}")
        if "default" in params:
            _methods(params["default"], f"{where}.default")


def _urls(urls: list, where: str) -> None:
    for index, url in enumerate(urls):
        if not isinstance(url, str) or not (PLAY_URL.fullmatch(url) or VARIABLE.fullmatch(url)):
            raise Invalid(f"{where}[{index}]", "not a play URL (http(s)://, say:, silence:, ring:)")


# --- running it -----------------------------------------------------------------------------


class ScriptError(Exception):
    """What the platform reports as a script error (ERRORS): the call ends."""


@dataclass
class Run:
    """One call's run: what the callee hears, the prompts reached, the variables."""

    document: dict
    pending: list[str] = field(default_factory=list)  # heard since the last key press (told then, or at the end)
    variables: dict[str, Any] = field(default_factory=dict)
    transfers: int = 0
    waited: float = 0.0  # seconds spent waiting out prompts nobody answered


def spoken(urls: list[str]) -> list[str]:
    """The lines a callee hears of play URLs: each `say:` one line, but a run of single digits
    (pauses between them included) is one line, "4, 0, 7"."""
    lines: list[str] = []
    digits: list[str] = []
    for url in urls:
        if url.startswith("silence:"):
            continue
        text = url[4:].removeprefix(" ") if url.startswith("say:") else f"[plays {url.split(':')[0]}]"
        if len(text) == 1 and text.isdigit():
            digits.append(text)
            continue
        if digits:
            lines.append(", ".join(digits))
            digits = []
        if text:
            lines.append(text)
    if digits:
        lines.append(", ".join(digits))
    return lines
