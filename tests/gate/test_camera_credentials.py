"""Stream credentials: a password reference (never inline), joined into the URL only when
the stream is opened; against the simulator's camera demanding an HTTP Basic login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.cli.doctor import check_configured_camera, run_checks
from gateway.config.cameras import CameraConfig
from gateway.gate.camera import OpenCVSource, redact_url
from tests.conftest import write_secret

PASSWORD = "p@ss:w/rd%"  # every character that must be percent-encoded in a URL


@pytest.fixture
def sim() -> Iterator[Any]:
    from hw_sim.config import SimConfig
    from hw_sim.sim import Simulator

    cfg = SimConfig.demo(
        cameras=[
            {
                "name": "main-cam",
                "width": 320,
                "height": 240,
                "fps": 8,
                "basic_auth": ["installer", PASSWORD],
            }
        ]
    )
    s = Simulator(cfg).start()
    try:
        yield s
    finally:
        s.stop()


def _camera(source: str, **extra: Any) -> CameraConfig:
    return CameraConfig.model_validate(
        {"source": source, "door": "main", "space": "public", **extra}
    )


def test_the_password_file_opens_a_stream_that_demands_a_login(sim: Any, tmp_path: Path) -> None:
    url = sim.camera_url("main-cam")
    secret = write_secret(tmp_path / "cam-password", PASSWORD.encode())
    cam = _camera(url, username="installer", password={"file": str(secret)})
    assert PASSWORD not in cam.source
    assert "installer:p%40ss%3Aw%2Frd%25@" in cam.stream_url()
    src = OpenCVSource(cam.stream_url(), 320, 240, timeout_s=3.0)
    try:
        frame = src.read()
    finally:
        src.close()
    assert frame is not None
    assert frame.shape == (240, 320, 3)
    # Without credentials, or with a wrong password, the camera refuses the stream, and
    # the error names the camera URL without any secret.
    with pytest.raises(OSError, match="cannot open camera source"):
        OpenCVSource(url, 320, 240, timeout_s=3.0)
    secret.write_text("wrong")  # rotated on disk: read again at the next open
    refused = sim.cameras["main-cam"].refused_logins
    with pytest.raises(OSError) as err:
        OpenCVSource(cam.stream_url(), 320, 240, timeout_s=3.0)
    assert "wrong" not in str(err.value)
    assert "***@127.0.0.1" in str(err.value)
    assert sim.cameras["main-cam"].refused_logins == refused + 1
    # doctor: the login from the file works (PASS); the same login inline works but WARNs
    secret.write_text(PASSWORD)
    assert check_configured_camera("gate", cam, 3.0).status == "PASS"
    inline = _camera(url.replace("http://", "http://installer:p%40ss%3Aw%2Frd%25@"))
    warn = check_configured_camera("gate", inline, 3.0)
    assert warn.status == "WARN"
    assert "move it to cameras.gate.password" in warn.detail
    assert "p%40ss" not in warn.detail


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("/dev/video0", {"username": "u"}, "apply only to rtsp:// or http"),
        ("rtsp://u:p@10.0.0.9/s", {"username": "u"}, "both inside 'source'"),
        ("rtsp://10.0.0.9/s", {"password": {"file": "/x"}}, "needs a 'username'"),
        ("rtsp://10.0.0.9/s", {"username": "u", "password": "inline"}, "password"),
        ("rtsp://10.0.0.9/s", {"username": ""}, "at least 1 character"),
    ],
)
def test_bad_camera_credentials_are_refused(
    source: str, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _camera(source, **extra)


def test_doctor_names_an_unreadable_password_and_an_inline_one(
    minimal_config: Path, tmp_path: Path
) -> None:
    from gateway.cli.environment_checks import secret_problems
    from gateway.config.root import load_config

    text = minimal_config.read_text()
    missing = tmp_path / "absent-password"
    binary = write_secret(tmp_path / "binary-password", b"\xff\xfe\x00pw")
    text += (
        '\n[cameras.gate]\nsource = "rtsp://127.0.0.1:9/stream1"\ndoor = "main"\n'
        'space = "public"\nusername = "installer"\n'
        f'password = {{ file = "{missing}" }}\n'
        '\n[cameras.yard]\nsource = "rtsp://admin:s3cret@127.0.0.1:9/stream2"\ndoor = "main"\n'
        'space = "public"\n'
        '\n[cameras.lane]\nsource = "rtsp://[fd00::9]:9/stream3"\ndoor = "main"\n'
        f'space = "public"\nusername = "u"\npassword = {{ file = "{binary}" }}\n'
    )
    minimal_config.write_text(text)
    cfg = load_config(minimal_config, env=False)
    assert any(k == "cameras.gate.password" for k, _, _ in secret_problems(cfg))
    checks = {c.name: c for c in run_checks(cfg, 0.5) if c.name.startswith("camera")}
    assert checks["camera gate"].status == "FAIL"
    assert str(missing) in checks["camera gate"].detail
    lane = checks["camera lane"]
    assert lane.status == "FAIL"
    assert "not UTF-8" in lane.detail
    yard = checks["camera yard"]
    assert yard.status in {"WARN", "FAIL"}  # FAIL: nothing listens on port 9
    assert "move it to cameras.yard.password" in yard.detail
    assert "s3cret" not in yard.detail
    assert redact_url(cfg.cameras["yard"].source) == "rtsp://***@127.0.0.1:9/stream2"
    assert redact_url("rtsp://a:b@[fd00::9]:554/s") == "rtsp://***@[fd00::9]:554/s"
    assert redact_url("rtsp://a:b@cam:99999/s") == "rtsp://***@cam:99999/s"  # bad port
