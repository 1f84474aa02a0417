"""Signed remote commands: envelope checks, replay protection, per-command args, handlers.

A command is accepted only when, in this order: the payload is at most ``max_bytes`` and
nested at most :data:`~gateway.mqtt.payload.MAX_DEPTH` deep (checked before parsing), is a
JSON envelope (``name``, ``args``, ``site``, ``gate``, ``ts``, ``nonce``, ``key_id``,
``sig``), its name matches the topic, ``key_id`` is a trusted key, ``sig`` verifies (see
:mod:`gateway.mqtt.sign`), the signed ``site`` and ``gate`` are this gate's own (so a
command captured on its way to one gate cannot be replayed to another), ``ts`` is within
``window_s`` of now, the nonce was not seen in the window (table ``command_nonces``), the
command is known, its args name no person in clear (``person_id``/``guardian_id``: reason
``clear_identity``; a person travels as a sealed ``person_ref``) and validate. A result
never names a person. Anything else gives a ``cmd_result`` error with a reason code and an
audit entry (past ``rejections_audited`` per ``rejection_window_s``, one aggregated entry
per window: see :mod:`gateway.mqtt.rejections`); the handler never runs and nothing raises.
Handlers are async callables registered by name by the daemon.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from gateway.command_args import CLEAR_ID_FIELDS, COMMAND_ARGS, SyncPersonArgs
from gateway.errors import GatewayError
from gateway.mqtt.payload import PayloadError, loads_bounded
from gateway.mqtt.rejections import DEFAULT_INDIVIDUAL as REJECTIONS_AUDITED
from gateway.mqtt.rejections import DEFAULT_WINDOW_S as REJECTION_WINDOW_S
from gateway.mqtt.rejections import RejectionLimiter
from gateway.mqtt.sign import load_public_b64, verify_envelope

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
DEFAULT_WINDOW_S = 120.0

AuditFn = Callable[[str, str, str, dict[str, Any]], None]
"""``audit(actor, action, subject, details)``."""
Handler = Callable[[Any], Awaitable[Mapping[str, Any]]]
"""``await handler(validated_args_model) -> result dict``."""

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

COMMAND_ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("command_actor")
"""``mqtt:<key_id>`` of the verified command a handler runs for (set around each handler)."""


class Envelope(BaseModel):
    """The signed JSON envelope of every command."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    args: dict[str, Any]
    site: str = Field(min_length=1, max_length=64, description="Target site id (signed).")
    gate: str = Field(min_length=1, max_length=64, description="Target gate id (signed).")
    ts: dt.datetime
    nonce: str = Field(pattern=_NONCE.pattern)
    key_id: str = Field(min_length=1, max_length=64)
    sig: str = Field(min_length=1, max_length=200)


class CommandResult(BaseModel):
    """Published on ``.../cmd_result``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None
    nonce: str | None
    ok: bool
    error: str | None = None
    detail: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    ts: str

    def to_json(self) -> bytes:
        """Compact JSON payload."""
        return self.model_dump_json().encode("utf-8")


@dataclass
class _Reject(Exception):  # noqa: N818 - internal control flow, not an error family
    reason: str
    detail: str


class CommandProcessor:
    """Verifies command envelopes and dispatches them to registered handlers."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        trusted_keys: Mapping[str, Ed25519PublicKey | str],
        *,
        window_s: float = DEFAULT_WINDOW_S,
        max_bytes: int = MAX_COMMAND_BYTES,
        handler_timeout_s: float = 30.0,
        audit: AuditFn,
        clock: Callable[[], float] = time.time,
        rejection_window_s: float = REJECTION_WINDOW_S,
        rejections_audited: int = REJECTIONS_AUDITED,
        site: str,
        gate: str,
    ) -> None:
        if not site or not gate:
            raise ValueError("CommandProcessor needs this gate's site and gate ids")
        self._db = db
        self._keys: dict[str, Ed25519PublicKey] = {
            kid: load_public_b64(k) if isinstance(k, str) else k for kid, k in trusted_keys.items()
        }
        self.window_s = window_s
        self.max_bytes = max_bytes
        self.handler_timeout_s = handler_timeout_s
        self._clock = clock
        self._site = site
        self._gate = gate
        self._handlers: dict[str, tuple[Handler, type[BaseModel]]] = {}
        self._rejections = RejectionLimiter(rejection_window_s, rejections_audited)
        # The nonce and audit writes run here, off the event loop: a locked or failing
        # database (a held WAL index makes each call wait ~10 s) must not stall the doors.
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="commands-db")
        self._audit = audit

    def register(
        self, name: str, handler: Handler, args_model: type[BaseModel] | None = None
    ) -> None:
        """Register ``handler`` for command ``name`` (args model from COMMAND_ARGS by default)."""
        model = args_model or COMMAND_ARGS.get(name)
        if model is None:
            raise ValueError(f"command {name!r} has no args model; pass args_model")
        self._handlers[name] = (handler, model)

    @property
    def commands(self) -> list[str]:
        """Names with a registered handler."""
        return sorted(self._handlers)

    def _now_iso(self) -> str:
        t = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _safe_audit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        try:
            self._audit(actor, action, subject, details)
        except (GatewayError, sqlite3.Error, ValueError, TypeError) as exc:
            log.error("gate %s: cannot audit %s of %s: %s", self._gate, action, subject, exc)

    def _record_rejection(
        self, actor: str, name: str | None, nonce: str | None, rej: _Reject
    ) -> None:
        """Audit and log a rejection, individually or (past the window's quota) counted."""
        if self._rejections.admit(rej.reason, self._clock()):
            log.warning(
                "gate %s: command %s rejected: %s (%s)", self._gate, name, rej.reason, rej.detail
            )
            self._safe_audit(
                actor,
                "command.rejected",
                name or "?",
                {"reason": rej.reason, "detail": rej.detail, "nonce": nonce},
            )
        else:
            log.debug("gate %s: command %s rejected: %s", self._gate, name, rej.reason)

    def flush_rejections(self, *, force: bool = False) -> int:
        """Write the aggregated audit row of an ended window; returns how many it counts."""
        summary = self._rejections.flush(self._clock(), force=force)
        if summary is None:
            return 0
        log.warning(
            "gate %s: %d more commands rejected since %s (%s); audited as one row",
            self._gate,
            summary.total,
            summary.details()["from"],
            ", ".join(f"{r}={n}" for r, n in sorted(summary.counts.items())),
        )
        self._safe_audit("mqtt:unverified", "command.rejected.aggregated", "?", summary.details())
        return summary.total

    async def process(self, topic_name: str | None, payload: bytes) -> CommandResult:
        """Check and run one command; always returns a result, never raises."""
        off_loop = self._off_loop
        await off_loop(self.flush_rejections)
        name: str | None = topic_name
        nonce: str | None = None
        actor = "mqtt:unverified"
        try:
            env: Envelope = await off_loop(self._check, topic_name, payload)
            name, nonce, actor = env.name, env.nonce, f"mqtt:{env.key_id}"
            handler, model = self._handlers[env.name]
            _refuse_clear_ids(env.args)
            try:
                args = model.model_validate(env.args)
            except ValidationError as exc:
                raise _Reject("invalid_args", _first_error(exc)) from None
            if isinstance(args, SyncPersonArgs) and args.consent.scope != "compound":
                raise _Reject(
                    "consent_scope",
                    "consent scope 'device' does not allow syncing templates to other gates",
                )
        except _Reject as rej:
            await off_loop(self._record_rejection, actor, name, nonce, rej)
            return CommandResult(
                name=name,
                nonce=nonce,
                ok=False,
                error=rej.reason,
                detail=rej.detail,
                ts=self._now_iso(),
            )
        subject = str(getattr(args, "door", None) or name)  # never a person (sealed refs)
        try:
            result = dict(await self._run_handler(handler, args, actor))
        except TimeoutError:
            reason, detail = (
                "handler_timeout",
                f"handler did not finish in {self.handler_timeout_s} s",
            )
        except GatewayError as exc:
            reason, detail = "refused", str(exc)
        except Exception as exc:
            log.exception("gate %s: command %s handler failed", self._gate, name)
            reason, detail = "handler_failed", type(exc).__name__
        else:
            log.info("gate %s: command %s executed (key %s)", self._gate, name, actor)
            details = {"command": name, "nonce": nonce}
            await off_loop(self._safe_audit, actor, "command.executed", subject, details)
            return CommandResult(name=name, nonce=nonce, ok=True, result=result, ts=self._now_iso())
        log.warning("gate %s: command %s failed: %s (%s)", self._gate, name, reason, detail)
        details = {"command": name, "nonce": nonce, "reason": reason}
        await off_loop(self._safe_audit, actor, "command.failed", subject, details)
        return CommandResult(
            name=name, nonce=nonce, ok=False, error=reason, detail=detail, ts=self._now_iso()
        )

    async def _run_handler(self, handler: Handler, args: Any, actor: str) -> Mapping[str, Any]:
        """The handler's result within the timeout, :data:`COMMAND_ACTOR` set for it."""
        token = COMMAND_ACTOR.set(actor)
        try:
            async with asyncio.timeout(self.handler_timeout_s):
                return await handler(args)
        finally:
            COMMAND_ACTOR.reset(token)

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the processor's database thread (one at a time, in order)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_thread, functools.partial(fn, *args))

    def _check(self, topic_name: str | None, payload: bytes) -> Envelope:
        try:
            raw = loads_bounded(payload, max_bytes=self.max_bytes)
        except PayloadError as exc:
            raise _Reject(exc.reason, exc.detail) from None
        if not isinstance(raw, dict):
            raise _Reject("malformed", "envelope must be a JSON object")
        try:
            env = Envelope.model_validate(raw)
        except ValidationError as exc:
            raise _Reject("malformed", _first_error(exc)) from None
        if topic_name is not None and env.name != topic_name:
            raise _Reject("topic_mismatch", f"envelope name {env.name!r} != topic {topic_name!r}")
        key = self._keys.get(env.key_id)
        if key is None:
            raise _Reject("unknown_key", f"key id {env.key_id!r} is not trusted")
        if not verify_envelope(raw, key):
            raise _Reject("bad_signature", "signature does not verify")
        if (env.site, env.gate) != (self._site, self._gate):
            raise _Reject(
                "wrong_target",
                f"envelope is for {env.site}/{env.gate}, this is {self._site}/{self._gate}",
            )
        if env.ts.tzinfo is None:
            raise _Reject("malformed", "ts must carry a timezone")
        now = self._clock()
        skew = env.ts.timestamp() - now
        if abs(skew) > self.window_s:
            raise _Reject(
                "stale", f"timestamp is {skew:+.0f} s from now (window {self.window_s:.0f} s)"
            )
        self._remember_nonce(f"{env.key_id}:{env.nonce}", now)
        if env.name not in self._handlers:
            known = env.name in COMMAND_ARGS
            raise _Reject(
                "not_supported" if known else "unknown_command",
                f"no handler for command {env.name!r}",
            )
        return env

    def _remember_nonce(self, key: str, now: float) -> None:
        conn = self._db.conn
        try:
            conn.execute("DELETE FROM command_nonces WHERE ts < ?", (now - 2 * self.window_s,))
            conn.execute("INSERT INTO command_nonces (nonce, ts) VALUES (?, ?)", (key, now))
        except sqlite3.IntegrityError:
            raise _Reject("replayed", "nonce already used within the replay window") from None
        except sqlite3.Error as exc:
            # without the nonce table replay cannot be ruled out: refuse
            raise _Reject("storage_error", f"cannot record nonce: {exc}") from None


def _refuse_clear_ids(args: Mapping[str, Any], where: str = "args") -> None:
    """Refuse a command naming a person in clear (the format before issue #15): no upgrade
    window, since accepting it would not undo the id having crossed the broker."""
    for key, value in args.items():
        if key in CLEAR_ID_FIELDS:
            role = key.removesuffix("_id")
            raise _Reject(
                "clear_identity",
                f"{where}.{key}: a person id in clear is refused; send {role}_ref, the id "
                "sealed for the site's gates (gateway mqtt seal-person)",
            )
        if isinstance(value, Mapping):
            _refuse_clear_ids(value, f"{where}.{key}")


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return "invalid"
    e = errs[0]
    loc = ".".join(str(p) for p in e.get("loc", ())) or "(root)"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {e.get('msg', 'invalid')}{more}"
