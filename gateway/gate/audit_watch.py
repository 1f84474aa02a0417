"""The daemon's audit-chain watch: verify at start and daily, publish the head off the device,
raise compliance alerts.

* At start the chain is keyed (a legacy plain-hash chain is re-anchored by an audited
  ``audit.keyed`` row), then verified with the device's chain key.
* The head is published retained on ``{base}/audit/head`` as ``{"v": 1, "seq": n, "mac": m}``
  (``m`` = HMAC of the seq and the head link under the chain key; no row content). At start
  and daily, the retained head on the broker is read back: a local chain that no longer holds
  that row (rolled back, truncated, rewritten) is a break too. An audit-key rotation re-MACs
  the chain: its audited ``keys.rotate`` row records the old head's MAC, which a head
  published at that seq must match; an older published head can no longer be compared
  (logged as a warning; the office sees the rotation in the compliance report).
* A break emits ``compliance.alert`` ``audit_chain_broken`` (value: the first broken seq),
  logged as an error; the gate keeps opening (access does not depend on the audit log) and
  retention never prunes a broken chain (the evidence stays).
* People-count thresholds (Art. 15 warning at 80,000, filing at 100,000 across the compound:
  the exact count of people with face data here, plus the other gates' retained counts on a
  gate; at the office, which holds everyone, its own count) are checked every
  ``privacy.compliance_check_interval_s`` and emit ``capacity_warning`` /
  ``filing_required`` (with the filing deadline in working days) when crossed, once per
  crossing (:func:`gateway.services.compliance.watch_thresholds`: remembered in ``kv``,
  audited).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.errors import GatewayError
from gateway.mqtt import events as ev
from gateway.privacy import audit
from gateway.privacy.compliance import Thresholds
from gateway.services import compliance as compliance_svc

if TYPE_CHECKING:
    from gateway.mqtt.retained import RetainedStore

log = logging.getLogger(__name__)

DAY_S = 86400.0
PUBLISH_EVERY_S = 60.0
COUNT_EVERY_S = 300.0


def head_topic(base: str) -> str:
    """The retained audit-head topic under a gate's base topic."""
    return f"{base}/audit/head"


def head_payload(key: audit.ChainKey, seq: int, link: str) -> bytes:
    """The published head: seq and a MAC over seq and the head link; no content."""
    doc = {"v": 1, "seq": seq, "mac": audit.head_mac(key, seq, link)}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def reanchor(db: sqlite_utils.Database) -> bool:
    """Key a legacy (plain-hash) chain: append an audited anchor row; True if one was added."""
    key = audit.bound_key(db)
    if key is None:
        raise audit.AuditError("re-anchoring the audit chain needs the device's chain key")
    last = db.conn.execute("SELECT hash, key_id FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None or last[1] is not None:
        return False
    legacy = int(db.conn.execute("SELECT count(*) FROM audit").fetchone()[0])
    audit.append(
        db, "system", audit.ANCHOR_ACTION, "audit", {"legacy_rows": legacy, "legacy_head": last[0]}
    )
    log.warning("audit chain: %d legacy unkeyed rows re-anchored under the device key", legacy)
    return True


def check_published(db: sqlite_utils.Database, key: audit.ChainKey, payload: bytes) -> str | None:
    """None when the local chain still holds the published head, else why not."""
    try:
        doc = json.loads(payload)
        seq, mac = int(doc["seq"]), str(doc["mac"])
    except (ValueError, KeyError, TypeError):
        return "the published audit head is unreadable"
    first = db.conn.execute("SELECT min(seq) FROM audit").fetchone()[0]
    if first is not None and seq < int(first):
        return None  # pruned behind a checkpoint since; verify() proves the prefix
    row = db.conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        return f"the published head seq {seq} is missing here (rolled back or truncated)"
    expected = json.loads(head_payload(key, seq, str(row[0])))["mac"]
    if expected == mac:
        return None
    rekeyed = audit.last_rekey(db)
    if rekeyed is None or seq > rekeyed[0]:
        return f"row seq {seq} differs from the published head (rewritten)"
    if seq == rekeyed[0]:  # the head the audit-key rotation recorded under the old key
        if hmac.compare_digest(mac, rekeyed[1]):
            return None
        return f"row seq {seq} differs from the head the audit-key rotation recorded (rewritten)"
    log.warning(
        "the published audit head (seq %d) predates the audit-key rotation that re-MACed "
        "the chain up to seq %d: it cannot be compared any more",
        seq,
        rekeyed[0],
    )
    return None


@dataclass
class AuditWatch:
    """Verify, publish and alert; one instance per running gateway."""

    db: sqlite_utils.Database
    run_db: Callable[..., Awaitable[Any]]
    emit: Callable[[ev.BaseEvent], None]
    site: str
    gate: str
    outbox: Any = None
    base_topic: str | None = None
    read_retained: Callable[[str], Awaitable[bytes | None]] | None = None
    other_gate_counts: Callable[[], Awaitable[int]] | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    verify_every_s: float = DAY_S
    publish_every_s: float = PUBLISH_EVERY_S
    count_every_s: float = COUNT_EVERY_S
    db_path: str | None = None
    _alerted: str | None = None
    _published: int | None = None

    @classmethod
    def for_gate(
        cls,
        cfg: GatewayConfig,
        *,
        db: sqlite_utils.Database,
        run_db: Callable[..., Awaitable[Any]],
        emit: Callable[[ev.BaseEvent], None],
        outbox: Any,
        topics: Any,
        retained: RetainedStore | None,
    ) -> AuditWatch:
        """Wire to a gate: its database thread, emit, outbox and topics, and the retained
        documents its MQTT session keeps (None without a broker)."""
        base = topics.base if topics is not None else None
        watch = cls(db, run_db, emit, cfg.site.id, cfg.site.gate, outbox, base)
        watch.db_path = str(cfg.storage.database_path)
        watch.thresholds = compliance_svc.thresholds_of(cfg)
        watch.count_every_s = cfg.privacy.compliance_check_interval_s
        if retained is not None and base is not None:
            # The daemon's own MQTT session keeps these retained documents (no second
            # connection per check).
            counts_filter = f"{cfg.mqtt.topic_prefix}/{cfg.site.id}/+/enrolled"
            retained.watch(head_topic(base))
            retained.watch(counts_filter)
            watch.read_retained = retained.read
            watch.other_gate_counts = lambda: _counts_from_store(
                retained, counts_filter, cfg.site.gate
            )
        return watch

    def _alert(
        self, code: ev.ComplianceCode, value: int | None, due: dt.date | None = None
    ) -> None:
        self.emit(
            ev.ComplianceAlert(site=self.site, gate=self.gate, code=code, value=value, due=due)
        )

    async def check(self) -> audit.VerifyResult:
        """Verify the chain and the published head once; alert on a (new) break."""
        res = await self._verify()
        reason = None if res.ok else f"seq {res.broken_seq}: {res.reason}"
        key = audit.bound_key(self.db)
        if res.ok and key is not None and self.base_topic and self.read_retained is not None:
            payload = await self.read_retained(head_topic(self.base_topic))
            if payload is not None:
                reason = await self.run_db(check_published, self.db, key, payload)
        if reason is None:
            self._alerted = None
            log.info("gate %s: audit chain verified (%d rows)", self.gate, res.rows)
            return res
        log.error("gate %s: AUDIT CHAIN BROKEN: %s", self.gate, reason)
        if reason != self._alerted:
            self._alerted = reason
            seq = res.broken_seq if res.broken_seq is not None else res.head_seq
            self._alert(ev.ComplianceCode.AUDIT_CHAIN_BROKEN, max(0, seq))
        return res

    async def _verify(self) -> audit.VerifyResult:
        """The whole walk on its own connection and thread (files), never the gate's."""
        path = self.db_path
        if not path or path == ":memory:":
            result: audit.VerifyResult = await self.run_db(audit.verify, self.db)
            return result
        return await asyncio.to_thread(audit.verify_file, path, audit.bound_key(self.db))

    async def check_counts(self) -> None:
        """Alert when the compound's people count crosses a threshold (once per crossing)."""
        total = int(await self.run_db(compliance_svc.face_data_count, self.db))
        if self.other_gate_counts is not None:
            with contextlib.suppress(Exception):
                total += int(await self.other_gate_counts())
        today = dt.datetime.now().astimezone().date()
        crossing = await self.run_db(
            compliance_svc.watch_thresholds, self.db, total, self.thresholds, today
        )
        if crossing is None:
            return
        if crossing.level == "warning":
            self._alert(ev.ComplianceCode.CAPACITY_WARNING, total)
        else:
            self._alert(ev.ComplianceCode.FILING_REQUIRED, total, crossing.deadline)

    async def publish_head(self) -> None:
        """Publish the verified head (retained) when it moved since the last time."""
        key = audit.bound_key(self.db)
        if key is None or self.outbox is None or not self.base_topic:
            return
        row = await self.run_db(
            lambda: self.db.conn.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        )
        if row is None or int(row[0]) == self._published or self._alerted is not None:
            return
        payload = head_payload(key, int(row[0]), str(row[1]))
        self.outbox.put_raw(str(uuid.uuid4()), head_topic(self.base_topic), payload, retain=True)
        self._published = int(row[0])

    async def run(self) -> None:
        """Service body: anchor, verify, publish, then every minute/day. A storage failure
        (read-only or locked database) is logged and retried; it never stops the watch."""
        anchored = False
        next_verify = next_count = 0.0
        while True:
            try:
                if not anchored:
                    await self.run_db(reanchor, self.db)
                    anchored = True
                if time.monotonic() >= next_verify:
                    await self.check()
                    next_verify = time.monotonic() + self.verify_every_s
                if time.monotonic() >= next_count:
                    await self.check_counts()
                    next_count = time.monotonic() + self.count_every_s
                await self.publish_head()
            except (sqlite3.Error, GatewayError) as exc:
                log.warning("gate %s: audit watch: %s (retrying)", self.gate, exc)
            await asyncio.sleep(self.publish_every_s)


async def _counts_from_store(store: Any, counts_filter: str, own_gate: str) -> int:
    """The other gates' retained people counts, from the daemon's session's store."""
    from gateway.mqtt.fleet import parse_enrolled

    total = 0
    for topic, payload in store.matching(counts_filter).items():
        if topic.split("/")[-2] == own_gate:
            continue
        count = parse_enrolled(topic, payload)
        total += count or 0
    return total
