"""Every refused login gets the same answer: an unknown account, a wrong password and a
locked account (even with the right password) cannot be told apart."""

from __future__ import annotations

from pathlib import Path

import pytest

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
