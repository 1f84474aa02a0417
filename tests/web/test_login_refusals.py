"""Every refused login gets the same answer: an unknown account, a wrong password and a
locked account (even with the right password) cannot be told apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from gateway.store import database as store
from gateway.web import accounts
from tests.web.console import login as console_login

PASSWORD = "a long enough password"


def test_every_refusal_has_one_message(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "state.db")
    accounts.add_account(db, "office", "operator", PASSWORD, actor="test")
    policy = accounts.LoginPolicy(max_failures=2, lockout_s=600.0)
    messages = set()
    for name, password in (("nobody", PASSWORD), ("office", "wrong"), ("office", "wrong")):
        with pytest.raises(accounts.AccountError) as e:
            console_login(db, name, password, policy=policy)
        messages.add(str(e.value))
    with pytest.raises(accounts.AccountError) as locked:  # the right password, but locked
        console_login(db, "office", PASSWORD, policy=policy)
    messages.add(str(locked.value))
    assert messages == {accounts.REFUSED}
    db.conn.close()


def _failures(db: sqlite_utils.Database, name: str) -> tuple[int, float | None]:
    row = db.execute(
        "SELECT failures, locked_until FROM web_accounts WHERE name = ?", [name]
    ).fetchone()
    return int(row[0]), row[1]


def test_parallel_wrong_guesses_all_count(tmp_path: Path) -> None:
    """Each login reads its record before the slow check: N guesses in flight at once
    (from N addresses) count N failures, not one."""
    db = store.connect(tmp_path / "state.db")
    accounts.add_account(db, "office", "operator", PASSWORD, actor="test")
    policy = accounts.LoginPolicy(max_failures=10, lockout_s=600.0)
    records = [accounts.login_record(db, "office") for _ in range(4)]  # all before any ends
    for record in records:
        with pytest.raises(accounts.AccountError):
            accounts.finish_login(db, record, False, policy=policy, now=1000.0)
    assert _failures(db, "office") == (4, None)
    db.conn.close()


def test_a_lock_set_meanwhile_holds(tmp_path: Path) -> None:
    """A lock set by other guesses while this login was checking its password holds: the
    right password is refused, and a late wrong guess neither lifts nor extends the lock."""
    db = store.connect(tmp_path / "state.db")
    accounts.add_account(db, "office", "operator", PASSWORD, actor="test")
    policy = accounts.LoginPolicy(max_failures=2, lockout_s=600.0)
    right, late_wrong = accounts.login_record(db, "office"), accounts.login_record(db, "office")
    for _ in range(2):  # the lock, set while the two above were being checked
        with pytest.raises(accounts.AccountError):
            console_login(db, "office", "wrong", policy=policy, now=1000.0)
    assert _failures(db, "office") == (0, 1600.0)
    with pytest.raises(accounts.AccountError) as e:
        accounts.finish_login(db, right, True, policy=policy, now=1001.0)
    assert str(e.value) == accounts.REFUSED
    with pytest.raises(accounts.AccountError):
        accounts.finish_login(db, late_wrong, False, policy=policy, now=1002.0)
    assert _failures(db, "office") == (0, 1600.0)
    assert db.execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0] == 0
    token, session = accounts.finish_login(db, right, True, policy=policy, now=1601.0)
    assert token  # the lock ends when it says
    assert session.role == "operator"
    db.conn.close()
