"""Readers (OSDP, Wiegand), keypad, door I/O and the door state machine."""

from __future__ import annotations

from gateway.hardware.readers import Reader, open_reader

__all__ = ["Reader", "open_reader"]
