"""After a face scenario, no image and no template byte is on disk, in logs or on MQTT."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from gateway.demo.run import DemoStack
from hw_sim.runner import format_report
from tests.mosquitto import Mosquitto
from tests.support.demo import demo_stack, play_one

# Face grants need the anti-spoofing models and real faces from ../shared.
pytestmark = [pytest.mark.mosquitto, pytest.mark.models, pytest.mark.slow, pytest.mark.shared]

# Signatures long enough that random ciphertext never matches them by chance.
IMAGE_MAGIC = {
    "jpeg/jfif": re.compile(rb"\xff\xd8\xff\xe0..JFIF\x00", re.DOTALL),
    "jpeg/exif": re.compile(rb"\xff\xd8\xff\xe1..Exif\x00\x00", re.DOTALL),
    "png": re.compile(re.escape(b"\x89PNG\r\n\x1a\n")),
}


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


def _windows(vec: np.ndarray, width: int = 24) -> list[bytes]:
    """Byte windows of a float32 vector (any 6 consecutive floats)."""
    raw = np.asarray(vec, dtype=np.float32).tobytes()
    return [raw[i : i + width] for i in range(0, len(raw) - width, 64)]


def test_face_scenario_leaves_no_image_or_template_bytes(broker: Mosquitto, tmp_path: Path) -> None:
    captured: list[bytes] = []

    async def capture(stop: asyncio.Event) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, identifier=f"spy-{secrets.token_hex(3)}"
        ) as c:
            await c.subscribe("#", qos=1)
            async for msg in c.messages:
                captured.append(bytes(msg.payload) if msg.payload else b"")  # type: ignore[arg-type]
                if stop.is_set():
                    return

    async def main() -> tuple[DemoStack, list[np.ndarray]]:
        async def control(step: str) -> None:
            await asyncio.to_thread(broker.stop if step == "stop_broker" else broker.start)

        stop = asyncio.Event()
        spy = asyncio.create_task(capture(stop))
        try:
            async with demo_stack(broker.port, tmp_path, control) as stack:
                await asyncio.to_thread(stack.load_pipeline)
                stack.write_config()
                await stack.start_daemon()
                result = await play_one(stack, "resident-by-face")
                assert result.passed, format_report([result])
                # The raw embeddings of the enrolment images, as the pipeline computes them.
                name = stack.sim.corpus.resolve("resident1")
                raw = []
                for image in stack.sim.corpus.enrolment_images(name):
                    sample = stack.pipeline.embed_image(image)
                    if sample.embedding is not None:
                        raw.append(sample.embedding)
                assert raw, "the enrolment images gave no embedding"
                return stack, raw
        finally:
            stop.set()
            await asyncio.sleep(0.5)
            spy.cancel()

    stack, raw = asyncio.run(main())
    assert captured, "the spy saw no MQTT traffic at all"

    # The site-space templates the gallery holds (keys from the demo's key files).
    from gateway.privacy.vault import Vault

    vault = Vault.from_root_keys(stack.keys["device"].read_bytes(), stack.keys["site"].read_bytes())
    site = [vault.transform(v.reshape(1, -1))[0] for v in raw]
    needles = [w for v in raw + site for w in _windows(v)]

    blobs: dict[str, bytes] = {}
    for path in stack.state_dir.rglob("*"):
        if path.is_file():
            blobs[f"state:{path.name}"] = path.read_bytes()
    blobs["daemon.log"] = (tmp_path / "daemon.log").read_bytes()
    blobs["mqtt"] = b"\n".join(captured)

    # The scan itself must be able to fail: planted bytes are found.
    assert needles[0] in b"xx" + needles[0] + b"yy"
    assert IMAGE_MAGIC["jpeg/jfif"].search(b"..\xff\xd8\xff\xe0\x00\x10JFIF\x00..")
    for where, data in blobs.items():
        for kind, magic in IMAGE_MAGIC.items():
            assert magic.search(data) is None, f"{kind} image bytes found in {where}"
        for needle in needles:
            assert needle not in data, f"template bytes found in {where}"
    assert not list(stack.state_dir.rglob("*.jpg"))
    assert not list(stack.state_dir.rglob("*.png"))
