"""Issue 15 acceptance on a real Mosquitto: an office and two gates as separate processes
(``gateway roster serve``); one gate stopped while a resident withdraws, a card is revoked,
a person is deleted and a scope narrowed; started again as the daemon's gateway (its
start-up reads the roster before the face path and the readers), it has erased and refuses
before its first decision; the office reports every gate acknowledged; an erasure not
acknowledged in time raised an alert; no identity crossed the broker in clear."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from gateway.credentials.store import Credentials
from gateway.face.gallery import Gallery
from gateway.privacy.notice import load_notice
from gateway.privacy.vault import Vault
from gateway.services import consent as consent_svc
from gateway.services import credentials as creds_svc
from gateway.services import people as people_svc
from gateway.services import roster_office
from gateway.services.withdrawal import withdraw
from tests.conftest import REPO, built_gateway, write_secret
from tests.mosquitto import Mosquitto
from tests.roster.site_procs import Compound, status_json, wait_for
from tests.roster.support import Card

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

PEOPLE = {"Li Wei": 5101, "Wang Fang": 5102, "Zhao Lei": 5103, "Chen Jing": 5104}


class Sniffer:
    """Every message the broker delivers, for the clear-text check."""

    def __init__(self, port: int) -> None:
        self.payloads: list[bytes] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="sniffer")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.payloads.append(msg.topic.encode() + b" " + msg.payload)

    def close(self) -> bytes:
        self.client.loop_stop()
        self.client.disconnect()
        with self.lock:
            return b"\n".join(self.payloads)


@pytest.fixture
def compound(tmp_path: Path) -> Iterator[Compound]:
    with Mosquitto() as broker:
        c = Compound(
            tmp_path,
            broker.port,
            write_secret(tmp_path / "site-key", secrets.token_bytes(32)),
            write_secret(tmp_path / "gates-key", secrets.token_bytes(32)),
        )
        try:
            yield c
        finally:
            c.stop_all()


def _acked_all(c: Compound) -> bool:
    st = status_json(c)
    return bool(st["gates"]) and all(g["behind"] == 0 and g["acked"] > 0 for g in st["gates"])


def _enrol(c: Compound) -> dict[str, str]:
    db, keys = c.office_db()
    vault = Vault.from_keys(keys)
    creds = creds_svc.CredentialDeps(Credentials(db, keys.device, index_key=keys.pin_index_site))
    notice = load_notice(REPO / "config" / "notice.example.txt", "2025-06")
    ids = {}
    for i, (name, card) in enumerate(PEOPLE.items()):
        pid = people_svc.add_person(db, people_svc.NewPerson(name, unit=f"3-40{i}"), actor="t")
        answer = consent_svc.ConsentAnswer(pid, "paper", "t", scope="compound")
        consent_svc.grant(db, notice, answer)
        tpl = np.random.default_rng(i).normal(size=(3, 128)).astype(np.float32)
        vault.store_site_templates(
            db, pid, tpl / np.linalg.norm(tpl, axis=1)[:, None], model="sface"
        )
        creds_svc.add_card(creds, pid, (10, card), actor="t", channel="cli")
        ids[name] = pid
    db.close()
    return ids


def test_offline_gate_erases_and_refuses_before_its_first_decision(compound: Compound) -> None:
    c = compound
    office = c.add_office(erasure_ack_s=1.5)
    north, south = c.add_gate("north"), c.add_gate("south")
    sniffer = Sniffer(c.port)
    ids = _enrol(c)
    for m in (office, north, south):
        c.start(m)
    wait_for("every gate acknowledges the roster", lambda: _acked_all(c), 30)

    c.stop(south)  # the gate goes offline
    db, keys = c.office_db()
    vault = Vault.from_keys(keys)
    ocreds = Credentials(db, keys.device, index_key=keys.pin_index_site)
    withdraw(db, vault, Gallery(), ids["Li Wei"], "paper", vacuum=False)
    creds_svc.revoke_card(
        creds_svc.CredentialDeps(ocreds), ids["Wang Fang"], actor="t", channel="cli"
    )
    people_svc.delete_person(
        people_svc.DeletionDeps(ocreds, vault, Gallery()), ids["Zhao Lei"], actor="t", channel="cli"
    )
    notice = load_notice(REPO / "config" / "notice.example.txt", "2025-06")
    roster_office.narrow_face_scope(db, notice, ids["Chen Jing"], ["north"], actor="t")
    db.close()

    def south_behind() -> bool:
        gates = {g["gate"]: g for g in status_json(c)["gates"]}
        return gates["north"]["behind"] == 0 and gates["south"]["behind"] >= 4

    wait_for("north applies, south is behind", south_behind, 20)
    db, _ = c.office_db()
    wait_for(
        "an alert for south's unacknowledged erasure",
        lambda: (
            db.execute("SELECT count(*) FROM roster_alerts WHERE gate = 'south'").fetchone()[0] > 0
        ),
        10,
    )
    assert db.execute("SELECT count(*) FROM roster_alerts WHERE gate = 'north'").fetchone()[0] == 0
    db.close()

    async def restart_south() -> None:
        async with built_gateway(south.config) as gw:  # the daemon's own start-up
            assert gw.roster is not None
            assert gw.roster.synced.is_set()  # applied during setup(), before any service
            rows = gw.db.execute("SELECT id FROM people").fetchall()
            assert len(rows) == 3  # Zhao Lei deleted; nobody has a name or unit
            assert (
                gw.db.execute("SELECT count(*) FROM people WHERE display_name != ''").fetchone()[0]
                == 0
            )
            # only Wang Fang's face stays (her card was revoked, not her consent): Li Wei
            # withdrew, Zhao Lei was deleted, Chen Jing's face was narrowed to north
            assert gw.db.execute("SELECT count(*) FROM face_keys").fetchone()[0] == 1
            assert gw.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 3
            creds = gw.controller.credentials
            assert creds.identify_card(Card(10, PEOPLE["Wang Fang"])) is None  # revoked
            assert creds.identify_card(Card(10, PEOPLE["Zhao Lei"])) is None  # deleted
            assert creds.identify_card(Card(10, PEOPLE["Li Wei"])) is not None  # card still ok
            assert len(gw.gallery.people()) <= 1
            task = asyncio.create_task(gw.roster.run())
            try:
                await asyncio.to_thread(
                    wait_for, "all gates acknowledged", lambda: _acked_all(c), 20
                )
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(restart_south())
    st = status_json(c, via_cli=True)  # what the operator sees
    assert all(not ch["behind"] for ch in st["changes"])
    assert {g["gate"]: g["behind"] for g in st["gates"]} == {"north": 0, "south": 0}
    # north: Chen Jing's face kept (scope narrowed to north) and Wang Fang's
    c.stop(north)
    import sqlite3

    conn = sqlite3.connect(north.db_path)
    assert conn.execute("SELECT count(*) FROM face_keys").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 3
    conn.close()
    wire = sniffer.close()
    assert b"roster/north/manifest" in wire
    assert b"roster/south/ack" in wire
    for name, card in PEOPLE.items():
        for secret in (name.encode(), ids[name].encode()):
            assert secret not in wire, secret
        # a card number standing alone (inside a timestamp or base64 text it is chance)
        alone = rb"(?<![0-9A-Za-z+/.])" + str(card).encode() + rb"(?![0-9A-Za-z+/.])"
        assert re.search(alone, wire) is None, card
    assert b"3-40" not in wire
