"""The simulator: cameras, OSDP readers and doors, started and stopped together.

``Simulator(config).start()`` binds every port (0 = free; read the real ones back with
``camera_url``/``reader_url``/``api_url``), ``do(action, args)`` is the single entry point
for the HTTP API, the CLI and the scenario runner, ``state()`` is the observable hardware.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from hw_sim.camera import SimCamera
from hw_sim.config import VARIANTS, CameraConfig, SimConfig
from hw_sim.corpus import FaceCorpus
from hw_sim.door import Door
from hw_sim.nir import NirView
from hw_sim.osdp_pd import ReaderError, ReaderSettings, SimReader
from hw_sim.scenes import Actor
from hw_sim.stereo import StereoView

log = logging.getLogger(__name__)


class SimError(ValueError):
    """A request the simulator cannot carry out (unknown device, bad argument)."""


def _second_view(c: CameraConfig) -> StereoView | None:
    """A camera's second view: stereo, NIR, or none."""
    if c.nir_baseline_mm is not None:
        return NirView(c.nir_baseline_mm, c.focal_px)
    if c.stereo_baseline_mm is not None:
        return StereoView(c.stereo_baseline_mm, c.focal_px)
    return None


class Simulator:
    """All simulated hardware of one site."""

    def __init__(self, config: SimConfig, corpus: FaceCorpus | None = None) -> None:
        self.config = config
        self.corpus = corpus or FaceCorpus(config.faces)
        self.cameras = {
            c.name: SimCamera(
                c.name,
                self.corpus,
                width=c.width,
                height=c.height,
                fps=c.fps,
                jpeg_quality=c.jpeg_quality,
                zones=[list(z) for z in c.zones],
                basic_auth=c.basic_auth,
                stereo=_second_view(c),
            )
            for c in config.cameras
        }
        self.readers: dict[str, SimReader] = {}
        self.doors: dict[str, Door] = {}
        self._door_reader: dict[str, str] = {d.name: d.reader for d in config.doors}
        self._api: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._approaches = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Simulator:
        """Open every port and start the devices; returns self."""
        from hw_sim.api import ApiServer

        try:
            for r in self.config.readers:
                doors = [d for d in self.config.doors if d.reader == r.name]
                reader = SimReader(
                    ReaderSettings(
                        name=r.name,
                        address=r.address,
                        host=self.config.host,
                        port=r.port,
                        scbk=bytes.fromhex(r.scbk) if r.scbk else None,
                        card_format=r.card_format,
                        facility=r.facility,
                        pty=r.pty,
                        pty_link=r.pty_link,
                    ),
                    on_output=self._output_handler(doors[0].name if doors else None),
                )
                self.readers[r.name] = reader
                reader.start()
            for d in self.config.doors:
                reader = self.readers[d.reader]
                self.doors[d.name] = Door(
                    d.name, pass_s=d.pass_s, on_contact=self._contact_handler(reader)
                )
            self._api = ApiServer(self, self.config.host, self.config.api_port)
            self._api.start()
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick_loop, name="hwsim-tick", daemon=True)
            self._ticker.start()
        except Exception:
            self.stop()
            raise
        log.info("simulator started: API %s", self.api_url)
        return self

    def stop(self) -> None:
        """Close every port and stop every thread (idempotent)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(2)
            self._ticker = None
        for cam in self.cameras.values():
            cam.stop()
        if self._api is not None:
            self._api.stop()
            self._api = None
        for reader in self.readers.values():
            reader.stop()
        self.readers.clear()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.05):
            now = time.monotonic()
            for reader in list(self.readers.values()):
                reader.tick()
            for door in list(self.doors.values()):
                door.tick(now)

    def _output_handler(self, door: str | None) -> Callable[[int, bool], None]:
        def handler(no: int, on: bool) -> None:
            if no == 0 and door is not None and door in self.doors:
                self.doors[door].set_relay(on)

        return handler

    def _contact_handler(self, reader: SimReader) -> Callable[[bool], None]:
        def handler(is_open: bool) -> None:
            try:
                reader.set_input(0, is_open)
            except Exception:  # the door moved even if the PD cannot report it
                log.exception("reader %s: cannot report the door contact", reader.name)

        return handler

    # ------------------------------------------------------------------ addresses
    @property
    def api_url(self) -> str:
        if self._api is None:
            raise SimError("simulator not started")
        return f"http://{self.config.host}:{self._api.port}"

    def camera_url(self, name: str) -> str:
        self._camera(name)
        return f"{self.api_url}/cameras/{name}.mjpg"

    def reader_url(self, name: str) -> str:
        return self._reader(name).url

    def config_camera(self, name: str) -> CameraConfig:
        """A camera's configuration (size, fps, stereo rig)."""
        self._camera(name)
        return next(c for c in self.config.cameras if c.name == name)

    def reader_scbk(self, name: str) -> str | None:
        self._reader(name)
        return next(r.scbk for r in self.config.readers if r.name == name)

    def urls(self) -> dict[str, Any]:
        """Everything the gateway needs to be configured with."""
        return {
            "api": self.api_url,
            "cameras": {n: self.camera_url(n) for n in self.cameras},
            "readers": {n: self.reader_url(n) for n in self.readers},
        }

    # ------------------------------------------------------------------ lookup
    def _camera(self, name: str) -> SimCamera:
        try:
            return self.cameras[name]
        except KeyError:
            raise SimError(f"unknown camera {name!r} (have: {', '.join(self.cameras)})") from None

    def _reader(self, name: str) -> SimReader:
        try:
            return self.readers[name]
        except KeyError:
            raise SimError(f"unknown reader {name!r} (have: {', '.join(self.readers)})") from None

    def _door(self, name: str) -> Door:
        try:
            return self.doors[name]
        except KeyError:
            raise SimError(f"unknown door {name!r} (have: {', '.join(self.doors)})") from None

    def _reader_for(self, args: dict[str, Any]) -> SimReader:
        if "reader" in args:
            return self._reader(str(args["reader"]))
        if "door" in args:
            self._door(str(args["door"]))
            return self._reader(self._door_reader[str(args["door"])])
        if len(self.readers) == 1:
            return next(iter(self.readers.values()))
        raise SimError("say which reader (reader: NAME) or door (door: NAME)")

    # ------------------------------------------------------------------ actions
    def present_card(
        self, reader: str, card: int, facility: int | None = None, fmt: str | None = None
    ) -> None:
        self._reader(reader).present_card(
            int(card), None if facility is None else int(facility), fmt
        )

    def type_pin(self, reader: str, pin: str, submit: str = "#") -> None:
        self._reader(reader).type_keys(str(pin) + submit)

    def person_approaches(
        self,
        camera: str,
        *,
        person: str = "unknown",
        variant: str = "live",
        count: int = 1,
        approach_s: float = 3.0,
        linger_s: float = 6.0,
        lane: float | None = None,
        seed: int | None = None,
    ) -> list[str]:
        """``count`` people walk up to ``camera``; returns the corpus names used.

        ``lane`` (0..1, left to right) places a single person; several people spread out.
        ``seed`` numbers the first of them (their sway, head pose and probe image); by
        default the approaches so far. The scenario runner passes each scenario's own count,
        so a scenario plays the same frames whatever was played before it."""
        cam = self._camera(camera)
        base = self._approaches if seed is None else int(seed)
        if variant not in VARIANTS:
            raise SimError(f"unknown variant {variant!r} (use {', '.join(VARIANTS)})")
        if not 1 <= int(count) <= 6:
            raise SimError("count must be 1..6")
        if variant == "in_zone" and not cam.scene.zones:
            raise SimError(f"camera {camera}: no no-capture zone configured for variant in_zone")
        names = []
        now = cam.now()
        for i in range(int(count)):
            try:
                name = self.corpus.resolve(person, index=base + i)
            except Exception as exc:
                raise SimError(str(exc)) from exc
            if count == 1:
                where = 0.5 if lane is None else min(0.85, max(0.15, float(lane)))
            else:
                where = 0.25 + 0.5 * i / (count - 1)
            cam.add_actor(
                Actor(
                    name=name,
                    image_index=self.corpus.probe_index(name, i),
                    variant=variant,
                    start=now + 0.4 * i,
                    approach_s=float(approach_s),
                    linger_s=float(linger_s),
                    lane=where,
                    seed=base + i,
                )
            )
            names.append(name)
        self._approaches += int(count)
        log.info("camera %s: %d person(s) approaching (%s)", camera, count, variant)
        return names

    def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one named action (as used by the API, the CLI and scenarios)."""
        a = dict(args or {})
        now = time.monotonic()
        try:
            if action == "present-card":
                self._reader_for(a).present_card(
                    int(a["card"]),
                    None if a.get("facility") is None else int(a["facility"]),
                    a.get("format"),
                )
            elif action == "type-pin":
                self._reader_for(a).type_keys(str(a["pin"]) + str(a.get("submit", "#")))
            elif action == "press-keys":
                self._reader_for(a).type_keys(str(a["keys"]))
            elif action == "person-approaches":
                names = self.person_approaches(
                    str(a.get("camera", next(iter(self.cameras), ""))),
                    person=str(a.get("person", "unknown")),
                    variant=str(a.get("variant", "live")),
                    count=int(a.get("count", 1)),
                    approach_s=float(a.get("approach_s", 3.0)),
                    linger_s=float(a.get("linger_s", 6.0)),
                    lane=None if a.get("lane") is None else float(a["lane"]),
                    seed=None if a.get("seed") is None else int(a["seed"]),
                )
                return {"ok": True, "people": len(names)}
            elif action == "clear-camera":
                self._camera(str(a["camera"])).scene.clear()
            elif action in ("open-door", "push-door"):
                r = self._door(str(a["door"])).push(now)
                return {"ok": True, "opened": r.opened, "reason": r.reason}
            elif action == "hold-door":
                secs = a.get("seconds")
                r = self._door(str(a["door"])).hold(now, None if secs is None else float(secs))
                return {"ok": True, "opened": r.opened, "reason": r.reason}
            elif action == "force-door":
                secs = a.get("seconds")
                r = self._door(str(a["door"])).force(now, None if secs is None else float(secs))
                return {"ok": True, "opened": r.opened, "reason": r.reason}
            elif action == "close-door":
                self._door(str(a["door"])).close()
            elif action == "press-exit":
                reader = self._reader_for(a)
                reader.set_input(1, True)
                threading.Timer(float(a.get("seconds", 0.3)), reader.set_input, (1, False)).start()
            elif action == "tamper":
                self._reader_for(a).set_tamper(bool(a.get("active", True)))
            elif action == "cut-link":
                self._reader_for(a).cut_link()
            elif action == "restore-link":
                self._reader_for(a).restore_link()
            elif action == "corrupt-frames":
                self._reader_for(a).corrupt_frames(int(a.get("count", 1)))
            elif action == "unplug-camera":
                self._camera(str(a["camera"])).unplug()
            elif action == "replug-camera":
                self._camera(str(a["camera"])).replug()
            else:
                raise SimError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        except KeyError as exc:
            raise SimError(f"{action}: missing argument {exc.args[0]!r}") from None
        except ReaderError as exc:  # refused, so not acknowledged: the caller is told
            raise SimError(f"{action}: {exc}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SimError):
                raise
            raise SimError(f"{action}: {exc}") from exc
        return {"ok": True}

    def state(self) -> dict[str, Any]:
        """Observable hardware: per door relay/LED/buzzer/text/door; per camera plug state."""
        doors = {}
        for name, door in self.doors.items():
            reader = self.readers[self._door_reader[name]].state()
            doors[name] = {
                "reader": self._door_reader[name],
                "relay": reader["relay"],
                "led": reader["led"],
                "buzzer": reader["buzzer"],
                "text": reader["text"],
                "door": door.state(),
            }
        return {
            "doors": doors,
            "readers": {n: r.state() for n, r in self.readers.items()},
            "cameras": {n: c.state() for n, c in self.cameras.items()},
            "corpus": self.corpus.source,
        }


ACTIONS = (
    "present-card",
    "type-pin",
    "press-keys",
    "person-approaches",
    "clear-camera",
    "open-door",
    "hold-door",
    "force-door",
    "close-door",
    "press-exit",
    "tamper",
    "unplug-camera",
    "replug-camera",
    "cut-link",
    "restore-link",
    "corrupt-frames",
)
