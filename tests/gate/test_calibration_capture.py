"""``gateway camera calibrate --door``: ChArUco views captured from a door's configured pair
through the daemon's camera driver (file sources: image sequences rendered through a known
pair), per-view feedback, the calibration written to the pair's file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.cli.main import main
from gateway.face.calibration import load_calibration
from tests.conftest import REPO

cv2 = pytest.importorskip("cv2")

from tests.face.test_stereo_calibrate import _pairs  # noqa: E402 - needs cv2

EXAMPLE = REPO / "config" / "gateway.example.toml"
LOGIN = (
    'source = "rtsp://192.0.2.10/stream1"\n'
    "# The camera's login: never inside the URL (it is joined in only when the stream opens).\n"
    'username = "gateway"\n'
    'password = { credential = "camera-north" }\n'
)
SECOND = """
[cameras.north-right]
source = "{source}"
door = "main-gate"
width = 640
height = 480
fps = 15
space = "public"
signage_installed = true
"""


def _config(tmp_path: Path, source: str, pair: str, second: str | None = None) -> Path:
    text = EXAMPLE.read_text()
    assert LOGIN in text
    text = text.replace(LOGIN, f'source = "{source}"\n', 1)
    anchor = 'camera = "north-cam"\n'
    text = text.replace(anchor, anchor + pair + "\n", 1)
    if second is not None:
        text += SECOND.format(source=second)
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def _sequence(folder: Path, frames: list[np.ndarray]) -> str:
    """The frames as an image sequence OpenCV reads as a video (``%02d.png``)."""
    folder.mkdir()
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:02}.png"), f)
    return str(folder / "%02d.png")


def _frames_with_gaps() -> list[tuple[np.ndarray, np.ndarray]]:
    """14 board views with a frame without the board, and one seen by one camera only."""
    views = _pairs(14)
    blank = np.full_like(views[0][0], 200)
    return [views[0], (blank, blank), (views[1][0], blank), *views[1:]]


def test_side_by_side_pair_is_captured_and_calibrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = _sequence(tmp_path / "usb", [np.hstack(p) for p in _frames_with_gaps()])
    out = tmp_path / "north-pair.json"
    pair = (
        f'pair = {{ kind = "stereo", layout = "side_by_side", calibration = "{out}", '
        "baseline_mm = 60 }"
    )
    cfg = _config(tmp_path, seq, pair)
    args = ["--config", str(cfg), "camera", "calibrate", "--door", "main-gate"]
    assert main([*args, "--views", "12", "--interval", "0"]) == 0
    text = capsys.readouterr().out
    assert "capturing 12 views of the board from door main-gate (north-cam)" in text
    assert "view 2: no board found" in text
    assert "view 3: board corners" in text  # the second view is blank: not kept
    assert "not kept" in text
    assert "kept (12 of 12)" in text
    assert "calibrated from 12 of 12 image pairs" in text
    cal = load_calibration(out)  # written where the door's pair looks for it
    assert cal.baseline_mm == pytest.approx(60.0, rel=0.03)
    assert cal.image_size == (640, 480)


def test_two_stream_pair_is_captured_and_calibrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    views = _pairs(12)
    first = _sequence(tmp_path / "left", [a for a, _ in views])
    second = _sequence(tmp_path / "right", [b for _, b in views])
    pair = (
        'pair = { kind = "stereo", camera = "north-right", calibration = "/nonexistent/p.json",'
        " baseline_mm = 60 }"
    )
    cfg = _config(tmp_path, first, pair, second)
    out = tmp_path / "chosen.json"
    argv = ["--config", str(cfg), "camera", "calibrate", "--door", "main-gate", "--views", "10"]
    assert main([*argv, "--interval", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "door main-gate (north-cam + north-right)" in text
    assert load_calibration(out).baseline_mm == pytest.approx(60.0, rel=0.03)


def test_too_few_views_a_missing_camera_and_a_door_without_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the sequence ends after 4 frames with the board: fewer than asked, still calibrated
    # when at least 3 are usable; a camera that cannot be opened is named
    seq = _sequence(tmp_path / "short", [np.hstack(p) for p in _pairs(4)])
    out = tmp_path / "p.json"
    pair = (
        f'pair = {{ kind = "stereo", layout = "side_by_side", calibration = "{out}", '
        "baseline_mm = 60 }"
    )
    cfg = _config(tmp_path, seq, pair)
    base = ["--config", str(cfg), "camera", "calibrate"]
    assert main([*base, "--door", "main-gate", "--views", "15", "--interval", "0"]) == 0
    text = capsys.readouterr().out
    assert "no frame from a camera" in text
    assert "calibrated from 4 of 4" in text
    (tmp_path / "gone").mkdir()
    cfg2 = _config(tmp_path, str(tmp_path / "gone" / "%02d.png"), pair)
    assert main(["--config", str(cfg2), "camera", "calibrate", "--door", "main-gate"]) == 1
    assert "error: camera north-cam: cannot open camera source" in capsys.readouterr().out
    assert main([*base, "--door", "side-gate"]) == 1
    assert "no such door" in capsys.readouterr().out
    assert main([*base, "--door", "side-door"]) == 1
    assert "this door has no camera pair" in capsys.readouterr().out
    assert main([*base, "--door", "main-gate", "--views", "2"]) == 1
    assert "--views must be at least 3" in capsys.readouterr().out
