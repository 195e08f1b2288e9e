"""What the call says, as cXML built with ElementTree (so text is always escaped), and the
reverse: a cXML document rendered as the lines a callee hears (for the sandbox and previews).

The code is spoken digit by digit, each digit its own <Say>, and read twice.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from voice2fa_cli import phrases
from voice2fa_cli.phrases import DEFAULT_LANGUAGE

MAX_INTRO = 200


@dataclass(frozen=True)
class Voice:
    language: str = DEFAULT_LANGUAGE  # of the digits; the sentences too when translated
    voice: str | None = None
    intro: str | None = None  # a custom first sentence, plain text

    def _say(self, parent: ET.Element, text: str, language: str) -> ET.Element:
        el = ET.SubElement(parent, "Say", {"language": language})
        if self.voice:
            el.set("voice", self.voice)
        el.text = text
        return el

    def say(self, parent: ET.Element, name: str, **values: str) -> ET.Element:
        """A translated sentence (English where no translation exists)."""
        language = phrases.text_language(self.language)
        return self._say(parent, phrases.phrase(language, name, **values), language)

    def say_text(self, parent: ET.Element, text: str) -> ET.Element:
        return self._say(parent, text, phrases.text_language(self.language))

    def say_digit(self, parent: ET.Element, digit: str) -> ET.Element:
        return self._say(parent, digit, self.language)

    def opening(self, parent: ET.Element) -> ET.Element:
        return self.say_text(parent, self.intro) if self.intro else self.say(parent, "intro")


def _document() -> ET.Element:
    return ET.Element("Response")


def _serialise(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def code_document(code: str, voice: Voice, *, after_gate: bool = False) -> bytes:
    """Intro, the code digit by digit, the code again, goodbye, hang up. After the key-press
    gate (which said the intro already) it starts with "Your code is"."""
    root = _document()
    if after_gate:
        voice.say(root, "code")
    else:
        voice.opening(root)
    for reading in range(2):
        if reading:
            ET.SubElement(root, "Pause", {"length": "1"})
            voice.say(root, "again")
        for digit in code:
            voice.say_digit(root, digit)
    ET.SubElement(root, "Pause", {"length": "1"})
    voice.say(root, "goodbye")
    ET.SubElement(root, "Hangup")
    return _serialise(root)


def gate_document(key: str, action_url: str, voice: Voice, *, retry: bool = False) -> bytes:
    """Ask for one key press before the code is read (a voicemail box presses nothing)."""
    root = _document()
    if retry:
        voice.say(root, "wrong_key", key=key)
    else:
        voice.opening(root)
    gather = ET.SubElement(
        root, "Gather", {"numDigits": "1", "method": "POST", "action": action_url, "timeout": "8"}
    )
    voice.say(gather, "press", key=key)
    voice.say(root, "no_key")
    ET.SubElement(root, "Hangup")
    return _serialise(root)


def goodbye_document(voice: Voice) -> bytes:
    root = _document()
    voice.say(root, "goodbye")
    ET.SubElement(root, "Hangup")
    return _serialise(root)


# --- the other way round: what a callee hears ---------------------------------------------


@dataclass(frozen=True)
class Heard:
    lines: tuple[str, ...]  # one line per utterance; a run of single digits is one line
    gather: dict[str, str] | None  # the <Gather> attributes when the document waits for a key
    languages: tuple[str, ...]
    prompt: tuple[str, ...] = ()  # the lines spoken inside the <Gather>
    until_key: int = 0  # how many lines are heard before a key press moves the call on


def render(document: bytes | str) -> Heard:
    """The spoken lines of a cXML document, in order. Raises ValueError if it is not cXML."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != "Response":
        raise ValueError(f"the root element is <{root.tag}>, not <Response>")
    lines: list[str] = []
    digits: list[str] = []
    languages: list[str] = []
    gather: dict[str, str] | None = None
    prompt: list[str] = []
    until_key = 0

    def flush() -> None:
        if digits:
            lines.append(", ".join(digits))
            digits.clear()

    def walk(element: ET.Element) -> None:
        nonlocal gather, until_key
        for child in element:
            if child.tag == "Say":
                text = (child.text or "").strip()
                if lang := child.get("language"):
                    languages.append(lang)
                if len(text) == 1 and text.isdigit():
                    digits.append(text)
                    continue
                flush()
                if text:
                    lines.append(text)
            elif child.tag == "Pause":
                flush()
            elif child.tag == "Gather":
                flush()
                start = len(lines)
                walk(child)
                flush()
                if gather is None:
                    gather = dict(child.attrib)
                    prompt.extend(lines[start:])
                    lines.append("[waits for a key]")
                    until_key = len(lines)
            elif child.tag == "Hangup":
                flush()
                lines.append("[hangs up]")
        flush()

    walk(root)
    return Heard(tuple(lines), gather, tuple(languages), tuple(prompt), until_key or len(lines))
