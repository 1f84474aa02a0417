"""Fsync'd side journal for outbox events the database could not take.

When SQLite refuses a write (another process holds the write lock, an I/O error) the
outbox keeps the event in memory; without this journal a kill -9 or a power cut in that
state lost it (issue 18: 0 of 8 access events delivered). Each such event is appended here
as one JSON line and ``fsync``'d before :meth:`Outbox.put` returns; the journal is emptied
once the events are in the database (or published), and read back into the database at the
next start. A torn last line (crash mid-write) is skipped. If the journal cannot be written
either (disk full, read-only filesystem) the events stay only in memory and that is logged.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

SUFFIX = "-outbox-spill"


class SpillRecord(NamedTuple):
    """One event as journalled."""

    id: str
    topic: str
    payload: bytes
    retain: bool
    created_at: float


def default_path(database_file: str) -> Path | None:
    """The journal beside a database file (None for an in-memory database)."""
    return Path(database_file + SUFFIX) if database_file else None


def _encode(rec: SpillRecord) -> bytes:
    doc = {
        "id": rec.id,
        "topic": rec.topic,
        "payload": base64.b64encode(rec.payload).decode("ascii"),
        "retain": rec.retain,
        "created_at": rec.created_at,
    }
    # the newline comes first: a line torn by a crash is closed by the next record
    return b"\n" + json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _decode(line: bytes) -> SpillRecord | None:
    try:
        doc: Any = json.loads(line)
        return SpillRecord(
            str(doc["id"]),
            str(doc["topic"]),
            base64.b64decode(doc["payload"], validate=True),
            bool(doc["retain"]),
            float(doc["created_at"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


class SpillJournal:
    """Append-only, fsync'd JSON-lines file of events held only in memory."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        self.records = 0
        self.failed: str | None = None

    def load(self) -> list[SpillRecord]:
        """Records left by an earlier run (torn or corrupt lines skipped and logged)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("outbox %s: cannot read spill journal %s: %s", self.label, self.path, exc)
            return []
        out: list[SpillRecord] = []
        bad = 0
        for line in data.splitlines():
            if not line.strip():
                continue
            rec = _decode(line)
            if rec is None:
                bad += 1
            else:
                out.append(rec)
        if bad:
            log.warning("outbox %s: %d torn/corrupt spill lines skipped", self.label, bad)
        self.records = len(out)
        return out

    def append(self, rec: SpillRecord) -> bool:
        """Write and fsync one record; False (logged once) when the journal cannot be written."""
        return self._write([rec], append=True)

    def rewrite(self, recs: Iterable[SpillRecord]) -> bool:
        """Replace the journal by ``recs`` (compaction after memory-bound drops)."""
        return self._write(list(recs), append=False)

    def clear(self) -> None:
        """Empty the journal (its events are in the database or delivered)."""
        if self.records == 0 and not self.path.exists():
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if self.failed is None:
                log.error("outbox %s: cannot empty spill journal: %s", self.label, exc)
            self.failed = str(exc)
            return
        self.records = 0

    def _write(self, recs: list[SpillRecord], *, append: bool) -> bool:
        data = b"".join(_encode(r) for r in recs)
        # a rewrite goes through a temporary file, so a crash keeps the old journal whole
        target = self.path if append else self.path.with_name(self.path.name + ".tmp")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            fd = os.open(target, flags, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if not append:
                target.replace(self.path)
        except OSError as exc:
            if self.failed is None:
                log.error(
                    "outbox %s: spill journal %s not writable (%s): events only in memory",
                    self.label,
                    self.path,
                    exc,
                )
            self.failed = str(exc)
            return False
        if self.failed is not None:
            log.warning("outbox %s: spill journal writable again", self.label)
        self.failed = None
        self.records = self.records + len(recs) if append else len(recs)
        return True
