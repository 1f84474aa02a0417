"""One hostile file in an enrolment directory gets its own verdict; the others still enrol,
and nothing hangs or allocates what a header claims (#18 item 9)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlite_utils

from gateway.privacy.enroll import enroll_images
from gateway.privacy.vault import Vault
from tests.face.test_image_input import jpeg_claiming

from .conftest import FakeGallery
from .test_enroll import FakePipeline, _img


def test_one_huge_claim_jpeg_does_not_abort_the_directory(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str, tmp_path: Path
) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    _img(d / "1-ok.png", 10)
    (d / "2-huge.jpg").write_bytes(jpeg_claiming(65000, 65000))
    _img(d / "3-ok.png", 20)
    res = enroll_images(db, vault, FakePipeline(), gallery, consented, [d], None)
    verdicts = {v.source: v.verdict for v in res.verdicts}
    assert verdicts == {"1-ok.png": "ok", "2-huge.jpg": "unreadable", "3-ok.png": "ok"}
    assert res.stored == 2


@pytest.mark.timeout(30)
def test_fifo_named_jpg_is_skipped_or_refused_without_hanging(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str, tmp_path: Path
) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    _img(d / "1-ok.png", 10)
    os.mkfifo(d / "2-pipe.jpg")
    (d / "3-dir.jpg").mkdir()
    res = enroll_images(db, vault, FakePipeline(), gallery, consented, [d], None)
    assert {v.source: v.verdict for v in res.verdicts} == {"1-ok.png": "ok"}
    # named explicitly: a per-file verdict, not a hang
    res = enroll_images(
        db, vault, FakePipeline(), gallery, consented, [d / "1-ok.png", d / "2-pipe.jpg"], None
    )
    assert {v.source: v.verdict for v in res.verdicts} == {
        "1-ok.png": "ok",
        "2-pipe.jpg": "unreadable",
    }


@pytest.mark.timeout(30)
def test_zones_preview_refuses_a_fifo_or_a_pixel_bomb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .test_commands import _run

    zones = '[{"name": "window", "polygon": [[0.5, 0], [1, 0], [1, 0.5], [0.5, 0.5]]}]'
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(jpeg_claiming(65000, 65000))
    for image, why in ((fifo, "not a regular file"), (bomb, "65000x65000")):
        out = tmp_path / "zones.png"
        argv = ["zones", "preview", "gate", "--image", str(image), "--zones", zones]
        assert _run([*argv, "--out", str(out)]) == 1
        assert why in capsys.readouterr().err
        assert not out.exists()


@pytest.mark.timeout(20)
def test_notice_file_that_is_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    from gateway.privacy.notice import NoticeError, load_notice

    fifo = tmp_path / "notice.txt"
    os.mkfifo(fifo)
    with pytest.raises(NoticeError, match="not a regular file"):
        load_notice(fifo, "v1")
