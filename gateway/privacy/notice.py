"""The face-processing notice shown before consent, and its Art. 5 completeness check.

A notice is complete when it names every item of Art. 5: the processor's name and contact,
the purpose, the method, the retention period, and how to exercise rights (withdraw consent
and delete face data). The check is pragmatic: each item needs one of its keywords (a heading
or a phrase, English or Chinese, case-insensitive) somewhere in the text. Keywords are
specific on purpose (``保存期限`` not ``保存``, which also occurs in "不保存照片").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gateway.config.loading import read_regular_file
from gateway.errors import ConfigError, PrivacyError

MAX_NOTICE_BYTES = 256 * 1024
"""Largest notice text file read."""

#: item -> keywords; an item is present when any keyword occurs (case-insensitive).
REQUIRED_ITEMS: dict[str, tuple[str, ...]] = {
    "processor name": ("processor", "data controller", "operated by", "处理者", "运营方"),
    "processor contact": ("contact", "联系方式", "联系电话", "联系人", "电话", "邮箱", "e-mail"),
    "purpose": ("purpose", "目的"),
    "method": ("method", "how we process", "how it works", "处理方式", "识别方式", "处理方法"),
    "retention period": ("retention", "kept for", "stored for", "保存期限", "存储期限", "保留期限"),
    "right to withdraw": ("withdraw", "撤回"),
    "right to delete": ("delete", "erase", "删除"),
}


class NoticeError(PrivacyError):
    """The notice is missing, unreadable or lacks an Art. 5 item."""


def validate_notice(text: str) -> list[str]:
    """Return the Art. 5 items missing from ``text`` (empty list: complete)."""
    folded = text.casefold()
    return [
        item
        for item, words in REQUIRED_ITEMS.items()
        if not any(w.casefold() in folded for w in words)
    ]


@dataclass(frozen=True)
class Notice:
    """A notice text and its version; ``sha256`` is what consent records store."""

    version: str
    text: str

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the UTF-8 notice text as shown."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def require_complete(self) -> None:
        """Raise :class:`NoticeError` naming the missing Art. 5 items."""
        missing = validate_notice(self.text)
        if missing:
            raise NoticeError(
                f"notice version {self.version} lacks Art. 5 items: {', '.join(missing)}"
            )


def load_notice(path: Path, version: str) -> Notice:
    """Read a UTF-8 notice file; :class:`NoticeError` if unreadable, empty or incomplete."""
    try:  # regular files only, bounded: a FIFO must not hang the daemon's start
        text = read_regular_file(path, MAX_NOTICE_BYTES, missing="no such file").decode("utf-8")
    except ConfigError as exc:
        raise NoticeError(f"notice file {path}: {exc.problems[0][2]}") from exc
    except UnicodeDecodeError as exc:
        raise NoticeError(f"notice file {path}: {exc}") from exc
    if not text.strip():
        raise NoticeError(f"notice file {path} is empty")
    if not version.strip():
        raise NoticeError("notice version must not be empty")
    notice = Notice(version=version, text=text)
    notice.require_complete()
    return notice
