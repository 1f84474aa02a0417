"""LFW pairs parsing, 10-fold accuracy, and the View 1 DevTrain accuracy of the pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from gateway.face import lfw
from tests.face.conftest import FACES


def test_parse_pairs(tmp_path: Path) -> None:
    f = tmp_path / "pairs.txt"
    f.write_text("2\nAlice 1 2\nAlice 3 Bob 12\n")
    pairs = lfw.parse_pairs(f, tmp_path / "img")
    assert pairs == [
        lfw.Pair(
            tmp_path / "img/Alice/Alice_0001.jpg", tmp_path / "img/Alice/Alice_0002.jpg", True
        ),
        lfw.Pair(tmp_path / "img/Alice/Alice_0003.jpg", tmp_path / "img/Bob/Bob_0012.jpg", False),
    ]
    f.write_text("1\nAlice 1\n")
    with pytest.raises(ValueError, match=":2: expected 3 or 4 fields"):
        lfw.parse_pairs(f, tmp_path)
    f.write_text("")
    with pytest.raises(ValueError, match="empty"):
        lfw.parse_pairs(f, tmp_path)


def test_best_threshold_and_tenfold() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.75])
    same = np.array([1, 1, 1, 0, 0, 0], bool)
    thr, acc = lfw.best_threshold(scores, same)
    assert acc == pytest.approx(5 / 6)
    assert ((scores >= thr) == same).mean() == pytest.approx(acc)
    sep = np.array([0.9, 0.8, 0.1, 0.2] * 10)
    lab = np.array([1, 1, 0, 0] * 10, bool)
    assert lfw.tenfold_accuracy(sep, lab) == (1.0, 0.0)
    rng = np.random.default_rng(0)
    rand_scores = rng.random(400)
    mean, _ = lfw.tenfold_accuracy(rand_scores, rng.random(400) > 0.5)
    assert 0.35 < mean < 0.65  # chance level for unrelated scores


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.models
def test_lfw_view1_devtrain_accuracy(model_dir: Path) -> None:
    from gateway.face import models
    from gateway.face.align import align
    from gateway.face.detector import OrtYuNet
    from gateway.face.embedder import OrtSFace
    from gateway.face.image import load_image
    from gateway.face.settings import FaceSettings

    root = FACES / "lfw-dev"
    pairs = lfw.parse_pairs(root / "pairsDevTrain.txt", root / "images")
    assert len(pairs) == 2200
    det = OrtYuNet(
        model_dir / models.YUNET,
        FaceSettings(detector_input=None, score_threshold=0.5, threads=2),
    )
    emb = OrtSFace(model_dir / models.SFACE, threads=2)
    paths = sorted({p for pr in pairs for p in (pr.left, pr.right)})
    t0 = time.perf_counter()
    crops: dict[Path, np.ndarray] = {}
    for path in paths:  # detection on the full 250x250 image; the face nearest the centre
        img = load_image(path)
        faces = det.detect(img)
        if faces:
            cy, cx = img.shape[0] / 2, img.shape[1] / 2
            f = min(
                faces,
                key=lambda d: (
                    (d.box[0] + d.box[2] / 2 - cx) ** 2 + (d.box[1] + d.box[3] / 2 - cy) ** 2
                ),
            )
            crops[path] = align(img, f.landmarks)
    keys = list(crops)
    cache: dict[Path, np.ndarray] = {}  # per-image embeddings, in memory only
    for i in range(0, len(keys), 32):
        batch = keys[i : i + 32]
        cache.update(zip(batch, emb.embed([crops[k] for k in batch]), strict=True))
    scores = np.array(
        [
            float(cache[p.left] @ cache[p.right]) if p.left in cache and p.right in cache else -1.0
            for p in pairs
        ]
    )
    same = np.array([p.same for p in pairs])
    mean, std = lfw.tenfold_accuracy(scores, same)
    elapsed = time.perf_counter() - t0
    print(
        f"LFW DevTrain: {mean:.4f} +- {std:.4f}, {len(paths) - len(cache)} undetected, "
        f"{len(paths)} images in {elapsed:.0f}s"
    )
    assert mean >= 0.99
