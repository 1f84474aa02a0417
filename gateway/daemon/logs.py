"""Logging set-up: journald-friendly lines or JSON, with a guard against binary payloads.

Messages name the door/camera/reader they concern. A filter replaces any ``bytes`` or array
argument by a size marker, so an image, template or key can never reach a log line even by
mistake.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _redact(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<redacted {len(value)} bytes>"
    if type(value).__name__ == "ndarray":
        return "<redacted array>"
    return value


class RedactBinary(logging.Filter):
    """Replace binary arguments (images, templates, keys) with a marker."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments in place; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact(v) for k, v in record.args.items()}
        return True


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message`` — journald adds time and unit itself."""

    def format(self, record: logging.LogRecord) -> str:
        """Format with a syslog priority prefix."""
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = f"<{prio}>{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Format as JSON with time, level, logger and message."""
        obj: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    """Configure the root logger once (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_gateway", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._gateway = True  # type: ignore[attr-defined]  # marker for idempotent set-up
    handler.addFilter(RedactBinary())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("asyncio", "amqtt", "transitions", "aiomqtt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
