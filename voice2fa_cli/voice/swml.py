"""The call as one SWML document, for the delivery that needs no tunnel (SignalWire's Calling
API dials with the document inline): the same call the webhook serves as cXML, document by
document (speech.py), as data — dicts and lists, never text pasted together.

Only what SignalWire's SWML reference and its JSON Schema allow (signalwire/docs @668371b2,
specs/swml/calling/tsp-output/@typespec/json-schema/SWMLObject.json and
fern/products/swml/pages/reference/methods/calling/): `answer` with `max_duration`, `play` as an
object with `urls` (`say:` and `silence:` items), `prompt` (its `play` a list; one digit,
`initial_timeout`) which sets `prompt_value` and `prompt_result`, `switch` on those variables
with string case keys and a `default` (a switch that matches nothing is a runtime error),
`transfer` to a named section, `hangup`. Voice and language ride on each `play` and `prompt`
(`say_voice`, `say_language`, `say_gender`).

The webhook's state (which gate try, which reading, how many wrong keys) becomes the section
the call is in: one section per state reachable, each built once. A call has at most
speech.GATE_TRIES gate prompts, speech.MAX_CODE_READS readings and as many wrong keys as the
webhook allows, so it never nears the platform's 32 transfers."""

from __future__ import annotations

from typing import Any

from voice2fa_cli.voice import speech

MAX_CALL_SECONDS = 300  # answer.max_duration: the longest call this document can make is well under it
STANDARD_GENDERS = {"man": "male", "woman": "female"}  # cXML's standard voices, as SWML's say_gender

Method = dict[str, Any]


class _Builder:
    def __init__(self, code: str, voice: speech.Voice, key: str | None) -> None:
        self.code = code
        self.voice = voice
        self.key = key
        self.sections: dict[str, list[Method]] = {}
        self.speech: dict[str, str] = {"say_language": voice.language}
        if voice.voice:
            gender = STANDARD_GENDERS.get(voice.voice.lower())
            if gender is not None:
                self.speech["say_gender"] = gender
            else:
                self.speech["say_voice"] = voice.voice

    # --- what is said -------------------------------------------------------------------

    @staticmethod
    def _say(text: str) -> str:
        return "say:" + text

    def _items(self, parts: list[str | int]) -> list[str]:
        return [f"silence:{part}" if isinstance(part, int) else self._say(part) for part in parts]

    def play(self, *texts: str) -> Method:
        return {"play": {"urls": [self._say(text) for text in texts], **self.speech}}

    def prompt(self, items: list[str]) -> Method:
        return {"prompt": {"play": items, "max_digits": 1, "initial_timeout": speech.KEY_WINDOW, **self.speech}}

    def readings(self, slow: bool, *, options: bool) -> list[str]:
        """The code read twice (speech.code_document's readings), and the keys offered."""
        text = self.voice.text
        parts: list[str | int] = [text("code_slow" if slow else "code"), *speech.reading(self.code, slow),
                                  speech.READINGS_PAUSE, text("again"), *speech.reading(self.code, slow)]
        if options:
            parts += [1, text("options", repeat=speech.REPEAT_KEY, slower=speech.SLOWER_KEY)]
        return self._items(parts)

    def goodbye(self) -> list[Method]:
        return [self.play(self.voice.text("goodbye")), {"hangup": {}}]

    @staticmethod
    def on_key(cases: dict[str, list[Method]], no_input: list[Method], other: list[Method]) -> Method:
        """What follows a prompt: a case per key, then nothing pressed, then any other key."""
        return {"switch": {"variable": "prompt_value", "case": cases, "default": [
            {"switch": {"variable": "prompt_result", "case": {"no_input": no_input}, "default": other}}]}}

    def go(self, name: str) -> list[Method]:
        return [{"transfer": {"dest": name}}]

    # --- the states ---------------------------------------------------------------------

    def gate(self, tries: int) -> str:
        """The key-press gate, its `tries`th prompt (speech.gate_document)."""
        name = f"gate_{tries}"
        if name not in self.sections:
            assert self.key is not None
            self.sections[name] = []
            said = self.voice.opening_texts() if tries == 1 else [self.voice.text("wrong_key")]
            wrong = self.go(self.gate(tries + 1)) if tries < speech.GATE_TRIES else self.goodbye()
            self.sections[name] = [
                self.play(*said),
                self.prompt(self.items_of("press", key=self.key)),
                self.on_key({self.key: self.go(self.read(1, False, tries - 1))},
                            [self.play(self.voice.text("no_key")), {"hangup": {}}], wrong),
            ]
        return name

    def items_of(self, name: str, **values: str) -> list[str]:
        return [self._say(self.voice.text(name, **values))]

    def read(self, reads: int, slow: bool, wrong: int, *, opening: bool = False) -> str:
        """The `reads`th reading of the code (speech.code_document), `wrong` keys pressed so far."""
        name = f"read_{reads}{'_slow' if slow else ''}_w{wrong}"
        if name in self.sections:
            return name
        self.sections[name] = []
        body: list[Method] = [self.play(*self.voice.opening_texts())] if opening else []
        if reads >= speech.MAX_CODE_READS:  # the last reading: no keys offered
            body += [{"play": {"urls": self.readings(slow, options=False), **self.speech}}, *self.goodbye()]
        else:
            body += [self.prompt(self.readings(slow, options=True)), self.steer(reads, wrong)]
        self.sections[name] = body
        return name

    def steer(self, reads: int, wrong: int) -> Method:
        """After a reading that offers the keys: 1 again, 2 slower, nothing goodbye, another
        key said to do nothing (the webhook's unknown-key document) until too many."""
        other = self.goodbye() if wrong + 1 >= speech.GATE_TRIES else self.go(self.menu(reads, wrong + 1))
        return self.on_key({speech.REPEAT_KEY: self.go(self.read(reads + 1, False, wrong)),
                            speech.SLOWER_KEY: self.go(self.read(reads + 1, True, wrong))},
                           self.goodbye(), other)

    def menu(self, reads: int, wrong: int) -> str:
        """speech.unknown_key_document: that key does nothing; the keys offered again."""
        name = f"menu_{reads}_w{wrong}"
        if name not in self.sections:
            self.sections[name] = []
            self.sections[name] = [
                self.play(self.voice.text("no_such_key")),
                self.prompt(self.items_of("options", repeat=speech.REPEAT_KEY, slower=speech.SLOWER_KEY)),
                self.steer(reads, wrong),
            ]
        return name


def document(code: str, voice: speech.Voice, key: str | None, *, max_duration: int = MAX_CALL_SECONDS) -> dict:
    """The whole call: answered (at most `max_duration` s), then the gate for `key` (None: the
    code at once, after the opening)."""
    builder = _Builder(code, voice, key)
    first = builder.gate(1) if key is not None else builder.read(1, False, 0, opening=True)
    main: list[Method] = [{"answer": {"max_duration": max_duration}}, *builder.go(first)]
    return {"version": "1.0.0", "sections": {"main": main, **builder.sections}}

