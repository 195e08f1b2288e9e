"""`voice2fa verify`, `voice2fa sessions` and `voice2fa sessions purge`: the state dir only
(no SignalWire setting, no public URL), so they start fast."""

from __future__ import annotations

import sys

import click

from voice2fa_cli.commands import Command, Group
from voice2fa_cli.commands.edge import Interrupted, exit_codes
from voice2fa_cli.commands.params import Digits
from voice2fa_cli.errors import Rejected

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


@click.command("verify", cls=Command, epilog=VERIFY_EXAMPLES)
@click.argument("number")
@click.option("--code", metavar="DIGITS", help="The code (visible in the process list: prefer stdin).")
@click.option("--sandbox", is_flag=True, help="Check a code from `send --sandbox` (sandbox sessions only).")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON object on stdout.")
def verify_command(number, code, sandbox, json_out) -> None:
    """Check a code against the newest open session for NUMBER.

    Real sessions only; with --sandbox, sandbox sessions only (a sandbox code never verifies a
    real number). The code comes from --code, else one line of stdin when stdin is not a
    terminal, else a prompt. Needs only the state dir. Exit codes: 0 verified, 1 not (the
    reason on stderr), 2 malformed number or code, or a broken state dir.
    """
    from voice2fa_cli import config, environment, otp, phone, sessions, ui
    from voice2fa_cli.errors import ConfigError

    with exit_codes(json_out, shape="verify") as payload:
        env = environment.load_environment()
        e164 = phone.quick_e164(number) or config.number_input(env, number).e164
        payload.update(number=e164, sandbox=sandbox)
        if code is None:
            try:
                code = ui.read_code(sys.stdin.isatty(), ui.VERIFY_PROMPT)
            except KeyboardInterrupt:
                raise Interrupted() from None
            if code is None:
                env = environment.load_environment()
                pending = sessions.newest_open(config.store_spec(env), e164, sandbox=sandbox)
                if pending is not None:
                    payload.update(session_id=pending.id, attempts_left=pending.attempts_left)
                payload.update(reason="no code entered")
                raise Rejected("no code entered")
        digits = otp.normalise(code)
        if digits is None:
            raise ConfigError("the code must be 6 to 10 digits")
        verdict = sessions.check(config.store_spec(env), e164, digits, sandbox=sandbox)
        session = verdict.session
        payload.update(verified=verdict.verified, session_id=session.id if session else None, reason=verdict.reason,
                       attempts_left=(0 if verdict.verified else verdict.attempts_left) if session else None)
        if not verdict.verified:
            raise Rejected(verdict.reason)
        if json_out:
            ui.emit_json(payload)
        simulated = " (a sandbox session: simulated, nothing was dialed)" if sandbox else ""
        click.echo(f"verified: {e164}{simulated}", err=True)


@click.group("sessions", cls=Group, invoke_without_command=True, epilog="""
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
def sessions_command(ctx, json_out, limit) -> None:
    """List recent sessions, real and sandbox, newest first (never codes).

    Times are local, expiry relative ("in 9 min"); --json gives UTC ISO 8601 times.
    """
    if ctx.invoked_subcommand is not None:
        return
    from voice2fa_cli import config, environment, sessions, ui

    with exit_codes(json_out, shape="sessions") as payload:
        env = environment.load_environment()
        now, rows = sessions.recent_sessions(config.store_spec(env), limit)
        listed = [ui.session_json(row, now) for row in rows]
        if json_out:
            ui.emit_json({**payload, "sessions": listed})
        else:
            ui.session_table(listed, now)


@sessions_command.command("purge", epilog="""
\b
Examples:
  voice2fa sessions purge
  # for scripts: how many were removed
  voice2fa sessions purge --json | jq .removed
""")
@click.option("--json", "json_out", is_flag=True, help="One JSON object on stdout.")
def purge_command(json_out) -> None:
    """Remove expired sessions (the failure counts behind number lockouts are kept)."""
    from voice2fa_cli import config, environment, sessions, ui

    with exit_codes(json_out, shape="purge") as payload:
        env = environment.load_environment()
        removed = sessions.purge(config.store_spec(env))
        click.echo(f"removed {removed} expired session{'s' if removed != 1 else ''}", err=True)
        if json_out:
            ui.emit_json({**payload, "removed": removed})
