"""sessions.prompt_and_check, the operator's entries for a session just delivered, without a
terminal or Click: entries from a list, the retries a reporter is told, on a real SQLite store."""

from __future__ import annotations

import pytest

from voice2fa_cli import sessions
from voice2fa_cli.errors import Rejected
from voice2fa_cli.stores import StoreSpec, open_store

NUMBER = "+15551234567"
CODE = "481516"


class Told:
    def __init__(self) -> None:
        self.lines: list[tuple[bool, str]] = []

    def verdict(self, ok: bool, text: str) -> None:
        self.lines.append((ok, text))


@pytest.fixture
def where(state_dir) -> StoreSpec:
    spec = StoreSpec(state_dir=state_dir)
    with open_store(spec) as store:
        store.create_session(session_id="s1", number=NUMBER, code=CODE, ttl=600.0, max_attempts=5,
                             call_sid=None, call_status=None)
    return spec


def entries(*lines: str | None):
    given = list(lines)
    return lambda: given.pop(0)


def run(where, *lines, interactive: bool):
    told = Told()
    verdict = sessions.prompt_and_check(where, NUMBER, "s1", entries(*lines), told, interactive=interactive)
    return verdict, told.lines


def test_on_a_terminal_a_non_code_and_a_wrong_code_ask_again(where):
    verdict, told = run(where, "12", "000000", CODE, interactive=True)
    assert verdict.verified
    assert told == [(False, "a code is 6 to 10 digits; try again"),
                    (False, "wrong code (4 attempts left); try again")]


def test_off_a_terminal_one_entry_is_all_there_is(where):
    verdict, told = run(where, "000000", CODE, interactive=False)
    assert (verdict.verified, verdict.reason, told) == (False, "wrong code (4 attempts left)", [])


@pytest.mark.parametrize("interactive", [True, False])
def test_no_entry_leaves_the_session_open_and_counts_no_attempt(where, interactive):
    with pytest.raises(Rejected) as info:
        run(where, None, interactive=interactive)
    assert info.value.message == "no code entered; the session stays open for `voice2fa verify +15551234567`"
    assert sessions.newest_open(where, NUMBER).attempts_left == 5


def test_off_a_terminal_a_non_code_is_rejected_without_an_attempt(where):
    with pytest.raises(Rejected) as info:
        run(where, "12", interactive=False)
    assert info.value.message == "the entry is not a code of 6 to 10 digits; the session stays open"
    assert sessions.newest_open(where, NUMBER).attempts_left == 5


def test_the_sandbox_points_at_verify_sandbox():
    assert sessions.verify_command(NUMBER, True) == "voice2fa verify --sandbox +15551234567"
    assert sessions.verify_command(NUMBER, False) == "voice2fa verify +15551234567"
