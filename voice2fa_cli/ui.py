"""Everything the operator sees: progress on stderr (Rich on a terminal, plain lines
elsewhere), one JSON object on stdout for scripts, and reading the code read back.

Rich is imported only when stderr is a terminal that wants colour.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import click

LABELS = {
    "dialing": "calling {detail}",
    "initiated": "call placed",
    "queued": "queued",
    "ringing": "ringing",
    "in-progress": "answered",
    "fetched": "SignalWire fetched the call script",
    "wrong-key": "a wrong key was pressed",
    "key-pressed": "the callee pressed the key",
    "delivered": "code read to the callee",
    "completed": "call completed",
    "busy": "busy",
    "no-answer": "no answer",
    "failed": "call failed",
    "canceled": "call canceled",
}


def sanitize(text: object, markup: bool = False) -> str:
    """Text that came from the network (platform messages, call statuses, what the sandbox
    heard), safe to show: control characters removed (line breaks and tabs become spaces; no
    ESC, so no terminal escape sequence survives), and, with `markup`, Rich markup escaped
    for a Rich call that would otherwise interpret it. Used at the rendering edge."""
    import unicodedata

    cleaned = "".join(
        " " if ch in "\t\n\r\v\f\x85\u2028\u2029"
        else "" if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co")
        else ch
        for ch in str(text)
    )
    if markup:
        from rich.markup import escape

        cleaned = escape(cleaned)
    return cleaned


def fancy(stream: TextIO) -> bool:
    """Colour and live output only on a terminal, and not with NO_COLOR or TERM=dumb."""
    return (
        stream.isatty()
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM", "") != "dumb"
    )


WAITING = {  # what the spinner says after each event while the call runs
    "dialing": "waiting for the call to ring",
    "initiated": "waiting for the call to ring",
    "ringing": "ringing",
    "in-progress": "waiting for SignalWire to fetch the call script",
    "fetched": "waiting for the key press",
    "key-pressed": "reading the code",
    "delivered": "waiting for the call to end",
}
FAILED = frozenset({"busy", "no-answer", "failed", "canceled"})


def console(stream: TextIO):
    """A Rich console on `stream` when it is a terminal that wants colour, else None."""
    if not fancy(stream):
        return None
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)


class Reporter:
    """Progress of a call, one line per event, on stderr."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.verbose = verbose
        self._console = console(self.stream)
        self._status = None  # a Rich spinner while the call runs (terminal only)
        self._started = time.monotonic()

    def _spin(self, text: str) -> None:
        if self._console is None or self.quiet:
            return
        text = sanitize(text, markup=True)  # a status line is Rich markup
        if self._status is None:
            self._status = self._console.status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def finish(self) -> None:
        """Stop the spinner (before a prompt, and at the end)."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _line(self, text: str, style: str | None = None) -> None:
        text = sanitize(text)
        if self._console is not None:
            self._console.out(text, style=style, highlight=False)
        else:
            stamp = time.strftime("%H:%M:%S")
            self.stream.write(f"{stamp} {text}\n")
            self.stream.flush()

    def warn(self, text: str) -> None:
        self._line(f"warning: {text}", "yellow")

    def debug(self, text: str) -> None:
        if self.verbose:
            self._line(f"debug: {text}", "dim")

    def step(self, event: str, elapsed: float, detail: str | None = None) -> None:
        if self.quiet:
            return
        label = LABELS.get(event, event).format(detail=detail or "")
        if detail and "{detail}" not in LABELS.get(event, ""):
            label += f" ({detail})"
        style = "green" if event == "delivered" else ("red" if event in FAILED else None)
        self._line(f"[{elapsed:5.1f}s] {label}", style)
        waiting = WAITING.get(event)
        if waiting:
            self._spin(waiting + "…")
        else:
            self.finish()

    def heard(self, lines: list[str]) -> None:
        for line in lines:
            self._line(f"  callee heard: {line}", "cyan")

    def info(self, text: str, style: str | None = None) -> None:
        if not self.quiet:
            self._line(text, style)

    def verdict(self, ok: bool, text: str) -> None:
        self.finish()
        self._line(f"[{time.monotonic() - self._started:5.1f}s] {text}", "bold green" if ok else "bold red")


def error(message: str, hint: str | None = None) -> None:
    """One line on stderr: what went wrong and, when known, what to do."""
    text = sanitize(f"error: {message}" + (f" ({hint})" if hint else ""))
    out = console(sys.stderr)
    if out is not None:
        out.out(text, style="red", highlight=False)
    else:
        click.echo(text, err=True)


def emit_json(data: dict) -> None:
    import json

    click.echo(json.dumps(data, separators=(",", ":"), sort_keys=False))


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


PROMPT = "Code read back by the callee: "
VERIFY_PROMPT = "Code: "


def read_code(interactive: bool, prompt: str = PROMPT) -> str | None:
    """One entry from the operator, read with `sys.stdin.readline()` (never getpass or
    /dev/tty): the prompt goes to stderr. None on end of input or an empty line."""
    sys.stderr.write(prompt if interactive else prompt + "\n")
    sys.stderr.flush()
    line = sys.stdin.readline()
    return line.strip() or None


def session_json(session, now: float) -> dict:
    state = session.state
    if state in ("calling", "delivered"):
        state = "expired" if now >= session.expires_at else "open"
    return {
        "session_id": session.id,
        "number": session.number,
        "created_at": iso(session.created_at),
        "expires_at": iso(session.expires_at),
        "state": state,
        "attempts_left": session.attempts_left if state == "open" else 0,
        "call_sid": session.call_sid,
        "call_status": session.call_status,
        "sandbox": session.sandbox,
    }


def session_table(rows: list[dict]) -> None:
    """A plain table on stdout (it is data), or a note on stderr when there is nothing."""
    if not rows:
        click.echo("no sessions", err=True)
        return
    columns = [("number", "NUMBER"), ("created_at", "CREATED"), ("expires_at", "EXPIRES"),
               ("state", "STATE"), ("attempts_left", "LEFT"), ("kind", "KIND"), ("session_id", "SESSION")]
    rows = [{**row, "kind": "sandbox" if row["sandbox"] else "real"} for row in rows]
    table = [[title for _, title in columns]] + [[sanitize(row[key]) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skip": ("-", "dim")}


def doctor_table(checks) -> None:
    """One row per check on stderr: mark, name, detail, and the fix when there is one."""
    width = max(len(c.name) for c in checks)
    out = console(sys.stderr)
    for c in checks:
        mark, style = MARKS[c.status]
        line = f"{mark} {c.name.ljust(width)}  {sanitize(c.detail)}" + (
            f"\n  {' ' * width}  fix: {sanitize(c.fix)}" if c.fix and c.status != "ok" else "")
        if out is not None:
            out.out(line, style=style if c.status != "ok" else None, highlight=False)
        else:
            click.echo(line, err=True)
