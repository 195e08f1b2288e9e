"""What `verify` and `sessions` do with the store: check a code (or the codes an operator
enters for a session just delivered), list, purge.

Kept apart from flow.py (which needs asyncio and aiohttp) so that `verify` starts fast; the
store itself is imported only when a database exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from voice2fa_cli.errors import Rejected
from voice2fa_cli.policy import Session, Verdict, no_session
from voice2fa_cli.stores.base import NoStore, SessionStore, StoreSpec
from voice2fa_cli.stores.statedir import DB_NAME, SANDBOX_DB_NAME


def check(where: StoreSpec | Path, number: str, code: str, session_id: str | None = None, *,
          sandbox: bool = False) -> Verdict:
    """Check a code against the newest session of `number` (or the given session): real
    sessions only, or with `sandbox` the sandbox's only. `where`: the store settings, or the
    state dir of the SQLite store."""
    from voice2fa_cli.stores import open_store

    spec = where if isinstance(where, StoreSpec) else StoreSpec(state_dir=where)
    if not spec.shared and not (spec.state_dir / (SANDBOX_DB_NAME if sandbox else DB_NAME)).exists():
        return no_session(number, sandbox)  # a fast answer; the store checks everything it opens

    try:
        store = open_store(spec, create=False, sandbox=sandbox)
    except NoStore:
        return no_session(number, sandbox)
    with store:
        return store.check(number, code, session_id=session_id)


def verify_command(number: str, sandbox: bool) -> str:
    """The command that checks a code for `number` later (its sandbox sessions, or the real ones)."""
    return f"voice2fa verify --sandbox {number}" if sandbox else f"voice2fa verify {number}"


class Reporter(Protocol):
    """Where the operator is told why an entry is asked again (ui.Reporter)."""

    def verdict(self, ok: bool, text: str) -> None: ...


def prompt_and_check(where: StoreSpec | Path, number: str, session_id: str, read_code: Callable[[], str | None],
                     reporter: Reporter, *, interactive: bool, sandbox: bool = False) -> Verdict:
    """Check the code the operator enters for the session just delivered. `read_code` gives
    one entry, None when none was entered. On a terminal (`interactive`) an entry that is not
    a code, or a wrong code while the session stays open, is reported and asked again;
    otherwise one entry is all there is. No entry, or (off a terminal) one that is not a code,
    is Rejected with no attempt counted, the session left open."""
    from voice2fa_cli import otp

    check_later = verify_command(number, sandbox)
    while True:
        entry = read_code()
        if entry is None:
            raise Rejected(f"no code entered; the session stays open for `{check_later}`")
        code = otp.normalise(entry)
        if code is None:
            if interactive:
                reporter.verdict(False, "a code is 6 to 10 digits; try again")
                continue
            raise Rejected("the entry is not a code of 6 to 10 digits; the session stays open")
        verdict = check(where, number, code, session_id=session_id, sandbox=sandbox)
        if not (interactive and verdict.may_retry):
            return verdict
        reporter.verdict(False, f"{verdict.reason}; try again")


def _both_stores(where: StoreSpec | Path) -> Iterator[SessionStore]:
    """The real store, then the sandbox's, each open for the caller's block; one that holds
    nothing yet (SQLite) is skipped."""
    from voice2fa_cli.stores import open_store

    for sandbox in (False, True):
        try:
            store = open_store(where, create=False, sandbox=sandbox)
        except NoStore:
            continue
        with store:
            yield store


def recent_sessions(where: StoreSpec | Path, limit: int) -> tuple[float, list[Session]]:
    """The time of reading (to tell expired sessions) and the newest sessions, real and
    sandbox together (each says which it is), newest first."""
    import time

    now, lists = time.time(), []
    for store in _both_stores(where):
        now = store.clock()
        lists.append(store.recent(limit))
    return now, _merge(lists, limit)


def _merge(lists: list[list[Session]], limit: int) -> list[Session]:
    """Each store's own order (its sequence) kept; between the two, the later creation first."""
    heads = [list(rows) for rows in lists]
    out: list[Session] = []
    while len(out) < limit and any(heads):
        best = max((rows for rows in heads if rows), key=lambda rows: rows[0].created_at)
        out.append(best.pop(0))
    return out


def purge(where: StoreSpec | Path) -> int:
    """Remove expired sessions from both stores; how many."""
    return sum(store.purge() for store in _both_stores(where))


def newest_open(where: StoreSpec | Path, number: str, *, sandbox: bool = False) -> Session | None:
    """The session a code for `number` would be checked against, or None (creates nothing)."""
    from voice2fa_cli.stores import open_store
    from voice2fa_cli.stores.base import NoStore

    spec = where if isinstance(where, StoreSpec) else StoreSpec(state_dir=where)
    if not spec.shared and not (spec.state_dir / (SANDBOX_DB_NAME if sandbox else DB_NAME)).exists():
        return None
    try:
        store = open_store(spec, create=False, sandbox=sandbox)
    except NoStore:
        return None
    with store:
        session = store.newest(number)
        return session if session is not None and session.is_open and store.clock() < session.expires_at else None
