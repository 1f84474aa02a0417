"""The signed MQTT commands' handlers: each validated command calls the service the CLI
calls (:mod:`gateway.services.credentials`, :mod:`gateway.services.withdrawal` through
:class:`~gateway.gate.withdrawal_announce.GateWithdrawals`,
:mod:`gateway.services.compliance`), so a change made remotely is audited and reaches the
running daemon's credential cache exactly like one made at the console.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.credentials.hashing import PinTerms, open_pin_hash
from gateway.errors import GatewayError, ProtocolError
from gateway.gate.withdrawal_announce import GateData, GateWithdrawals
from gateway.services import compliance
from gateway.services import credentials as creds

if TYPE_CHECKING:
    from gateway.gate.controller import AccessController
    from gateway.services.cache_state import CacheState

Handler = Callable[[Any], Awaitable[Mapping[str, Any]]]

ACTOR = "mqtt"
"""The audit actor and channel of every remote change."""


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


class RemoteCommands:
    """The handlers of the signed commands of one gate."""

    def __init__(self, deps: CommandDeps, withdrawals: GateWithdrawals) -> None:
        self._gate = deps
        self._withdrawals = withdrawals

    def register(self, registry: Registry | None) -> None:
        """Register every handler (nothing without MQTT)."""
        if registry is None:
            return
        registry.register("withdraw_consent", self.withdraw_consent)
        registry.register("sync_person", self.sync_person)
        registry.register("revoke_card", self.revoke_card)
        registry.register("revoke_pin", self.revoke_pin)
        registry.register("set_pin", self.set_pin)
        registry.register("unlock", self.unlock)
        registry.register("reload_config", self.reload_config)
        registry.register("purge", self.purge)

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
        return await handle_sync_person(
            args,
            db=gate.db,
            vault=gate.vault,
            gallery=gate.gallery,
            site_key=gate.keys.gates_root,
            run_db=gate.run_db,
            grace_days=gate.cfg.privacy.renotice_grace_days,
        )

    async def withdraw_consent(self, args: Any) -> dict[str, Any]:
        """Withdraw face consent and erase the person's face data."""
        return await self._withdrawals.withdraw(args.person_id, ACTOR)

    async def revoke_card(self, args: Any) -> dict[str, Any]:
        """Revoke one card (by its keyed hash) or all cards of a person."""
        digest = bytes.fromhex(args.card_hmac) if args.card_hmac else None
        return await self._revoke(creds.revoke_card, args.person_id, card_hmac=digest)

    async def revoke_pin(self, args: Any) -> dict[str, Any]:
        """Revoke a person's PINs (of one kind, or all)."""
        return await self._revoke(creds.revoke_pin, args.person_id, kind=args.kind)

    async def _revoke(
        self, revoke: Callable[..., int], person_id: str, **which: Any
    ) -> dict[str, Any]:
        """Run one credential revocation of the person as the remote actor; how many."""
        n = await self._gate.run_decide(
            revoke, self._credential_deps(), person_id, actor=ACTOR, channel=ACTOR, **which
        )
        return {"revoked": n}

    async def set_pin(self, args: Any) -> dict[str, Any]:
        """Store a PIN hashed (and sealed) by the management side."""
        pin_hash = open_pin_hash(args.pin_hash_sealed, args.person_id, self._gate.keys.site)
        pin_id = await self._gate.run_decide(
            creds.set_pin_hash,
            self._credential_deps(),
            args.person_id,
            pin_hash,
            args.pin_index,
            actor=ACTOR,
            channel=ACTOR,
            terms=PinTerms(
                args.kind, args.expires_at.timestamp() if args.expires_at else None, args.uses_left
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
        """``access_log``: delete rows before a time. ``person``: withdraw the person's face
        consent and erase their face data (cards, PINs and the record stay)."""
        if args.target == "access_log":
            before = args.before.timestamp() if args.before else time.time()
            n = await self._gate.run_db(
                compliance.purge_access_log, self._gate.db, before, actor=ACTOR, channel=ACTOR
            )
            return {"deleted": n}
        result = await self._withdrawals.withdraw(args.person_id, ACTOR)
        return {"erased": result["templates_erased"]}


def register_remote_commands(
    deps: CommandDeps, withdrawals: GateWithdrawals, registry: Registry | None
) -> RemoteCommands:
    """Build the handlers and register them with the gate's command processor, if any."""
    handlers = RemoteCommands(deps, withdrawals)
    handlers.register(registry)
    return handlers
