"""The daemon's wiring: readers grouped per RS-485 line, health, GPIO door inputs, runtime
privacy checks, camera credentials kept out of reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config.base import SecretRef
from gateway.config.readers import ReaderConfig
from gateway.gate.readers import bus_key, open_readers
from tests.conftest import built_gateway


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

    async def main() -> dict[str, object]:
        async with built_gateway(minimal_config) as gw:
            return dict(gw.health())

    health = asyncio.run(main())
    assert health["version"]
    assert health["storage"] == "ok"
    assert "services" in health
    assert health["readers"] == {"entry": "offline"}  # nothing listens on its port


def test_gpio_door_inputs_drive_the_door(minimal_config: Path) -> None:
    """Contact (NC), exit button and tamper on GPIO lines reach the door's state machine."""
    import asyncio

    from gateway.hardware.io import FakeInputs, Wiring

    text = minimal_config.read_text().replace(
        'relay = { kind = "osdp", output = 0 }',
        'relay = { kind = "osdp", output = 0 }\n'
        'contact = { kind = "gpio", chip = "/dev/gpiochip0", line = 17, '
        "normally_closed = true, debounce_ms = 0 }\n"
        'exit_button = { kind = "gpio", chip = "/dev/gpiochip0", line = 27, debounce_ms = 0 }\n'
        'tamper = { kind = "gpio", chip = "/dev/gpiochip1", line = 4, debounce_ms = 0 }',
    )
    minimal_config.write_text(text)
    sources: dict[str, FakeInputs] = {}

    def fake_factory(chip: str, lines: dict[int, Wiring], name: str, stable_s: float) -> FakeInputs:
        assert stable_s == 0.0
        sources[chip] = FakeInputs(name, lines)
        return sources[chip]

    def prepare(gw: Any) -> None:
        gw.gpio_inputs_factory = fake_factory

    async def main() -> list[str]:
        kinds: list[str] = []
        async with built_gateway(minimal_config, prepare) as gw:
            daemon = gw.daemon
            assert gw.controller is not None
            door = gw.controller.doors["main"].controller
            door.on_event = lambda e: kinds.append(e.kind)
            [spec] = [s for s in daemon.services if s.name == "door-main-gpio-inputs"]
            task = asyncio.create_task(spec.run())
            for _ in range(50):
                if len(sources) == 2:
                    break
                await asyncio.sleep(0.01)
            assert set(sources) == {"/dev/gpiochip0", "/dev/gpiochip1"}
            main_chip, other = sources["/dev/gpiochip0"], sources["/dev/gpiochip1"]
            assert main_chip.wiring == {17: Wiring.NC, 27: Wiring.NO}
            # Pull-ups: a raw level True means the circuit is open. The NC contact opens its
            # circuit when the door opens; NO buttons close theirs (level low) when pressed.
            main_chip.set(17, False, 0.0)  # door closed
            main_chip.set(17, True, 0.1)  # opened while locked: forced
            await asyncio.sleep(0.05)
            main_chip.set(17, False, 0.2)  # closed again: relocked
            await asyncio.sleep(0.05)
            main_chip.set(27, False, 0.3)  # exit button pressed: unlock
            await asyncio.sleep(0.05)
            other.set(4, False, 0.4)  # tamper switch
            await asyncio.sleep(0.05)
            task.cancel()
            return kinds

    kinds = asyncio.run(main())
    assert kinds == [
        "forced_open",
        "closed",
        "forced_open_cleared",
        "relocked",
        "exit_request",
        "unlocked",
        "tamper",
    ], kinds


def test_private_space_camera_refused_at_runtime_too() -> None:
    """Config validation rejects it; if a private camera ever reached the face path builder
    (e.g. a bypassed validator), the runtime check refuses it again with an event."""
    from gateway.config.root import load_config
    from gateway.gate.face_paths import camera_allowed
    from gateway.mqtt import events as ev

    cfg = load_config(Path(__file__).parents[2] / "config" / "gateway.example.toml", env=False)
    status: dict[str, str] = {}
    emitted: list[ev.BaseEvent] = []
    assert camera_allowed(cfg, "north-cam", status, emitted.append)
    cam = cfg.cameras["north-cam"]
    object.__setattr__(cam, "space", type(cam.space)("private"))
    assert not camera_allowed(cfg, "north-cam", status, emitted.append)
    assert status["north-cam"] == "disabled: private_space"
    [event] = emitted
    assert isinstance(event, ev.FacePathDisabled)
    assert event.reason is ev.FacePathReason.PRIVATE_SPACE


def test_camera_credentials_never_reach_logs_or_doctor() -> None:
    from gateway.cli.doctor import check_camera
    from gateway.gate.camera import redact_url

    url = "rtsp://admin:s3cret@127.0.0.1:9/stream1"
    assert redact_url(url) == "rtsp://***@127.0.0.1:9/stream1"
    assert redact_url("/dev/video0") == "/dev/video0"
    assert redact_url("http://10.0.0.5:8080/video.mjpg") == "http://10.0.0.5:8080/video.mjpg"
    check = check_camera("gate-cam", url, 1.0)  # nothing listens on port 9
    assert check.status == "FAIL"
    assert "s3cret" not in check.detail
    assert "admin" not in check.detail
