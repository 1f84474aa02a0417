"""A gate without the ``web`` extra: the daemon's composition root and the command line
import and work without aiohttp, jinja2, pyotp and Babel (the console is loaded only when
enabled), and ``gateway web add-user`` and ``reset-totp`` need none of them."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
sys.modules["aiohttp"] = None  # an import of it fails, as where the extra is absent
sys.modules["jinja2"] = None
sys.modules["pyotp"] = None
sys.modules["babel"] = None
import gateway.gate.app
from gateway.cli.main import build_parser
from gateway.web import accounts, totp
args = build_parser().parse_args(["web", "add-user", "a", "--role", "admin"])
assert args.role == "admin"
assert build_parser().parse_args(["web", "reset-totp", "a"]).name == "a"
assert "gateway.web.app" not in sys.modules
print("ok")
"""


def test_the_gate_and_cli_work_without_the_web_extra() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
