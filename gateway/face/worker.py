"""Inference off the event loop: one worker thread, a one-slot mailbox (latest frame wins)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class FrameResult(Generic[R]):
    """What the worker produced for one frame (``error`` set instead when it failed)."""

    value: R | None
    error: BaseException | None
    submitted: float
    finished: float


@dataclass(slots=True, eq=False)
class _Slot(Generic[R]):
    frame: np.ndarray
    future: asyncio.Future[FrameResult[R] | None]
    loop: asyncio.AbstractEventLoop
    submitted: float


def _resolve(fut: asyncio.Future[FrameResult[R] | None], value: FrameResult[R] | None) -> None:
    if not fut.done():
        fut.set_result(value)


class FaceWorker(Generic[R]):
    """Runs ``fn(frame)`` in a dedicated thread; a newer frame replaces a pending one.

    ``await worker.process(frame)`` returns the FrameResult, or None when the frame was
    superseded by a newer one before the worker took it (it was never processed). The
    mailbox holds one frame at most, so memory never grows with a slow model.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], R],
        *,
        name: str = "camera",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``name`` appears in logs (the camera name)."""
        self._fn = fn
        self.name = name
        self._clock = clock
        self._cond = threading.Condition()
        self._slot: _Slot[R] | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._thread = threading.Thread(target=self._run, name=f"face-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current frame; a pending frame resolves to None."""
        with self._cond:
            self._stop = True
            slot, self._slot = self._slot, None
            self._cond.notify_all()
        if slot is not None:
            slot.loop.call_soon_threadsafe(_resolve, slot.future, None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def process(self, frame: np.ndarray) -> FrameResult[R] | None:
        """Hand a frame to the worker; await its result (None if superseded or stopped)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[FrameResult[R] | None] = loop.create_future()
        with self._cond:
            if self._stop or self._thread is None:
                raise RuntimeError(f"face worker {self.name} is not running")
            old, self._slot = self._slot, _Slot(frame, fut, loop, self._clock())
            self._cond.notify()
        if old is not None:
            self.dropped += 1
            old.loop.call_soon_threadsafe(_resolve, old.future, None)
        return await fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                slot, self._slot = self._slot, None
            assert slot is not None  # noqa: S101 - loop condition guarantees it
            value: R | None = None
            error: BaseException | None = None
            try:
                value = self._fn(slot.frame)
                self.processed += 1
            except Exception as exc:  # noqa: BLE001 - a bad frame must never kill the worker
                error = exc
                self.failed += 1
                # The exception type only: a message from a model runtime could quote data.
                log.warning("face worker %s: frame failed (%s)", self.name, type(exc).__name__)
            result = FrameResult(value, error, slot.submitted, self._clock())
            try:
                slot.loop.call_soon_threadsafe(_resolve, slot.future, result)
            except RuntimeError:  # event loop closed meanwhile
                log.debug("face worker %s: loop closed, result dropped", self.name)
