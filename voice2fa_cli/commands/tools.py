"""`voice2fa doctor`, `voice2fa preview` and `voice2fa sandbox`: check the setup, hear the call,
run the SignalWire stand-in; none of them dials anything."""

from __future__ import annotations

import sys

import click

from voice2fa_cli.commands import Command
from voice2fa_cli.commands.edge import exit_codes, run_async
from voice2fa_cli.commands.params import Digits


@click.command("doctor", cls=Command, epilog="""
\b
Examples:
  voice2fa doctor
  # no tunnel to check: the whole call in the dial
  voice2fa doctor --delivery inline
  voice2fa doctor --public-url https://abc123.ngrok.app \\
    --listen 127.0.0.1:5000
  # the failed checks, for scripts
  voice2fa doctor --json \\
    | jq '.checks[] | select(.status == "fail")'
""")
@click.option("--delivery", type=click.Choice(["webhook", "inline"]), metavar="webhook|inline",
              help="The delivery to check for (inline: no tunnel, the token's Voice permission) [VOICE2FA_DELIVERY].")
@click.option("--public-url", metavar="URL", help="Public base URL that reaches --listen [VOICE2FA_PUBLIC_URL].")
@click.option("--listen", metavar="HOST:PORT", help="Where to start the callback server [VOICE2FA_LISTEN].")
@click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout (and nothing on stderr).")
def doctor_command(delivery, public_url, listen, json_out) -> None:
    """Check the configuration, the credentials and the tunnel before a call costs money.

    Asks the API for the account only; dials nothing. Exit codes: 0 every check passed
    (warnings allowed), 2 otherwise.
    """
    from voice2fa_cli import doctor, ui

    with exit_codes(json_out, shape="doctor") as payload:
        report = run_async(doctor.run(public_url, listen, delivery_flag=delivery))
        if json_out:
            ui.emit_json({**payload, **report.json(), "error": None if report.ok else report.summary(),
                          "exit_code": 0 if report.ok else 2})
        else:
            ui.doctor_table(report.checks)
            if report.ok:
                click.echo(report.summary(), err=True)
            else:
                ui.error(report.summary())
        if not report.ok:
            sys.exit(2)


@click.command("preview", cls=Command, epilog="""
\b
Examples:
  # what a callee in your country hears
  voice2fa preview
  # the French call
  voice2fa preview +33612345678
  voice2fa preview --language de-DE --audio call.wav
  voice2fa preview --play --digits 8
  voice2fa preview --swml | jq '.sections | keys'
  voice2fa preview --caller-name "Acme support" \\
    --voice Polly.Vicki
""")
@click.argument("number", required=False)
@click.option("--language", help="Language of the call  [default: the voice's, else from NUMBER's country, else en-US]")
@click.option("--voice",
              help="A SignalWire voice name, as `send --voice` takes it; it brings its language "
                   "(--audio and --play speak with espeak-ng's own voice).")
@click.option("--caller-name", metavar="NAME", help="Who the call says is calling [VOICE2FA_CALLER_NAME].")
@click.option("--message", metavar="TEXT", help="Your own first sentence.")
@click.option("--digits", type=Digits(6, 10), default=6, show_default=True, help="Length of the sample code.")
@click.option("--no-keypress", is_flag=True, help="Preview the call without the key-press gate.")
@click.option("--audio", "audio", type=click.Path(dir_okay=False, writable=True),
              help="Write the call as a WAV file (espeak-ng).")
@click.option("--play", is_flag=True, help="Play the call aloud (espeak-ng and an audio player).")
@click.option("--swml", "show_swml", is_flag=True,
              help="Print the inline delivery's SWML document instead (JSON, with the sample code).")
def preview_command(number, language, voice, caller_name, message, digits, no_keypress, audio, play,
                    show_swml) -> None:
    """Show exactly what the callee would hear, with a sample code.

    The transcript goes to stdout, each line with its language, and the keys the callee may
    press; --audio and --play speak it through espeak-ng, each line in its language.
    """
    from voice2fa_cli import config, environment
    from voice2fa_cli.commands.send import call_voice
    from voice2fa_cli.voice import preview

    with exit_codes(False):
        env = environment.load_environment()
        region = config.number_input(env, number).region if number else None
        voice_settings, notice = call_voice(language, voice, message, region,
                                            config.caller_name(env, caller_name))
        if notice:
            click.echo(f"warning: {notice}", err=True)
        if show_swml:
            if audio or play:
                raise click.UsageError("--swml prints the document: it does not go with --audio or --play")
            import json

            click.echo(json.dumps(preview.swml_document(voice_settings, digits, not no_keypress), indent=2,
                                  ensure_ascii=False))
            return
        call = preview.call(voice_settings, digits, not no_keypress)
        click.echo("\n".join(preview.transcript_lines(call)))
        if audio or play:
            _speak(preview, call, audio, play)


def _speak(preview, call, audio: str | None, play: bool) -> None:
    """--audio: the call as a WAV file; --play: aloud (from a temporary file unless --audio)."""
    import tempfile
    from pathlib import Path

    target = Path(audio) if audio else Path(tempfile.mkdtemp(prefix="voice2fa-")) / "preview.wav"
    preview.synthesize(call, target)
    if audio:
        click.echo(f"wrote {target}", err=True)
    if play:
        try:
            preview.play(target)
        finally:
            if not audio:
                target.unlink(missing_ok=True)
                target.parent.rmdir()


@click.command("sandbox", cls=Command, epilog="""
\b
Examples:
  # settings as .env lines
  voice2fa sandbox --listen 127.0.0.1:8765 > .env
  # settings as one JSON object
  voice2fa sandbox --json
  # every call is busy
  voice2fa sandbox --outcome busy
  # every create is rejected (a trial account)
  voice2fa sandbox --api-error 400 --api-code 21219
""")
@click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT",
              help="Where it listens (loopback only; port 0: any free port).")
@click.option("--json", "json_out", is_flag=True, help="The settings as one JSON object on stdout.")
@click.option("--outcome", type=click.Choice(["answer", "busy", "no-answer", "voicemail", "failed", "hold"]),
              default="answer", show_default=True,
              help="What the callee does: answer (and press the key asked for), busy, no answer, a voicemail "
                   "(answers, presses nothing), fail, or ring until hung up.")
@click.option("--press", default="asked", show_default=True, metavar="KEY|asked|none",
              help="The key the callee presses at each prompt.")
@click.option("--api-error", type=click.Choice(["400", "401", "403", "404", "422", "429", "500", "503"]),
              help="Answer the API with this error instead.")
@click.option("--api-code", type=click.IntRange(1, 99999999),
              help="The error code with --api-error (e.g. 21211, 21219).")
@click.option("--api-on", type=click.Choice(["create", "fetch", "update"]), default="create", show_default=True,
              help="The request --api-error answers.")
@click.option("--unsigned", is_flag=True, help="Send webhooks without X-SignalWire-Signature (no signing key).")
def sandbox_command(listen, json_out, outcome, press, api_error, api_code, api_on, unsigned) -> None:
    """Run the local SignalWire stand-in in the foreground, for any client.

    Prints the settings that point a client at it (SIGNALWIRE_SPACE, project, token, caller
    number, signing key) on stdout, then logs each call on stderr. Ctrl-C or SIGTERM stops it
    (exit 0).
    """
    import asyncio

    from voice2fa_cli import config, ui
    from voice2fa_cli.errors import ConfigError

    with exit_codes(json_out, shape="sandbox") as payload:
        where = config.parse_listen(listen, "--listen")
        if not config.is_loopback(where.host):
            raise ConfigError(f"--listen {where}: the sandbox listens on loopback only (e.g. 127.0.0.1:8765)")
        if press not in ("asked", "none") and not (len(press) == 1 and press in "0123456789*#"):
            raise ConfigError(f"--press {press[:10]!r}: give one key (0-9, * or #), asked or none")
        if api_code is not None and api_error is None:
            raise ConfigError("--api-code needs --api-error")

        from voice2fa_cli.sandbox import Scenario
        from voice2fa_cli.sandbox.foreground import serve, settings

        scenario = Scenario(outcome=outcome, press=None if press == "none" else press,
                            api_status=int(api_error) if api_error else None, api_code=api_code, api_on=api_on)

        def ready(sb) -> None:
            values = settings(sb)
            if json_out:
                ui.emit_json({**payload, **values})
            else:
                click.echo("".join(f"{name}={value}\n" for name, value in values.items()), nl=False)
            sys.stdout.flush()
            ui.log(f"sandbox: SignalWire stand-in at {sb.url}; Ctrl-C stops it")

        try:
            asyncio.run(serve(where.host, where.port, scenario, signed=not unsigned, ready=ready,
                              say=lambda line: ui.log(f"sandbox: {line}")))
        except OSError as exc:
            raise ConfigError(f"--listen {where}: cannot listen there ({exc.strerror or exc})") from None
        click.echo("sandbox: stopped", err=True)
