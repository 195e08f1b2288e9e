"""The server's log: one JSON object per line on stderr, for requests (the access log) and for
events (calls, checks, start and stop). Never a code (but `--sandbox`'s: see CallReporter), a
token, a secret or a request body: the webhook's token path segment is replaced before a line
is written, query strings are dropped, and only the fields named here are written."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import TextIO

from voice2fa_cli.voice.transcript import readings

_TOKEN = re.compile(r"/v/[^/]+")


def safe_path(path: str) -> str:
    """A request path fit for the log: no query string, the call token replaced."""
    path = path.split("?", 1)[0]
    return _TOKEN.sub("/v/-", path)[:200]


class Log:
    def __init__(self, stream: TextIO | None = None, clock=time.time) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock

    def write(self, kind: str, **fields: object) -> None:
        line = json.dumps({"ts": round(self.clock(), 3), "kind": kind, **fields}, separators=(",", ":"),
                          ensure_ascii=True, default=str)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone: serving goes on


class CallReporter:
    """The flow's reporter for one call of the server: its steps as log lines. What the callee
    heard (it holds the code) is never written, except by `--sandbox`, whose simulated callee's
    code (a sandbox code, which never verifies a real number) is one line of kind "sandbox", so
    that a developer can finish the flow: `jq -r 'select(.kind=="sandbox").heard'`."""

    def __init__(self, log: Log, verification: str, *, sandbox: bool = False) -> None:
        self.log = log
        self.verification = verification
        self.sandbox = sandbox
        self.shown: set[str] = set()

    def warn(self, text: str) -> None:
        self.log.write("call", verification=self.verification, warning=text)

    def debug(self, text: str) -> None:
        pass

    def step(self, event: str, elapsed: float, detail: str | None = None) -> None:
        self.log.write("call", verification=self.verification, event=event, elapsed=round(elapsed, 3))

    def heard(self, lines: list[str]) -> None:
        if not self.sandbox:
            return
        for code in dict.fromkeys(readings(lines)):
            if code not in self.shown:
                self.shown.add(code)
                self.log.write("sandbox", verification=self.verification, heard=code)


class ServerReporter:
    """The webhook Server's reporter (floods, open files): warnings as log lines."""

    def __init__(self, log: Log, listener: str) -> None:
        self.log = log
        self.listener = listener

    def warn(self, text: str) -> None:
        self.log.write("server", listener=self.listener, warning=text)

    def debug(self, text: str) -> None:
        pass
