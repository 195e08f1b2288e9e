"""The root of the command line: the `voice2fa` group (the console script's entry point), Click's
usage errors as one line, and `completion`. The commands themselves live in commands/, one
module per family; each module is imported only when one of its commands runs (or is listed,
for help and completion), so that `voice2fa --version` and `verify` start fast.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from voice2fa_cli import __version__
from voice2fa_cli.commands import Group
from voice2fa_cli.commands.edge import JSON_SHAPES
from voice2fa_cli.errors import EXIT_INTERRUPTED

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

# The commands of commands/: name -> (module, attribute).
COMMANDS: dict[str, tuple[str, str]] = {
    "send": ("send", "send_command"),
    "verify": ("check", "verify_command"),
    "sessions": ("check", "sessions_command"),
    "doctor": ("tools", "doctor_command"),
    "preview": ("tools", "preview_command"),
    "sandbox": ("tools", "sandbox_command"),
    "serve": ("admin", "serve_command"),
    "keys": ("admin", "keys_group"),
    "services": ("admin", "services_group"),
}


class OneLineErrors(Group):
    """Click's usage errors as one line with a hint, like every other failure (exit 2); the
    streams guarded against readers that go away; a bare `voice2fa` prints the help. The
    commands of COMMANDS are imported when they are first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, attribute = COMMANDS[name]
            self.add_command(getattr(import_module(f"voice2fa_cli.commands.{module}"), attribute), name)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:  # "did you mean": among every command, loaded or not
            raise click.exceptions.NoSuchCommand(exc.command_name, possibilities=self.list_commands(ctx),
                                                 ctx=exc.ctx) from None

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


@main.command("completion", epilog="""
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
