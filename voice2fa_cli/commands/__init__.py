"""The commands of `voice2fa`, one module per family (cli.py registers them and imports each
only when it is used), and the Click classes every command is made with: help that never
breaks a line at a hyphen, a command list that never cuts a summary short.

Each command only parses its arguments, calls the core, renders (ui.py) and maps errors to exit
codes (edge.py). Heavy modules (aiohttp, Rich, phonenumbers, flow) are imported inside the
commands that need them.
"""

from __future__ import annotations

import click


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
