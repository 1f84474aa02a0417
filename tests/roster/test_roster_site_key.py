"""A site-key rotation at the office reaches every gate through the roster (sealed for each
gate alone), also a gate that was offline and gets a snapshot, and a gate registered after
the rotation; each gate adopts the new key and the office's carried PIN-index key, so PINs
set before and after keep working and the pseudonyms agree with the office's."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.config.base import SecretRef
from gateway.credentials.store import Credentials
from gateway.gate.roster_wiring import site_key_status
from gateway.keys import Keys, key_id
from gateway.privacy import audit
from gateway.privacy.roster_crypto import (
    RosterError,
    change_aad,
    gate_private,
    open_sealed,
    unb64,
)
from gateway.privacy.vault import Vault
from gateway.services import credentials as creds_svc
from gateway.services import roster_gate, roster_office
from gateway.services.keys import SITE_ID_KV, RotationError, check_current, kv_value, read_carried
from gateway.services.site_rotation import adopt_from_roster, rotate_site
from gateway.store.tx import transaction
from tests.conftest import write_secret
from tests.roster.support import (
    GATES_KEY,
    SITE,
    SITE_KEY,
    Gate,
    Office,
    make_gate,
    make_office,
)


def _cfg(site_file: Path, role: str) -> Any:
    """What the site rotation reads of a configuration."""
    return SimpleNamespace(
        privacy=SimpleNamespace(
            site_key=SecretRef(file=site_file),
            template_protection="orthogonal",
            renotice_grace_days=30.0,
        ),
        roster=SimpleNamespace(role=role),
        site=SimpleNamespace(id=SITE),
    )


def _office(tmp: Path) -> tuple[Office, Any]:
    office = make_office(tmp)
    cfg = _cfg(write_secret(tmp / "office-site-key", SITE_KEY), "office")
    office.deps = roster_office.office_deps(cfg, office.keys, office.db, office.vault)
    return office, cfg


def _office_restarted(tmp: Path, office: Office, cfg: Any) -> Keys:
    """The office's keys, vault and roster deps as it loads them after its rotation."""
    site = SecretRef(file=tmp / "office-site-key").read_bytes()
    keys = replace(office.keys, site=site)
    keys = replace(keys, carried=read_carried(office.db.conn, keys.device))
    office.keys, office.vault = keys, Vault.from_keys(keys)
    office.deps = roster_office.office_deps(cfg, keys, office.db, office.vault)
    office.creds = Credentials(office.db, keys.device, index_key=keys.pin_index_site)
    return keys


def _adopter(db: Any, keys: Keys, cfg: Any) -> Any:
    """``adopt_keys`` as :func:`gateway.gate.roster_wiring.gate_agent` wires it."""
    status = site_key_status(cfg, keys, lambda why: None)
    return functools.partial(adopt_from_roster, db, keys, cfg, status=status)


def _follow(tmp: Path, gate: Gate, site_key: SecretRef | None = None) -> Gate:
    """The gate adopting the keys its roster carries, wired as the daemon wires it
    (:func:`site_key_status`: a credential-held ``site_key`` cannot adopt)."""
    cfg = _cfg(write_secret(tmp / f"{gate.name}-site-key", gate.keys.site), "gate")
    if site_key is not None:
        cfg.privacy.site_key = site_key
    status = site_key_status(cfg, gate.keys, lambda why: None)
    adopt = functools.partial(adopt_from_roster, gate.db, gate.keys, cfg, status=status)
    gate.deps = replace(gate.deps, adopt_keys=adopt, site_key=status)
    return gate


def _restarted(tmp: Path, gate: Gate) -> Keys:
    """The gate's keys as it loads them after its restart (held writes released)."""
    audit.hold_writes(gate.db, None)  # a new process
    site = SecretRef(file=tmp / f"{gate.name}-site-key").read_bytes()
    keys = Keys(gate.keys.device, site, GATES_KEY)
    return replace(keys, carried=read_carried(gate.db.conn, keys.device))


def _pin_works(gate: Gate, keys: Keys, pin: str) -> bool:
    creds = Credentials(gate.db, keys.device, index_key=keys.pin_index_site, carried=keys.carried)
    return creds.identify_pin(pin, reader="entry", now=2e9) is not None


def test_a_site_rotation_at_the_office_reaches_every_gate(tmp_path: Path) -> None:
    office, office_cfg = _office(tmp_path)
    g1 = _follow(tmp_path, make_gate(tmp_path, "north", office))
    g2 = _follow(tmp_path, make_gate(tmp_path, "south", office))
    pid = office.add("Lin", card=4242)
    creds_svc.set_pin(office.cdeps, pid, "482913", actor="t", channel="cli")
    broker: dict[str, bytes] = {}
    office.publish(broker)
    g1.sync(broker, office)
    g2.sync(broker, office)
    old_pin_index = office.keys.pin_index_site

    rotation = rotate_site(office.db, office.keys, office_cfg, actor="ops")

    # the office restarts with the new keys: every change from now on carries them too
    office_keys = _office_restarted(tmp_path, office, office_cfg)
    new_site = office_keys.site
    assert new_site != SITE_KEY
    assert office_keys.pin_index_site == old_pin_index  # carried over
    assert rotation.what == "site"
    office.publish(broker)

    g1.sync(broker, office)  # online: the keys change
    assert kv_value(g1.db.conn, SITE_ID_KV) == rotation.new_key_id
    north = _restarted(tmp_path, g1)
    assert north.site == new_site
    assert north.pin_index_site == old_pin_index
    assert north.pseudonym == office_keys.pseudonym  # events resolve at the office
    assert north.pseudonym != g1.keys.pseudonym
    assert _pin_works(g1, north, "482913")  # the PIN stored before the rotation

    # the south gate was offline through several changes: it gets a snapshot
    for n in range(3):
        office.add(f"late-{n}")
    office.publish(broker, max_pending=1)
    assert any(t.startswith("south/s/") for t in broker)
    g2.sync(broker, office)
    south = _restarted(tmp_path, g2)
    assert south.site == new_site
    assert south.pseudonym == office_keys.pseudonym
    assert _pin_works(g2, south, "482913")

    # a PIN set at the office after the rotation (its carried index key) works at the gates
    creds_svc.set_pin(
        office.cdeps,
        pid,
        "739154",
        actor="t",
        channel="cli",
    )
    office.publish(broker)
    g1.sync(broker, office)
    assert _pin_works(g1, north, "739154")
    assert not _pin_works(g1, north, "000000")


def test_a_gate_registered_after_the_rotation_gets_the_carried_pin_index(
    tmp_path: Path,
) -> None:
    office, office_cfg = _office(tmp_path)
    north = _follow(tmp_path, make_gate(tmp_path, "north", office))
    pid = office.add("Lin")
    broker: dict[str, bytes] = {}
    office.publish(broker)
    north.sync(broker, office)  # its ack says it adopts a site key
    rotate_site(office.db, office.keys, office_cfg, actor="ops")
    office_keys = _office_restarted(tmp_path, office, office_cfg)
    new_site = office_keys.site
    creds_svc.set_pin(
        office.cdeps,
        pid,
        "482913",
        actor="t",
        channel="cli",
    )

    # installed with the site's current key file: it derives another PIN-index key
    late = make_gate(tmp_path, "east", office)
    late = _follow(tmp_path, late)
    write_secret(tmp_path / "east-site-key", new_site)
    late.keys = replace(late.keys, site=new_site)
    late.deps = replace(
        late.deps,
        adopt_keys=_adopter(late.db, late.keys, _cfg(tmp_path / "east-site-key", "gate")),
    )
    assert late.keys.pin_index_site != office_keys.pin_index_site
    office.publish(broker)
    late.sync(broker, office)
    east = _restarted(tmp_path, late)
    assert east.pin_index_site == office_keys.pin_index_site
    assert _pin_works(late, east, "482913")
    assert kv_value(late.db.conn, SITE_ID_KV) is None  # its site key was already the current


def test_the_keys_change_is_sealed_for_each_gate_alone(tmp_path: Path) -> None:
    office, office_cfg = _office(tmp_path)
    gates = [_follow(tmp_path, make_gate(tmp_path, n, office)) for n in ("north", "south")]
    broker: dict[str, bytes] = {}
    office.publish(broker)
    for gate in gates:
        gate.sync(broker, office)
    rotate_site(office.db, office.keys, office_cfg, actor="ops")
    new_site = SecretRef(file=tmp_path / "office-site-key").read_bytes()
    rows = office.db.execute(
        "SELECT gate, version, sealed FROM roster_changes WHERE op = 'keys' ORDER BY gate"
    ).fetchall()
    assert [r[0] for r in rows] == ["north", "south"]
    north, south = (gate_private(g.keys.device) for g in gates)
    gate, version, sealed = rows[0]
    blob, aad = unb64(sealed, "sealed"), change_aad(SITE, gate, version)
    change = json.loads(open_sealed(north, gate, blob, aad))
    assert (change["op"], change["rid"], change["entry"]) == ("keys", "", None)
    assert unb64(change["sk"], "sk") == new_site
    with pytest.raises(RosterError):
        open_sealed(south, gate, blob, aad)  # another gate's key opens nothing


def test_the_office_refuses_while_a_gate_could_not_adopt(tmp_path: Path) -> None:
    office, office_cfg = _office(tmp_path)
    held = _follow(tmp_path, make_gate(tmp_path, "north", office), SecretRef(credential="site-key"))
    make_gate(tmp_path, "south", office)  # registered, never synced
    broker: dict[str, bytes] = {}
    office.publish(broker)
    held.sync(broker, office)
    before = (tmp_path / "office-site-key").read_bytes()

    with pytest.raises(RotationError) as err:
        rotate_site(office.db, office.keys, office_cfg, actor="ops")

    text = str(err.value)
    assert "north: its privacy.site_key is a systemd credential" in text
    assert "south: has never acknowledged" in text
    assert (tmp_path / "office-site-key").read_bytes() == before  # nothing changed
    assert kv_value(office.db.conn, SITE_ID_KV) is None
    assert not office.db.execute("SELECT 1 FROM roster_changes WHERE op = 'keys'").fetchall()

    # the gates taken out of service: the rotation goes ahead and sends them nothing
    for name in ("north", "south"):
        roster_office.remove_gate(office.db, name, actor="ops")
    rotate_site(office.db, office.keys, office_cfg, actor="ops")
    assert not office.db.execute("SELECT 1 FROM roster_changes").fetchall()
    office.add("Lin")
    office.publish(broker)
    assert not office.db.execute("SELECT 1 FROM roster_changes").fetchall()


def test_a_failed_adoption_is_retried_and_never_blocks_the_roster(tmp_path: Path) -> None:
    office, office_cfg = _office(tmp_path)
    gate = _follow(tmp_path, make_gate(tmp_path, "north", office))
    broker: dict[str, bytes] = {}
    office.publish(broker)
    gate.sync(broker, office)
    adopt = gate.deps.adopt_keys
    assert adopt is not None
    calls: list[int] = []

    def flaky(site: bytes, pin: bytes | None) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return adopt(site, pin)

    gate.deps = replace(gate.deps, adopt_keys=flaky)
    rotation = rotate_site(office.db, office.keys, office_cfg, actor="ops")
    _office_restarted(tmp_path, office, office_cfg)
    office.add("Lin", card=4242)
    office.publish(broker)

    gate.sync(broker, office)  # the person arrives although the adoption failed

    assert gate.creds.identify_card(SimpleNamespace(facility=10, card_number=4242)) is not None
    failed = gate.db.execute("SELECT details FROM audit WHERE action = 'keys.adopt_failed'")
    assert "No space left on device" in failed.fetchone()[0]
    assert kv_value(gate.db.conn, SITE_ID_KV) is None
    assert kv_value(gate.db.conn, roster_gate.PENDING_KEYS_KV) is not None  # kept

    assert roster_gate.adopt_pending(gate.deps)  # at the next start: adopted
    assert kv_value(gate.db.conn, SITE_ID_KV) == rotation.new_key_id
    with pytest.raises(RotationError, match="rotation ran since"):
        check_current(gate.db.conn, gate.keys)  # the old keys in memory: no other rotation
    north = _restarted(tmp_path, gate)
    gate.deps = replace(
        gate.deps,
        adopt_keys=_adopter(gate.db, north, _cfg(tmp_path / "north-site-key", "gate")),
    )
    assert not roster_gate.adopt_pending(gate.deps)  # after the restart: nothing left
    assert kv_value(gate.db.conn, roster_gate.PENDING_KEYS_KV) is None

    # an office restored from a backup of before the rotation sends the old key again
    with pytest.raises(RotationError, match="retired"):
        _adopter(gate.db, north, _cfg(tmp_path / "north-site-key", "gate"))(SITE_KEY, None)


@pytest.mark.mosquitto
def test_over_the_broker_the_gate_adopts_the_key_and_restarts(tmp_path: Path) -> None:
    """The agents on a real Mosquitto: the office's rotation reaches the gate, which adopts
    it and asks the daemon to restart in place once its acknowledgement is out."""
    import asyncio

    from gateway.gate.roster_agent import GateRosterAgent, OfficeRosterAgent, OfficeSettings
    from gateway.mqtt.client import MqttSettings
    from gateway.mqtt.roster_topics import RosterTopics
    from tests.mosquitto import Mosquitto
    from tests.roster.test_roster_mqtt import _converged, _inline, _running, _until

    office, office_cfg = _office(tmp_path)
    north = _follow(tmp_path, make_gate(tmp_path, "north", office))
    office.add("Lin", card=4242)
    restarts: list[str] = []
    topics = RosterTopics("access", SITE)

    with Mosquitto() as broker:
        settings = MqttSettings(port=broker.port)

        def agents() -> list[Any]:
            oa = OfficeRosterAgent(
                office.deps,
                office.signing,
                settings,
                topics,
                _inline,
                settings=OfficeSettings(chunk_bytes=16 * 1024, max_pending=5000, poll_s=0.05),
            )
            ga = GateRosterAgent(
                north.deps, settings, topics, _inline, fetch_wait_s=1.0, restart=restarts.append
            )
            return [oa.run(), ga.run()]

        async def converged() -> None:
            await _until("converged", lambda: _converged(office))

        async def restarted() -> None:
            await _until("restart asked", lambda: bool(restarts))
            await _until("converged", lambda: _converged(office))

        asyncio.run(_running(agents(), converged))
        rotation = rotate_site(office.db, office.keys, office_cfg, actor="ops")  # stopped
        office_keys = _office_restarted(tmp_path, office, office_cfg)
        asyncio.run(_running(agents(), restarted))

    assert restarts == ["site key adopted from the roster"]
    assert kv_value(north.db.conn, SITE_ID_KV) == rotation.new_key_id
    assert _restarted(tmp_path, north).site == office_keys.site


def test_a_gate_that_can_no_longer_adopt_says_so_and_still_applies_the_roster(
    tmp_path: Path,
) -> None:
    office, office_cfg = _office(tmp_path)
    gate = _follow(tmp_path, make_gate(tmp_path, "north", office))
    broker: dict[str, bytes] = {}
    office.publish(broker)
    gate.sync(broker, office)  # it said it adopts; then its key became a credential
    _follow(tmp_path, gate, SecretRef(credential="site-key"))
    rotate_site(office.db, office.keys, office_cfg, actor="ops")
    _office_restarted(tmp_path, office, office_cfg)
    office.add("Lin", card=4242)
    office.publish(broker)

    gate.sync(broker, office)

    assert gate.creds.identify_card(SimpleNamespace(facility=10, card_number=4242)) is not None
    failed = gate.db.execute("SELECT details FROM audit WHERE action = 'keys.adopt_failed'")
    assert "systemd credential" in failed.fetchone()[0]
    assert kv_value(gate.db.conn, SITE_ID_KV) is None
    assert json.loads(gate.acks[-1])["site_key"]["adopts"] is False  # the office sees it
    assert roster_office.site_rotation_blockers(office.db, SITE)[0].startswith("north: its")


def test_an_adoption_whose_key_file_did_not_move_restarts_and_finishes_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.services import keys as keys_svc

    office, office_cfg = _office(tmp_path)
    gate = _follow(tmp_path, make_gate(tmp_path, "north", office))
    broker: dict[str, bytes] = {}
    office.publish(broker)
    gate.sync(broker, office)
    rotation = rotate_site(office.db, office.keys, office_cfg, actor="ops")
    _office_restarted(tmp_path, office, office_cfg)
    office.publish(broker)

    def power_cut(self: object) -> None:
        raise OSError("I/O error")  # after the commit, before the key file moved

    adopt = gate.deps.adopt_keys
    assert adopt is not None
    answers: list[bool] = []

    def recorded(site: bytes, pin: bytes | None) -> bool:
        answers.append(adopt(site, pin))
        return answers[-1]

    gate.deps = replace(gate.deps, adopt_keys=recorded)
    monkeypatch.setattr(keys_svc.StagedKey, "commit", power_cut)
    gate.sync(broker, office)
    monkeypatch.undo()

    assert answers == [True]  # the restart is asked for
    assert kv_value(gate.db.conn, SITE_ID_KV) == rotation.new_key_id
    with pytest.raises(audit.WritesHeldError), transaction(gate.db):  # none under old keys
        audit.append(gate.db, "t", "t.x", "t", {})
    site_file = tmp_path / "north-site-key"
    assert SecretRef(file=site_file).read_bytes() == SITE_KEY  # not moved yet
    cfg = SimpleNamespace(
        privacy=SimpleNamespace(
            gates_key=None, device_key=None, site_key=SecretRef(file=site_file)
        ),
        keys=SimpleNamespace(provider="file"),
    )
    keys_svc.finish_interrupted(cfg, gate.db.conn)  # what the start does
    assert key_id(SecretRef(file=site_file).read_bytes()) == rotation.new_key_id


def test_a_removed_gate_is_cleared_from_the_broker_and_never_registered_again(
    tmp_path: Path,
) -> None:
    import asyncio

    from gateway.gate.roster_agent import OfficeRosterAgent, OfficeSettings
    from gateway.mqtt.roster_topics import RosterTopics
    from tests.roster.test_roster_mqtt import _inline

    office, _ = _office(tmp_path)
    make_gate(tmp_path, "north", office)
    make_gate(tmp_path, "south", office)
    office.add("Lin")
    broker: dict[str, bytes] = {}
    office.publish(broker, max_pending=0)  # a snapshot retained for each gate,
    office.add("Wu")
    office.publish(broker)  # and a change chunk after it
    retained = {t.split("/", 1)[1] for t in broker if t.startswith("north/")}
    assert {"manifest", "s/0"} <= retained
    assert any(t.startswith("c/") for t in retained)

    assert roster_office.remove_gate(office.db, "north", actor="ops") == 2

    assert set(roster_office.pending_clears(office.db)["north"]) >= retained | {"ack"}
    published: list[tuple[str, bytes, bool]] = []

    class Client:
        async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
            published.append((topic, payload, retain))

    agent = OfficeRosterAgent(
        office.deps,
        office.signing,
        Any,
        RosterTopics("access", SITE),
        _inline,
        settings=OfficeSettings(chunk_bytes=16 * 1024, max_pending=5000, poll_s=0.05),
    )
    asyncio.run(agent.step(Client()))  # type: ignore[arg-type]
    cleared = {t for t, payload, keep in published if payload == b"" and keep}
    assert {f"access/{SITE}/roster/north/{s}" for s in retained} <= cleared
    assert not any("/south/" in t for t in cleared)
    assert roster_office.pending_clears(office.db) == {}
    with pytest.raises(RosterError, match="new name"):
        make_gate(tmp_path, "north", office)
    with pytest.raises(RosterError, match="not registered"):
        roster_office.remove_gate(office.db, "north", actor="ops")
