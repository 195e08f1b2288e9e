"""What `verify` and `sessions` do with the store: check a code, list, purge.

Kept apart from flow.py (which needs asyncio and aiohttp) so that `verify` starts fast; the
store itself is imported only when a database exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from voice2fa_cli.config import DB_NAME, SANDBOX_DB_NAME

if TYPE_CHECKING:
    from voice2fa_cli.store import Session


@dataclass(frozen=True)
class Verdict:
    verified: bool
    reason: str  # for the operator; never contains the code
    session: Session | None
    attempts_left: int = 0

    @property
    def may_retry(self) -> bool:
        """A wrong code on a session that stays open: another attempt may follow."""
        return not self.verified and self.session is not None and self.session.is_open and self.attempts_left > 0


def _no_session(number: str, sandbox: bool) -> Verdict:
    where = "sandbox session" if sandbox else "open session"
    send = f"voice2fa send --sandbox {number}" if sandbox else f"voice2fa send {number}"
    return Verdict(False, f"no {where} for {number}: run `{send}` first", None)


def check(state_dir: Path, number: str, code: str, session_id: str | None = None, *, sandbox: bool = False) -> Verdict:
    """Check a code against the newest session of `number` (or the given session): real
    sessions only, or with `sandbox` the sandbox's only."""
    if not (state_dir / (SANDBOX_DB_NAME if sandbox else DB_NAME)).exists():
        return _no_session(number, sandbox)  # a fast answer; the store checks everything it opens
    from voice2fa_cli.store import NoStore, Store

    try:
        store = Store.open(state_dir, create=False, sandbox=sandbox)
    except NoStore:
        return _no_session(number, sandbox)
    with store:
        return store.check(number, code, session_id=session_id)


def recent_sessions(state_dir: Path, limit: int) -> tuple[float, list[Session]]:
    """The time of reading (to tell expired sessions) and the newest sessions, real and
    sandbox together (each says which it is), newest first."""
    import time

    from voice2fa_cli.store import NoStore, Store

    now, lists = time.time(), []
    for sandbox in (False, True):
        try:
            store = Store.open(state_dir, create=False, sandbox=sandbox)
        except NoStore:
            continue
        with store:
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


def purge(state_dir: Path) -> int:
    """Remove expired sessions from both stores; how many."""
    from voice2fa_cli.store import NoStore, Store

    removed = 0
    for sandbox in (False, True):
        try:
            store = Store.open(state_dir, create=False, sandbox=sandbox)
        except NoStore:
            continue
        with store:
            removed += store.purge()
    return removed


def newest_open(state_dir: Path, number: str, *, sandbox: bool = False) -> Session | None:
    """The session a code for `number` would be checked against, or None (creates nothing)."""
    if not (state_dir / (SANDBOX_DB_NAME if sandbox else DB_NAME)).exists():
        return None
    from voice2fa_cli.store import NoStore, Store

    try:
        store = Store.open(state_dir, create=False, sandbox=sandbox)
    except NoStore:
        return None
    with store:
        session = store.newest(number)
        return session if session is not None and session.is_open and store.clock() < session.expires_at else None
