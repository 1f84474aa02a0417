"""Face corpus: real faces for the simulated camera and for the harness's enrolment.

Source, in order: an explicit directory; ``$HWSIM_FACES`` (``none`` forces the fallback);
``faces/lfw-dev`` of ``$GATEWAY_SHARED_DIR`` or of ``../shared`` (relative to the working
directory, then to the repository root) when present; the package corpus
(:mod:`hw_sim.package_corpus`, faces from registry packages cached at set-up) when cached
and verified. The directory uses the LFW layout ``<Name>/<Name>_NNNN.jpg`` (an ``images/``
sub-folder is accepted; an optional ``residents.txt`` names the residents, one per line).
Without one, the corpus falls back to the single face that the scikit-image wheel ships,
``skimage.data.astronaut()`` (person name ``astronaut``). Nothing is copied.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
ASTRONAUT = "astronaut"
UNKNOWN = "unknown"
_REPO_ROOT = Path(__file__).resolve().parents[2]
# Head-and-shoulders crops (y0, y1, x0, x1) that keep the whole face with some margin.
_LFW_CROP = (35, 215, 50, 200)
_ASTRONAUT_CROP = (20, 240, 130, 310)
#: The scenario library uses resident1..resident5 and at least one stranger.
RESIDENTS_NEEDED = 5


class CorpusError(RuntimeError):
    """The face corpus cannot provide what was asked."""


def default_corpus_dir() -> Path | None:
    """The LFW directory to use by default, or None (then: skimage astronaut)."""
    env = os.environ.get("HWSIM_FACES")
    if env is not None and env.lower() in ("", "none", "astronaut"):
        return None  # forced fallback (what a fresh clone without ../shared sees)
    candidates = [Path(env)] if env else []
    shared = os.environ.get("GATEWAY_SHARED_DIR")
    if shared:
        candidates.append(Path(shared) / "faces/lfw-dev")
    else:
        candidates += [Path("../shared/faces/lfw-dev"), _REPO_ROOT.parent / "shared/faces/lfw-dev"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    from hw_sim.package_corpus import verified_faces

    return verified_faces()


@dataclass(frozen=True)
class Person:
    """One identity of the corpus and its image files (empty for the astronaut)."""

    name: str
    images: tuple[Path, ...]


class FaceCorpus:
    """Identities with face crops; scaled crops are cached (rendering must stay cheap)."""

    def __init__(self, directory: Path | None = None, *, use_default: bool = True) -> None:
        if directory is None and use_default:
            directory = default_corpus_dir()
        self.directory = directory
        self._people: dict[str, Person] = {}
        self._resident_order: list[str] | None = None
        if directory is not None:
            root = directory / "images" if (directory / "images").is_dir() else directory
            if not root.is_dir():
                raise CorpusError(f"face corpus directory {directory} does not exist")
            for sub in sorted(p for p in root.iterdir() if p.is_dir()):
                imgs = tuple(sorted(sub.glob("*.jpg")))
                if imgs:
                    self._people[sub.name] = Person(sub.name, imgs)
            if not self._people:
                raise CorpusError(f"face corpus {root} holds no <Name>/<Name>_NNNN.jpg images")
            roles = root / "residents.txt"
            if roles.is_file():
                listed = [ln.strip() for ln in roles.read_text().splitlines() if ln.strip()]
                self._resident_order = [n for n in listed if n in self._people]
            self.source = f"lfw:{root}"
        else:
            self._people[ASTRONAUT] = Person(ASTRONAUT, ())
            self.source = "skimage.data.astronaut"
        self._lock = threading.Lock()
        self._crops: dict[tuple[str, int], Image] = {}
        self._scaled: dict[tuple[str, int, int], Image] = {}
        log.info("face corpus: %s (%d identities)", self.source, len(self._people))

    def names(self) -> list[str]:
        """All identity names, sorted."""
        return sorted(self._people)

    def residents(self, n: int = 4, min_images: int = 5) -> list[str]:
        """``n`` resident names, deterministic: most images first, then by name."""
        if ASTRONAUT in self._people:
            return [ASTRONAUT]
        if self._resident_order is not None:
            return self._resident_order[:n]
        ranked = sorted(
            (p for p in self._people.values() if len(p.images) >= min_images),
            key=lambda p: (-len(p.images), p.name),
        )
        if not ranked:
            ranked = sorted(self._people.values(), key=lambda p: (-len(p.images), p.name))
        return [p.name for p in ranked[:n]]

    def strangers(self, n: int = 4) -> list[str]:
        """``n`` names that are never residents (identities with one image), deterministic."""
        residents = set(self.residents(RESIDENTS_NEEDED))
        singles = sorted(
            p.name for p in self._people.values() if len(p.images) == 1 and p.name not in residents
        )
        return singles[:n]

    def shortfall(self) -> str | None:
        """Why this corpus cannot play the scenario library (None when it can)."""
        residents = self.residents(RESIDENTS_NEEDED)
        if len(residents) < RESIDENTS_NEEDED or not self.strangers(1):
            return (
                f"the face corpus ({self.source}) has {len(residents)} resident(s) and "
                f"{len(self.strangers(8))} stranger(s); the scenarios need "
                f"{RESIDENTS_NEEDED} residents and a stranger"
            )
        return None

    def resolve(self, ref: str, index: int = 0) -> str:
        """Map a scenario reference to a name: ``resident1``.., ``stranger1``.., or a name."""
        for prefix, pick in (("resident", self.residents), ("stranger", self.strangers)):
            if ref.startswith(prefix) and ref[len(prefix) :].isdigit():
                k = int(ref[len(prefix) :])
                names = pick(max(k, 4))
                if not names:
                    raise CorpusError(f"the corpus ({self.source}) has no {prefix}s")
                return names[(k - 1) % len(names)]
        if ref == UNKNOWN:
            names = self.strangers(8)
            if not names:
                raise CorpusError(
                    f"the corpus ({self.source}) has no face that is not a resident; "
                    "unknown-person scenes need an LFW-layout corpus (--faces / ../shared)"
                )
            return names[index % len(names)]
        if ref not in self._people:
            raise CorpusError(f"person {ref!r} is not in the face corpus ({self.source})")
        return ref

    def image_paths(self, name: str) -> tuple[Path, ...]:
        """Image files of ``name`` (empty for the astronaut)."""
        return self._people[self.resolve(name)].images

    def enrolment_images(self, name: str, k: int = 3) -> list[Image]:
        """Up to ``k`` full BGR images for enrolling ``name`` (the first files of the person).

        The camera shows the person's *later* images when there are enough, so enrolment
        and probe differ.
        """
        person = self._people[self.resolve(name)]
        if not person.images:
            return [_astronaut()]
        return [_read(p) for p in person.images[:k]]

    def probe_index(self, name: str, variant: int = 0) -> int:
        """Which image the camera shows for ``name`` (after the enrolment ones if possible)."""
        person = self._people[self.resolve(name)]
        n = len(person.images)
        if n == 0:
            return 0
        first = 3 if n > 3 else 0
        return first + variant % max(1, n - first)

    def crop(self, name: str, index: int = 0) -> Image:
        """Head-and-shoulders crop (BGR) of image ``index`` of ``name``."""
        key = (self.resolve(name), index)
        with self._lock:
            hit = self._crops.get(key)
        if hit is not None:
            return hit
        person = self._people[key[0]]
        if person.images:
            y0, y1, x0, x1 = _LFW_CROP
            img = _read(person.images[index % len(person.images)])[y0:y1, x0:x1]
        else:
            y0, y1, x0, x1 = _ASTRONAUT_CROP
            img = _astronaut()[y0:y1, x0:x1]
        img = np.ascontiguousarray(img)
        with self._lock:
            self._crops[key] = img
        return img

    def scaled(self, name: str, index: int, height: int) -> Image:
        """The crop resized to ``height`` pixels (cached per size, quantised to 4 px)."""
        height = max(8, int(height) // 4 * 4)
        key = (self.resolve(name), index, height)
        with self._lock:
            hit = self._scaled.get(key)
        if hit is not None:
            return hit
        src = self.crop(name, index)
        width = max(8, round(src.shape[1] * height / src.shape[0]))
        out = np.asarray(cv2.resize(src, (width, height), interpolation=cv2.INTER_AREA), np.uint8)
        with self._lock:
            if len(self._scaled) > 512:
                self._scaled.clear()
            self._scaled[key] = out
        return out


def _read(path: Path) -> Image:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CorpusError(f"cannot decode face image {path}")
    return np.asarray(img, dtype=np.uint8)


_astro_cache: list[Image] = []


def _astronaut() -> Image:
    if not _astro_cache:
        try:
            from skimage import data
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise CorpusError(
                "no face corpus directory and scikit-image is not installed "
                "(pip install scikit-image, or pass --faces DIR)"
            ) from exc
        rgb = np.asarray(data.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]
        _astro_cache.append(np.ascontiguousarray(rgb[:, :, ::-1]))
    return _astro_cache[0]
