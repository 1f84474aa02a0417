"""``gateway keys rotate --what site``: a new site key; the site-rooted keys (pseudonyms,
PIN transport, person references; on a gate without a gates key also the template
transform) are erased with the old key, the PIN-index key is carried over; faces, cards,
PINs and the audit chain keep working without re-enrolment."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.errors import ConfigError, GatewayError
from gateway.keys import Keys, Purpose, key_id
from gateway.privacy import person_ref
from gateway.services import keys as keys_svc
from gateway.services.keys import SITE_ID_KV, kv_value
from gateway.services.site_rotation import rotate_site
from tests.keys.legacy import legacy_config
from tests.keys.rotation_checks import close_gate, on_disk, open_gate, rotate, still_works

#: The site-rooted purposes a site-key rotation renews (the legacy gate has no gates key:
#: the site key stands in for it, so the template transform is renewed too).
RENEWED = (Purpose.PSEUDONYM, Purpose.PIN_TRANSPORT, Purpose.PERSON_REF, Purpose.TEMPLATE_TRANSFORM)


def _forms(key: bytes) -> tuple[bytes, ...]:
    return key, key.hex().encode(), base64.b64encode(key)


def _keys(config: Path) -> Keys:
    db, keys = open_gate(load_config(config, env=False))
    close_gate(db)
    return keys


def test_site_rotation_erases_the_site_purposes_and_carries_the_pin_index(
    tmp_path: Path, minimal_config: Path
) -> None:
    raw = legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    before = _keys(minimal_config)
    old_ref = person_ref.seal(before.site, "p0")

    rotate(minimal_config, "site")  # exits 0 only when no retired key is left on disk

    keys = still_works(cfg, raw, "site")  # faces (re-transformed), the card, the PIN, audit
    assert keys.site != before.site
    assert keys.pin_index_site == before.pin_index_site  # stored indexes keep matching
    for purpose in RENEWED:
        assert keys.subkey(purpose) != before.subkey(purpose), purpose
    disk = on_disk(cfg, tmp_path / "legacy-keys")
    for key in (before.site, *(before.subkey(p) for p in RENEWED)):
        assert not any(form in disk for form in _forms(key))
    with pytest.raises(GatewayError):
        person_ref.open_ref(keys.site, old_ref)  # a reference sealed before does not open
    assert person_ref.open_ref(keys.site, person_ref.seal(keys.site, "p0")) == "p0"

    rotate(minimal_config, "device")  # the carried PIN-index key outlives a device rotation
    assert still_works(cfg, raw, "device").pin_index_site == before.pin_index_site


def test_the_old_site_key_file_is_refused_naming_the_setting(
    tmp_path: Path, minimal_config: Path
) -> None:
    legacy_config(tmp_path, minimal_config)
    site_file = tmp_path / "legacy-keys" / "site"
    old = site_file.read_bytes()
    rotate(minimal_config, "site")
    new = site_file.read_bytes()
    assert new != old

    site_file.write_bytes(old)  # e.g. a backup of the key directory restored
    with pytest.raises(ConfigError) as err:
        _keys(minimal_config)
    assert "privacy.site_key" in str(err.value)
    assert old.hex() not in str(err.value)
    site_file.write_bytes(new)
    assert _keys(minimal_config).site == new.strip()


def test_an_interrupted_site_rotation_is_finished_at_the_next_load(
    tmp_path: Path, minimal_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    site_file = tmp_path / "legacy-keys" / "site"
    old = site_file.read_bytes()

    def crash(self: object) -> None:
        raise KeyboardInterrupt  # the power cut after the commit, before the key file moved

    monkeypatch.setattr(keys_svc.StagedKey, "commit", crash)
    db, keys = open_gate(cfg)
    try:
        with pytest.raises(KeyboardInterrupt):
            rotate_site(db, keys, cfg, actor="t")
        recorded = kv_value(db.conn, SITE_ID_KV)
    finally:
        close_gate(db)
    monkeypatch.undo()
    assert site_file.read_bytes() == old
    staged = site_file.with_name("site.new")
    assert key_id(staged.read_bytes().strip()) == recorded

    after = _keys(minimal_config)  # finishes the move
    assert key_id(after.site) == recorded
    assert not staged.exists()


def test_a_site_rotation_refuses_a_key_it_already_uses(
    tmp_path: Path, minimal_config: Path
) -> None:
    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    db, keys = open_gate(cfg)
    try:
        with pytest.raises(keys_svc.RotationError, match="already uses"):
            rotate_site(db, keys, cfg, actor="t", new_key=keys.site)
        with pytest.raises(keys_svc.RotationError, match="at least"):
            rotate_site(db, keys, cfg, actor="t", new_key=b"short")
        assert kv_value(db.conn, SITE_ID_KV) is None  # nothing changed
    finally:
        close_gate(db)


def test_a_roster_gate_takes_its_site_key_from_the_office(
    tmp_path: Path, minimal_config: Path
) -> None:
    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    gate_cfg = cfg.model_copy(update={"roster": cfg.roster.model_copy(update={"role": "gate"})})
    db, keys = open_gate(cfg)
    try:
        with pytest.raises(keys_svc.RotationError, match="comes from its office"):
            rotate_site(db, keys, gate_cfg, actor="t")
        assert kv_value(db.conn, SITE_ID_KV) is None
    finally:
        close_gate(db)


def test_pin_args_from_the_config_use_the_carried_pin_index_key(
    tmp_path: Path,
    minimal_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io
    import json

    from gateway.cli.main import main
    from gateway.credentials.hashing import pin_index_for

    legacy_config(tmp_path, minimal_config)
    before = _keys(minimal_config)
    rotate(minimal_config, "site")
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("482913\n"))
    assert main(["--config", str(minimal_config), "mqtt", "pin-args", "p0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pin_index"] == pin_index_for("482913", before.pin_index_site)
    after = _keys(minimal_config)
    assert person_ref.open_ref(after.site, doc["person_ref"]) == "p0"  # the new site key
