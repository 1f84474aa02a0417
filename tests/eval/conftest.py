"""Synthetic folder-per-person data and a fake embedder for fast CLI tests (no models)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from gateway.eval import commands
from gateway.eval.embedder import Embedding, normalise


def run_cli(argv: list[str]) -> int:
    """Parse ``argv`` as the ``gateway`` command's eval subcommands and run it."""
    parser = argparse.ArgumentParser(prog="gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


class PixelEmbedder:
    """Embedding = the first 128 pixel values, normalised; an all-black image has no face."""

    name = "pixels"

    def __init__(self) -> None:
        self.calls = 0
        self.face: str | None = None  # the face rule the CLI asked for

    def embed(self, image_bgr: npt.NDArray[np.uint8]) -> Embedding:
        self.calls += 1
        flat = image_bgr.astype(np.float32).ravel()[:128] - 127.5
        if not image_bgr.any():
            return Embedding(None, "no_face")
        return Embedding(normalise(flat))


def write_person_images(
    root: Path,
    people: dict[str, int],
    noise: float = 12.0,
    seed: int = 0,
    black: tuple[str, ...] = (),
) -> dict[str, list[Path]]:
    """``root/<person>/<person>_000N.png``: a per-person base pattern plus per-image noise."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {}
    for person, n in people.items():
        base = rng.uniform(20, 235, size=(8, 16, 3))
        (root / person).mkdir(parents=True, exist_ok=True)
        for k in range(1, n + 1):
            img = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
            if person in black:
                img[:] = 0
            path = root / person / f"{person}_{k:04d}.png"
            cv2.imwrite(str(path), img)
            out.setdefault(person, []).append(path)
    return out


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> PixelEmbedder:
    """Make every ``--pipeline`` of the eval CLI use the PixelEmbedder."""
    embedder = PixelEmbedder()

    def make(
        name: str,
        model_dir: Path | None = None,
        *,
        flip: bool = False,
        quality_gate: bool = True,
        face: str = "largest",
    ) -> PixelEmbedder:
        embedder.face = face
        return embedder

    monkeypatch.setattr("gateway.eval.commands.make_embedder", make)
    return embedder


WriteImages = Callable[..., dict[str, list[Path]]]
