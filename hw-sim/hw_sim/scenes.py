"""Composed camera scenes: a synthetic background and people walking up to the gate.

Variants of an approach: ``live`` (a real head: it grows as the person walks up, bobs and
sways, turns a few degrees and changes expression, so its landmarks move NON-rigidly),
``photo`` (a printed photo on white paper, glossy, moved by hand as one rigid plane),
``bent`` (the same print bent round a vertical axis: a cylinder, the hardest flat attack),
``replay`` (a phone screen: black bezel, colour cast, moire, moving glare, rigid),
``tablet`` (the same on a tablet: the face life-size), ``curved`` (a print on a face-shaped
surface, a mask: the live head's relief, rigid, no expression: the hardest case),
``in_zone`` (the face shows inside a configured no-capture region, e.g. a neighbour's
window), ``backlight`` and ``lowlight`` (live heads in bad light).

A live head is one ``cv2.remap`` of the 2-D corpus crop through a small 3-D head model
(an ellipsoid face with a protruding nose, rotated by yaw/pitch/roll) plus a smile field
that widens and lifts the mouth corners: the nose and mouth shift relative to the eyes,
which no single affine map explains. Attacks are drawn with one ``cv2.warpAffine`` each,
so everything on them (landmarks included) moves by exactly one affine map per frame.
:meth:`Scene.landmarks` gives the ground-truth positions of the 5 landmarks (eyes, nose
tip, mouth corners) in frame pixels, through the same maps the renderer uses.
Everything is deterministic for a given time; scaled crops, fields and masks are cached.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from hw_sim import nir
from hw_sim.corpus import ASTRONAUT, FaceCorpus, Image
from hw_sim.nir import NirView
from hw_sim.stereo import StereoView, bend

Variant = Literal[
    "live", "photo", "bent", "replay", "tablet", "curved", "in_zone", "backlight", "lowlight"
]
#: attacks drawn as one rigid plane (or a bent one); ``curved`` is drawn as a head
ATTACKS: tuple[str, ...] = ("photo", "bent", "replay", "tablet")
PRINTS = ("photo", "bent")
SCREENS = ("replay", "tablet")
Polygon = list[tuple[float, float]]  # normalised (0..1) frame coordinates
Points = npt.NDArray[np.float64]  # (n, 2) pixel coordinates
Field = npt.NDArray[np.float32]

PHOTO_FACE = 0.8  # printed face height / live face height at the same distance
PHONE_FACE = 0.7
TABLET_FACE = 1.0
FACE_SCALE = {"photo": PHOTO_FACE, "bent": PHOTO_FACE, "replay": PHONE_FACE, "tablet": TABLET_FACE}


@dataclass(frozen=True)
class FaceGeometry:
    """Mean 5-landmark positions in a corpus crop, normalised (x / width, y / height).

    Measured once with YuNet on the corpus crops (LFW deep-funneled: 20 images of 8
    identities, std <= 0.04; the astronaut: its one image).
    """

    points: tuple[tuple[float, float], ...]  # left eye, right eye, nose, mouth left, right

    def px(self, w: int, h: int) -> Points:
        """The landmarks in pixels of a ``w`` x ``h`` crop."""
        return np.array(self.points, np.float64) * (w, h)


LFW_GEOMETRY = FaceGeometry(
    ((0.362, 0.434), (0.655, 0.425), (0.503, 0.564), (0.387, 0.679), (0.643, 0.676))
)
ASTRONAUT_GEOMETRY = FaceGeometry(
    ((0.412, 0.378), (0.652, 0.383), (0.516, 0.469), (0.411, 0.552), (0.631, 0.557))
)


def geometry_for(name: str) -> FaceGeometry:
    """Landmark layout of ``name``'s crops."""
    return ASTRONAUT_GEOMETRY if name == ASTRONAUT else LFW_GEOMETRY


@dataclass(frozen=True)
class HeadPose:
    """Pose and expression of a live head at one instant (angles in radians)."""

    yaw: float
    pitch: float
    roll: float
    smile: float  # 0 (neutral) .. 1


#: Amplitudes of the natural head motion (degrees): calm glances while walking up.
YAW_DEG = 7.0
PITCH_DEG = 4.0
ROLL_DEG = 2.0


def head_pose(rel: float, seed: int = 0) -> HeadPose:
    """Smooth, deterministic pose of a live head ``rel`` seconds into its approach.

    Sums of incommensurate sines (0.2-0.8 Hz): peak yaw rate ~20 deg/s, i.e. slow glances.
    """
    ph = seed * 1.618
    tau = 2 * math.pi * rel
    yaw = YAW_DEG * (0.75 * math.sin(0.31 * tau + ph) + 0.25 * math.sin(0.83 * tau + 2 * ph))
    pitch = PITCH_DEG * (
        0.7 * math.sin(0.23 * tau + 0.5 + ph) + 0.3 * math.sin(0.61 * tau + 3 * ph)
    )
    roll = ROLL_DEG * math.sin(0.19 * tau + ph)
    smile = 0.5 + 0.5 * math.sin(0.17 * tau + 2.5 * ph)
    return HeadPose(math.radians(yaw), math.radians(pitch), math.radians(roll), smile)


def head_fields(
    xs: npt.NDArray[np.floating], ys: npt.NDArray[np.floating], geom: FaceGeometry, w: int, h: int
) -> tuple[Field, Field, Field]:
    """Depth ``z`` and smile displacement ``(ex, ey)`` at crop pixels (xs, ys), in pixels.

    The face is an ellipsoid cap (depth ~0.9 eye distances at the centre, 0 at the head's
    outline) with a nose ridge (+0.3 eye distances at the tip); eyes sit ~0.5 eye distances
    behind the nose tip, the mouth corners ~0.45. The smile field widens the mouth by ~10%
    and lifts its corners; it vanishes away from the mouth.
    """
    pts = geom.px(w, h)
    iod = float(np.hypot(*(pts[1] - pts[0])))
    nose = pts[2]
    mouth = (pts[3] + pts[4]) / 2
    cy = (pts[0, 1] + pts[1, 1] + pts[3, 1] + pts[4, 1]) / 4
    u = (xs - nose[0]) / iod
    v = (ys - cy) / iod
    cap = np.clip(1.0 - (u / 1.3) ** 2 - (v / 1.8) ** 2, 0.0, None)
    z = 0.9 * cap
    dn_u = u
    dn_v = (ys - nose[1]) / iod + 0.15
    z += 0.3 * np.exp(-(dn_u**2) / (2 * 0.2**2) - dn_v**2 / (2 * 0.35**2))
    mu = (xs - mouth[0]) / iod
    mv = (ys - mouth[1]) / iod
    g = np.exp(-(mu**2) / (2 * 0.55**2) - mv**2 / (2 * 0.25**2))
    ex = 0.10 * mu * g
    ey = -0.08 * np.minimum(np.abs(mu) / 0.4, 1.5) * g
    return (
        np.asarray(z * iod, np.float32),
        np.asarray(ex * iod, np.float32),
        np.asarray(ey * iod, np.float32),
    )


def _displacement(
    z: Field, ex: Field, ey: Field, pose: HeadPose, parallax: float = 0.0
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]:
    """Image displacement of the head surface for ``pose`` (orthographic, small angles);
    ``parallax``: the second view's extra leftward shift per pixel of relief."""
    dx = (math.sin(pose.yaw) - parallax) * z + pose.smile * ex
    dy = math.sin(pose.pitch) * z + pose.smile * ey
    return dx, dy


@dataclass
class Actor:
    """One person (or attack instrument) in the scene."""

    name: str
    image_index: int
    variant: str
    start: float
    approach_s: float = 3.0
    linger_s: float = 6.0
    lane: float = 0.5  # horizontal centre, fraction of the width
    seed: int = 0

    @property
    def end(self) -> float:
        return self.start + self.approach_s + self.linger_s

    def progress(self, t: float) -> float:
        """0 at the far end of the path, 1 at the door."""
        return min(1.0, max(0.0, (t - self.start) / max(self.approach_s, 1e-3)))


@dataclass(frozen=True)
class _Placement:
    """Where an actor's head (or instrument) is in the frame at one time."""

    fh: int  # live-face height in pixels at this distance
    cx: float
    cy: float
    rel: float  # seconds since the actor appeared


@dataclass
class Scene:
    """Background plus actors, rendered at one resolution."""

    width: int
    height: int
    corpus: FaceCorpus
    zones: list[Polygon] = field(default_factory=list)
    actors: list[Actor] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _bg: Image | None = field(default=None, repr=False)
    _masks: dict[tuple[int, int], npt.NDArray[np.float32]] = field(default_factory=dict)
    _fields: dict[tuple[int, int, FaceGeometry], tuple[Field, ...]] = field(
        default_factory=dict, repr=False
    )
    _papers: dict[tuple[str, int, int], Image] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ actors
    def add(self, actor: Actor) -> None:
        with self._lock:
            self.actors.append(actor)

    def clear(self) -> None:
        with self._lock:
            self.actors.clear()

    def active(self, t: float) -> list[Actor]:
        with self._lock:
            self.actors = [a for a in self.actors if a.end > t]
            return [a for a in self.actors if a.start <= t]

    # ------------------------------------------------------------------ render
    def background(self) -> Image:
        """Deterministic synthetic background: sky/wall gradient, gate posts, path, windows."""
        if self._bg is not None:
            return self._bg
        w, h = self.width, self.height
        ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        b = 150 + 40 * ys + 10 * xs
        g = 140 + 30 * ys + 15 * np.sin(xs * 6.0)
        r = 120 + 20 * ys
        bg = np.stack(np.broadcast_arrays(b, g, r), axis=-1).clip(0, 255).astype(np.uint8)
        horizon = int(h * 0.62)
        bg[horizon:] = (bg[horizon:].astype(np.int16) * 0.55).astype(np.uint8)
        cv2.fillPoly(
            bg,
            [
                np.array(
                    [[w * 0.38, horizon], [w * 0.62, horizon], [w * 0.9, h], [w * 0.1, h]], np.int32
                )
            ],
            (120, 125, 130),
        )
        for x in (0.08, 0.88):
            cv2.rectangle(
                bg, (int(w * x), int(h * 0.1)), (int(w * (x + 0.05)), h), (70, 75, 80), -1
            )
        for k in range(0, w, max(8, w // 40)):
            cv2.line(bg, (k, int(h * 0.08)), (k, int(h * 0.1)), (60, 60, 60), 1)
        for poly in self.zones:
            pts = _poly_px(poly, w, h)
            cv2.fillPoly(bg, [pts], (60, 90, 110))
            cv2.polylines(bg, [pts], isClosed=True, color=(30, 30, 30), thickness=3)
        self._bg = bg
        return bg

    def render(self, t: float, view: StereoView | None = None) -> Image:
        """The frame at scene time ``t`` (seconds); ``view``: a stereo rig's second view."""
        infrared = isinstance(view, NirView)
        frame = nir.background(self.background()) if infrared else self.background().copy()
        actors = self.active(t)
        variants = set() if infrared else {a.variant for a in actors}  # own illuminator
        if "backlight" in variants:  # bright sky behind a darkened subject
            _backlight(frame)
        for actor in sorted(actors, key=lambda a: a.progress(t)):
            self._draw(frame, actor, t, view)
        if "lowlight" in variants:
            _lowlight(frame, t)
        return frame

    def landmarks(self, actor: Actor, t: float) -> Points:
        """Ground truth: the actor's 5 landmarks (eyes, nose, mouth corners) in frame pixels.

        Computed through the same maps as :meth:`render` (before clipping at the frame).
        """
        pl = self._placement(actor, t)
        geom = geometry_for(self.corpus.resolve(actor.name))
        if actor.variant in ATTACKS:
            (fh, fw, fx0, fy0), mat = self._attack_layout(actor, pl)
            pts = np.add(geom.px(fw, fh), np.array([fx0, fy0], np.float64))
            return np.asarray(pts @ mat[:, :2].T + mat[:, 2], np.float64)
        crop = self.corpus.scaled(actor.name, actor.image_index, pl.fh)
        ch, cw = crop.shape[:2]
        dest = _head_forward(geom.px(cw, ch), geom, (cw, ch), _pose(actor, pl.rel))
        return np.add(dest, np.array([int(pl.cx) - cw // 2, int(pl.cy) - ch // 2], np.float64))

    def _placement(self, actor: Actor, t: float) -> _Placement:
        w, h = self.width, self.height
        p = actor.progress(t)
        rel = t - actor.start
        if actor.variant == "in_zone" and self.zones:
            x0, y0, x1, y1 = _bbox(self.zones[actor.seed % len(self.zones)], w, h)
            fh = int((y1 - y0) * 0.8)
            return _Placement(fh, (x0 + x1) // 2 + 2 * math.sin(rel * 1.3), (y0 + y1) // 2, rel)
        fh = int(h * (0.14 + 0.36 * p))  # head grows as the person walks up
        sway = math.sin(rel * 1.7 + actor.seed) * w * 0.01
        walking = 1.0 if p < 1.0 else math.exp(-(t - actor.start - actor.approach_s) * 2.0)
        bob = walking * h * 0.006 * math.sin(rel * 2 * math.pi * 1.8)  # steps
        return _Placement(fh, w * actor.lane + sway, h * (0.52 - 0.12 * p) + bob, rel)

    def _iod_px(self, actor: Actor, fh: int) -> float:
        """Eye distance (px) of the actor's live face at this size (sets its distance)."""
        crop = self.corpus.scaled(actor.name, actor.image_index, fh)
        pts = geometry_for(self.corpus.resolve(actor.name)).px(crop.shape[1], crop.shape[0])
        return float(np.hypot(*(pts[1] - pts[0])))

    def _draw(self, frame: Image, actor: Actor, t: float, view: StereoView | None) -> None:
        pl = self._placement(actor, t)
        shift = parallax = 0.0
        light = 1.0 if not isinstance(view, NirView) else view.light(self._iod_px(actor, pl.fh))
        if view is not None:
            iod = self._iod_px(actor, pl.fh)
            shift, parallax = view.disparity(iod), view.parallax(iod)
        if actor.variant in ATTACKS:
            _layout, mat = self._attack_layout(actor, pl)
            mat = mat - np.array([[0.0, 0.0, shift], [0.0, 0.0, 0.0]])
            printed = actor.variant in PRINTS
            inst = (self._photo if printed else self._phone)(actor, pl.fh, pl.rel)
            if actor.variant == "bent":
                inst = bend(inst, parallax)
            if isinstance(view, NirView):
                inst = nir.paper(inst, light) if printed else nir.screen(inst, light)
            _paste_affine(frame, inst, mat)
            return
        face = self._head(actor, pl.fh, pl.rel, parallax)
        if isinstance(view, NirView):
            face = nir.paper(face, light) if actor.variant == "curved" else nir.skin(face, light)
        elif actor.variant == "curved":  # printed: the print's gamut, no lighting drift
            face = np.asarray(cv2.convertScaleAbs(face, alpha=0.75, beta=30), np.uint8)
        elif actor.variant != "in_zone":
            gain = 1.0 + 0.06 * math.sin(pl.rel * 0.9 + actor.seed)  # lighting drift
            if actor.variant == "backlight":
                gain *= 0.45
            face = np.asarray(cv2.convertScaleAbs(face, alpha=gain, beta=0), np.uint8)
        self._paste(frame, face, int(pl.cx - shift), int(pl.cy), soft=True)

    # ------------------------------------------------------------------ live head
    def _head(self, actor: Actor, fh: int, rel: float, parallax: float = 0.0) -> Image:
        """The crop seen on a live head: turned, tilted and smiling per :func:`head_pose`
        (``parallax``: as seen by a stereo rig's second camera)."""
        crop = self.corpus.scaled(actor.name, actor.image_index, fh)
        ch, cw = crop.shape[:2]
        geom = geometry_for(self.corpus.resolve(actor.name))
        gx, gy, z, ex, ey = self._head_grid(cw, ch, geom)
        pose = _pose(actor, rel)
        dx, dy = _displacement(z, ex, ey, pose, parallax)
        c = geom.px(cw, ch)[2]
        cos, sin = math.cos(pose.roll), math.sin(pose.roll)
        # inverse map (dest -> src): undo the roll about the nose, then the 3-D displacement
        rx, ry = gx - c[0], gy - c[1]
        map_x = np.asarray(c[0] + cos * rx + sin * ry - dx, np.float32)
        map_y = np.asarray(c[1] - sin * rx + cos * ry - dy, np.float32)
        return np.asarray(
            cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            np.uint8,
        )

    def _head_grid(self, w: int, h: int, geom: FaceGeometry) -> tuple[Field, ...]:
        key = (w, h, geom)
        hit = self._fields.get(key)
        if hit is None:
            gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
            z, ex, ey = head_fields(gx, gy, geom, w, h)
            hit = (gx, gy, z, ex, ey)
            if len(self._fields) > 128:
                self._fields.clear()
            self._fields[key] = hit
        return hit

    # ------------------------------------------------------------------ attacks
    def _attack_layout(
        self, actor: Actor, pl: _Placement
    ) -> tuple[tuple[int, int, int, int], npt.NDArray[np.float64]]:
        """(face h, face w, face x0, face y0 inside the instrument image), instrument->frame.

        A hand holds the photo / phone: one rigid plane that sways, rotates and skews a
        little (an affine map per frame, continuous in scale).
        """
        photo = actor.variant in PRINTS
        target = pl.fh * FACE_SCALE[actor.variant]
        face = self.corpus.scaled(actor.name, actor.image_index, _face_px(pl.fh, actor.variant))
        fh, fw = face.shape[:2]
        if photo:
            m = max(4, fh // 8)
            ih, iw, fx0, fy0 = fh + 2 * m, fw + 2 * m, m, m
            angle = 4.0 * math.sin(pl.rel * 1.1)
            shear = 0.05 * math.sin(pl.rel * 0.7)
        else:
            b = max(3, fh // 12)
            ih, iw, fx0, fy0 = fh + 4 * b, fw + 2 * b, b, 2 * b
            angle = 3.0 * math.sin(pl.rel * 0.9 + 0.4)
            shear = 0.0
        k = target / fh
        a = math.radians(angle)
        lin = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        lin = lin @ np.array([[1.0, shear], [0.0, 1.0]]) * k
        centre = np.array([iw / 2, ih / 2])
        mat = np.hstack([lin, (np.array([pl.cx, pl.cy]) - lin @ centre)[:, None]])
        return (fh, fw, fx0, fy0), mat

    def _photo(self, actor: Actor, fh: int, rel: float) -> Image:
        """Printed photo (unwarped): face on white paper, print tone, a moving gloss."""
        size = _face_px(fh, "photo")
        key = (actor.name, actor.image_index, size)
        paper = self._papers.get(key)
        if paper is None:
            face = self.corpus.scaled(actor.name, actor.image_index, size)
            m = max(4, face.shape[0] // 8)
            paper = np.full((face.shape[0] + 2 * m, face.shape[1] + 2 * m, 3), 235, np.uint8)
            paper[:, :, 0] = 228  # slightly warm paper white
            printed = cv2.convertScaleAbs(face, alpha=0.75, beta=30)  # matte print gamut
            grain = _noise(face.shape[0], face.shape[1])[: face.shape[0], :, :1] // 3
            paper[m : m + face.shape[0], m : m + face.shape[1]] = cv2.add(
                printed, np.broadcast_to(grain, printed.shape).copy()
            )
            cv2.rectangle(paper, (0, 0), (paper.shape[1] - 1, paper.shape[0] - 1), (200, 205, 205))
            if len(self._papers) > 64:
                self._papers.clear()
            self._papers[key] = paper
        ph, pw = paper.shape[:2]
        xx = np.arange(pw, dtype=np.float32)[None, :]
        yy = np.arange(ph, dtype=np.float32)[:, None]
        along = xx * 0.8 + yy * 0.6 - (0.2 + 0.6 * (0.5 + 0.5 * math.sin(rel * 0.6))) * (pw + ph)
        gloss = 45.0 * np.exp(-(along**2) / (2 * (0.08 * (pw + ph)) ** 2))
        out = paper.astype(np.float32) + gloss[..., None]
        return np.asarray(out.clip(0, 255), np.uint8)

    def _phone(self, actor: Actor, fh: int, rel: float) -> Image:
        """Phone or tablet replay (unwarped): black bezel, bluish screen, glare, moire,
        pixel grid."""
        face = self.corpus.scaled(actor.name, actor.image_index, _face_px(fh, actor.variant))
        face_f = face.astype(np.float32)
        sh, sw = face.shape[:2]
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        moire = 1.0 + 0.12 * np.sin((xx * 0.9 + yy * 0.35) + rel * 3.0)
        grid = np.where((xx.astype(np.int32) % 3 == 2) | (yy.astype(np.int32) % 3 == 2), 0.9, 1.0)
        glare_c = sw * (0.3 + 0.2 * math.sin(rel * 0.8))
        glare = 90.0 * np.exp(-(((xx - glare_c) + (yy - sh * 0.3)) ** 2) / (2 * (sw * 0.12) ** 2))
        screen = (face_f * 0.85 + 30.0) * (moire * grid)[..., None] * np.array(
            [1.1, 1.0, 0.88], np.float32
        ) + glare[..., None]
        b = max(3, sh // 12)
        phone = np.full((sh + 4 * b, sw + 2 * b, 3), 15, np.uint8)
        phone[2 * b : 2 * b + sh, b : b + sw] = screen.clip(0, 255).astype(np.uint8)
        cv2.circle(phone, (phone.shape[1] // 2, b), max(1, b // 3), (40, 40, 40), -1)  # camera
        return phone

    # ------------------------------------------------------------------ compositing
    def _paste(self, frame: Image, img: Image, cx: int, cy: int, *, soft: bool) -> None:
        h, w = frame.shape[:2]
        ih, iw = img.shape[:2]
        x0, y0 = cx - iw // 2, cy - ih // 2
        fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + iw), min(h, y0 + ih)
        if fx1 <= fx0 or fy1 <= fy0:
            return
        src = img[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        dst = frame[fy0:fy1, fx0:fx1]
        if not soft:
            dst[:] = src
            return
        mask = self._mask(ih, iw)[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None]
        dst[:] = (src * mask + dst * (1.0 - mask)).astype(np.uint8)

    def _mask(self, h: int, w: int) -> npt.NDArray[np.float32]:
        key = (h, w)
        hit = self._masks.get(key)
        if hit is None:
            m = np.zeros((h, w), np.float32)
            cv2.ellipse(m, (w // 2, h // 2), (int(w * 0.46), int(h * 0.48)), 0, 0, 360, 1.0, -1)
            hit = np.asarray(cv2.GaussianBlur(m, (0, 0), max(1.0, w * 0.04)), np.float32)
            if len(self._masks) > 256:
                self._masks.clear()
            self._masks[key] = hit
        return hit


def _face_px(fh: int, variant: str) -> int:
    """Source size (pixels) of the face printed on a photo / shown on a phone or tablet."""
    return max(16, int(fh * FACE_SCALE[variant]))


def _pose(actor: Actor, rel: float) -> HeadPose:
    """A live head's pose; a mask (``curved``) turns with the hand but has no expression."""
    pose = head_pose(rel, actor.seed)
    if actor.variant == "curved":
        return HeadPose(pose.yaw * 0.5, pose.pitch * 0.5, pose.roll, 0.0)
    return pose


def _head_forward(
    src: Points, geom: FaceGeometry, size: tuple[int, int], pose: HeadPose, *, iterations: int = 8
) -> Points:
    """Where points ``src`` of a ``size`` (w, h) crop land on the rendered head.

    Inverts the remap of ``Scene._head`` by fixed-point iteration (the displacement is a
    few pixels with gradients << 1, so it converges fast).
    """
    w, h = size
    c = geom.px(w, h)[2]
    cos, sin = math.cos(pose.roll), math.sin(pose.roll)
    dest = src.astype(np.float64).copy()
    for _ in range(iterations):  # fixed point: src = c + R^-1 (dest - c) - D(dest)
        z, ex, ey = head_fields(dest[:, 0], dest[:, 1], geom, w, h)
        dx, dy = _displacement(z, ex, ey, pose)
        qx, qy = src[:, 0] + dx - c[0], src[:, 1] + dy - c[1]
        dest = np.stack([c[0] + cos * qx - sin * qy, c[1] + sin * qx + cos * qy], axis=1)
    return dest


def _paste_affine(frame: Image, img: Image, mat: npt.NDArray[np.float64]) -> None:
    """Draw ``img`` into ``frame`` through the 2x3 map ``mat`` (img -> frame), hard edges."""
    h, w = frame.shape[:2]
    ih, iw = img.shape[:2]
    corners = np.array([[0, 0], [iw, 0], [0, ih], [iw, ih]], np.float64) @ mat[:, :2].T + mat[:, 2]
    x0, y0 = (max(0, math.floor(v) - 1) for v in corners.min(axis=0))
    x1 = min(w, math.ceil(corners[:, 0].max()) + 1)
    y1 = min(h, math.ceil(corners[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    local = mat.copy()
    local[:, 2] -= (x0, y0)
    roi = np.ascontiguousarray(frame[y0:y1, x0:x1])
    cv2.warpAffine(
        img,
        local,
        (x1 - x0, y1 - y0),
        dst=roi,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_TRANSPARENT,
    )
    frame[y0:y1, x0:x1] = roi


def _poly_px(poly: Polygon, w: int, h: int) -> npt.NDArray[np.int32]:
    return np.array([[x * w, y * h] for x, y in poly], dtype=np.int32)


def _bbox(poly: Polygon, w: int, h: int) -> tuple[int, int, int, int]:
    pts = _poly_px(poly, w, h)
    return int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()), int(pts[:, 1].max())


def _backlight(frame: Image) -> None:
    """Bright sky behind the subject: upper part near saturation."""
    h = frame.shape[0]
    top = frame[: int(h * 0.6)]
    top[:] = cv2.convertScaleAbs(top, alpha=0.4, beta=170)


def _lowlight(frame: Image, t: float) -> None:
    """Night: dark, low contrast, a little sensor noise (cheap, shifted pattern)."""
    frame[:] = cv2.convertScaleAbs(frame, alpha=0.18, beta=4)
    noise = _noise(frame.shape[0], frame.shape[1])
    shift = int(t * 37) % 16
    frame[:] = cv2.add(frame, noise[shift : shift + frame.shape[0], : frame.shape[1]])


_noise_cache: dict[tuple[int, int], Image] = {}


def _noise(h: int, w: int) -> Image:
    key = (h, w)
    if key not in _noise_cache:
        rng = np.random.default_rng(1234)
        _noise_cache[key] = rng.integers(0, 12, size=(h + 16, w, 3), dtype=np.uint8)
    return _noise_cache[key]
