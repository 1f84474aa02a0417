"""Fuzz suite (#18 acceptance): config files, environment variables, MQTT payloads, OSDP
replies, Wiegand frames and images give only the project's own errors, with messages: no
traceback, no hang. Bounded: the whole suite takes well under a minute on 2 cores.

Run: ``pytest -m fuzz``. ``FUZZ_EXAMPLES=N`` scales the number of inputs per class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import cases, device_cases

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=int(cases.HANG_S * 1000),  # an input slower than this is a hang
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def test_config_files(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"

    @fuzz_settings(600)
    @given(cases.config_files)
    def run(data: bytes) -> None:
        cases.timed(lambda: cases.run_config_file(path, data))

    run()


def test_environment_variables() -> None:
    @fuzz_settings(500)
    @given(cases.env_sets)
    def run(env: dict[str, str]) -> None:
        cases.timed(lambda: cases.run_env(env))

    run()


def test_mqtt_payloads() -> None:
    with cases.MqttTarget.open() as target:

        @fuzz_settings(800)
        @given(cases.mqtt_inputs)
        def run(item: cases.MqttInput) -> None:
            cases.timed(lambda: cases.run_mqtt(target, item))

        run()


def test_osdp_replies() -> None:
    @fuzz_settings(1000)
    @given(st.lists(device_cases.osdp_events(), min_size=1, max_size=6))
    def run(events: list[dict[str, Any]]) -> None:
        cases.timed(lambda: device_cases.run_osdp(events))

    run()


def test_wiegand_frames() -> None:
    @fuzz_settings(1000)
    @given(device_cases.wiegand_streams)
    def run(stream: list[tuple[int, float]]) -> None:
        cases.timed(lambda: device_cases.run_wiegand(stream))

    run()


def test_images() -> None:
    @fuzz_settings(800)
    @given(device_cases.image_bytes)
    def run(data: bytes) -> None:
        cases.timed(lambda: device_cases.run_image(data))

    run()
