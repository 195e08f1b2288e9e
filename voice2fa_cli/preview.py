"""Hear a call before placing it: the same cXML the webhook serves, with a sample code,
rendered as a transcript and, through espeak-ng when it is installed, as audio.

Text goes to espeak-ng on stdin, never in argv."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from voice2fa_cli import speech
from voice2fa_cli.errors import ConfigError

SAMPLE = "1234567890"
PLAYERS = (("aplay", ["-q"]), ("paplay", []), ("play", ["-q"]), ("ffplay", ["-nodisp", "-autoexit", "-loglevel", "quiet"]))


def transcript(voice: speech.Voice, digits: int, keypress: bool) -> list[str]:
    """What the callee hears, line by line: the gate (answered with the right key) then the code."""
    code = SAMPLE[:digits]
    lines: list[str] = []
    if keypress:
        heard = speech.render(speech.gate_document("7", "https://example.invalid/key", voice))
        lines += list(heard.lines[: heard.until_key]) + ["[presses 7]"]
    lines += speech.render(speech.code_document(code, voice, after_gate=keypress)).lines
    return lines


def spoken(lines: list[str]) -> str:
    """The lines that are speech, one sentence each (stage directions in brackets left out)."""
    return "\n".join(line if line.endswith((".", ":", "?", "!")) else line + "."
                     for line in lines if not line.startswith("["))


def espeak_voice(language: str) -> str:
    base, _, region = language.lower().partition("-")
    return {"en-us": "en-us", "en-gb": "en-gb", "pt-br": "pt-br", "es-mx": "es-419"}.get(language.lower(), base)


def synthesize(lines: list[str], language: str, out: Path) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ConfigError("espeak-ng is not installed: install it (e.g. `apt-get install espeak-ng`) to hear previews")
    try:
        done = subprocess.run(
            [exe, "-v", espeak_voice(language), "-s", "150", "-w", str(out), "--stdin"],
            input=spoken(lines), text=True, capture_output=True, timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError("espeak-ng did not finish within 60 s") from None
    if done.returncode != 0 or not out.exists():
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise ConfigError(f"espeak-ng failed ({reason}) writing {out}")


def play(path: Path) -> str:
    for name, args in PLAYERS:
        exe = shutil.which(name)
        if exe:
            done = subprocess.run([exe, *args, str(path)], capture_output=True, timeout=300)
            if done.returncode == 0:
                return name
            raise ConfigError(f"{name} could not play the preview (exit {done.returncode}): use --audio FILE instead")
    raise ConfigError("no audio player found (aplay, paplay, play or ffplay): use --audio FILE instead")
