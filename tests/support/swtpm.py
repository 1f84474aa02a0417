"""A software TPM 2.0 (``swtpm socket --tpm2``) on free loopback ports, for the key tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port

SWTPM = shutil.which("swtpm")


def skip_reason() -> str | None:
    """Why the TPM tests cannot run here, or None."""
    if SWTPM is None:
        return "swtpm is not installed (Debian: apt-get install swtpm)"
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:
        return f"tpm2-pytss is not installed (the 'tpm' extra; needs libtss2-dev): {exc}"
    return None


@dataclass(frozen=True)
class SoftTpm:
    """A running swtpm: its TCTI string and state directory."""

    tcti: str
    state_dir: Path

    def extend_pcr(self, index: int) -> None:
        """Extend PCR ``index`` in every bank (what a changed boot component does)."""
        from tpm2_pytss import ESAPI
        from tpm2_pytss.constants import ESYS_TR

        with ESAPI(self.tcti) as esys:
            esys.pcr_event(getattr(ESYS_TR, f"PCR{index}"), b"another boot component")


def _wait_listening(proc: subprocess.Popen[bytes], tcti: str, deadline: float) -> None:
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import TPM2_SU

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"swtpm exited with {proc.returncode}")
        try:
            with ESAPI(tcti) as esys:
                esys.startup(TPM2_SU.CLEAR)  # TPM2_Startup, as the firmware does on a board
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _port_pair() -> int:
    """A free loopback port whose successor is free too."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free loopback ports")


@contextmanager
def running_swtpm(state_dir: Path) -> Iterator[SoftTpm]:
    """Start ``swtpm socket --tpm2`` with a fresh state in ``state_dir``, run TPM2_Startup,
    and stop it afterwards."""
    assert SWTPM is not None
    state_dir.mkdir(parents=True, exist_ok=True)
    port = _port_pair()
    ctrl = port + 1  # the swtpm TCTI of tpm2-tss reaches the control channel on port + 1
    proc = subprocess.Popen(
        [
            SWTPM, "socket", "--tpm2",
            "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={ctrl},bindaddr=127.0.0.1",
            "--tpmstate", f"dir={state_dir}",
            "--flags", "not-need-init",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    tcti = f"swtpm:host=127.0.0.1,port={port}"
    try:
        _wait_listening(proc, tcti, time.monotonic() + 10)
        yield SoftTpm(tcti=tcti, state_dir=state_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
