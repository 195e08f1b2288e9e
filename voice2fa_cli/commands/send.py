"""`voice2fa send`: call a number, read it a code, then check the code the operator types."""

from __future__ import annotations

import sys

import click

from voice2fa_cli import policy
from voice2fa_cli.commands import Command
from voice2fa_cli.commands.edge import Interrupted, exit_codes, run_async
from voice2fa_cli.commands.params import Digits, parse_ttl
from voice2fa_cli.errors import NotDelivered, Rejected

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
    "lost-logs": {"log_by_id": False},
    "auth-error": {"api_status": 401},
    "rate-limited": {"api_status": 429},
    "server-error": {"api_status": 500},
}
WEBHOOK_OUTCOMES = ("no-webhook", "lost-callbacks")  # the webhook delivery's only


@click.command("send", cls=Command, epilog=SEND_EXAMPLES)
@click.argument("number")
@click.option("--sandbox", is_flag=True, help="Use a local stand-in of SignalWire: no account, nothing dialed.")
@click.option("--outcome", type=click.Choice(list(OUTCOMES)), metavar="OUTCOME",
              help="With --sandbox: how the simulated call ends: " + ", ".join(OUTCOMES) + ".  [default: answer]")
@click.option("--no-prompt", is_flag=True, help="Return once the call has ended; check later with `verify`.")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON object on stdout at the end.")
@click.option("--delivery", type=click.Choice(["webhook", "inline"]), metavar="webhook|inline",
              help="How the call gets its script: webhook (SignalWire fetches it through --public-url) or inline "
                   "(all in the dial: no tunnel, nothing inbound) [VOICE2FA_DELIVERY, webhook].")
@click.option("--public-url", metavar="URL", help="Public base URL that reaches --listen [VOICE2FA_PUBLIC_URL].")
@click.option("--listen", metavar="HOST:PORT",
              help="Where the callback server binds [VOICE2FA_LISTEN, 127.0.0.1:5000].")
@click.option("--digits", type=Digits(6, 10), default=6, show_default=True, help="Length of the code.")
@click.option("--ttl", callback=parse_ttl, metavar="SECONDS|Nm",
              help="How long the code stays valid (max 10m).  [default: 10m]")
@click.option("--ring-timeout", type=Digits(5, 600), default=30, show_default=True,
              help="Seconds to let the phone ring.")
@click.option("--max-attempts", type=Digits(1, policy.MAX_ATTEMPTS), default=policy.MAX_ATTEMPTS, show_default=True,
              help="Wrong codes allowed before the session locks.")
@click.option("--language",
              help="Language of the call, e.g. fr-FR  [default: the voice's, else from the callee's country]")
@click.option("--voice",
              help="A SignalWire voice name for every <Say> (e.g. woman, Polly.Joanna); "
                   "a named voice brings its language.")
@click.option("--caller-name", metavar="NAME",
              help="Who the call says is calling, e.g. \"Acme support\" [VOICE2FA_CALLER_NAME].")
@click.option("--message", metavar="TEXT", help="Your own first sentence (plain text, at most 200 characters).")
@click.option("--no-keypress", is_flag=True, help="Read the code at once instead of asking for a key press first.")
@click.option("--skip-preflight", is_flag=True,
              help="Do not check that the public URL reaches this server before dialing.")
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict and errors on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Debug detail on stderr (never the code or the token).")
def send_command(number, sandbox, outcome, no_prompt, json_out, delivery, public_url, listen, digits, ttl, ring_timeout,
                 max_attempts, language, voice, caller_name, message, no_keypress, skip_preflight, quiet,
                 verbose) -> None:
    """Call NUMBER, read it a one-time code, then check the code read back.

    Exit codes: 0 verified (with --no-prompt: code delivered), 1 rejected, 2 usage or
    configuration, 3 code not delivered, 4 SignalWire or network failure, 5 refused by policy
    before dialing (send limit, country, locked number), 70 internal error (a bug),
    130 interrupted.
    """
    if outcome is not None and not sandbox:
        raise click.BadParameter("only with --sandbox (a real call ends as it ends)", param_hint="--outcome")
    from voice2fa_cli import config, environment, flow, ui

    with exit_codes(json_out, verbose, shape="send") as payload:
        payload.update(sandbox=sandbox)
        env = environment.load_environment()
        target = config.number_input(env, number)
        payload.update(number=target.e164)
        voice_settings, notice = call_voice(language, voice, message, target.region,
                                            config.caller_name(env, caller_name))
        reporter = ui.Reporter(quiet=quiet, verbose=verbose, sandbox=sandbox, ring_timeout=ring_timeout)
        if target.note:
            reporter.info(target.note)
        if notice:
            reporter.warn(notice)
        options = flow.SendOptions(number=target, digits=digits, ttl=ttl, voice=voice_settings,
                                   keypress=not no_keypress, max_attempts=max_attempts,
                                   preflight=not skip_preflight)
        how = config.delivery(env, delivery)
        if outcome in WEBHOOK_OUTCOMES and how == "inline":
            raise click.BadParameter(f"{outcome} is the webhook delivery's (inline, nothing is fetched)",
                                     param_hint="--outcome")
        if outcome == "lost-logs" and how != "inline":
            raise click.BadParameter("lost-logs is the inline delivery's (--delivery inline)", param_hint="--outcome")
        if sandbox:
            call = _sandbox_call(env, options, reporter, listen, ring_timeout, outcome, how)
        else:
            settings = config.send_settings(env, public_url=public_url, listen_flag=listen, ring_timeout=ring_timeout,
                                            delivery_flag=delivery)
            _tell_settings(settings, options, reporter)
            call = flow.send(settings, options, reporter)
        try:
            result = run_async(call)
        finally:
            reporter.finish()
        _after_the_call(result, env, target.e164, payload, reporter, sandbox=sandbox, no_prompt=no_prompt,
                        json_out=json_out)


def _sandbox_call(env, options, reporter, listen: str | None, ring_timeout: int, outcome: str | None,
                  delivery: str):
    """The call through the sandbox, started in-process (a coroutine to run)."""
    from voice2fa_cli import config, stand_in
    from voice2fa_cli.sandbox import Scenario

    where = config.parse_listen(listen) if listen is not None else config.Listen("127.0.0.1", 0)
    reporter.info("sandbox: a simulated call to a local stand-in of SignalWire; nothing is dialed")
    scenario = Scenario(**OUTCOMES[outcome]) if outcome else None
    return stand_in.send(env, options, reporter, where, ring_timeout, scenario=scenario, delivery=delivery)


def _tell_settings(settings, options, reporter) -> None:
    """Before a real call: the settings' warnings, and with -v where everything goes."""
    target = options.number
    for warning in settings.warnings:
        reporter.warn(warning)
    if settings.signing_key is None:
        reporter.warn("webhook signatures are not checked: set SIGNALWIRE_SIGNING_KEY (API page of your "
                      "SignalWire Dashboard) so that only SignalWire can fetch the call script")
    if not target.known:
        reporter.warn(f"{target.e164} is not known to be an assigned number; dialing anyway")
    reporter.debug(f"space {settings.space}, project {settings.project}, caller {settings.caller}")
    reporter.debug(f"listening on {settings.listen}, public URL {settings.public_url}, "
                   f"language {options.voice.language}, store: {settings.store.describe()}")


def _after_the_call(result, env, number: str, payload: dict, reporter, *, sandbox: bool, no_prompt: bool,
                    json_out: bool) -> None:
    """The call has ended: not delivered, delivered (--no-prompt), or the operator's code checked."""
    from voice2fa_cli import config, sessions, ui

    payload.update(session_id=result.session.id, call_sid=result.call_sid, call_status=result.call_status,
                   expires_at=ui.iso(result.session.expires_at), delivered=result.delivered, attempts_left=0)
    if result.delivered is False:
        raise NotDelivered(result.problem or "the code was not delivered")
    payload.update(attempts_left=result.session.attempts_left)
    if result.delivered is None:  # the inline delivery: answered, what was heard is not known
        reporter.info("inline delivery: the call was answered; whether the callee pressed the key and heard "
                      "the code is not known here: the code read back is the proof")
    if no_prompt:
        done = "delivered" if result.delivered else "answered"
        reporter.verdict(True, f"{done}: check the code with `{sessions.verify_command(number, sandbox)}`")
        if json_out:
            ui.emit_json(payload)
        return
    verdict = _prompt_and_check(config.store_spec(env), number, result.session.id, reporter, sandbox)
    payload.update(verified=verdict.verified, attempts_left=0 if verdict.verified else verdict.attempts_left)
    if not verdict.verified:
        raise Rejected(verdict.reason)
    reporter.verdict(True, f"verified: {number}")
    if json_out:
        ui.emit_json(payload)


def _prompt_and_check(store, number: str, session_id: str, reporter, sandbox: bool):
    """The operator's codes from stdin (sessions.prompt_and_check); Ctrl-C at the prompt is
    Interrupted, the session left open."""
    from voice2fa_cli import sessions, ui

    interactive = sys.stdin.isatty()

    def read_code() -> str | None:
        try:
            return ui.read_code(interactive)
        except KeyboardInterrupt:
            still_open = f"the session stays open: `{sessions.verify_command(number, sandbox)}`"
            raise Interrupted(f"interrupted; {still_open}") from None

    return sessions.prompt_and_check(store, number, session_id, read_code, reporter, interactive=interactive,
                                     sandbox=sandbox)


def call_voice(language: str | None, voice: str | None, message: str | None, region: str | None,
               caller: str | None):
    """The call's voice settings (call_options.voice_options), and a notice for the operator
    when the call is not in the callee's language; each problem as the option's usage error."""
    from voice2fa_cli.voice.options import OptionError, voice_options

    try:
        return voice_options(language=language, voice=voice, message=message, caller=caller, region=region)
    except OptionError as exc:
        if not exc.shape:  # the language cannot be spoken, or conflicts with the voice
            raise click.UsageError(exc.detail) from None
        flag = "--caller-name" if exc.option == "caller" else f"--{exc.option}"
        raise click.BadParameter(exc.detail, param_hint=flag) from None
