"""The error edge of every command: a domain error becomes one line on stderr (and, with
--json, the command's JSON object on stdout) and its exit code; and running the async core
until it ends or SIGINT/SIGTERM interrupts it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from voice2fa_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, Voice2faError

# Every --json output has one shape per command: these keys, on every outcome (schemas/*.json).
JSON_SHAPES: dict[str, dict] = {
    "send": {"session_id": None, "number": None, "call_sid": None, "call_status": None, "verified": None,
             "expires_at": None, "delivered": None, "attempts_left": None, "sandbox": False, "error": None,
             "exit_code": 0},
    "verify": {"number": None, "verified": False, "session_id": None, "reason": None, "attempts_left": None,
               "sandbox": None, "error": None, "exit_code": 0},
    "sessions": {"sessions": [], "error": None, "exit_code": 0},
    "purge": {"removed": None, "error": None, "exit_code": 0},
    "doctor": {"ok": False, "problems": None, "dotenv": None, "checks": [], "error": None, "exit_code": 0},
    "sandbox": {"SIGNALWIRE_SPACE": None, "SIGNALWIRE_PROJECT": None, "SIGNALWIRE_TOKEN": None,
                "SIGNALWIRE_NUMBER": None, "SIGNALWIRE_SIGNING_KEY": None, "error": None, "exit_code": 0},
}


class Interrupted(Exception):
    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)
        self.message = message


def fail(json_out: bool, payload: dict, message: str, code: int, hint: str | None = None) -> None:
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
        fail(json_out, payload, exc.message, exc.exit_code, exc.hint)
    except Interrupted as exc:
        fail(json_out, payload, exc.message, EXIT_INTERRUPTED)
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise  # usage errors: OneLineErrors renders them
    except Exception as exc:  # a bug: say so in one line, never a traceback unless asked
        if verbose:
            import traceback

            traceback.print_exc()
        fail(json_out, payload, f"internal error ({type(exc).__name__})", EXIT_INTERNAL,
             "a bug in voice2fa: run with -v for the traceback and report it" if verbose is not None else
             "a bug in voice2fa: please report it")


def run_async(coro):
    """Run `coro`; SIGINT and SIGTERM cancel it (so it can hang up) and raise Interrupted."""
    import asyncio

    from voice2fa_cli.signals import until_stopped

    async def main():
        task = asyncio.current_task()
        assert task is not None  # asyncio.run runs main as a task
        with until_stopped(task.cancel):
            return await coro

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted() from None
