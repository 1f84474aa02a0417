"""``--face centre|largest``: which detected face is an image's subject (LFW labels the face
nearest the centre; the gate takes the largest), for both pipelines and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.errors import ModelError
from gateway.eval.embedder import pick_face
from gateway.eval.pipelines import GatewayEmbedder
from tests.eval.conftest import PixelEmbedder, run_cli, write_person_images

# a 250x250 LFW-like image: a big bystander in the corner, the subject centred and smaller
BYSTANDER = (0.0, 0.0, 120.0, 140.0)
SUBJECT = (95.0, 90.0, 60.0, 70.0)


def test_pick_face_by_rule() -> None:
    boxes = [BYSTANDER, SUBJECT]
    assert pick_face(boxes, 250, 250, "largest") == 0
    assert pick_face(boxes, 250, 250, "centre") == 1
    assert pick_face([SUBJECT, BYSTANDER], 250, 250, "centre") == 0
    assert pick_face([SUBJECT], 250, 250, "largest") == 0
    with pytest.raises(ValueError, match="unknown face rule"):
        pick_face(boxes, 250, 250, "leftmost")
    with pytest.raises(ValueError, match="no face"):
        pick_face([], 250, 250, "centre")


class _TwoFaces:
    """A stand-in FacePipeline: two observations whose embeddings say which one was taken."""

    def analyze(self, image: npt.NDArray[np.uint8], *, liveness: bool) -> list[Any]:
        ok = SimpleNamespace(ok=True, reason=None)
        return [
            SimpleNamespace(box=BYSTANDER, quality=ok, embedding=np.array([1.0, 0.0], np.float32)),
            SimpleNamespace(box=SUBJECT, quality=ok, embedding=np.array([0.0, 1.0], np.float32)),
        ]


@pytest.mark.parametrize(("rule", "taken"), [("largest", [1.0, 0.0]), ("centre", [0.0, 1.0])])
def test_gateway_embedder_takes_the_face_of_its_rule(rule: str, taken: list[float]) -> None:
    image = np.zeros((250, 250, 3), np.uint8)
    emb = GatewayEmbedder(_TwoFaces(), face=rule).embed(image)
    assert emb.vector is not None
    assert emb.vector.tolist() == taken


def test_gateway_embedder_refuses_an_unknown_rule() -> None:
    with pytest.raises(ModelError, match="unknown face rule"):
        GatewayEmbedder(_TwoFaces(), face="leftmost")


@pytest.mark.parametrize("given", [[], ["--face", "largest"], ["--face", "centre"]])
def test_identify_cli_passes_the_rule_and_reports_it(
    tmp_path: Path,
    fake_pipeline: PixelEmbedder,
    capsys: pytest.CaptureFixture[str],
    given: list[str],
) -> None:
    rule = given[1] if given else "centre"  # the default: LFW's convention
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    write_person_images(gallery, {"A": 2, "B": 2, "C": 2})
    write_person_images(probes, {"A": 1, "B": 1, "Z": 1}, seed=0)
    out = tmp_path / "out.json"
    rc = run_cli(["eval", "identify", str(gallery), str(probes), *given, "--json", str(out)])
    assert rc == 0
    assert fake_pipeline.face == rule
    assert f"face: {rule} (" in capsys.readouterr().out
    assert json.loads(out.read_text())["face"] == rule


def test_pairs_cli_reports_the_rule(
    tmp_path: Path, fake_pipeline: PixelEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    write_person_images(images, {"A": 2, "B": 2})
    for p in images.rglob("*.png"):
        p.rename(p.with_suffix(".jpg"))
    pf = tmp_path / "pairs.txt"
    pf.write_text("2\nA\t1\t2\nB\t1\t2\nA\t1\tB\t1\nA\t2\tB\t2\n")
    out = tmp_path / "out.json"
    assert (
        run_cli(["eval", "pairs", str(pf), str(images), "--face", "largest", "--json", str(out)])
        == 0
    )
    assert fake_pipeline.face == "largest"
    assert "face: largest (the largest face, the gate's rule)" in capsys.readouterr().out
    assert json.loads(out.read_text())["face"] == "largest"
    with pytest.raises(SystemExit):
        run_cli(["eval", "pairs", str(pf), str(images), "--face", "leftmost"])
