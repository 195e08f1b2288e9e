"""`voice2fa preview`: the transcript, and audio through espeak-ng (text on stdin, not argv)."""

from __future__ import annotations

import os
import shutil
import stat
import wave

import pytest

from tests.helpers import run_cli, voice2fa_command
from voice2fa_cli import preview, speech

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def env_without_config() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}


def test_transcript_is_what_the_sandbox_callee_hears():
    lines = preview.transcript(speech.Voice(), 6, keypress=True)
    assert lines == [
        "Hello. This is your verification code.",
        "Press 7 to hear your code.",
        "[waits for a key]",
        "[presses 7]",
        "Your code is:",
        "1, 2, 3, 4, 5, 6",
        "Once again, your code is:",
        "1, 2, 3, 4, 5, 6",
        "Goodbye.",
        "[hangs up]",
    ]


def test_preview_command_uses_the_callee_country():
    result = run_cli(["preview", "+33612345678", "--no-keypress", "--digits", "7"], env_without_config())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Bonjour. Voici votre code de vérification.",
        "1, 2, 3, 4, 5, 6, 7",
        "Je répète, votre code est :",
        "1, 2, 3, 4, 5, 6, 7",
        "Au revoir.",
        "[hangs up]",
    ]


def wav_seconds(path) -> float:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getnframes() > 0
        return w.getnframes() / w.getframerate()


@needs_espeak
def test_audio_is_a_valid_wav_that_grows_with_the_code(tmp_path):
    durations = []
    for digits in (6, 10):
        out = tmp_path / f"call{digits}.wav"
        result = run_cli(["preview", "--digits", str(digits), "--audio", str(out)], env_without_config())
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == f"wrote {out}"
        durations.append(wav_seconds(out))
    assert durations[1] > durations[0] + 1.0  # four more digits, read twice


def fake_espeak(bin_dir, record_dir) -> None:
    """An espeak-ng that records its argv and stdin, and writes a short silent WAV."""
    script = bin_dir / "espeak-ng"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{record_dir}/argv"\n'
        f'cat > "{record_dir}/stdin"\n'
        'out=""; while [ $# -gt 0 ]; do [ "$1" = "-w" ] && out="$2"; shift; done\n'
        f'"{os.sys.executable}" -c "import wave,sys; w=wave.open(sys.argv[1],\'wb\'); w.setnchannels(1); '
        f'w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes(1600)); w.close()" "$out"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_text_goes_to_espeak_on_stdin_never_in_argv(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_espeak(bin_dir, tmp_path)
    env = env_without_config()
    env["PATH"] = f"{bin_dir}:{os.path.dirname(voice2fa_command()[0])}:/usr/bin:/bin"
    out = tmp_path / "call.wav"
    result = run_cli(["preview", "--language", "de-DE", "--audio", str(out)], env)
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text().split("\n")
    stdin = (tmp_path / "stdin").read_text()
    assert argv[:2] == ["-v", "de"] and "--stdin" in argv
    assert "1, 2, 3, 4, 5, 6" in stdin and "Drücken Sie die 7, um Ihren Code zu hören." in stdin
    assert not any("1, 2, 3" in a or "Drücken" in a for a in argv)


def test_play_without_a_player_says_so(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_espeak(bin_dir, tmp_path)
    env = env_without_config()
    env["PATH"] = str(bin_dir)  # espeak-ng only: no aplay, paplay, play or ffplay
    result = run_cli(["preview", "--play"], env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, "error: no audio player found (aplay, paplay, play or ffplay): use --audio FILE instead"
    )


def test_no_espeak_is_a_clear_error(tmp_path):
    env = env_without_config()
    env["PATH"] = str(tmp_path)  # nothing at all
    result = run_cli(["preview", "--audio", str(tmp_path / "x.wav")], env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, "error: espeak-ng is not installed: install it (e.g. `apt-get install espeak-ng`) to hear previews"
    )
