"""A gate's side of consent withdrawal: erase here (through
:func:`gateway.services.withdrawal.withdraw`, the same code the CLI runs), announce every
withdrawal receipt (the pseudonymous event and the site fan-out), and erase this gate's copy
when another gate of the site announces one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.errors import ProtocolError
from gateway.keys import Keys, Purpose
from gateway.mqtt import events as ev
from gateway.mqtt import fanout
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.rejections import RejectionLimiter
from gateway.mqtt.topics import Topics
from gateway.privacy.scrub import scrub_in_background
from gateway.privacy.vault import GalleryLike, Vault
from gateway.services.withdrawal import mark_announced, pending_announcements, withdraw

log = logging.getLogger(__name__)

UNNAMED_CHANNELS = frozenset({"mqtt", "compound"})
"""Withdrawals caused by a broker message: their event carries no pseudonym."""


@dataclass(frozen=True)
class GateData:
    """A running gate's configuration, keys, database and face store."""

    cfg: GatewayConfig
    keys: Keys
    db: sqlite_utils.Database
    run_db: Callable[..., Awaitable[Any]]  # a call on the database thread
    vault: Vault
    gallery: GalleryLike


@dataclass(frozen=True)
class WithdrawalDeps(GateData):
    """What withdrawals on one gate use (the outbox and topics: None without MQTT)."""

    pseudonym: Callable[[str | None], str | None]
    emit: Callable[[ev.BaseEvent], None]
    outbox: Outbox | None = None
    topics: Topics | None = None


class GateWithdrawals:
    """Withdrawals on one running gate."""

    def __init__(self, deps: WithdrawalDeps) -> None:
        self._gate = deps
        self._fanout_rx: fanout.FanoutReceiver | None = None
        self._fanout_refusals = RejectionLimiter()  # log lines for refused fan-out messages
        self._announcing = asyncio.Lock()  # one withdrawal announcement sweep at a time
        self.scrubs: set[asyncio.Task[bool]] = set()  # WAL scrubs after erasures

    async def withdraw(
        self, person_id: str, channel: str, *, actor: str | None = None
    ) -> dict[str, Any]:
        """Withdraw face consent and erase the person's face data everywhere on this gate
        (audited as ``actor``, the channel when None)."""
        gate = self._gate
        receipt = await gate.run_db(
            withdraw,
            gate.db,
            gate.vault,
            gate.gallery,
            person_id,
            channel,
            actor=actor,
            vacuum=False,
        )
        await self.after_erasure()
        return {"receipt_id": receipt.id, "templates_erased": receipt.templates_erased}

    async def after_erasure(self) -> None:
        """Announce the new withdrawal receipts, then scrub the WAL (its checkpoint briefly
        holds the write lock the outbox needs): on its own connection and thread, waiting
        for old readers, never here."""
        await self.announce()
        path = self._gate.cfg.storage.database_path
        self.scrubs.add(t := asyncio.create_task(scrub_in_background(path)))
        t.add_done_callback(self.scrubs.discard)

    async def announce(self) -> bool:
        """Announce every withdrawal receipt not yet announced, whichever process wrote it;
        True when none is left waiting. Never raises: what fails waits for the next try.

        A receipt is marked only once its messages are stored in the durable outbox: at
        least once (a repeat erases nothing more on the receiving gates). Without MQTT
        there is nobody to tell, and the receipts wait for it to be configured."""
        gate = self._gate
        name = gate.cfg.site.gate
        outbox = gate.outbox
        if outbox is None:
            return True
        if outbox.degraded is not None:
            return False  # it would only hold them in memory: wait until it stores again
        async with self._announcing:
            try:
                pending = await gate.run_db(pending_announcements, gate.db)
            except sqlite3.Error as exc:
                log.warning("gate %s: cannot read withdrawals to announce: %s", name, exc)
                return False
            done = True
            for receipt in pending:
                try:
                    self._announce_one(receipt.person_id, receipt.channel, receipt.templates_erased)
                except ValueError as exc:  # e.g. a channel this version does not know
                    log.error("gate %s: withdrawal %s not announced: %s", name, receipt.id, exc)
                    done = False
                    continue
                if outbox.degraded is not None:  # the store failed under this one
                    return False
                try:
                    await gate.run_db(mark_announced, gate.db, receipt.id)
                except sqlite3.Error as exc:
                    log.warning(
                        "gate %s: withdrawal %s announced, not marked: %s", name, receipt.id, exc
                    )
                    done = False
            return done

    def _announce_one(self, person_id: str, channel: str, erased: int) -> None:
        """The event, and (unless it came from there) the fan-out that erases the person's
        face data on every other gate of the site.

        The event names the person by the day's pseudonym only when the withdrawal was made
        at this gate (keypad, console, CLI): one that follows a message on the broker (a
        signed command, a fan-out) carries none, so nobody reading the broker can link the
        message to the pseudonym by their timing."""
        gate = self._gate
        pz = None if channel in UNNAMED_CHANNELS else gate.pseudonym(person_id)
        gate.emit(
            ev.ConsentWithdrawn(
                site=gate.cfg.site.id,
                gate=gate.cfg.site.gate,
                person=pz,
                channel=ev.WithdrawalChannel(channel),
                templates_erased=erased,
            )
        )
        if channel != "compound" and gate.outbox is not None and gate.topics is not None:
            message = fanout.build(
                gate.keys.subkey(Purpose.WITHDRAWAL_FANOUT), gate.cfg.site.gate, person_id
            )
            gate.outbox.put_raw(str(uuid.uuid4()), gate.topics.withdrawal, message)
            log.info("gate %s: withdrawal fanned out to the site's gates", gate.cfg.site.gate)

    async def on_fanout(self, payload: bytes) -> None:
        """Another gate of the site reports a withdrawal: erase our copy at once."""
        gate = self._gate
        name = gate.cfg.site.gate
        if self._fanout_rx is None:
            self._fanout_rx = fanout.FanoutReceiver(
                gate.keys.subkey(Purpose.WITHDRAWAL_FANOUT), name
            )
        try:
            got = self._fanout_rx.accept(payload)
        except ProtocolError as exc:
            self._refused(exc)
            return
        if got is None:
            return  # our own
        holders = await gate.run_db(gate.vault.enrolled_people, gate.db)  # face data here
        key = gate.keys.subkey(Purpose.WITHDRAWAL_FANOUT)
        pid = fanout.find_person(key, got.subject, holders, got.salt)
        if pid is None:
            log.info(
                "gate %s: withdrawal from gate %s: no face data of that person here",
                name,
                got.origin_gate,
            )
            return
        log.info(
            "gate %s: withdrawal from gate %s: erasing this gate's copy", name, got.origin_gate
        )
        await self.withdraw(pid, "compound")

    def _refused(self, exc: ProtocolError) -> None:
        # Anyone on the broker can send these: log the first few per window, then count.
        name = self._gate.cfg.site.gate
        now = time.time()
        summary = self._fanout_refusals.flush(now)
        if summary is not None:
            log.warning(
                "gate %s: %d more withdrawal fan-out message(s) refused (%s)",
                name,
                summary.total,
                ", ".join(f"{k}: {v}" for k, v in summary.counts.items()),
            )
        if self._fanout_refusals.admit(type(exc).__name__, now):
            log.warning("gate %s: withdrawal fan-out refused: %s", name, exc)
