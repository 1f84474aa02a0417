"""Readers on one RS-485 line share one OSDP control panel; others get their own."""

from __future__ import annotations

from pathlib import Path

from gateway.app import bus_key, open_readers
from gateway.config import ReaderConfig, SecretRef


def _osdp(url: str, address: int, key: Path) -> ReaderConfig:
    return ReaderConfig(url=url, protocol="osdp", address=address, scbk=SecretRef(file=key))


def test_two_pds_on_one_line_share_a_bus(tmp_path: Path) -> None:
    key = tmp_path / "scbk"
    key.write_text("000102030405060708090a0b0c0d0e0f")
    key.chmod(0o600)
    readers = {
        "entry": _osdp("osdp+socket://127.0.0.1:7001", 101, key),
        "side": _osdp("osdp+socket://127.0.0.1:7001?address=102", 102, key),
        "garage": _osdp("osdp+socket://127.0.0.1:7002", 101, key),
    }
    assert bus_key(readers["entry"]) == bus_key(readers["side"])
    assert bus_key(readers["entry"]) != bus_key(readers["garage"])
    built = open_readers(readers)
    assert set(built) == {"entry", "side", "garage"}
    entry, side, garage = built["entry"], built["side"], built["garage"]
    assert entry.bus is side.bus  # type: ignore[attr-defined]
    assert entry.bus is not garage.bus  # type: ignore[attr-defined]
    assert [r.address for r in entry.bus.readers] == [101, 102]  # type: ignore[attr-defined]


def test_health_summary_is_built_without_recursion(minimal_config: Path) -> None:
    import asyncio

    from gateway import store
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.daemon import Daemon

    async def main() -> dict[str, object]:
        cfg = load_config(minimal_config, env=False)
        daemon = Daemon(minimal_config, cfg)
        daemon.db = store.connect(cfg.storage.database_path)
        gw = Gateway(daemon)
        await gw.setup()
        try:
            return daemon.health()
        finally:
            await gw._close()
            daemon.db.close()

    health = asyncio.run(main())
    assert health["version"]
    assert health["storage"] == "ok"
    assert "services" in health
