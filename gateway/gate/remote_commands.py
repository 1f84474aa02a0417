"""The signed MQTT commands' handlers: each validated command calls the service the CLI
calls (:mod:`gateway.services.credentials`, :mod:`gateway.services.withdrawal` through
:class:`~gateway.gate.withdrawal_announce.GateWithdrawals`, :mod:`gateway.services.people`,
:mod:`gateway.services.compliance`, :mod:`gateway.services.decommission`,
:mod:`gateway.services.key_purposes`), so a change made remotely is audited and reaches the
running daemon's credential cache exactly like one made at the console.

A person is named by a sealed ``person_ref`` (:mod:`gateway.privacy.person_ref`), opened
here with the site key; no result and no refusal detail names the person (an id in a
service's error message is replaced by ``<person>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.credentials.hashing import PinTerms, open_pin_hash
from gateway.errors import GatewayError, ProtocolError
from gateway.gate.withdrawal_announce import GateData, GateWithdrawals
from gateway.mqtt.commands import COMMAND_ACTOR
from gateway.privacy import person_ref
from gateway.services import compliance
from gateway.services import credentials as creds
from gateway.services import decommission as decom
from gateway.services.people import DeletionDeps, delete_person

if TYPE_CHECKING:
    from gateway.gate.controller import AccessController
    from gateway.services.cache_state import CacheState

Handler = Callable[[Any], Awaitable[Mapping[str, Any]]]

ACTOR = "mqtt"
"""The audit actor and channel of every remote change."""
RESTART_DELAY_S = 0.5
"""After a key rotation: time for the command's result to go out before the restart."""
STOP_AFTER_DECOMMISSION_S = 2.0
"""Time for the decommission result to reach the broker before the daemon stops."""


class Registry(Protocol):
    """Where handlers are registered by command name (the MQTT command processor)."""

    def register(self, name: str, handler: Handler) -> None:
        """Run ``handler`` for the command ``name``."""
        ...


@dataclass(frozen=True)
class CommandDeps(GateData):
    """What the handlers use of the running gate."""

    run_decide: Callable[..., Awaitable[Any]]  # a call on the credential store's thread
    controller: AccessController
    cache_state: CacheState | None
    face_paths: Mapping[str, Any]  # camera -> its face path, once the face paths run
    reload: Callable[[], Awaitable[bool]]
    restart: Callable[[str], None] | None = None  # a safe restart in place (the daemon's)
    stop: Callable[[], None] | None = None
    """Stop the daemon (after a decommission); None: the gate keeps running (tests)."""


class RemoteCommands:
    """The handlers of the signed commands of one gate."""

    def __init__(self, deps: CommandDeps, withdrawals: GateWithdrawals) -> None:
        self._gate = deps
        self._withdrawals = withdrawals
        #: why no further command runs (a key rotation waiting for its restart, whose keys
        #: in memory are stale; a decommission): None while commands run
        self._closed: str | None = None

    def register(self, registry: Registry | None) -> None:
        """Register every handler (nothing without MQTT)."""
        if registry is None:
            return
        for name, handler in (
            ("withdraw_consent", self.withdraw_consent),
            ("sync_person", self.sync_person),
            ("revoke_card", self.revoke_card),
            ("revoke_pin", self.revoke_pin),
            ("set_pin", self.set_pin),
            ("unlock", self.unlock),
            ("reload_config", self.reload_config),
            ("purge", self.purge),
            ("rotate_keys", self.rotate_keys),
            ("decommission", self.decommission),
        ):
            registry.register(name, self._unless_closed(handler))

    def _unless_closed(self, handler: Handler) -> Handler:
        """``handler``, refused once the gate is closed to commands (see ``_closed``)."""

        async def run(args: Any) -> Mapping[str, Any]:
            if self._closed is not None:
                raise GatewayError(f"{self._closed}: no command runs until it restarts")
            return await handler(args)

        return run

    def _person(self, ref: str) -> str:
        """The person id a sealed ref names (refused when it does not open)."""
        pid = person_ref.open_ref(self._gate.keys.site, ref)
        if pid is None:
            raise ProtocolError("person_ref seals no person")
        return pid

    def _credential_deps(self) -> creds.CredentialDeps:
        return creds.CredentialDeps(self._gate.controller.credentials, self._gate.cache_state)

    async def sync_person(self, args: Any) -> dict[str, Any]:
        """Install a person's encrypted templates from another gate of the site."""
        from gateway.privacy.sync import handle_sync_person

        gate = self._gate
        if not gate.face_paths:
            # No running face path here (face disabled, no face camera, models missing):
            # templates this gate cannot use are not stored (data minimisation).
            raise GatewayError("sync_person: this gate runs no face path; nothing stored")
        pid, guardian = self._person(args.person_ref), None
        with contextlib.suppress(person_ref.PersonRefError):  # refused below if so
            guardian = person_ref.open_ref(
                gate.keys.site, args.consent.guardian_ref, role="guardian"
            )
        with _unnamed(pid, guardian):  # the refusals of a sync name them
            return await handle_sync_person(
                args,
                db=gate.db,
                vault=gate.vault,
                gallery=gate.gallery,
                site_key=gate.keys.gates_root,
                seal_key=gate.keys.site,
                run_db=gate.run_db,
                grace_days=gate.cfg.privacy.renotice_grace_days,
            )

    async def withdraw_consent(self, args: Any) -> dict[str, Any]:
        """Withdraw face consent and erase the person's face data."""
        pid = self._person(args.person_ref)
        with _unnamed(pid):
            return await self._withdrawals.withdraw(pid, ACTOR)

    async def revoke_card(self, args: Any) -> dict[str, Any]:
        """Revoke one card (by its keyed hash) or all cards of a person."""
        digest = bytes.fromhex(args.card_hmac) if args.card_hmac else None
        return await self._revoke(creds.revoke_card, args.person_ref, card_hmac=digest)

    async def revoke_pin(self, args: Any) -> dict[str, Any]:
        """Revoke a person's PINs (of one kind, or all)."""
        return await self._revoke(creds.revoke_pin, args.person_ref, kind=args.kind)

    async def _revoke(self, revoke: Callable[..., int], ref: str, **which: Any) -> dict[str, Any]:
        """Run one credential revocation of the person as the remote actor; how many."""
        pid = self._person(ref)
        with _unnamed(pid):
            n = await self._gate.run_decide(
                revoke, self._credential_deps(), pid, actor=ACTOR, channel=ACTOR, **which
            )
        return {"revoked": n}

    async def set_pin(self, args: Any) -> dict[str, Any]:
        """Store a PIN hashed (and sealed) by the management side."""
        pid = self._person(args.person_ref)
        with _unnamed(pid):
            pin_hash = open_pin_hash(args.pin_hash_sealed, pid, self._gate.keys.site)
            pin_id = await self._gate.run_decide(
                creds.set_pin_hash,
                self._credential_deps(),
                pid,
                pin_hash,
                args.pin_index,
                actor=ACTOR,
                channel=ACTOR,
                terms=PinTerms(
                    args.kind,
                    args.expires_at.timestamp() if args.expires_at else None,
                    args.uses_left,
                ),
            )
        return {"pin_id": pin_id}

    async def unlock(self, args: Any) -> dict[str, Any]:
        """Momentary unlock of a configured door."""
        gate = self._gate
        if args.door not in gate.cfg.doors:  # a refusal, not an "ok" result saying no
            raise ProtocolError(f"door {args.door!r} is not configured at this gate")
        await gate.controller.remote_unlock(args.door, args.seconds)
        return {"ok": True}

    async def reload_config(self, args: Any) -> dict[str, Any]:
        """Re-read the configuration file."""
        ok = await self._gate.reload()
        return {"ok": ok}

    async def purge(self, args: Any) -> dict[str, Any]:
        """``access_log``: delete rows before a time. ``person``: delete the person entirely
        (:func:`gateway.services.people.delete_person`: record, cards, PINs, consents, face
        data); the result is the receipt's counts and id, never the person."""
        gate = self._gate
        if args.target == "access_log":
            before = args.before.timestamp() if args.before else time.time()
            n = await gate.run_db(
                compliance.purge_access_log, gate.db, before, actor=ACTOR, channel=ACTOR
            )
            return {"deleted": n}
        pid = self._person(args.person_ref)
        deps = DeletionDeps(gate.controller.credentials, gate.vault, gate.gallery, gate.cache_state)
        with _unnamed(pid):
            # scrub_wait_s=0: card/PIN decisions share this thread; the scrub runs on its own
            done = await gate.run_decide(
                delete_person, deps, pid, actor=ACTOR, channel=ACTOR, scrub_wait_s=0
            )
        await self._withdrawals.after_erasure()
        receipt = asdict(done)
        del receipt["person_id"]
        return receipt

    async def decommission(self, args: Any) -> dict[str, Any]:
        """Crypto-erase this gate's keys and templates (``confirm`` must be its gate id),
        empty the live gallery and the credential cache (nothing opens a door any more),
        then stop the daemon once the result is out: it refuses to start again."""
        gate = self._gate
        decom.check_confirmation(gate.cfg, args.confirm)
        for pid in await gate.run_db(gate.vault.enrolled_people, gate.db):
            gate.gallery.remove_person(pid)
        actor = COMMAND_ACTOR.get(ACTOR)  # mqtt:<the signing key's id>
        # nothing more is stored, and no command replayed (the nonces are erased too) runs;
        # kept when the erasure fails half-way (fail closed: a restart reopens)
        self._closed = "the gate is being decommissioned"
        rep: decom.DecommissionReport = await gate.run_db(
            decom.decommission, gate.cfg, gate.db, actor=actor, channel=ACTOR
        )
        await gate.run_decide(gate.controller.credentials.refresh)
        if gate.stop is not None:
            asyncio.get_running_loop().call_later(STOP_AFTER_DECOMMISSION_S, gate.stop)
        return rep.summary()

    def _restart_after(self, what: str) -> None:
        """Close to commands and restart in place once the result is out: the keys in memory
        are stale (what a command stored now would be keyed by them and lost after)."""
        assert self._gate.restart is not None  # noqa: S101 - checked by rotate_keys
        self._closed = f"the gate restarts with its rotated {what} key"
        asyncio.get_running_loop().call_later(
            RESTART_DELAY_S, self._gate.restart, f"{what} key rotated"
        )

    async def rotate_keys(self, args: Any) -> dict[str, Any]:
        """Rotate one key of this gate (:func:`gateway.services.key_purposes.rotate`); then
        restart in place, so every part of the gate runs with the new keys (until then
        lookups under the old keys fail closed and every audited write is refused with a
        retryable error: :func:`~gateway.services.key_purposes.rotate`). The result
        holds fingerprints only."""
        from gateway.services import key_purposes

        gate = self._gate
        if gate.restart is None:
            raise ProtocolError("this gate cannot restart itself: rotate with the CLI")
        try:
            done = await gate.run_db(
                key_purposes.rotate,
                gate.db,
                gate.keys,
                gate.cfg,
                args.what,
                actor=ACTOR,
                generation=args.generation,
                running=True,  # writes refused until the restart
            )
        except BaseException:
            if await gate.run_db(_stale, gate.db, gate.keys):  # failed after its commit
                self._restart_after(args.what)
            raise
        self._restart_after(done.what)
        return {
            "what": done.what,
            "old_key_id": done.old_key_id,
            "new_key_id": done.new_key_id,
            "templates": done.templates,
            "restarting": True,
        }


def _stale(db: Any, keys: Any) -> bool:
    """Whether the database records keys other than ``keys`` (a rotation committed)."""
    from gateway.services.keys import RotationError, check_current

    try:
        check_current(db.conn, keys)
    except RotationError:
        return True
    return False


@contextlib.contextmanager
def _unnamed(*ids: str | None) -> Iterator[None]:
    """Re-raise a service's refusal without the people's ids (it goes back on the wire)."""
    try:
        yield
    except GatewayError as exc:
        text = str(exc)
        for pid in filter(None, ids):
            text = text.replace(pid, "<person>")
        raise GatewayError(text) from None


def register_remote_commands(
    deps: CommandDeps, withdrawals: GateWithdrawals, registry: Registry | None
) -> RemoteCommands:
    """Build the handlers and register them with the gate's command processor, if any."""
    handlers = RemoteCommands(deps, withdrawals)
    handlers.register(registry)
    return handlers
