"""What `verify` and `sessions` do with the store: check a code, list, purge.

Kept apart from flow.py (which needs asyncio and aiohttp) so that `verify` starts fast; the
store itself is imported only when a database exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from voice2fa_cli.config import DB_NAME

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


def _no_session(number: str) -> Verdict:
    return Verdict(False, f"no open session for {number}: run `voice2fa send {number}` first", None)


def check(state_dir: Path, number: str, code: str, session_id: str | None = None) -> Verdict:
    """Check a code against the newest session of `number` (or the given session)."""
    if not (state_dir / DB_NAME).exists():
        return _no_session(number)
    from voice2fa_cli.store import NoStore, Store

    try:
        store = Store.open(state_dir, create=False)
    except NoStore:
        return _no_session(number)
    with store:
        return store.check(number, code, session_id=session_id)


def recent_sessions(state_dir: Path, limit: int) -> tuple[float, list[Session]]:
    """The time of reading (to tell expired sessions) and the newest sessions."""
    import time

    from voice2fa_cli.store import NoStore, Store

    try:
        store = Store.open(state_dir, create=False)
    except NoStore:
        return time.time(), []
    with store:
        return store.clock(), store.recent(limit)


def purge(state_dir: Path) -> int:
    from voice2fa_cli.store import NoStore, Store

    try:
        store = Store.open(state_dir, create=False)
    except NoStore:
        return 0
    with store:
        return store.purge()


def newest_open(state_dir: Path, number: str) -> Session | None:
    """The session a code for `number` would be checked against, or None (creates nothing)."""
    if not (state_dir / DB_NAME).exists():
        return None
    from voice2fa_cli.store import NoStore, Store

    try:
        store = Store.open(state_dir, create=False)
    except NoStore:
        return None
    with store:
        session = store.newest(number)
        return session if session is not None and session.is_open and store.clock() < session.expires_at else None
