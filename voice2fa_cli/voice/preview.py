"""Hear a call before placing it: the same cXML the webhook serves, with a sample code, walked
as the callee meets it (the gate answered with its key, the code read twice, no key pressed
while it is read), shown line by line with each line's language and the keys the callee may
press, and, through espeak-ng, spoken: each <Say> with the espeak-ng voice of its language,
each <Pause> as silence.

Text goes to espeak-ng on stdin, never in argv."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from voice2fa_cli.errors import ConfigError
from voice2fa_cli.voice import speech

SAMPLE = "1234567890"
SAMPLE_KEY = "7"
ACTION = "https://example.invalid/v/token"
PLAYERS: tuple[tuple[str, list[str]], ...] = (
    ("aplay", ["-q"]), ("paplay", []), ("play", ["-q"]), ("ffplay", ["-nodisp", "-autoexit", "-loglevel", "quiet"]),
)
ESPEAK_VOICES = {"en-us": "en-us", "en-ca": "en-us", "en-gb": "en-gb", "en-au": "en-gb", "en-in": "en-gb",
                 "de-de": "de", "es-es": "es", "es-mx": "es-419", "es-us": "es-419", "fr-fr": "fr-fr",
                 "fr-ca": "fr-fr", "it-it": "it"}


@dataclass(frozen=True)
class Event:
    kind: str  # say | pause | wait | press | hangup
    text: str = ""  # say: what is said; wait: what the keys do; press: the key
    language: str = ""  # say
    seconds: int = 0  # pause, wait


def call(voice: speech.Voice, digits: int, keypress: bool) -> list[Event]:
    """The default call, as the callee meets it."""
    code = SAMPLE[:digits]
    events: list[Event] = []
    if keypress:
        gate = speech.gate_document(SAMPLE_KEY, ACTION + "/key", voice)
        events += _walk(ET.fromstring(gate), {SAMPLE_KEY: "reads the code"}, press=SAMPLE_KEY)
    document = speech.code_document(code, voice, after_gate=keypress, action=ACTION + "/read")
    keys = {speech.REPEAT_KEY: "reads the code again", speech.SLOWER_KEY: "reads it slower"}
    events += _walk(ET.fromstring(document), keys, press=None)
    return events


def swml_document(voice: speech.Voice, digits: int, keypress: bool) -> dict:
    """The inline delivery's document of the call (voice/swml.py), with the sample code and
    key: never a real one."""
    from voice2fa_cli.voice import swml

    return swml.document(SAMPLE[:digits], voice, SAMPLE_KEY if keypress else None)


def _walk(root: ET.Element, keys: dict[str, str], press: str | None) -> list[Event]:
    out: list[Event] = []
    for child in root:
        if child.tag == "Say":
            out.append(Event("say", (child.text or "").strip(), child.get("language", "")))
        elif child.tag == "Pause":
            out.append(Event("pause", seconds=int(child.get("length", "1"))))
        elif child.tag == "Gather":
            out += _walk(child, keys, press)
            what = ", ".join(f"{k} {v}" for k, v in keys.items())
            out.append(Event("wait", what, seconds=int(child.get("timeout", "5"))))
            if press is not None:
                out.append(Event("press", press))
                return out  # the action's document follows
        elif child.tag == "Hangup":
            out.append(Event("hangup"))
    return out


def _is_digit(event: Event) -> bool:
    return event.kind == "say" and len(event.text) == 1 and event.text.isdigit()


def transcript_lines(events: list[Event]) -> list[str]:
    """One line per sentence, a reading of the code on one line ("1 2 3 — 4 5 6", a dash for a
    pause); each line begins with its language, stage directions in brackets."""
    lines: list[str] = []
    run: list[str] = []
    run_language = ""

    def flush() -> None:
        nonlocal run
        while run and run[-1] == "|":
            run.pop()
        if run:
            lines.append(f"{run_language:<6} {' '.join(run).replace(' | ', ' — ')}")
            run = []

    for event in events:
        if _is_digit(event):
            run.append(event.text)
            run_language = event.language
        elif event.kind == "pause":
            if run and run[-1] != "|":
                run.append("|")
        elif event.kind == "say":
            flush()
            lines.append(f"{event.language:<6} {event.text}")
        else:
            flush()
            if event.kind == "wait":
                lines.append(f"{'':<6} [waits {event.seconds} s for a key: {event.text}]")
            elif event.kind == "press":
                lines.append(f"{'':<6} [presses {event.text}]")
            else:
                lines.append(f"{'':<6} [hangs up]")
    flush()
    return [line.rstrip() for line in lines]


def transcript(voice: speech.Voice, digits: int, keypress: bool) -> list[str]:
    return transcript_lines(call(voice, digits, keypress))


def espeak_voice(language: str) -> str:
    return ESPEAK_VOICES.get(language.lower(), language.split("-")[0].lower())


def _espeak(exe: str, text: str, language: str, out: Path) -> None:
    try:
        done = subprocess.run(
            [exe, "-v", espeak_voice(language), "-s", "150", "-w", str(out), "--stdin"],
            input=text, text=True, capture_output=True, timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError("espeak-ng did not finish within 60 s") from None
    if done.returncode != 0 or not out.exists():
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise ConfigError(f"espeak-ng failed ({reason}) writing {out}")


def synthesize(events: list[Event], out: Path) -> float:
    """Speak the call into a WAV file: every <Say> through espeak-ng in its language, every
    <Pause> as silence (the key windows are left out: the callee presses at once). Returns
    the length in seconds."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ConfigError("espeak-ng is not installed: install it (e.g. `apt-get install espeak-ng`) to hear previews")
    params = None
    frames: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="voice2fa-") as tmp:
        part = Path(tmp) / "part.wav"
        for event in events:
            if event.kind == "say" and event.text:
                part.unlink(missing_ok=True)
                _espeak(exe, event.text, event.language, part)
                with wave.open(str(part)) as w:
                    params = params or w.getparams()
                    frames.append(w.readframes(w.getnframes()))
            elif event.kind == "pause" and params is not None:
                frames.append(bytes(params.sampwidth * params.nchannels * params.framerate * event.seconds))
    if params is None:
        raise ConfigError("espeak-ng produced no audio")
    try:
        with open(out, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(params.nchannels)
            w.setsampwidth(params.sampwidth)
            w.setframerate(params.framerate)
            for chunk in frames:
                w.writeframes(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    return sum(len(f) for f in frames) / (params.sampwidth * params.nchannels * params.framerate)


def play(path: Path) -> str:
    for name, args in PLAYERS:
        exe = shutil.which(name)
        if exe:
            done = subprocess.run([exe, *args, str(path)], capture_output=True, timeout=300)
            if done.returncode == 0:
                return name
            raise ConfigError(f"{name} could not play the preview (exit {done.returncode}): use --audio FILE instead")
    raise ConfigError("no audio player found (aplay, paplay, play or ffplay): use --audio FILE instead")
