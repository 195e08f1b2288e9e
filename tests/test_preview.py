"""`voice2fa preview`: the transcript, and audio through espeak-ng (text on stdin, not argv)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import wave

import pytest

from tests.helpers import run_cli, voice2fa_command
from voice2fa_cli.voice import preview, speech

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def env_without_config() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SIGNALWIRE_", "VOICE2FA_"))}


def test_transcript_shows_each_line_s_language_and_the_keys():
    lines = preview.transcript(speech.Voice(caller="Acme support"), 6, keypress=True)
    assert lines == [
        "en-US  Hello. Acme support asked to check that this phone number is yours.",
        "en-US  You will hear a code. Read it only to the person from Acme support you are speaking with now. "
        "If you are not expecting this call, hang up.",
        "en-US  Press 7 to hear your code.",
        "       [waits 12 s for a key: 7 reads the code]",
        "       [presses 7]",
        "en-US  Your code is:",
        "en-US  1 2 3 — 4 5 6",
        "en-US  Once again:",
        "en-US  1 2 3 — 4 5 6",
        "en-US  Press 1 to hear the code again, or 2 to hear it more slowly.",
        "       [waits 12 s for a key: 1 reads the code again, 2 reads it slower]",
        "en-US  Goodbye.",
        "       [hangs up]",
    ]


def test_transcript_is_what_the_sandbox_callee_hears():
    """The same words, in the same order, as speech.render gives the simulated callee."""
    voice = speech.Voice(language="de-DE")
    shown = [line[7:] for line in preview.transcript(voice, 8, keypress=False)]
    heard = speech.render(speech.code_document("12345678", voice, action=preview.ACTION + "/read")).lines
    def words(lines):
        return [re.sub(r"[\s,—]", "", line) for line in lines if not line.startswith("[")]

    assert words(shown) == words(heard)


def test_preview_command_uses_the_callee_country():
    env = env_without_config()
    env["VOICE2FA_CALLER_NAME"] = "Acme support"
    result = run_cli(["preview", "+33612345678", "--no-keypress", "--digits", "7"], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "fr-FR  Bonjour. Acme support souhaite vérifier que ce numéro de téléphone est bien le vôtre.",
        "fr-FR  Vous allez entendre un code. Donnez-le uniquement à votre interlocuteur chez Acme support, avec qui "
        "vous parlez en ce moment. Si vous n'attendez pas cet appel, raccrochez.",
        "fr-FR  Votre code est :",
        "fr-FR  1 2 3 — 4 5 6 7",
        "fr-FR  Je répète :",
        "fr-FR  1 2 3 — 4 5 6 7",
        "fr-FR  Appuyez sur 1 pour réentendre le code, ou sur 2 pour l'entendre plus lentement.",
        "       [waits 12 s for a key: 1 reads the code again, 2 reads it slower]",
        "fr-FR  Au revoir.",
        "       [hangs up]",
    ]


def test_preview_of_a_country_without_phrases_is_english_and_says_so():
    result = run_cli(["preview", "+81312345678", "--no-keypress"], env_without_config())
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: voice2fa has no phrases for callees in JP: the whole call will be in English (en-US); "
        "use --language to choose another"
    ]
    assert {line[:6] for line in result.stdout.splitlines() if not line.startswith(" ")} == {"en-US "}


@pytest.mark.parametrize(("args", "message"), [
    (["--voice", "Polly.Joanna", "--language", "fr-FR"],
     "error: --voice Polly.Joanna speaks en-US, not --language fr-FR: drop one of them or make them agree "
     "(see `voice2fa preview --help`)"),
    (["--caller-name", "<Say>x</Say>"],
     "error: --caller-name may hold letters, digits, spaces and & ' . , - only (found '<')"),
    (["--caller-name", "A" * 41], "error: --caller-name is longer than 40 characters"),
])
def test_preview_usage_errors(args, message):
    result = run_cli(["preview", *args], env_without_config())
    assert (result.returncode, result.stderr.splitlines()[-1], result.stdout) == (2, message, "")


def test_a_hostile_caller_name_in_the_environment_names_the_variable():
    env = env_without_config()
    env["VOICE2FA_CALLER_NAME"] = "Acme\x1b]0;pwned\x07"
    result = run_cli(["preview"], env)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, "error: VOICE2FA_CALLER_NAME may hold letters, digits, spaces and & ' . , - only (found '\\x1b')"
    )
    assert "\x1b" not in result.stderr


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
    """An espeak-ng that records its argv and stdin (appending, one record per run), and writes
    a short silent WAV."""
    script = bin_dir / "espeak-ng"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" >> "{record_dir}/argv"; echo "--" >> "{record_dir}/argv"\n'
        f'cat >> "{record_dir}/stdin"; echo >> "{record_dir}/stdin"\n'
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
    runs = [run.strip("\n").split("\n") for run in (tmp_path / "argv").read_text().split("--\n") if run.strip()]
    stdin = (tmp_path / "stdin").read_text().splitlines()
    assert {tuple(run) for run in runs} == {("-v", "de", "-s", "150", "-w", run[5], "--stdin") for run in runs}
    assert len(runs) == len(stdin) == 2 + 1 + 1 + 6 + 1 + 6 + 1 + 1  # opening, gate, code twice, options, goodbye
    assert stdin[:3] == [
        "Guten Tag. Mit diesem Anruf prüfen wir, ob diese Telefonnummer Ihnen gehört.",
        "Sie hören gleich einen Code. Nennen Sie ihn nur der Person, mit der Sie gerade sprechen. "
        "Wenn Sie diesen Anruf nicht erwarten, legen Sie auf.",
        "Drücken Sie die 7, um Ihren Code zu hören.",
    ]
    assert stdin[4:10] == list("123456")
    # 19 utterances of 0.1 s each, and the pauses: between groups (1 s, twice), between the
    # readings (1 s), before the options (1 s)
    assert wav_seconds(out) == pytest.approx(19 * 0.1 + 1 + 1 + 1 + 1)
    assert not any("Drücken" in a or "Guten" in a for run in runs for a in run)


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


@needs_espeak
@pytest.mark.parametrize(("where", "reason"), [
    ("missing/call.wav", "No such file or directory"),
    ("/dev/full", "No space left on device"),
])
def test_audio_that_cannot_be_written_is_one_line_exit_2(tmp_path, where, reason):
    target = tmp_path / where if not where.startswith("/") else where
    result = run_cli(["preview", "--audio", str(target)], env_without_config())
    assert (result.returncode, result.stderr) == (2, f"error: cannot write {target}: {reason}\n")


def test_preview_swml_prints_the_inline_document_with_the_sample_code(tmp_path):
    import json

    from voice2fa_cli.voice import swml

    env = {**os.environ, "VOICE2FA_STATE_DIR": str(tmp_path)}
    result = run_cli(["preview", "+33612345678", "--swml", "--digits", "8"], env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown == swml.document(preview.SAMPLE[:8], speech.Voice(language="fr-FR"), preview.SAMPLE_KEY)
    no_gate = json.loads(run_cli(["preview", "--swml", "--no-keypress"], env).stdout)
    assert "gate_1" not in no_gate["sections"] and "read_1_w0" in no_gate["sections"]
    refused = run_cli(["preview", "--swml", "--audio", str(tmp_path / "x.wav")], env)
    assert (refused.returncode, refused.stderr.splitlines()[-1]) == (
        2, "error: --swml prints the document: it does not go with --audio or --play (see `voice2fa preview --help`)")
