"""Reuse of a pair check's verdict over the next frames of the same face (pure: numpy only).

The 3-D check costs two landmark-model runs per frame, and a decision takes several frames
of one face. A verdict is reused for at most ``max_frames`` following frames (and
``max_age_s``), and only while it is plainly the same face: the box has moved less than
``max_move`` of its width and changed size by less than ``max_scale``, and the face's
embedding is the same person's (cosine >= ``min_cos``). A photo of someone else raised where
a live face was is another embedding: it is measured at once. A verdict is reused only once two
measurements in a row on that face agree, so one spurious verdict is never multiplied into
the several frames a decision needs: neither a spurious pass of an attack (a grant) nor a
spurious failure of a live face (a ``spoof_suspected`` refusal of a resident; a live face
measured near the relief limits fails now and then, and reusing that at once refused
residents at a loaded gate). An attack that fails twice is then reused as a failure. A
face that has failed a measurement never has a pass reused while it stays that face (a
"no verdict" in between does not clear it): every frame of it is measured, so after a
failure a grant needs passes measured on a whole window of frames, as the fusion's blocking
rule asks. "No verdict" itself is never reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Box = Sequence[float]  # x, y, w, h


@dataclass
class _Measured:
    box: Box
    unit: np.ndarray
    live: bool
    at: float
    confirmed: bool
    reused: int = 0
    #: this face failed a measurement (since it became this face): a pass is never reused
    failed: bool = False


@dataclass
class VerdictReuse:
    """The last measured verdict of a camera's target face and when it may stand in."""

    max_frames: int = 2
    max_age_s: float = 0.5
    min_cos: float = 0.6
    max_move: float = 0.15
    max_scale: float = 0.15
    _last: _Measured | None = field(default=None, init=False)

    def lookup(self, box: Box, embedding: np.ndarray | None, now: float) -> bool | None:
        """The reusable verdict for this face, or None: measure it."""
        last = self._last
        if last is None or not last.confirmed or last.reused >= self.max_frames:
            return None
        if not self._same_face(last, box, embedding, now):
            return None
        last.reused += 1
        return last.live

    def store(self, box: Box, embedding: np.ndarray | None, live: bool | None, now: float) -> None:
        """Remember a measured verdict (None, or a face without embedding: nothing to reuse;
        a failure of the same face is still remembered)."""
        last = self._last
        same = last is not None and self._same_face(last, box, embedding, now)
        if live is None or embedding is None:
            if last is not None and same and last.failed:
                self._last = _Measured(tuple(box), last.unit, last.live, now, False, failed=True)
            else:
                self._last = None
            return
        failed = not live or (same and last is not None and last.failed)
        agrees = same and last is not None and last.live == live
        confirmed = agrees and (not live or not failed)
        self._last = _Measured(tuple(box), _unit(embedding), live, now, confirmed, failed=failed)

    def _same_face(
        self, last: _Measured, box: Box, embedding: np.ndarray | None, now: float
    ) -> bool:
        if embedding is None or not 0 <= now - last.at <= self.max_age_s:
            return False
        if float(np.dot(last.unit, _unit(embedding))) < self.min_cos:
            return False
        ax, ay, aw, ah = last.box
        bx, by, bw, bh = box
        if aw <= 0 or bw <= 0:
            return False
        moved = float(np.hypot(bx + bw / 2 - ax - aw / 2, by + bh / 2 - ay - ah / 2))
        return moved <= self.max_move * aw and abs(bw / aw - 1) <= self.max_scale


def _unit(v: np.ndarray) -> np.ndarray:
    flat = np.asarray(v, np.float64).reshape(-1)
    n = float(np.linalg.norm(flat))
    return flat / n if n > 0 else flat
