"""The sandbox's own cXML reader: a document as the lines a callee hears, and what it waits for.

Its own code on purpose (DESIGN.md: the stand-in shares no code with what it tests). It reads
the verbs voice2fa and most applications use (SignalWire cXML reference, `signalwire/docs`
fern/products/compatibility-api/pages/cxml/voice/): `<Say>`, `<Pause>`, `<Gather>` (its nested
`<Say>`/`<Pause>`; `action`, `method`, `numDigits`), `<Hangup>` and `<Redirect>` (its text is
the next URL). Other verbs are heard as "[<Verb>]" and skipped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

_KEY_NAMED = re.compile(r"(?<![0-9])([0-9*#])(?![0-9])")


@dataclass(frozen=True)
class Gather:
    """A `<Gather>`: its attributes, the lines spoken inside it, the keys its sentences name
    (in order, each once: "Press 7 …, press 9 to hear it again" → ("7", "9"); digits read out
    on their own, such as a code, name no key)."""

    attributes: dict[str, str] = field(hash=False)
    prompt: tuple[str, ...]
    keys: tuple[str, ...]
    heard_before_key: int  # how many of the document's lines are heard before a key ends it

    @property
    def action(self) -> str | None:
        return self.attributes.get("action") or None


@dataclass(frozen=True)
class Document:
    lines: tuple[str, ...]  # one line per utterance; a run of single-digit <Say>s is one line
    gathers: tuple[Gather, ...]
    languages: tuple[str, ...]
    redirect: str | None = None  # the <Redirect> URL the call goes on to, if any

    @property
    def gather(self) -> Gather | None:
        """The first <Gather>: where a key press moves the call on."""
        return self.gathers[0] if self.gathers else None


class NotCxml(ValueError):
    pass


def keys_named(lines: tuple[str, ...] | list[str]) -> list[str]:
    """The keys a prompt's sentences name ("Press 7 …"), in order; digits read out (a code:
    a line with no letter) are no key."""
    keys: list[str] = []
    for line in lines:
        if not any(c.isalpha() for c in line):
            continue
        for key in _KEY_NAMED.findall(line):
            if key not in keys:
                keys.append(key)
    return keys


def read(document: bytes | str) -> Document:
    """The heard lines of a cXML document, in order. Raises NotCxml if it is not cXML."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise NotCxml(f"not XML: {exc}") from None
    if root.tag != "Response":
        raise NotCxml(f"the root element is <{root.tag}>, not <Response>")
    reader = _Reader()
    reader.walk(root)
    reader.flush()
    return Document(tuple(reader.lines), tuple(reader.gathers), tuple(reader.languages), reader.redirect)


class _Reader:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.digits: list[str] = []
        self.languages: list[str] = []
        self.gathers: list[Gather] = []
        self.redirect: str | None = None
        self.ended = False
        self.gathering = False

    def flush(self) -> None:
        if self.digits:
            self.lines.append(", ".join(self.digits))
            self.digits.clear()

    def walk(self, element: ET.Element) -> None:
        for child in element:
            if self.ended:
                return
            tag = child.tag
            if tag == "Say":
                text = " ".join((child.text or "").split())
                if language := child.get("language"):
                    self.languages.append(language)
                if len(text) == 1 and text.isdigit():
                    self.digits.append(text)
                    continue
                self.flush()
                if text:
                    self.lines.append(text)
            elif tag == "Pause":
                if not self.digits:
                    self.flush()
                # else: a pause between groups of digits, the reading stays one line
            elif tag == "Gather" and not self.gathering:  # a <Gather> inside one is not cXML: skipped
                self.flush()
                self.gathering = True
                start = len(self.lines)
                self.walk(child)
                self.flush()
                self.gathering = False
                prompt = tuple(self.lines[start:])
                self.lines.append("[waits for a key]")
                self.gathers.append(Gather(dict(child.attrib), prompt, tuple(keys_named(prompt)), len(self.lines)))
            elif tag == "Hangup":
                self.flush()
                self.lines.append("[hangs up]")
                self.ended = True
            elif tag == "Redirect":
                self.flush()
                self.redirect = (child.text or "").strip() or None
                self.lines.append("[redirected]")
                self.ended = True
            else:
                self.flush()
                self.lines.append(f"[{tag}]")
