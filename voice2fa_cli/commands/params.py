"""Click parameter types and callbacks the commands share: whole numbers in ASCII digits, a TTL.

A phone number and a language are not parameter types: a number is read against the
environment's default region, and a language is checked with the voice (send.call_voice), both
inside the error edge."""

from __future__ import annotations

import re

import click

from voice2fa_cli import policy


def parse_ttl(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    if value is None:
        return policy.DEFAULT_TTL
    m = re.fullmatch(r"([0-9]{1,5})([sm]?)", value.lower())
    if m is None:
        raise click.BadParameter("give seconds (e.g. 300) or minutes (e.g. 5m)")
    seconds = int(m.group(1)) * (60 if m.group(2) == "m" else 1)
    if not policy.MIN_TTL <= seconds <= policy.MAX_TTL:
        raise click.BadParameter("must be between 30 seconds and 10 minutes")
    return seconds


class Digits(click.IntRange):
    """A whole number in a range, typed in ASCII digits only: Click's int() would also take
    `+6`, ` 6`, `6_0` and other scripts' digits (`٦`, `６`)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,9}", value):
            self.fail(f"{value!r} is not a whole number in the digits 0-9.", param, ctx)
        return super().convert(value, param, ctx)
