"""Deciding on two frames whose mean score clears the per-frame bar (issue #17).

Fusion asks ``k`` of ``n`` frames to match on their own. A resident whose frames score
around the match threshold (0.50, 0.54, 0.49, ...) then waits for a third or fourth frame,
although two consecutive frames of the same face already agree on who it is. This rule
decides on the second of two consecutive frames (no faceless frame between, at most
``max_gap_ms`` apart) when the same person is the best candidate of the same face in both
(:func:`same_face`: a small move, a small change of size), each score is at most ``slack``
below the threshold, each lead over the runner-up clears the margin, and the two scores'
mean clears the threshold. A face that failed liveness in the window and ranked that person
first, even below the bar, blocks the pair.

What it can add to the false-accept rate: the mean clearing the threshold means one of the
two frames matched on its own (score and margin), so a stranger is accepted only where a
per-frame false match happens *and* the next frame of the same face ranks the same wrong
person within ``slack`` of the bar. Whatever the frames' correlation, the door's rate with the
rule stays below the chance that any frame of the approach matches a wrong person on its own
(at most ``n`` times the per-frame rate); how close it comes is measured on correlated frames
of strangers (``benchmarks/eval_pair_frames.py``).
Liveness, spoof blocks, cooldown and once-per-approach rules apply as to fusion.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ConfigError

__all__ = ["PairRule", "same_face"]

#: a box in frame pixels: (x, y, width, height)
Box = tuple[float, float, float, float]


def same_face(a: Box | None, b: Box | None) -> bool:
    """Whether two boxes of consecutive frames can be the same face: its centre moved less
    than half its width, its size changed by less than a quarter. An unknown box is not
    (the answer that never grants).
    """
    if a is None or b is None:
        return False
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if min(aw, ah, bw, bh) <= 0:
        return False
    shift = ((ax + aw / 2 - bx - bw / 2) ** 2 + (ay + ah / 2 - by - bh / 2) ** 2) ** 0.5
    return shift < 0.5 * max(aw, bw) and 0.8 <= bw / aw <= 1.25


@dataclass(frozen=True, slots=True)
class PairRule:
    """The bars of the two-frame decision.

    ``threshold`` and ``margin`` are the door's per-frame match bars (as the face path
    applies them: scaled under a cancelable template protection); ``slack`` is how far
    below ``threshold`` either frame may score.
    """

    enabled: bool = True
    #: the per-frame bars' defaults (MatchSettings; a test keeps them equal)
    threshold: float = 0.51
    margin: float = 0.09
    #: chosen on the calibration halves of simulated walks and LFW DevTrain identities
    #: (benchmarks/eval_pair_frames.py; the smallest slack with nearly all the gain)
    slack: float = 0.02
    #: the second frame must follow the first within this (no faceless frame between): a
    #: frame normally follows 67 ms later at 15 fps, 133-200 ms when the worker skips some
    max_gap_ms: float = 250.0

    def __post_init__(self) -> None:
        problems: list[tuple[str, str, str]] = []
        if not 0.0 < self.threshold < 1.0:
            problems.append(("face.match_threshold", str(self.threshold), "between 0 and 1"))
        if not 0.0 <= self.margin < 1.0:
            problems.append(("face.match_margin", str(self.margin), "must be 0..1"))
        if not 0.0 <= self.slack < self.threshold:
            problems.append(("face.pair_frames_slack", str(self.slack), "0..match_threshold"))
        if self.max_gap_ms <= 0:
            problems.append(("face.pair_frames_max_gap_ms", str(self.max_gap_ms), "> 0"))
        if problems:
            raise ConfigError(problems)

    @property
    def floor(self) -> float:
        """The lowest score either frame may have."""
        return self.threshold - self.slack

    def candidate(self, score: float | None, margin: float | None) -> bool:
        """Whether one face's evidence can take part in a pair (unknown answers False)."""
        if not self.enabled or score is None or margin is None:
            return False
        return score >= self.floor and margin >= self.margin

    def follows(self, gap_ms: float) -> bool:
        """Whether a frame ``gap_ms`` after the previous one (no faceless frame between)
        may pair with it."""
        return 0.0 < gap_ms <= self.max_gap_ms

    def fires(self, first: float, second: float) -> bool:
        """Whether two candidate scores of the same person decide together."""
        return (
            self.enabled
            and min(first, second) >= self.floor
            and (first + second) / 2.0 >= self.threshold
        )
