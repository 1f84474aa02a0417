"""OSDP control panel (CP) driver on libosdp: one bus, one or more readers (PDs).

One :class:`OsdpBus` owns one transport (serial line, pty or TCP socket) and one libosdp
``ControlPanel`` holding every PD on that line. A private thread runs libosdp's refresh
and the bus housekeeping (reconnects, online/offline); events are handed to the asyncio
loop with ``loop.call_soon_threadsafe``.

libosdp quirks handled here (python package ``libosdp`` 3.2.x):

- The CP only reads the channel of ``pd_info[0]``; all PDs share it (multi-drop).
- The event callback receives the PD *index* (order of ``PDInfo``), not its address.
- ``osdp.ControlPanel``'s own handler queues every event forever unless ``get_event`` is
  called; we install our callback on ``ControlPanel.ctx`` instead.
- After a response timeout, one reply with a bad CRC or a bad secure block, libosdp parks
  a PD offline for 300 s (``OSDP_ONLINE_RETRY_WAIT_MAX_MS``, compile-time, not exposed by
  the binding). We reset that PD instead: ``flush_commands`` (stale commands must never
  reach the reader later), ``disable_pd`` then (one refresh later) ``enable_pd``, which
  restarts the ID/capabilities/Secure Channel handshake at once; retried with a capped,
  jittered backoff while the PD stays silent (see :class:`_Recovery`).
- Commands are acknowledged through the binding's command-completion callback (per PD,
  in submission order); :meth:`OsdpReader.output` waits for it.
- A channel ``read`` that raises leaves a Python error set inside the C refresh: our
  channel never raises; transport errors are turned into a "lost" flag.
- Status events carry ``report`` bytes (one byte per input); local status is
  ``[tamper, power]``. The output command ``timer_count`` is truncated to 8 bits by the
  binding (at most 25.5 s): longer timed outputs are renewed by the caller (the door lock
  re-issues a short timed output before it ends, see :mod:`gateway.hardware.lock`).
- libosdp logs with printf; at debug level it can dump packets, so the level is capped
  at Warning.

Latency of a command (the door relay): libosdp's CP sends a queued command *before* its
next POLL (``cp_get_online_command`` dequeues commands first; POLL only when the PD has
been quiet for ``OSDP_PD_POLL_TIMEOUT_MS``, 50 ms, compile-time, not exposed by the
binding), but it needs three refreshes to do it: one to dequeue it, one to send it, one to
read the reply (and one more when a POLL exchange is in flight: RS-485 is half-duplex).
With a fixed 20 ms refresh that is 40..80 ms. So the refresh thread is woken at once by a
submit, and while a command is in flight (until it completes, at most
``_FAST_WINDOW_S``) it refreshes every ``_FAST_REFRESH_S``; idle, every ``refresh_s``.
This does not add traffic on the line: the POLL cadence is libosdp's own; only how soon
the CP reacts changes. What is left is the line: see the RS-485 budget in the README
(door relays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import osdp

from gateway.errors import HardwareError
from gateway.hardware.backoff import Backoff
from gateway.hardware.events import ReaderEvent, ReaderOffline, ReaderOnline
from gateway.hardware.osdp_reader import OsdpReader, map_event
from gateway.hardware.osdp_transport import Transport

log = logging.getLogger(__name__)

_REFRESH_S = 0.02  # idle refresh cadence (libosdp wants one at least every 50 ms)
_FAST_REFRESH_S = 0.001  # while a command is in flight
_FAST_WINDOW_S = 0.5  # a command not done by then (PD slow or retrying): back to idle cadence
_STATUS_EVERY_S = 0.1
_HANDSHAKE_GRACE_S = 3.0  # time a reset PD gets to finish ID/CAP/Secure Channel
_OFFLINE_REASON = "no answer from the reader (timeout or a bad frame)"


class _BusChannel(osdp.Channel):  # type: ignore[misc]
    """libosdp channel over a :class:`Transport`; never raises into libosdp."""

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self.transport = transport
        self.connected = False
        self.lost_reason: str | None = None

    def _lose(self, exc: BaseException) -> None:
        if self.connected:
            self.connected = False
            self.lost_reason = str(exc) or type(exc).__name__
            self.transport.close()

    def read(self, max_bytes: int) -> bytes:
        if not self.connected:
            return b""
        try:
            return self.transport.read(max_bytes)[:max_bytes]
        except (OSError, EOFError) as exc:
            self._lose(exc)
            return b""

    def write(self, buf: bytes) -> int:
        if not self.connected:
            return len(buf)  # as on a dead wire: bytes vanish
        try:
            return self.transport.write(bytes(buf))
        except (OSError, EOFError) as exc:
            self._lose(exc)
            return len(buf)

    def flush(self) -> None:
        return None


@dataclass
class _Recovery:
    """Per-PD offline recovery: when to reset the PD next, with capped jittered backoff."""

    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, cap_s=5.0))
    next_reset: float | None = None
    resets: int = 0


# ----------------------------------------------------------------------------- bus


@dataclass
class OsdpBus:
    """One OSDP line with its libosdp CP and readers. Add readers, then ``start()``."""

    transport: Transport
    backoff: Backoff = field(default_factory=Backoff)
    log_level: int = osdp.LogLevel.Error
    readers: list[OsdpReader] = field(default_factory=list)
    #: refresh cadence with no command in flight (tests lengthen it to show that a
    #: command does not wait for it)
    refresh_s: float = _REFRESH_S

    def __post_init__(self) -> None:
        self._channel = _BusChannel(self.transport)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by a submit: refresh now
        self._fast_until = 0.0  # refresh every _FAST_REFRESH_S until then (command in flight)
        self._thread: threading.Thread | None = None
        self._ctx: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._infos: list[Any] = []
        self._started = False
        self._open_readers: set[str] = set()
        self._next_attempt = 0.0
        self._failures = 0
        self._to_enable: set[int] = set()
        self._enable_wait = 0
        self._last_status = 0.0
        # per PD index: kinds of the submitted, not yet completed commands (FIFO), with the
        # future of those a caller waits for (libosdp completes a PD's commands in order)
        self._pending: dict[int, deque[tuple[int, asyncio.Future[bool] | None]]] = {}
        self._recovery: dict[int, _Recovery] = {}

    # -- setup -------------------------------------------------------------------------

    def add_reader(
        self, name: str, address: int, *, scbk: bytes | None = None, install_mode: bool = False
    ) -> OsdpReader:
        """Register a PD before ``start()``. ``scbk``: 16-byte Secure Channel base key."""
        if self._started:
            raise HardwareError(f"OSDP bus {self.transport.description}: already started")
        if not 0 <= address < 127:
            raise HardwareError(f"reader {name}: OSDP address {address} not in 0..126")
        if any(r.address == address or r.name == name for r in self.readers):
            raise HardwareError(f"reader {name}: address {address} or name already on this bus")
        if scbk is not None and len(scbk) != 16:
            raise HardwareError(f"reader {name}: SCBK must be 16 bytes, got {len(scbk)}")
        flags = [osdp.LibFlag.EnableNotification]
        if install_mode:
            flags.append(osdp.LibFlag.InstallMode)
            log.warning(
                "reader %s: OSDP install mode enabled: the Secure Channel may use the "
                "well-known default key SCBK-D; disable it once the reader is keyed",
                name,
            )
        elif scbk is not None:
            flags.append(osdp.LibFlag.EnforceSecure)
        else:
            log.warning("reader %s: no SCBK configured: OSDP traffic is NOT encrypted", name)
        self._infos.append(osdp.PDInfo(address, self._channel, scbk=scbk, name=name, flags=flags))
        reader = OsdpReader(self, name, address, len(self.readers), scbk is not None)
        self.readers.append(reader)
        self._open_readers.add(name)
        return reader

    async def start(self) -> None:
        """Create the CP and start the refresh thread (idempotent)."""
        if self._started:
            return
        if not self.readers:
            raise HardwareError(f"OSDP bus {self.transport.description}: no reader added")
        self._loop = asyncio.get_running_loop()
        level = min(int(self.log_level), int(osdp.LogLevel.Warning))
        cp = osdp.ControlPanel(self._infos, log_level=level)
        self._ctx = cp.ctx
        self._ctx.set_event_callback(self._on_event)
        self._ctx.set_command_completion_callback(self._on_completion)
        self._pending = {r.index: deque() for r in self.readers}
        self._recovery = {r.index: _Recovery() for r in self.readers}
        self._started = True
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"osdp-{self.transport.description}", daemon=True
        )
        self._thread.start()

    async def release(self, reader: OsdpReader) -> None:
        """Close ``reader``; stop the bus when no reader is left."""
        self._open_readers.discard(reader.name)
        if not self._open_readers:
            await self.stop()

    async def stop(self) -> None:
        """Stop the thread and close the transport."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        self._channel.connected = False
        self.transport.close()
        self._ctx = None
        self._started = False

    def recovering(self, index: int) -> bool:
        """True while the PD at ``index`` is being reset after going offline."""
        rec = self._recovery.get(index)
        return rec is not None and rec.next_reset is not None

    @property
    def thread_alive(self) -> bool:
        """True while the refresh thread runs (for health checks and tests)."""
        return self._thread is not None and self._thread.is_alive()

    # -- commands ----------------------------------------------------------------------

    def submit(self, reader: OsdpReader, cmd: dict[str, Any]) -> None:
        """Queue a command for ``reader``; HardwareError when libosdp refuses it."""
        self._submit(reader, cmd, None)

    def _submit(
        self, reader: OsdpReader, cmd: dict[str, Any], fut: asyncio.Future[bool] | None
    ) -> None:
        if self._ctx is None:
            raise HardwareError(f"reader {reader.name}: OSDP bus not started")
        with self._lock:
            try:
                ok = self._ctx.submit_command(reader.index, cmd)
            except (ValueError, TypeError, KeyError) as exc:
                raise HardwareError(f"reader {reader.name}: bad OSDP command: {exc}") from exc
            if ok:
                self._pending.setdefault(reader.index, deque()).append((int(cmd["command"]), fut))
                self._fast_until = time.monotonic() + _FAST_WINDOW_S
        if ok:
            self._wake.set()  # to the bus now, not at the next refresh
        else:
            raise HardwareError(
                f"reader {reader.name}: OSDP command refused (reader offline or queue full)"
            )

    async def send(self, reader: OsdpReader, cmd: dict[str, Any], timeout_s: float) -> None:
        """Submit ``cmd`` and wait for the reader's acknowledgement.

        HardwareError when refused, failed, flushed or not acknowledged in ``timeout_s``.
        After a timeout the PD's queue is flushed: commands still *queued* (this one, if
        it was not sent yet, and any behind it) never reach the reader. A command already
        in flight (sent, its reply lost or late) can still take effect afterwards; for a
        door release that is bounded by its timed output (at most one lease, 5 s), and the
        lock's next command (relock, retry) follows it in order.
        """
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._submit(reader, cmd, fut)
        try:
            async with asyncio.timeout(timeout_s):
                ok = await fut
        except TimeoutError:
            self._flush(reader.index)
            raise HardwareError(
                f"reader {reader.name}: no acknowledgement within {timeout_s:.1f} s"
            ) from None
        if not ok:
            raise HardwareError(f"reader {reader.name}: command not acknowledged by the reader")

    def _flush(self, index: int) -> None:
        """Drop the PD's queued commands (their waiters fail); one already sent is not
        recalled (libosdp's flush_commands only empties the queue)."""
        with self._lock:
            if self._ctx is not None:
                self._ctx.flush_commands(index)

    def _on_completion(self, pd_index: int, cmd: dict[str, Any], status: int) -> None:
        """libosdp command-completion callback (refresh thread, our lock held)."""
        try:
            queue = self._pending.get(pd_index)
            if not queue:
                return
            kind = int(cmd.get("command", -1))
            # normally the first one; a mismatch means an untracked completion: search on
            for i, (k, fut) in enumerate(queue):
                if k == kind:
                    del queue[i]
                    if fut is not None:
                        self._resolve(fut, status == osdp.CompletionStatus.Ok)
                    return
        except Exception:  # never into the C refresh loop
            log.exception("OSDP bus %s: cannot handle a completion", self.transport.description)

    def _resolve(self, fut: asyncio.Future[bool], ok: bool) -> None:
        def done() -> None:
            if not fut.done():
                fut.set_result(ok)

        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(done)

    # -- thread ------------------------------------------------------------------------

    def _post(self, reader: OsdpReader, event: ReaderEvent) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing during shutdown
                self._loop.call_soon_threadsafe(reader.put, event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._housekeeping()
                with self._lock:
                    if self._ctx is None:
                        break
                    self._ctx.refresh()
                self._after_refresh()
            except Exception:  # the bus thread must survive anything libosdp throws at it
                log.exception("OSDP bus %s: refresh failed", self.transport.description)
                time.sleep(0.5)
            self._pause()

    def _pause(self) -> None:
        """Wait for the next refresh: ``refresh_s`` idle, ``_FAST_REFRESH_S`` while a
        command is in flight; a submit ends the wait at once."""
        in_flight = time.monotonic() < self._fast_until and any(self._pending.values())
        self._wake.wait(_FAST_REFRESH_S if in_flight else self.refresh_s)
        self._wake.clear()

    def _disable_all(self) -> None:
        with self._lock:
            for r in self.readers:
                self._ctx.flush_commands(r.index)
                self._ctx.disable_pd(r.index)
        # libosdp refuses enable_pd until the disable went through a refresh: retried
        self._to_enable = {r.index for r in self.readers}
        self._enable_wait = 1

    def _enable_pending(self) -> None:
        if self._enable_wait > 0:
            self._enable_wait -= 1
            return
        now = time.monotonic()
        with self._lock:
            for index in sorted(self._to_enable):
                if self._ctx.enable_pd(index):
                    self._to_enable.discard(index)
                    rec = self._recovery.get(index)
                    if rec is not None and rec.next_reset is not None:
                        # give the handshake time before judging the PD again
                        rec.next_reset = now + _HANDSHAKE_GRACE_S + rec.backoff.next_delay()

    def _reset_pd(self, reader: OsdpReader) -> None:
        """Flush, disable and (next refresh) re-enable one PD: a fresh session at once,
        instead of libosdp's 300 s offline wait."""
        with self._lock:
            self._ctx.flush_commands(reader.index)
            self._ctx.disable_pd(reader.index)
        self._to_enable.add(reader.index)
        self._enable_wait = 1

    def _recover(self, reader: OsdpReader, up: bool, now: float) -> None:
        """Reset a PD that stays offline, with capped jittered backoff; report it."""
        rec = self._recovery[reader.index]
        if up:
            if rec.resets:
                log.info(
                    "reader %s: recovered after %d OSDP session reset(s)", reader.name, rec.resets
                )
            rec.next_reset = None
            rec.resets = 0
            rec.backoff.reset()
            return
        if rec.next_reset is None:
            rec.next_reset = now + rec.backoff.next_delay()
            return
        if now < rec.next_reset or reader.index in self._to_enable:
            return
        rec.resets += 1
        (log.warning if rec.resets == 1 else log.debug)(
            "reader %s: offline; resetting its OSDP session (attempt %d)", reader.name, rec.resets
        )
        self._reset_pd(reader)
        rec.next_reset = now + _HANDSHAKE_GRACE_S + rec.backoff.next_delay()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._channel.lost_reason is not None:
            reason = self._channel.lost_reason
            self._channel.lost_reason = None
            log.warning(
                "OSDP bus %s: transport lost (%s); reconnecting",
                self.transport.description,
                reason,
            )
            self._disable_all()
            self._to_enable.clear()
            for r in self.readers:
                self._mark(r, False, f"transport closed: {reason}")
                self._recovery[r.index] = _Recovery()
            self._failures = 0
            self.backoff.reset()
            self._next_attempt = now + self.backoff.next_delay()
        if not self._channel.connected and now >= self._next_attempt:
            try:
                self.transport.open()
            except OSError as exc:
                self._failures += 1
                delay = self.backoff.next_delay()
                self._next_attempt = now + delay
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "OSDP bus %s: cannot connect (%s); retry %d in %.1f s",
                    self.transport.description,
                    exc,
                    self._failures,
                    delay,
                )
                return
            if self._failures:
                log.info(
                    "OSDP bus %s: connected after %d failed attempts",
                    self.transport.description,
                    self._failures,
                )
            self._failures = 0
            self.backoff.reset()
            self._channel.connected = True
            # libosdp may have parked the PDs offline for minutes: reset them now
            self._disable_all()

    def _after_refresh(self) -> None:
        if self._to_enable:
            self._enable_pending()
        now = time.monotonic()
        if now - self._last_status < _STATUS_EVERY_S:
            return
        self._last_status = now
        with self._lock:
            online_mask = int(self._ctx.status())
            sc_mask = int(self._ctx.sc_status())
        for r in self.readers:
            bit = 1 << r.index
            up = (
                self._channel.connected
                and r.index not in self._to_enable
                and bool(online_mask & bit)
                and (not r.secure or bool(sc_mask & bit))
            )
            self._mark(r, up, _OFFLINE_REASON)
            if self._channel.connected:
                self._recover(r, up, now)

    def _mark(self, reader: OsdpReader, up: bool, reason: str) -> None:
        if up == reader.state.online:
            return
        reader.state.online = up
        if up:
            reader.state.epoch += 1
            log.info("reader %s: online (OSDP address %d)", reader.name, reader.address)
            self._post(reader, ReaderOnline(reader.name))
        else:
            log.warning("reader %s: offline: %s", reader.name, reason)
            reader.state.inputs = None
            reader.state.tamper = None
            self._post(reader, ReaderOffline(reader.name, reason))

    def _on_event(self, pd_index: int, event: dict[str, Any]) -> int:
        """libosdp event callback (refresh thread, CP lock held). Never raises."""
        try:
            reader = self.readers[pd_index]
            for ev in map_event(reader.name, event, reader.state):
                self._post(reader, ev)
        except Exception:  # a bad event must never break the C refresh loop
            log.exception("OSDP bus %s: cannot handle an event", self.transport.description)
        return 0
