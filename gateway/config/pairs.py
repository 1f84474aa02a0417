"""Configuration of a door's camera pair: stereo (two views) or colour + near-infrared.

A pair is either two cameras (the door's ``camera`` and ``pair.camera``, frames matched by
timestamp) or one USB stereo camera that delivers both views side by side in one frame
(``layout = "side_by_side"``: the left half is the door camera's view). A door with a pair
fails closed for face while either camera is down; card and PIN are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.config.base import Strict
from gateway.config.cameras import CameraConfig


class CameraPairConfig(Strict):
    """A second view bound to a door's camera, for the 3-D (stereo) or NIR liveness check."""

    kind: Literal["stereo", "rgb+nir"] = Field(
        description="'stereo': two cameras a known baseline apart (the 3-D check); "
        "'rgb+nir': a near-infrared camera with IR illumination beside the colour one."
    )
    layout: Literal["two_streams", "side_by_side"] = Field(
        "two_streams",
        description="'two_streams': the second view is camera 'camera'; 'side_by_side': the "
        "door camera's frames hold both views (left half: first/colour view), as a USB "
        "stereo or RGB+IR camera module sends them.",
    )
    camera: str | None = Field(
        None, description="The second camera (two_streams only); its 'door' is this door."
    )
    calibration: Path | None = Field(
        None,
        description="Stereo calibration file (JSON: K1, D1, K2, D2, R, T in mm, image_size), "
        "written by 'gateway camera calibrate'; required (rgb+nir: it registers the NIR "
        "view to the colour one).",
    )
    baseline_mm: float = Field(
        gt=10,
        le=1000,
        description="Distance between the two cameras' centres (mm); must agree with the "
        "calibration's translation within 10 %.",
    )

    @model_validator(mode="after")
    def _layout_rules(self) -> Self:
        if self.layout == "two_streams" and self.camera is None:
            raise ValueError("a two_streams pair needs 'camera' (the second view)")
        if self.layout == "side_by_side" and self.camera is not None:
            raise ValueError("a side_by_side pair has no second camera: remove 'camera'")
        if self.calibration is None:
            raise ValueError(
                "a camera pair needs its 'calibration' file (stereo: the 3-D geometry; "
                "rgb+nir: where the face of the colour view appears in the NIR view)"
            )
        return self


PairProblem = tuple[tuple[str | int, ...], object, str]


def pair_problems(
    door: str,
    pair: CameraPairConfig,
    door_camera: str | None,
    cameras: dict[str, CameraConfig],
) -> Iterator[PairProblem]:
    """Rules across sections for one door's pair (paths relative to the root)."""
    base: tuple[str | int, ...] = ("doors", door, "pair")
    if door_camera is None:
        yield (*base,), None, "a camera pair needs the door's 'camera' (the first view)"
        return
    if pair.camera is None:
        return
    if pair.camera == door_camera:
        yield (*base, "camera"), pair.camera, "the second view must be another camera"
    elif pair.camera not in cameras:
        yield (*base, "camera"), pair.camera, f"camera {pair.camera!r} is not configured"
    else:
        second, first = cameras[pair.camera], cameras.get(door_camera)
        if second.door != door:
            yield (
                ("cameras", pair.camera, "door"),
                second.door,
                f"the second view of door {door!r} must serve that door",
            )
        if not second.signage_installed:
            yield (
                ("cameras", pair.camera, "signage_installed"),
                False,
                "face processing needs visible signage at the camera (Art. 13)",
            )
        if first is not None and (first.width, first.height) != (second.width, second.height):
            yield (
                ("cameras", pair.camera, "width"),
                second.width,
                "both views of a pair need the same frame size",
            )
