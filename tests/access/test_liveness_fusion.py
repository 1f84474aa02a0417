"""The fusion rule of the passive 2-D model and the stereo 3-D check, per frame."""

from __future__ import annotations

import pytest

from gateway.access.liveness_fusion import fused_live


@pytest.mark.parametrize("passive", [True, False, None])
def test_without_a_pair_the_passive_model_decides(passive: bool | None) -> None:
    assert fused_live(passive, None, has_pair=False) is passive
    assert fused_live(passive, True, has_pair=False) is passive


@pytest.mark.parametrize(
    ("passive", "relief", "fused"),
    [
        (True, False, False),  # a photo the 2-D model misses: the 3-D check vetoes
        (None, False, False),
        (False, False, False),
        (True, None, None),  # no 3-D verdict: the frame counts neither way
        (None, None, None),
        (False, None, None),
        (True, True, True),
        (False, True, False),  # both signals must agree
        (None, True, True),  # no passive model: the 3-D check alone
    ],
)
def test_with_a_pair_the_3d_check_is_required(
    passive: bool | None, relief: bool | None, fused: bool | None
) -> None:
    assert fused_live(passive, relief, has_pair=True) is fused
