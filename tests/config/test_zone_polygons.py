"""A no-capture zone must be a simple polygon: one that crosses, touches or folds back on
itself is refused by the configuration's validation (``gateway config validate``, the
daemon's load and the console's zones page alike) naming the zone and the camera."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomlkit

from gateway.cli.main import main
from gateway.config.cameras import self_intersection
from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "gateway.example.toml"
BOWTIE = [[0.1, 0.1], [0.4, 0.4], [0.4, 0.1], [0.1, 0.4]]


@pytest.mark.parametrize(
    ("polygon", "edges"),
    [
        ([(0.1, 0.1), (0.3, 0.1), (0.3, 0.3), (0.1, 0.3)], None),  # a square
        ([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.2), (0.0, 1.0)], None),  # concave
        ([(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.5, 0.5), (0.1, 0.5)], None),  # corner twice
        ([(0.1, 0.1), (0.4, 0.4), (0.4, 0.1), (0.1, 0.4)], (1, 3)),  # a bow tie
        ([(0.1, 0.1), (0.5, 0.1), (0.3, 0.1)], (1, 2)),  # folds back
        ([(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)], (1, 3)),  # no area
        (
            [(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.3, 0.1), (0.1, 0.5)],
            (1, 3),
        ),  # a corner on edge 1
        ([(0.1, 0.1), (0.6, 0.1), (0.6, 0.6), (0.1, 0.6), (0.35, 0.35), (0.7, 0.3)], (2, 5)),
    ],
)
def test_self_intersection(
    polygon: list[tuple[float, float]], edges: tuple[int, int] | None
) -> None:
    assert self_intersection(polygon) == edges


def _with_zone(tmp_path: Path, polygon: list[list[float]]) -> Path:
    doc = tomlkit.parse(EXAMPLE.read_text(encoding="utf-8"))
    cam = doc["cameras"]["north-cam"]  # type: ignore[index]
    zone = tomlkit.table()
    zone["name"] = "neighbour window"
    zone["polygon"] = polygon
    zones = tomlkit.aot()
    zones.append(zone)
    cam["zones"] = zones  # type: ignore[index]
    path = tmp_path / "gateway.toml"
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


def test_a_crossing_zone_is_refused_naming_zone_and_camera(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _with_zone(tmp_path, BOWTIE)
    with pytest.raises(ConfigError) as err:
        load_config(path, env=False)
    [(where, _, msg)] = err.value.problems
    assert where == "cameras.north-cam.zones.0.polygon"
    assert msg.startswith("zone 'neighbour window' of camera 'north-cam' crosses itself")
    assert "edges 1 and 3" in msg
    assert main(["config", "validate", str(path)]) == 2
    assert "zone 'neighbour window' of camera 'north-cam' crosses itself" in capsys.readouterr().err
    ok = _with_zone(tmp_path, [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4], [0.1, 0.4]])
    assert main(["config", "validate", str(ok)]) == 0
