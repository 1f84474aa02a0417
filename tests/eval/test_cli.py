"""The eval CLI end to end on tiny generated datasets with a fake embedder (fast, no models)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.eval.conftest import PixelEmbedder, run_cli, write_person_images


def _pairs_file(
    path: Path, same: list[tuple[str, int, int]], diff: list[tuple[str, int, str, int]]
) -> Path:
    assert len(same) == len(diff)
    lines = [str(len(same))]
    lines += [f"{n}\t{a}\t{b}" for n, a, b in same]
    lines += [f"{n1}\t{a}\t{n2}\t{b}" for n1, a, n2, b in diff]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_pairs_cli_counts_failures(
    tmp_path: Path, fake_pipeline: PixelEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    write_person_images(images, {"A": 3, "B": 3, "C": 3, "D": 2}, black=("D",))
    # pairs use .jpg names: write the PNG bytes under that name (cv2 decodes by content)
    for p in images.rglob("*.png"):
        p.rename(p.with_suffix(".jpg"))
    same = [("A", 1, 2), ("B", 1, 3), ("C", 2, 3), ("D", 1, 2)]
    diff = [("A", 1, "B", 1), ("B", 2, "C", 1), ("C", 3, "A", 2), ("A", 3, "D", 1)]
    pf = _pairs_file(tmp_path / "pairs.txt", same, diff)
    out_json = tmp_path / "out.json"
    rc = run_cli(
        ["eval", "pairs", str(pf), str(images), "--pipeline", "opencv", "--json", str(out_json)]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "detection failures: 2 images, 2 pairs (1 genuine, 1 impostor)" in text
    assert "TAR @ FAR=0.01: not measurable with 4 impostor pairs" in text
    data = json.loads(out_json.read_text())
    assert data["failed_pairs"] == 2
    assert data["failure_reasons"] == {"no_face": 2}
    # 6 scorable pairs separate perfectly; each of the 2 failed pairs is an error. Folds are
    # dealt round-robin: with 4 same + 4 diff, folds 0..3 hold one of each; both failed pairs
    # are 4th in their class, so fold 3 scores 0/2 and the others 2/2.
    assert [f["accuracy"] for f in data["folds"]] == [1.0, 1.0, 1.0, 0.0]
    assert data["accuracy_mean"] == pytest.approx(0.75)
    assert fake_pipeline.calls == 11  # every distinct image embedded once


def test_eval_identify_cli(
    tmp_path: Path, fake_pipeline: PixelEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    people = write_person_images(tmp_path / "all", {"A": 3, "B": 3, "S": 2})
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    for name in ("A", "B"):
        (gallery / name).mkdir(parents=True)
        people[name][0].rename(gallery / name / people[name][0].name)
    for name, paths in people.items():
        (probes / name).mkdir(parents=True, exist_ok=True)
        for p in paths[1 if name != "S" else 0 :]:
            p.rename(probes / name / p.name)
    out_json = tmp_path / "id.json"
    rc = run_cli(["eval", "identify", str(gallery), str(probes), "--json", str(out_json)])
    assert rc == 0
    data = json.loads(out_json.read_text())
    assert data["rank1"] == 1.0
    assert data["mated_searches"] == 4
    assert data["nonmated_searches"] == 2
    assert "not measurable with 2 non-mated searches" in capsys.readouterr().out


def test_calibrate_cli_folder_writes_config_only_on_request(
    tmp_path: Path, fake_pipeline: PixelEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "people"
    write_person_images(root, {f"p{i:02d}": 3 for i in range(30)}, noise=20.0)
    cfg = tmp_path / "gateway.toml"
    original = '# keep me\n[face]\nmatch_threshold = 0.40 # old\n\n[site]\nid = "x"\n'
    cfg.write_text(original)
    rc = run_cli(["calibrate", "--target-fmr", "1e-2", str(root)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "config not changed" in out
    assert cfg.read_text() == original
    # 90 images: 90 genuine, 3915 - 90 = 3915 impostor comparisons
    assert "comparisons: 90 genuine, 3915 impostor" in out
    assert "Clopper-Pearson 95% interval" in out
    rc = run_cli(
        [
            "calibrate",
            "--target-fmr",
            "1e-2",
            str(root),
            "--write-config",
            str(cfg),
            "--json",
            str(tmp_path / "c.json"),
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "c.json").read_text())
    data = tomllib.loads(cfg.read_text())
    assert data["face"]["match_threshold"] == pytest.approx(res["threshold"])
    assert data["face"]["match_margin"] == pytest.approx(res["margin"])
    assert res["fmr"] <= 1e-2
    assert cfg.read_text().startswith("# keep me\n[face]\nmatch_threshold = ")
    assert "# old\n" in cfg.read_text()


def test_calibrate_cli_pairs_needs_images_dir(
    tmp_path: Path, fake_pipeline: PixelEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    pf = _pairs_file(tmp_path / "p.txt", [("A", 1, 2)], [("A", 1, "B", 1)])
    assert run_cli(["calibrate", str(pf)]) == 2
    assert "needs IMAGES_DIR" in capsys.readouterr().err


def test_bad_target_fmr_rejected() -> None:
    with pytest.raises(SystemExit):
        run_cli(["calibrate", "--target-fmr", "2", "x"])


def test_calibrate_cli_refuses_to_write_unmeasurable_target(
    tmp_path: Path, fake_pipeline: PixelEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "people"
    write_person_images(root, {f"p{i}": 2 for i in range(5)})  # 45 - 5 = 40 impostor comparisons
    cfg = tmp_path / "gateway.toml"
    cfg.write_text("[face]\nmatch_threshold = 0.4\n")
    argv = ["calibrate", "--target-fmr", "1e-3", str(root), "--write-config", str(cfg)]
    assert run_cli(argv) == 3
    err = capsys.readouterr().err
    assert "not measurable with 40 impostor comparisons" in err
    assert cfg.read_text() == "[face]\nmatch_threshold = 0.4\n"
    assert run_cli([*argv, "--force"]) == 0
    assert tomllib.loads(cfg.read_text())["face"]["match_threshold"] != 0.4
