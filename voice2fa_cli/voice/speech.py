"""What the call says, as cXML built with ElementTree (so text is always escaped), and the
reverse: a cXML document rendered as the lines a callee hears (for the sandbox and previews).

Only what SignalWire's cXML reference allows (signalwire/docs,
fern/products/compatibility-api/pages/cxml/voice/say.mdx, gather.mdx, pause.mdx, hangup.mdx):
<Say> with voice/language, <Pause length> in whole seconds, <Gather> holding only <Say> and
<Pause>, <Hangup> at the top level. No SSML: the standard voices and Polly voices differ in
what they accept, and separate <Say>s with <Pause> between them need no markup.

The call: the opening (who calls and why, and what to do with the code), the key-press gate,
then the code: each digit its own <Say>, in groups of three or four with a pause between the
groups, read twice, inside a <Gather> so that while it is read the callee can press
REPEAT_KEY (read it again) or SLOWER_KEY (again, with a pause after every digit).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from voice2fa_cli.voice import phrases
from voice2fa_cli.voice.phrases import DEFAULT_LANGUAGE

MAX_INTRO = 200
REPEAT_KEY = "1"
SLOWER_KEY = "2"
KEY_WINDOW = 12  # seconds a <Gather> waits for a key once its prompt has been said
GROUP_PAUSE = 1  # seconds between groups of digits
SLOW_DIGIT_PAUSE = 1  # seconds after every digit when read slower
SLOW_GROUP_PAUSE = 2
READINGS_PAUSE = 1  # seconds between the first reading and "Once again"
GATE_TRIES = 3  # wrong keys (at the gate and after the code) that end the call without more
# Code readings per call: the first and at most two repeats (the callee's keys; in the webhook
# delivery a retry of the platform counts too).
MAX_CODE_READS = 3


@dataclass(frozen=True)
class Voice:
    language: str = DEFAULT_LANGUAGE  # of every sentence and digit of the call
    voice: str | None = None
    intro: str | None = None  # replaces the opening sentence, plain text
    caller: str | None = None  # who calls, as the callee knows them (phrases.clean_caller_name)

    def __post_init__(self) -> None:
        if not phrases.is_translated(self.language):
            raise ValueError(f"no phrases in {self.language!r}: choose the language with phrases.choose()")

    def _say(self, parent: ET.Element, text: str) -> ET.Element:
        el = ET.SubElement(parent, "Say", {"language": self.language})
        if self.voice:
            el.set("voice", self.voice)
        el.text = text
        return el

    def text(self, name: str, **values: str) -> str:
        """A translated sentence; its named variant when the caller is known."""
        if self.caller and f"{name}_named" in phrases.PHRASE_NAMES:
            return phrases.phrase(self.language, f"{name}_named", caller=self.caller, **values)
        return phrases.phrase(self.language, name, **values)

    def say(self, parent: ET.Element, name: str, **values: str) -> ET.Element:
        return self._say(parent, self.text(name, **values))

    def say_digit(self, parent: ET.Element, digit: str) -> ET.Element:
        return self._say(parent, digit)

    def opening_texts(self) -> list[str]:
        """Who calls and why (or the operator's own sentence), then what to do with the code."""
        return [self.intro or self.text("hello"), self.text("instruct")]

    def opening(self, parent: ET.Element) -> None:
        for text in self.opening_texts():
            self._say(parent, text)


def reading(code: str, slow: bool) -> list[str | int]:
    """One reading of the code: each digit, and the pauses (whole seconds, as ints) between
    groups, and between digits when read slower."""
    out: list[str | int] = []
    for g, group in enumerate(groups(code)):
        if g:
            out.append(SLOW_GROUP_PAUSE if slow else GROUP_PAUSE)
        for d, digit in enumerate(group):
            if slow and d:
                out.append(SLOW_DIGIT_PAUSE)
            out.append(digit)
    return out


def groups(code: str) -> list[str]:
    """The code in groups of three or four digits, the longer ones last: 6 → 3+3, 7 → 3+4,
    8 → 4+4, 9 → 3+3+3, 10 → 3+3+4."""
    count = -(-len(code) // 4)
    size, extra = divmod(len(code), count)
    out, at = [], 0
    for i in range(count):
        n = size + (1 if i >= count - extra else 0)
        out.append(code[at : at + n])
        at += n
    return out


def _pause(parent: ET.Element, seconds: int) -> None:
    ET.SubElement(parent, "Pause", {"length": str(seconds)})


def _read_code(parent: ET.Element, code: str, voice: Voice, slow: bool) -> None:
    for item in reading(code, slow):
        if isinstance(item, int):
            _pause(parent, item)
        else:
            voice.say_digit(parent, item)


def _gather(parent: ET.Element, action_url: str) -> ET.Element:
    return ET.SubElement(parent, "Gather", {
        "input": "dtmf", "numDigits": "1", "timeout": str(KEY_WINDOW), "action": action_url, "method": "POST",
    })


def _document() -> ET.Element:
    return ET.Element("Response")


def _serialise(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def code_document(code: str, voice: Voice, *, after_gate: bool = False, slow: bool = False,
                  action: str | None = None) -> bytes:
    """The code, read twice, then goodbye. Without the gate it starts with the opening. With an
    `action` URL (repeats left) the readings are inside a <Gather>: a key pressed while the code
    is read goes there, and the call ends by offering REPEAT_KEY and SLOWER_KEY."""
    root = _document()
    if not after_gate:
        voice.opening(root)
    body = _gather(root, action) if action else root
    voice.say(body, "code_slow" if slow else "code")
    _read_code(body, code, voice, slow)
    _pause(body, READINGS_PAUSE)
    voice.say(body, "again")
    _read_code(body, code, voice, slow)
    if action:
        _pause(body, 1)
        voice.say(body, "options", repeat=REPEAT_KEY, slower=SLOWER_KEY)
    voice.say(root, "goodbye")
    ET.SubElement(root, "Hangup")
    return _serialise(root)


def gate_document(key: str, action_url: str, voice: Voice, *, retry: bool = False) -> bytes:
    """Ask for one key press before the code is read (a voicemail box presses nothing)."""
    root = _document()
    if retry:
        voice.say(root, "wrong_key")
    else:
        voice.opening(root)
    voice.say(_gather(root, action_url), "press", key=key)
    voice.say(root, "no_key")
    ET.SubElement(root, "Hangup")
    return _serialise(root)


def unknown_key_document(action_url: str, voice: Voice) -> bytes:
    """A key that neither repeats nor slows the code: say so, offer the keys again."""
    root = _document()
    voice.say(root, "no_such_key")
    voice.say(_gather(root, action_url), "options", repeat=REPEAT_KEY, slower=SLOWER_KEY)
    voice.say(root, "goodbye")
    ET.SubElement(root, "Hangup")
    return _serialise(root)


def unavailable_document(voice: Voice) -> bytes:
    """The end of a call whose state cannot be read or kept (the shared store is away): an
    apology, and the call hung up; never the code."""
    root = _document()
    voice.say(root, "unavailable")
    ET.SubElement(root, "Hangup")
    return _serialise(root)


def goodbye_document(voice: Voice, *, no_more: bool = False) -> bytes:
    """The end; `no_more`: the callee asked for the code again once too often."""
    root = _document()
    voice.say(root, "no_more" if no_more else "goodbye")
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
                pass  # a pause between groups of digits: the reading stays one line
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
