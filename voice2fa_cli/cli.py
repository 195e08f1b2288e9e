"""The command line: parse, call the core, render, map errors to exit codes. Nothing else.

Heavy modules (aiohttp, Rich, phonenumbers) are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from voice2fa_cli import __version__
from voice2fa_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_REJECTED, NotDelivered, Rejected, Voice2faError

SEND_EXAMPLES = """
\b
Examples:
  # try the whole flow, no account needed
  voice2fa send --sandbox +15551234567
  # see how a busy line ends, and its exit code (3)
  voice2fa send --sandbox +15551234567 --outcome busy
  # call, then type the code the person reads back
  voice2fa send +15551234567
  # call now, check later with `voice2fa verify`
  voice2fa send +15551234567 --no-prompt --json \\
    | jq -r .session_id
"""

VERIFY_EXAMPLES = """
\b
Examples:
  # prompt for the code
  voice2fa verify +15551234567
  # stdin: the code stays out of the process list
  printf '%s\\n' "$CODE" | voice2fa verify +15551234567
  # for scripts
  voice2fa verify +15551234567 --json < code.txt \\
    | jq .verified
"""

MAIN_EXAMPLES = """
\b
Examples:
  # try it on this machine, no account needed
  voice2fa send --sandbox +15551234567
  # check the setup before a call costs money
  voice2fa doctor
  # call a number and check the code read back
  voice2fa send +15551234567
  # recent sessions, newest first
  voice2fa sessions
  # shell completion (bash, zsh or fish)
  eval "$(voice2fa completion bash)"
"""

# Every --json output has one shape per command: these keys, on every outcome (schemas/*.json).
JSON_SHAPES: dict[str, dict] = {
    "send": dict(session_id=None, number=None, call_sid=None, call_status=None, verified=None, expires_at=None,
                 delivered=None, attempts_left=None, sandbox=False, error=None, exit_code=0),
    "verify": dict(number=None, verified=False, session_id=None, reason=None, attempts_left=None, sandbox=None,
                   error=None, exit_code=0),
    "sessions": dict(sessions=[], error=None, exit_code=0),
    "purge": dict(removed=None, error=None, exit_code=0),
    "doctor": dict(ok=False, problems=None, dotenv=None, checks=[], error=None, exit_code=0),
    "sandbox": dict(SIGNALWIRE_SPACE=None, SIGNALWIRE_PROJECT=None, SIGNALWIRE_TOKEN=None, SIGNALWIRE_NUMBER=None,
                    SIGNALWIRE_SIGNING_KEY=None, error=None, exit_code=0),
}

# `send --sandbox --outcome NAME`: the sandbox's scripted endings (sandbox.Scenario fields).
OUTCOMES: dict[str, dict] = {
    "answer": {},
    "busy": {"outcome": "busy"},
    "no-answer": {"outcome": "no-answer"},
    "failed": {"outcome": "failed"},
    "voicemail": {"outcome": "voicemail"},
    "wrong-key": {"press": "0"},
    "hangup": {"hang_up_after_fetch": True},
    "no-webhook": {"fetch": False},
    "lost-callbacks": {"callbacks": False},
    "auth-error": {"api_status": 401},
    "rate-limited": {"api_status": 429},
    "server-error": {"api_status": 500},
}


class Interrupted(Exception):
    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)
        self.message = message


def _fail(json_out: bool, payload: dict, message: str, code: int, hint: str | None = None) -> None:
    """One line on stderr (and the JSON object on stdout), then exit with `code`."""
    from voice2fa_cli import ui

    ui.error(message, hint)
    if json_out:
        ui.emit_json({**payload, "error": message, "exit_code": code})
    sys.exit(code)


@contextmanager
def exit_codes(json_out: bool, verbose: bool | None = None, shape: str | None = None) -> Iterator[dict]:
    """Turn domain errors into one line on stderr (and JSON on stdout) and the exit code.
    An unexpected exception is one line too (exit 70); its traceback only with -v.
    `shape`: the command whose JSON keys the payload starts with (JSON_SHAPES)."""
    payload: dict = dict(JSON_SHAPES[shape]) if shape else {}
    try:
        yield payload
    except Voice2faError as exc:
        if verbose and getattr(exc, "more_info", None):
            from voice2fa_cli.ui import sanitize

            click.echo(f"debug: more about this error: {sanitize(exc.more_info)}", err=True)
        _fail(json_out, payload, exc.message, exc.exit_code, exc.hint)
    except Interrupted as exc:
        _fail(json_out, payload, exc.message, EXIT_INTERRUPTED)
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise  # usage errors: OneLineErrors renders them
    except Exception as exc:  # a bug: say so in one line, never a traceback unless asked
        if verbose:
            import traceback

            traceback.print_exc()
        _fail(json_out, payload, f"internal error ({type(exc).__name__})", EXIT_INTERNAL,
              "a bug in voice2fa: run with -v for the traceback and report it" if verbose is not None else
              "a bug in voice2fa: please report it")


def run_async(coro):
    """Run `coro`; SIGINT and SIGTERM cancel it (so it can hang up) and raise Interrupted."""
    import asyncio

    from voice2fa_cli.signals import until_stopped

    async def main():
        with until_stopped(asyncio.current_task().cancel):
            return await coro

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted() from None


def parse_ttl(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    import re

    if value is None:
        return 600
    m = re.fullmatch(r"([0-9]{1,5})([sm]?)", value.lower())
    if m is None:
        raise click.BadParameter("give seconds (e.g. 300) or minutes (e.g. 5m)")
    seconds = int(m.group(1)) * (60 if m.group(2) == "m" else 1)
    if not 30 <= seconds <= 600:
        raise click.BadParameter("must be between 30 seconds and 10 minutes")
    return seconds


class Digits(click.IntRange):
    """A whole number in a range, typed in ASCII digits only: Click's int() would also take
    `+6`, ` 6`, `6_0` and other scripts' digits (`٦`, `６`)."""

    def convert(self, value, param, ctx):
        import re

        if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,9}", value):
            self.fail(f"{value!r} is not a whole number in the digits 0-9.", param, ctx)
        return super().convert(value, param, ctx)




def _no_hyphen_breaks(text: str) -> str:
    return text.replace("-", "\u2011")  # a non-breaking hyphen while wrapping; back to "-" at the end


class HelpFormatter(click.HelpFormatter):
    """Click's help formatter that never breaks a line at a hyphen (en-US, no-answer,
    espeak-ng): lines break between words only, at any terminal width."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(_no_hyphen_breaks(prog), _no_hyphen_breaks(args), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(_no_hyphen_breaks(text))

    def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(_no_hyphen_breaks(a), _no_hyphen_breaks(b)) for a, b in rows], col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace("\u2011", "-")


class Context(click.Context):
    formatter_class = HelpFormatter


class Command(click.Command):
    context_class = Context


class Group(click.Group):
    """A group whose command list shows each command's whole first sentence, never cut."""

    context_class = Context
    command_class = Command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


Group.group_class = Group


class OneLineErrors(Group):
    """Click's usage errors as one line with a hint, like every other failure (exit 2); the
    streams guarded against readers that go away; a bare `voice2fa` prints the help."""

    def main(self, args=None, *rest, **kwargs):
        from voice2fa_cli import ui

        ui.guard_pipes()
        argv = list(sys.argv[1:] if args is None else args)
        kwargs["standalone_mode"] = False
        try:
            code = super().main(argv, *rest, **kwargs)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
                click.echo(exc.ctx.get_help())  # bare `voice2fa`: the help, and no error
                sys.exit(0)
            command = exc.ctx.command_path if exc.ctx else "voice2fa"
            click.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
            words = [word for word in argv if not word.startswith("-")]
            shape = "purge" if words[:2] == ["sessions", "purge"] else (words[0] if words else None)
            if "--json" in argv and shape in JSON_SHAPES:
                ui.emit_json({**JSON_SHAPES[shape], "error": exc.format_message(), "exit_code": exc.exit_code})
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code or 0)


@click.group(cls=OneLineErrors, epilog=MAIN_EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="voice2fa", message="%(prog)s %(version)s")
def main() -> None:
    """Prove by a phone call that a person holds a phone number.

    voice2fa calls the number through SignalWire, reads a one-time code aloud digit by digit,
    and checks the code the person reads back. Human output goes to stderr, data to stdout.
    """


@main.command(epilog=SEND_EXAMPLES)
@click.argument("number")
@click.option("--sandbox", is_flag=True, help="Use a local stand-in of SignalWire: no account, nothing dialed.")
@click.option("--outcome", type=click.Choice(list(OUTCOMES)), metavar="OUTCOME",
              help="With --sandbox: how the simulated call ends: " + ", ".join(OUTCOMES) + ".  [default: answer]")
@click.option("--no-prompt", is_flag=True, help="Return once the call has ended; check later with `verify`.")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON object on stdout at the end.")
@click.option("--public-url", metavar="URL", help="Public base URL that reaches --listen [VOICE2FA_PUBLIC_URL].")
@click.option("--listen", metavar="HOST:PORT", help="Where the callback server binds [VOICE2FA_LISTEN, 127.0.0.1:5000].")
@click.option("--digits", type=Digits(6, 10), default=6, show_default=True, help="Length of the code.")
@click.option("--ttl", callback=parse_ttl, metavar="SECONDS|Nm", help="How long the code stays valid (max 10m).  [default: 10m]")
@click.option("--ring-timeout", type=Digits(5, 600), default=30, show_default=True, help="Seconds to let the phone ring.")
@click.option("--max-attempts", type=Digits(1, 5), default=5, show_default=True, help="Wrong codes allowed before the session locks.")
@click.option("--language", help="Language of the call, e.g. fr-FR  [default: the voice's, else from the callee's country]")
@click.option("--voice", help="A SignalWire voice name for every <Say> (e.g. woman, Polly.Joanna); a named voice brings its language.")
@click.option("--caller-name", metavar="NAME", help="Who the call says is calling, e.g. \"Acme support\" [VOICE2FA_CALLER_NAME].")
@click.option("--message", metavar="TEXT", help="Your own first sentence (plain text, at most 200 characters).")
@click.option("--no-keypress", is_flag=True, help="Read the code at once instead of asking for a key press first.")
@click.option("--skip-preflight", is_flag=True, help="Do not check that the public URL reaches this server before dialing.")
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict and errors on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Debug detail on stderr (never the code or the token).")
def send(number, sandbox, outcome, no_prompt, json_out, public_url, listen, digits, ttl, ring_timeout, max_attempts,
         language, voice, caller_name, message, no_keypress, skip_preflight, quiet, verbose) -> None:
    """Call NUMBER, read it a one-time code, then check the code read back.

    Exit codes: 0 verified (with --no-prompt: code delivered), 1 rejected, 2 usage or
    configuration, 3 code not delivered, 4 SignalWire or network failure, 5 refused by policy
    before dialing (send limit, country, locked number), 70 internal error (a bug),
    130 interrupted.
    """
    if outcome is not None and not sandbox:
        raise click.BadParameter("only with --sandbox (a real call ends as it ends)", param_hint="--outcome")
    from voice2fa_cli import config, flow, speech, ui

    with exit_codes(json_out, verbose, shape="send") as payload:
        payload.update(sandbox=sandbox)
        env = config.load_environment()
        target = config.number_input(env, number)
        payload.update(number=target.e164)
        voice_settings, notice = _voice(speech, language, voice, message, target.region,
                                        config.caller_name(env, caller_name))
        reporter = ui.Reporter(quiet=quiet, verbose=verbose, sandbox=sandbox, ring_timeout=ring_timeout)
        if target.note:
            reporter.info(target.note)
        if notice:
            reporter.warn(notice)
        options = flow.SendOptions(number=target, digits=digits, ttl=ttl, voice=voice_settings,
                                   keypress=not no_keypress, max_attempts=max_attempts,
                                   preflight=not skip_preflight)
        if sandbox:
            from voice2fa_cli.sandbox import Scenario

            where = config.parse_listen(listen) if listen is not None else config.Listen("127.0.0.1", 0)
            reporter.info("sandbox: a simulated call to a local stand-in of SignalWire; nothing is dialed")
            scenario = Scenario(**OUTCOMES[outcome]) if outcome else None
            call = flow.send_sandbox(env, options, reporter, where, ring_timeout, scenario=scenario)
        else:
            settings = config.send_settings(env, public_url=public_url, listen_flag=listen, ring_timeout=ring_timeout)
            for warning in settings.warnings:
                reporter.warn(warning)
            if settings.signing_key is None:
                reporter.warn("webhook signatures are not checked: set SIGNALWIRE_SIGNING_KEY (API page of your "
                              "SignalWire Dashboard) so that only SignalWire can fetch the call script")
            if not target.known:
                reporter.warn(f"{target.e164} is not known to be an assigned number; dialing anyway")
            reporter.debug(f"space {settings.space}, project {settings.project}, caller {settings.caller}")
            reporter.debug(f"listening on {settings.listen}, public URL {settings.public_url}, "
                           f"language {voice_settings.language}, store: {settings.store.describe()}")
            call = flow.send(settings, options, reporter)
        try:
            result = run_async(call)
        finally:
            reporter.finish()
        payload.update(session_id=result.session.id, call_sid=result.call_sid, call_status=result.call_status,
                       expires_at=ui.iso(result.session.expires_at), delivered=result.delivered, attempts_left=0)
        if not result.delivered:
            raise NotDelivered(result.problem or "the code was not delivered")
        payload.update(attempts_left=result.session.attempts_left)
        if no_prompt:
            check = f"voice2fa verify --sandbox {target.e164}" if sandbox else f"voice2fa verify {target.e164}"
            reporter.verdict(True, f"delivered: check the code with `{check}`")
            if json_out:
                ui.emit_json(payload)
            return
        verdict = _prompt_and_check(ui, config.store_spec(env), target.e164, result.session.id, reporter, sandbox)
        payload.update(verified=verdict.verified, attempts_left=0 if verdict.verified else verdict.attempts_left)
        if not verdict.verified:
            raise Rejected(verdict.reason)
        reporter.verdict(True, f"verified: {target.e164}")
        if json_out:
            ui.emit_json(payload)


def _voice(speech, language: str | None, voice: str | None, message: str | None, region: str | None,
           caller: str | None):
    """The call's voice settings, and a notice for the operator when the call is not in the
    callee's language. A language the call cannot speak is a usage error."""
    import re

    from voice2fa_cli import phrases

    if language is not None and not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", language):
        raise click.BadParameter("a language code such as en-US or fr-FR", param_hint="--language")
    if voice is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.:_\-]{0,63}", voice):
        raise click.BadParameter("a voice name such as man, woman or Polly.Joanna", param_hint="--voice")
    if message is not None:
        message = " ".join(message.split())
        if not message or len(message) > speech.MAX_INTRO or not message.isprintable():
            raise click.BadParameter(
                f"plain printable text of 1 to {speech.MAX_INTRO} characters", param_hint="--message"
            )
    try:
        choice = phrases.choose(language=language, voice=voice, region=region)
    except phrases.LanguageError as exc:
        raise click.UsageError(str(exc)) from None
    return speech.Voice(language=choice.language, voice=voice, intro=message, caller=caller), choice.notice


def _prompt_and_check(ui, store, number: str, session_id: str, reporter, sandbox: bool):
    from voice2fa_cli import sessions as sessions_core

    interactive = sys.stdin.isatty()

    def read_code() -> str | None:
        try:
            return ui.read_code(interactive)
        except KeyboardInterrupt:
            still_open = f"the session stays open: `{sessions_core.verify_command(number, sandbox)}`"
            raise Interrupted(f"interrupted; {still_open}") from None

    return sessions_core.prompt_and_check(store, number, session_id, read_code, reporter, interactive=interactive,
                                          sandbox=sandbox)


@main.command(epilog=VERIFY_EXAMPLES)
@click.argument("number")
@click.option("--code", metavar="DIGITS", help="The code (visible in the process list: prefer stdin).")
@click.option("--sandbox", is_flag=True, help="Check a code from `send --sandbox` (sandbox sessions only).")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON object on stdout.")
def verify(number, code, sandbox, json_out) -> None:
    """Check a code against the newest open session for NUMBER.

    Real sessions only; with --sandbox, sandbox sessions only (a sandbox code never verifies a
    real number). The code comes from --code, else one line of stdin when stdin is not a
    terminal, else a prompt. Needs only the state dir. Exit codes: 0 verified, 1 not (the
    reason on stderr), 2 malformed number or code, or a broken state dir.
    """
    from voice2fa_cli import config, otp, phone, ui
    from voice2fa_cli import sessions as sessions_core
    from voice2fa_cli.errors import ConfigError

    with exit_codes(json_out, shape="verify") as payload:
        env = config.load_environment()
        e164 = phone.quick_e164(number) or config.number_input(env, number).e164
        payload.update(number=e164, sandbox=sandbox)
        if code is None:
            try:
                code = ui.read_code(sys.stdin.isatty(), ui.VERIFY_PROMPT)
            except KeyboardInterrupt:
                raise Interrupted() from None
            if code is None:
                env = config.load_environment()
                pending = sessions_core.newest_open(config.store_spec(env), e164, sandbox=sandbox)
                if pending is not None:
                    payload.update(session_id=pending.id, attempts_left=pending.attempts_left)
                payload.update(reason="no code entered")
                raise Rejected("no code entered")
        digits = otp.normalise(code)
        if digits is None:
            raise ConfigError("the code must be 6 to 10 digits")
        verdict = sessions_core.check(config.store_spec(env), e164, digits, sandbox=sandbox)
        session = verdict.session
        payload.update(verified=verdict.verified, session_id=session.id if session else None, reason=verdict.reason,
                       attempts_left=(0 if verdict.verified else verdict.attempts_left) if session else None)
        if not verdict.verified:
            raise Rejected(verdict.reason)
        if json_out:
            ui.emit_json(payload)
        click.echo(f"verified: {e164}" + (" (a sandbox session: simulated, nothing was dialed)" if sandbox else ""), err=True)


@main.group(invoke_without_command=True, epilog="""
\b
Examples:
  voice2fa sessions
  voice2fa sessions --limit 5
  # the open ones, for scripts
  voice2fa sessions --json \\
    | jq '.sessions[] | select(.state == "open")'
  voice2fa sessions purge
""")
@click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout.")
@click.option("--limit", type=Digits(1, 1000), default=20, show_default=True, help="How many sessions.")
@click.pass_context
def sessions(ctx, json_out, limit) -> None:
    """List recent sessions, real and sandbox, newest first (never codes).

    Times are local, expiry relative ("in 9 min"); --json gives UTC ISO 8601 times.
    """
    if ctx.invoked_subcommand is not None:
        return
    from voice2fa_cli import config, ui
    from voice2fa_cli import sessions as sessions_core

    with exit_codes(json_out, shape="sessions") as payload:
        env = config.load_environment()
        now, rows = sessions_core.recent_sessions(config.store_spec(env), limit)
        listed = [ui.session_json(row, now) for row in rows]
        if json_out:
            ui.emit_json({**payload, "sessions": listed})
        else:
            ui.session_table(listed, now)


@sessions.command(epilog="""
\b
Examples:
  voice2fa sessions purge
  # for scripts: how many were removed
  voice2fa sessions purge --json | jq .removed
""")
@click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout.")
def purge(json_out) -> None:
    """Remove expired sessions (the failure counts behind number lockouts are kept)."""
    from voice2fa_cli import config, ui
    from voice2fa_cli import sessions as sessions_core

    with exit_codes(json_out, shape="purge") as payload:
        env = config.load_environment()
        removed = sessions_core.purge(config.store_spec(env))
        click.echo(f"removed {removed} expired session{'s' if removed != 1 else ''}", err=True)
        if json_out:
            ui.emit_json({**payload, "removed": removed})


@main.command(epilog="""
\b
Examples:
  voice2fa doctor
  voice2fa doctor --public-url https://abc123.ngrok.app \\
    --listen 127.0.0.1:5000
  # the failed checks, for scripts
  voice2fa doctor --json \\
    | jq '.checks[] | select(.status == "fail")'
""")
@click.option("--public-url", metavar="URL", help="Public base URL that reaches --listen [VOICE2FA_PUBLIC_URL].")
@click.option("--listen", metavar="HOST:PORT", help="Where to start the callback server [VOICE2FA_LISTEN].")
@click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout (and nothing on stderr).")
def doctor(public_url, listen, json_out) -> None:
    """Check the configuration, the credentials and the tunnel before a call costs money.

    Asks the API for the account only; dials nothing. Exit codes: 0 every check passed
    (warnings allowed), 2 otherwise.
    """
    from voice2fa_cli import doctor as checks_module, ui

    with exit_codes(json_out, shape="doctor") as payload:
        report = run_async(checks_module.run(public_url, listen))
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


@main.command(epilog="""
\b
Examples:
  eval "$(voice2fa completion bash)"   # in ~/.bashrc
  eval "$(voice2fa completion zsh)"    # in ~/.zshrc
  voice2fa completion fish \\
    > ~/.config/fish/completions/voice2fa.fish
""")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from click.shell_completion import get_completion_class

    script = get_completion_class(shell)(main, {}, "voice2fa", "_VOICE2FA_COMPLETE").source()
    click.echo(script)


@main.command(epilog="""
\b
Examples:
  # what a callee in your country hears
  voice2fa preview
  # the French call
  voice2fa preview +33612345678
  voice2fa preview --language de-DE --audio call.wav
  voice2fa preview --play --digits 8
  voice2fa preview --caller-name "Acme support" \\
    --voice Polly.Vicki
""")
@click.argument("number", required=False)
@click.option("--language", help="Language of the call  [default: the voice's, else from NUMBER's country, else en-US]")
@click.option("--voice", help="A SignalWire voice name, as `send --voice` takes it; it brings its language (--audio and --play speak with espeak-ng's own voice).")
@click.option("--caller-name", metavar="NAME", help="Who the call says is calling [VOICE2FA_CALLER_NAME].")
@click.option("--message", metavar="TEXT", help="Your own first sentence.")
@click.option("--digits", type=Digits(6, 10), default=6, show_default=True, help="Length of the sample code.")
@click.option("--no-keypress", is_flag=True, help="Preview the call without the key-press gate.")
@click.option("--audio", "audio", type=click.Path(dir_okay=False, writable=True), help="Write the call as a WAV file (espeak-ng).")
@click.option("--play", is_flag=True, help="Play the call aloud (espeak-ng and an audio player).")
def preview(number, language, voice, caller_name, message, digits, no_keypress, audio, play) -> None:
    """Show exactly what the callee would hear, with a sample code.

    The transcript goes to stdout, each line with its language, and the keys the callee may
    press; --audio and --play speak it through espeak-ng, each line in its language.
    """
    from pathlib import Path

    from voice2fa_cli import config, speech
    from voice2fa_cli import preview as previews

    with exit_codes(False):
        env = config.load_environment()
        region = config.number_input(env, number).region if number else None
        voice_settings, notice = _voice(speech, language, voice, message, region, config.caller_name(env, caller_name))
        if notice:
            click.echo(f"warning: {notice}", err=True)
        call = previews.call(voice_settings, digits, not no_keypress)
        click.echo("\n".join(previews.transcript_lines(call)))
        if audio or play:
            import tempfile

            target = Path(audio) if audio else Path(tempfile.mkdtemp(prefix="voice2fa-")) / "preview.wav"
            previews.synthesize(call, target)
            if audio:
                click.echo(f"wrote {target}", err=True)
            if play:
                try:
                    previews.play(target)
                finally:
                    if not audio:
                        target.unlink(missing_ok=True)
                        target.parent.rmdir()


@main.command("sandbox", epilog="""
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
@click.option("--api-error", type=click.Choice(["400", "401", "404", "422", "429", "500", "503"]),
              help="Answer the API with this error instead.")
@click.option("--api-code", type=click.IntRange(1, 99999999), help="The error code with --api-error (e.g. 21211, 21219).")
@click.option("--api-on", type=click.Choice(["create", "fetch", "update"]), default="create", show_default=True,
              help="The request --api-error answers.")
@click.option("--unsigned", is_flag=True, help="Send webhooks without X-SignalWire-Signature (no signing key).")
def sandbox(listen, json_out, outcome, press, api_error, api_code, api_on, unsigned) -> None:
    """Run the local SignalWire stand-in in the foreground, for any client.

    Prints the settings that point a client at it (SIGNALWIRE_SPACE, project, token, caller
    number, signing key) on stdout, then logs each call on stderr. Ctrl-C or SIGTERM stops it
    (exit 0).
    """
    import asyncio
    import ipaddress

    from voice2fa_cli import config, ui
    from voice2fa_cli.errors import ConfigError

    with exit_codes(json_out, shape="sandbox") as payload:
        where = config.parse_listen(listen, "--listen")
        try:
            loopback = where.host == "localhost" or ipaddress.ip_address(where.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
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


SERVE_EXAMPLES = """
\b
Examples:
  voice2fa serve --sandbox                           try it: no account, nothing dialed
  voice2fa services create "Acme login"             a service (its sid: VA...)
  voice2fa keys create backend                      an API key (its secret is shown once)
  voice2fa serve --public-url https://hooks.example.com --listen 127.0.0.1:5000
  curl -u "$KEY_SID:$KEY_SECRET" http://127.0.0.1:8080/v2/Services/$VA/Verifications \\
       -d To=+15551234567 -d Channel=call
"""


@main.command(epilog=SERVE_EXAMPLES)
@click.option("--listen-api", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where the API (/v2, /healthz, /metrics) listens; keep it off the internet.")
@click.option("--listen", metavar="HOST:PORT",
              help="Where the webhook listens (call routes only) [VOICE2FA_LISTEN, 127.0.0.1:5000; --sandbox: any free port].")
@click.option("--public-url", metavar="URL", help="Public base URL that reaches --listen [VOICE2FA_PUBLIC_URL].")
@click.option("--sandbox", is_flag=True, help="Place calls through a local stand-in of SignalWire: no account, nothing dialed.")
@click.option("--drain", type=Digits(0, 900), default=60, show_default=True,
              help="On SIGTERM, seconds the calls in flight get to finish before they are hung up.")
@click.option("--skip-preflight", is_flag=True, help="Do not check at start that the public URL reaches this server.")
def serve(listen_api, listen, public_url, sandbox, drain, skip_preflight) -> None:
    """Serve a voice verification API in the shape of Twilio Verify v2.

    Applications create verifications (POST /v2/Services/VA.../Verifications with To and
    Channel=call) and check codes (POST .../VerificationCheck with Code and To) with an API key
    as HTTP basic auth; voice2fa calls the number and reads the code. Logs are JSON lines on
    stderr. SIGTERM: new verifications get 503, calls in flight finish (up to --drain), exit 0.
    """
    from voice2fa_cli import config
    from voice2fa_cli.serve import main as serve_main

    with exit_codes(False):
        env = config.load_environment()
        serve_main.run(env, listen_api=listen_api, listen=listen, public_url=public_url, sandbox=sandbox,
                       drain=float(drain), preflight=not skip_preflight)


def _records_store():
    from voice2fa_cli import config
    from voice2fa_cli.stores import open_store

    return open_store(config.store_spec(config.load_environment()))


@main.group()
def keys() -> None:
    """API keys for `voice2fa serve` (HTTP basic auth: the key's SID and its secret)."""


@keys.command("create")
@click.argument("name")
def keys_create(name) -> None:
    """Make an API key; its secret is printed once (JSON on stdout) and stored only as a hash."""
    from voice2fa_cli import ui
    from voice2fa_cli.errors import ConfigError
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        try:
            key, secret = records.create_key(store, name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        ui.emit_json({"sid": key.sid, "name": key.name, "secret": secret})
        click.echo(f"API key {key.sid} made: keep its secret now, it is not shown again", err=True)


@keys.command("list")
def keys_list() -> None:
    """The API keys (never their secrets), as JSON lines on stdout."""
    from voice2fa_cli import ui
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        for key in records.list_keys(store):
            ui.emit_json({"sid": key.sid, "name": key.name, "created": key.created, "revoked": key.revoked})


@keys.command("revoke")
@click.argument("sid")
def keys_revoke(sid) -> None:
    """Revoke an API key (servers stop taking it within 5 seconds)."""
    from voice2fa_cli.errors import ConfigError
    from voice2fa_cli.serve import records

    with exit_codes(False), _records_store() as store:
        if not records.revoke_key(store, sid):
            raise ConfigError(f"no API key {sid[:40]!r}: see `voice2fa keys list`")
        click.echo(f"API key {sid} revoked", err=True)


@main.group()
def services() -> None:
    """Verification services for `voice2fa serve` (each with its code length, TTL and language)."""


@services.command("create")
@click.argument("name")
@click.option("--code-length", type=Digits(4, 10), default=6, show_default=True, help="Digits in each code.")
@click.option("--ttl", callback=parse_ttl, metavar="SECONDS|Nm", help="How long a code stays valid (max 10m).  [default: 10m]")
@click.option("--language", help="The calls' default language, e.g. fr-FR [default: from the callee's country].")
def services_create(name, code_length, ttl, language) -> None:
    """Make a service; prints it as JSON on stdout (its sid is the VA... in the API's URLs)."""
    from voice2fa_cli import phrases, ui
    from voice2fa_cli.errors import ConfigError
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        if language is not None:
            try:
                language = phrases.choose(language=language, voice=None, region=None).language
            except phrases.LanguageError as exc:
                raise ConfigError(str(exc)) from None
        try:
            service = records.create_service(store, name, code_length, ttl, language)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        ui.emit_json(service.body())


@services.command("list")
def services_list() -> None:
    """The services, as JSON lines on stdout."""
    from voice2fa_cli import ui
    from voice2fa_cli.serve import records

    with exit_codes(True), _records_store() as store:
        for service in records.list_services(store):
            ui.emit_json(service.body())
