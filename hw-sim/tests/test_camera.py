"""MJPEG camera: OpenCV reads it at the configured fps; scenes; unplug/replug."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from hw_sim.config import VARIANTS
from hw_sim.corpus import FaceCorpus
from hw_sim.scenes import Actor, Scene
from hw_sim.sim import SimError, Simulator


def test_opencv_reads_stream_at_configured_fps(sim: Simulator) -> None:
    cap = cv2.VideoCapture(sim.camera_url("main-cam"))
    assert cap.isOpened()
    try:
        ok, frame = cap.read()  # first frame (connection set-up not timed)
        assert ok
        assert frame.shape == (240, 320, 3)
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 2.0:
            ok, frame = cap.read()
            assert ok
            n += 1
        fps = n / (time.monotonic() - t0)
    finally:
        cap.release()
    assert 8 * 0.75 <= fps <= 8 * 1.25, f"measured {fps:.1f} fps, configured 8"


def test_unplug_ends_stream_and_replug_restores(sim: Simulator) -> None:
    cap = cv2.VideoCapture(sim.camera_url("main-cam"))
    assert cap.read()[0]
    sim.do("unplug-camera", {"camera": "main-cam"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and cap.read()[0]:
        pass
    assert not cap.read()[0], "stream kept delivering frames after unplug"
    cap.release()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(sim.camera_url("main-cam"), timeout=2)  # noqa: S310 - loopback
    assert err.value.code == 503
    sim.do("replug-camera", {"camera": "main-cam"})
    cap = cv2.VideoCapture(sim.camera_url("main-cam"))
    try:
        assert cap.read()[0]
    finally:
        cap.release()
    assert sim.state()["cameras"]["main-cam"]["plugged"] is True


def _scene(corpus: FaceCorpus) -> Scene:
    return Scene(320, 240, corpus, zones=[[(0.72, 0.12), (0.95, 0.12), (0.95, 0.42), (0.72, 0.42)]])


def test_background_is_deterministic_and_people_change_the_frame(corpus: FaceCorpus) -> None:
    a, b = _scene(corpus), _scene(corpus)
    assert np.array_equal(a.render(0.0), b.render(0.0))
    name = corpus.residents(1)[0]
    a.add(Actor(name, 0, "live", start=0.0, approach_s=2.0))
    near, far = a.render(2.0), a.render(0.1)
    bg = b.render(2.0)
    # the face grows as the person walks up: more pixels differ from the background
    assert (np.abs(near.astype(int) - bg).sum(axis=2) > 30).sum() > (
        np.abs(far.astype(int) - bg).sum(axis=2) > 30
    ).sum()


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_renders(corpus: FaceCorpus, variant: str) -> None:
    s = _scene(corpus)
    s.add(Actor(corpus.residents(1)[0], 0, variant, start=0.0, approach_s=0.5))
    frame = s.render(1.0)
    assert frame.shape == (240, 320, 3)
    assert frame.dtype == np.uint8
    bg = _scene(corpus).render(1.0)
    assert not np.array_equal(frame, bg)


def test_variant_signatures(corpus: FaceCorpus) -> None:
    name = corpus.residents(1)[0]
    s = _scene(corpus)
    photo = s._photo(Actor(name, 0, "photo", 0.0), 120, 0.0)
    assert photo[2, photo.shape[1] // 2].min() > 200  # white paper border
    phone = s._phone(Actor(name, 0, "replay", 0.0), 120, 0.0)
    assert phone[2, phone.shape[1] // 2].max() < 40  # black bezel
    dark = _scene(corpus)
    dark.add(Actor(name, 0, "lowlight", 0.0, approach_s=0.1))
    assert dark.render(1.0).mean() < _scene(corpus).render(1.0).mean() * 0.4
    zone = _scene(corpus)
    zone.add(Actor(name, 0, "in_zone", 0.0))
    diff = np.abs(zone.render(1.0).astype(int) - _scene(corpus).render(1.0)).sum(axis=2) > 30
    ys, xs = np.nonzero(diff)
    assert xs.min() >= int(320 * 0.72) - 2  # the face stays inside the window
    assert ys.max() <= int(240 * 0.42) + 2


def test_bad_requests_are_clear(sim: Simulator) -> None:
    with pytest.raises(SimError, match="unknown camera 'nope'"):
        sim.do("person-approaches", {"camera": "nope"})
    with pytest.raises(SimError, match="unknown variant"):
        sim.do("person-approaches", {"camera": "main-cam", "variant": "hologram"})
    req = urllib.request.Request(  # noqa: S310 - loopback
        sim.api_url + "/open-door", data=json.dumps({}).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=2)  # noqa: S310
    assert err.value.code == 400
    assert "missing argument 'door'" in json.loads(err.value.read())["error"]


def test_corpus_residents_are_deterministic(corpus: FaceCorpus) -> None:
    assert corpus.residents(3) == FaceCorpus(corpus.directory).residents(3)
    if corpus.directory is None:
        assert corpus.residents() == ["astronaut"]
    elif (corpus.directory / "residents.txt").is_file():  # the package corpus
        listed = (corpus.directory / "residents.txt").read_text().split()
        assert corpus.residents(8) == listed
        assert corpus.resolve("unknown") not in listed
    else:
        assert all(len(corpus.image_paths(n)) >= 5 for n in corpus.residents(4))
        assert corpus.resolve("unknown") not in corpus.residents(8)
    crop = corpus.scaled(corpus.residents(1)[0], 0, 100)
    assert crop.shape[0] == 100
    assert crop is corpus.scaled(corpus.residents(1)[0], 0, 101)  # cached (quantised size)


def test_astronaut_fallback() -> None:
    c = FaceCorpus(None, use_default=False)
    assert c.source == "skimage.data.astronaut"
    assert c.resolve("resident1") == "astronaut"
    assert c.crop("astronaut").shape[2] == 3
    with pytest.raises(Exception, match="no face that is not a resident"):
        c.resolve("unknown")


def test_an_approach_given_a_seed_plays_the_same_whatever_came_before(sim: Simulator) -> None:
    """The scenario runner numbers each scenario's approaches from 0 (its frames must not
    depend on which scenarios ran before it in the same simulator); without a seed the
    simulator keeps counting."""
    cam = sim.cameras["main-cam"]

    def last() -> Actor:
        return cam.scene.actors[-1]

    sim.do("person-approaches", {"camera": "main-cam", "person": "resident1"})
    sim.do("person-approaches", {"camera": "main-cam", "person": "resident1"})
    assert last().seed == 1  # counting
    sim.do("person-approaches", {"camera": "main-cam", "person": "resident1", "seed": 0})
    first = cam.scene.actors[0]
    assert (last().seed, last().image_index, last().name) == (0, first.image_index, first.name)
    sim.do(
        "person-approaches", {"camera": "main-cam", "person": "resident1", "seed": 0, "count": 2}
    )
    assert [a.seed for a in cam.scene.actors[-2:]] == [0, 1]
