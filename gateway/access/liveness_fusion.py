"""The fusion rule of a face's liveness signals, per frame (pure).

Signals: the passive 2-D model (MiniFASNet: True/False, None without a model) and, at a door
with a camera pair, the pair's check (True/False, None when it could not measure: frames
of the pair not matched, no face found in the second view, face too small): the 3-D relief
check for a ``stereo`` pair, the near-infrared skin check for an ``rgb+nir`` pair.

- No pair: the passive verdict, as before.
- A pair: its check is required and vetoes. False makes the frame a failed-liveness frame
  whatever the 2-D model says (a flat or bent photo, a screen; in NIR: a screen is dark, a
  print too bright and washed out); None makes the frame count neither way (no grant can
  come from it); True gives the passive verdict when a passive model is installed (both
  must agree), else True.

The policy (``required`` / ``advisory`` / ``off``) then applies to the fused verdict exactly as
to a single signal (:mod:`gateway.access.fusion`). No signal ever asks the person to do
anything: no blink, no head turn.
"""

from __future__ import annotations


def fused_live(passive: bool | None, pair_check: bool | None, *, has_pair: bool) -> bool | None:
    """The frame's liveness verdict from every signal the door has (see the module doc)."""
    if not has_pair:
        return passive
    if pair_check is None or pair_check is False:
        return pair_check
    return True if passive is None else passive
