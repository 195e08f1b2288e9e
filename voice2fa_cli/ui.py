"""Everything the operator sees: progress on stderr (Rich on a terminal, plain lines
elsewhere), one JSON object on stdout for scripts, and reading the code read back.

Rich is imported only when stderr is a terminal that wants colour.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from typing import TYPE_CHECKING, TextIO

import click

from voice2fa_cli.voice.transcript import readings

if TYPE_CHECKING:
    from rich.status import Status

LABELS = {
    "dialing": "calling {detail}",
    "created": "call {detail}",
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
    "hung-up": "hung up the call",
    "running": "answered: the call runs its script",
    "answered-for": "answered, {detail}",
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


class PipeGuard:
    """stdout or stderr whose reader may go away (`voice2fa sessions | head -1`).

    The first write or flush that meets a closed pipe points the descriptor at /dev/null and
    carries on: whatever the command was doing (a call, a check) goes on to its end and exits
    with its own code, and nothing is printed about the pipe. SIGPIPE stays ignored (Python's
    default), so a closed pipe is an EPIPE here rather than a silent kill mid-call."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def _gone(self) -> None:
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()
            with contextlib.suppress(OSError):
                self._stream.flush()  # what was buffered goes to /dev/null

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def guard_pipes() -> None:
    """Called once by the entry point: both output streams survive a reader going away."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PipeGuard):
            setattr(sys, name, PipeGuard(stream))


def live(stream: TextIO) -> bool:
    """Live output (spinner, timers, lines fitted to the width) only on a terminal that is
    not dumb. NO_COLOR changes colour only, never the layout."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (ValueError, AttributeError):
        return False


WAITING = {  # what the spinner says after each event while the call runs
    "dialing": "waiting for the call to ring",
    "created": "waiting for the call to ring",
    "expires": "waiting for the call to ring",
    "initiated": "waiting for the call to ring",
    "ringing": "ringing",
    "in-progress": "waiting for SignalWire to fetch the call script",
    "fetched": "waiting for the key press",
    "key-pressed": "reading the code",
    "delivered": "waiting for the call to end",
    "running": "waiting for the call to end",
}
FAILED = frozenset({"busy", "no-answer", "failed", "canceled"})


def console(stream: TextIO):
    """A Rich console on `stream` when it is a live terminal, else None. Colour is off with
    NO_COLOR (or TERM=dumb, which is not live anyway)."""
    if not live(stream):
        return None
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True, no_color="NO_COLOR" in os.environ)


def width(stream: TextIO, out=None) -> int | None:
    """The terminal's width for a live stream, else None (no fitting off a terminal)."""
    if out is not None:
        return out.width
    if not live(stream):
        return None
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return None


def fit(text: str, columns: int | None, indent: int = 0) -> list[str]:
    """`text` wrapped at word boundaries to `columns` (continuation lines indented), or as it
    is when there is no width (off a terminal). A word longer than a line is the only thing cut."""
    if columns is None:
        return text.split("\n")
    import textwrap

    lines: list[str] = []
    for paragraph in text.split("\n"):
        lead = len(paragraph) - len(paragraph.lstrip(" "))
        lines += textwrap.wrap(
            paragraph, max(columns, 20), subsequent_indent=" " * (lead + indent),
            break_on_hyphens=False, break_long_words=True,
        ) or [""]
    return lines


def humane_duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3570:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def relative(ts: float, now: float) -> str:
    """'in 9 min' or '3 min ago'."""
    delta = ts - now
    return f"in {humane_duration(delta)}" if delta >= 0 else f"{humane_duration(delta)} ago"


def local_time(ts: float, now: float) -> str:
    """A local clock time; the date too when it is not today."""
    here = time.localtime(ts)
    if time.strftime("%Y-%m-%d", here) == time.strftime("%Y-%m-%d", time.localtime(now)):
        return time.strftime("%H:%M", here)
    return time.strftime("%b %d %H:%M", here)


_PRESS = re.compile(r"\[presses (\S+)\]")
TIMES = {1: "once", 2: "twice", 3: "three times"}


def grouped(code: str) -> str:
    """724353 → '724 353'; 8 digits → '1234 5678'; groups of three, never one alone."""
    if len(code) % 3 == 1 and len(code) > 4:
        head, tail = code[:-4], code[-4:]
        return " ".join([head[i : i + 3] for i in range(0, len(head), 3)] + [tail])
    if len(code) == 8:
        return f"{code[:4]} {code[4:]}"
    return " ".join(code[i : i + 3] for i in range(0, len(code), 3))


def heard_summary(lines: list[str]) -> str | None:
    """One line for what the callee heard: the code, unmistakable, and how often."""
    codes = readings(lines)
    if not codes:
        return None
    distinct = list(dict.fromkeys(codes))
    if len(distinct) == 1:
        count = len(codes)
        return f"the callee heard the code {grouped(codes[0])}, {TIMES.get(count, f'{count} times')}"
    return "the callee heard the codes " + " and ".join(grouped(c) for c in distinct)


class _Waiting:
    """The spinner's text, with a timer that Rich re-renders at each refresh."""

    def __init__(self, text: str, since: float, limit: float | None, clock) -> None:
        self.text, self.since, self.limit, self.clock = text, since, limit, clock

    def __rich__(self):
        from rich.text import Text  # plain text: never read as Rich markup

        waited = int(self.clock() - self.since)
        limit = f" of {self.limit:g} s" if self.limit else ""
        return Text(f"{self.text}… {waited} s{limit}")


class Reporter:
    """Progress of a call on stderr: one line per event, the same text on a terminal (with a
    spinner and colour) and off one (plain lines)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, verbose: bool = False,
                 sandbox: bool = False, ring_timeout: float | None = None, clock=time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.verbose = verbose
        self.sandbox = sandbox
        self.ring_timeout = ring_timeout
        self.clock = clock
        self._console = console(self.stream)
        self._status: Status | None = None  # a Rich spinner while the call runs (terminal only)
        self._started = clock()
        self._elapsed = 0.0  # of the last step: the flow's clock, which lines without one share

    def _spin(self, text: str, limit: float | None = None) -> None:
        if self._console is None or self.quiet:
            return
        waiting = _Waiting(sanitize(text), self.clock(), limit, self.clock)
        if self._status is None:
            self._status = self._console.status(waiting, spinner="dots")
            self._status.start()
        else:
            self._status.update(waiting)

    def finish(self) -> None:
        """Stop the spinner (before a prompt, and at the end)."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _line(self, text: str, style: str | None = None, indent: int = 0) -> None:
        for line in fit(sanitize(text), width(self.stream, self._console), indent):
            if self._console is not None:
                self._console.out(line, style=style, highlight=False)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()

    def _event(self, text: str, style: str | None = None, elapsed: float | None = None) -> None:
        if elapsed is None:
            elapsed = self._elapsed
        self._elapsed = elapsed
        self._line(f"[{elapsed:5.1f}s] {text}", style, indent=9)

    def warn(self, text: str) -> None:
        if not self.quiet:
            self._line(f"warning: {text}", "yellow", indent=2)

    def debug(self, text: str) -> None:
        if self.verbose and not self.quiet:
            self._line(f"debug: {text}", "dim", indent=2)

    def step(self, event: str, elapsed: float, detail: str | None = None) -> None:
        if self.quiet:
            return
        if event == "expires":
            try:
                at = float(detail or "")
            except ValueError:
                return
            now = time.time()
            self._event(f"the code expires at {local_time(at, now)} ({relative(at, now)})", None, elapsed)
            self._spin(WAITING["expires"])
            return
        label = LABELS.get(event, event).format(detail=detail or "")
        if detail and "{detail}" not in LABELS.get(event, ""):
            if self.sandbox and event == "completed" and detail.endswith(" s"):
                detail = f"{detail} of simulated call time"
            label += f" ({detail})"
        style = "green" if event == "delivered" else ("red" if event in FAILED else None)
        self._event(label, style, elapsed)
        waiting = WAITING.get(event)
        if waiting:
            self._spin(waiting, self.ring_timeout if event == "ringing" else None)
        else:
            self.finish()

    def heard(self, lines: list[str]) -> None:
        """What the simulated callee heard (the sandbox): one line naming the code and how
        often it was read; every line with -v; otherwise only what went wrong."""
        if self.quiet:
            return
        if self.verbose:
            for line in lines:
                self._event(f"heard: {line}", "cyan")
        summary = heard_summary(lines)
        if summary is not None:
            self._event(summary, "bold cyan")
        elif not self.verbose and not any(_PRESS.fullmatch(line.strip()) for line in lines):
            said = [line.strip() for line in lines if line.strip() and not line.strip().startswith("[")]
            stages = [line.strip()[1:-1] for line in lines if line.strip().startswith("[")]
            if said:
                self._event(f"the callee heard “{said[-1]}”" + (f", then: {stages[-1]}" if stages else ""), "cyan")
            elif stages:
                self._event(f"the callee: {stages[-1]}", "cyan")

    def info(self, text: str, style: str | None = None) -> None:
        if not self.quiet:
            self._line(text, style, indent=2)

    def verdict(self, ok: bool, text: str) -> None:
        self.finish()
        self._line(text, "bold green" if ok else "bold red", indent=2)


def error(message: str, hint: str | None = None) -> None:
    """One line on stderr: what went wrong and, when known, what to do."""
    text = sanitize(f"error: {message}" + (f" ({hint})" if hint else ""))
    out = console(sys.stderr)
    for line in fit(text, width(sys.stderr, out), 2):
        if out is not None:
            out.out(line, style="red", highlight=False)
        else:
            click.echo(line, err=True)


def log(text: str) -> None:
    """One line of a log on stderr (`voice2fa sandbox`): text from the network cleaned, and
    fitted to a terminal's width at word boundaries (as it is off a terminal)."""
    for line in fit(sanitize(text), width(sys.stderr), 2):
        click.echo(line, err=True)


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
    /dev/tty). On a terminal the prompt goes to stderr and an empty Enter asks again; only end
    of input (Ctrl-D) gives up. Off a terminal: no prompt, one line, empty means none.
    None when no code was entered."""
    if not interactive:
        return sys.stdin.readline().strip() or None
    while True:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            sys.stderr.write("\n")  # whatever follows starts on its own line
            raise
        if not line:  # Ctrl-D: end the prompt's line before the message that follows
            sys.stderr.write("\n")
            sys.stderr.flush()
            return None
        if line.strip():
            return line.strip()


def session_json(session, now: float) -> dict:
    """A session as every JSON output shows it (schemas/session.json)."""
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
        "sandbox": bool(session.sandbox),
    }


def _from_iso(text: str | None) -> float | None:
    if text is None:
        return None
    import calendar

    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


# (key, title, priority: the lowest goes first when the terminal is narrow)
SESSION_COLUMNS = (
    ("session_id", "SESSION", 9), ("number", "NUMBER", 8), ("state", "STATE", 7), ("expires", "EXPIRES", 6),
    ("kind", "KIND", 5), ("attempts_left", "LEFT", 4), ("created", "CREATED", 3),
)


def session_table(rows: list[dict], now: float | None = None) -> None:
    """The sessions as a table on stdout (it is data), in local time with relative expiry;
    fitted to the terminal by leaving out the least useful columns, never by cutting a cell.
    A note on stderr when there is nothing."""
    if not rows:
        click.echo("no sessions", err=True)
        return
    now = time.time() if now is None else now
    cells = []
    for row in rows:
        expires, created = _from_iso(row["expires_at"]), _from_iso(row["created_at"])
        cells.append({
            **{k: sanitize(v) for k, v in row.items()},
            "expires": relative(expires, now) if expires is not None else "",
            "created": local_time(created, now) if created is not None else "",
            "kind": "sandbox" if row.get("sandbox") else "real",
        })
    columns = list(SESSION_COLUMNS)
    limit = width(sys.stdout)

    def total(cols) -> int:
        return sum(max(len(title), *(len(c[key]) for c in cells)) for key, title, _ in cols) + 2 * (len(cols) - 1)

    while limit is not None and len(columns) > 1 and total(columns) > limit:
        columns.remove(min(columns, key=lambda col: col[2]))
    table = [[title for _, title, _ in columns]] + [[c[key] for key, _, _ in columns] for c in cells]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip())


MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skip": ("-", "dim")}


def doctor_table(checks) -> None:
    """One row per check on stderr: mark, name, detail, and the fix when there is one, each
    wrapped at word boundaries to the terminal's width (one line per row off a terminal)."""
    name_width = max(len(c.name) for c in checks)
    out = console(sys.stderr)
    columns = width(sys.stderr, out)
    if columns is not None and name_width + 4 > columns // 2:
        name_width = 0  # narrow terminal: the detail goes under the name
    for c in checks:
        mark, style = MARKS[c.status]
        indent = name_width + 4 if name_width else 4
        lines = []
        if name_width:
            lines += fit(f"{mark} {c.name.ljust(name_width)}  {sanitize(c.detail)}", columns, indent)
        else:
            lines += [f"{mark} {c.name}", *fit(" " * indent + sanitize(c.detail), columns)]
        if c.fix and c.status != "ok":
            lines += fit(" " * indent + f"fix: {sanitize(c.fix)}", columns, 5)
        for line in lines:
            if out is not None:
                out.out(line, style=style if c.status != "ok" else None, highlight=False)
            else:
                click.echo(line, err=True)
