"""ChArUco views from a door's configured camera pair, for ``gateway camera calibrate``.

The frames come through the daemon's own camera driver (:class:`OpenCVSource`, the camera's
``source`` with its credentials): a ``side_by_side`` pair is one stream split in halves, a
``two_streams`` pair the door's camera and the pair's camera read one after the other (hold
the board still while a view is taken). Every view pair is searched for the board at once
and kept only when both cameras see enough of it; the caller is told about each one. While
the operator moves the board between views, the streams are drained so that the next view
is a fresh frame. Frames stay in memory: nothing is written but the calibration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gateway.config.root import GatewayConfig
from gateway.errors import ConfigError
from gateway.face.stereo_calibrate import BoardFinder, BoardSighting, CalibrationError
from gateway.face.stereo_pair import split_side_by_side
from gateway.gate.camera import FrameSource, OpenCVSource, redact_url

log = logging.getLogger(__name__)

ViewPair = tuple[np.ndarray, np.ndarray]
SourceFactory = Callable[[str, int, int], FrameSource]


@dataclass(frozen=True)
class ViewReport:
    """One captured view pair: its number, what was seen of the board, whether it is kept."""

    index: int
    sighting: BoardSighting | None  # None: a camera gave no frame
    kept: int  # usable view pairs so far


class PairReader:
    """Reads view pairs (first, second) from a door's pair through the camera drivers."""

    def __init__(self, first: FrameSource, second: FrameSource | None, label: str) -> None:
        """``second`` None: ``first`` sends side-by-side frames."""
        self._first, self._second, self.label = first, second, label

    def read(self) -> ViewPair | None:
        """The next view pair; None when a camera gave no frame."""
        a = self._first.read()
        if a is None:
            return None
        if self._second is None:
            try:
                left, right = split_side_by_side(a)
            except ValueError as exc:
                raise CalibrationError(f"{self.label}: {exc}") from None
            return np.ascontiguousarray(left), np.ascontiguousarray(right)
        b = self._second.read()
        return None if b is None else (a, b)

    def close(self) -> None:
        """Release the cameras."""
        self._first.close()
        if self._second is not None:
            self._second.close()


def open_pair(
    cfg: GatewayConfig, door: str, open_source: SourceFactory = OpenCVSource
) -> PairReader:
    """The camera pair of ``door`` as configured (ConfigError: no such door or no pair;
    CalibrationError: a camera cannot be opened)."""
    dc = cfg.doors.get(door)
    if dc is None:
        raise ConfigError([(f"doors.{door}", door, "no such door")])
    if dc.pair is None or dc.camera is None:
        raise ConfigError([(f"doors.{door}.pair", "", "this door has no camera pair")])
    names = [dc.camera] if dc.pair.camera is None else [dc.camera, dc.pair.camera]
    sources: list[FrameSource] = []
    try:
        for name in names:
            cam = cfg.cameras[name]
            try:
                sources.append(open_source(cam.stream_url(), cam.width, cam.height))
            except OSError as exc:
                raise CalibrationError(f"camera {name}: {exc}") from None
    except BaseException:
        for s in sources:
            s.close()
        raise
    label = f"door {door} ({' + '.join(names)})"
    log.info("calibration capture from %s: %s", label, redact_url(cfg.cameras[names[0]].source))
    return PairReader(sources[0], sources[1] if len(sources) > 1 else None, label)


def capture_views(
    reader: PairReader,
    finder: BoardFinder,
    views: int,
    *,
    interval_s: float = 2.0,
    max_reads: int | None = None,
    on_view: Callable[[ViewReport], None] | None = None,
) -> list[ViewPair]:
    """Up to ``views`` usable view pairs of the board (both cameras see enough corners).

    Between kept views the streams are drained for ``interval_s`` (the operator moves the
    board). Gives up after ``max_reads`` view pairs (default 10 per view wanted) or when a
    camera stops sending (three missing frames in a row).
    """
    limit = max_reads if max_reads is not None else 10 * views
    kept: list[ViewPair] = []
    missing = 0
    for index in range(1, limit + 1):
        pair = reader.read()
        if pair is None:
            missing += 1
            if on_view is not None:
                on_view(ViewReport(index, None, len(kept)))
            if missing >= 3:
                break
            continue
        missing = 0
        sighting = finder.sight(*pair)
        if sighting.usable:
            kept.append(pair)
        if on_view is not None:
            on_view(ViewReport(index, sighting, len(kept)))
        if len(kept) >= views:
            break
        if sighting.usable and interval_s > 0:
            _drain(reader, interval_s)
    return kept


def _drain(reader: PairReader, seconds: float) -> None:
    """Read and drop frames for ``seconds`` (the next view is then a fresh one)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if reader.read() is None:
            time.sleep(0.05)


def describe(report: ViewReport, wanted: int) -> str:
    """One line of feedback for the operator."""
    s = report.sighting
    head = f"view {report.index}: "
    if s is None:
        return head + "no frame from a camera"
    seen = f"board corners {s.first} (first) / {s.second} (second), {s.common} in both"
    if s.usable:
        return head + f"{seen}: kept ({report.kept} of {wanted})"
    if s.first == 0 and s.second == 0:
        return head + "no board found: hold it in front of both cameras"
    return head + f"{seen}: too few, not kept (move the board so both cameras see it)"
