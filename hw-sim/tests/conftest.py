"""Fixtures for the simulator tests: a small simulator and a private mosquitto."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hw_sim.config import SimConfig
from hw_sim.corpus import FaceCorpus
from hw_sim.sim import Simulator
from tests.support.net import free_port

MOSQUITTO = "/usr/sbin/mosquitto"


@pytest.fixture(scope="session")
def corpus() -> FaceCorpus:
    """The default corpus: ../shared LFW when present, else skimage's astronaut."""
    return FaceCorpus()


@pytest.fixture
def small_config() -> SimConfig:
    return SimConfig.demo(
        cameras=[
            {
                "name": "main-cam",
                "width": 320,
                "height": 240,
                "fps": 8,
                "zones": [[(0.72, 0.12), (0.95, 0.12), (0.95, 0.42), (0.72, 0.42)]],
            }
        ]
    )


@pytest.fixture
def sim(small_config: SimConfig, corpus: FaceCorpus) -> Iterator[Simulator]:
    s = Simulator(small_config, corpus=corpus).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A private broker on a free loopback port; yields the port."""
    if not Path(MOSQUITTO).exists() and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto binary not installed (/usr/sbin/mosquitto)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n", encoding="utf-8")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("mosquitto did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(5)
