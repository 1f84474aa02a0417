"""A door from its configuration: state machine, lock relay and input map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.config.doors import DoorConfig
from gateway.gate.controller import DoorRuntime
from gateway.hardware.door import DoorConfig as MachineConfig
from gateway.hardware.door import DoorStateMachine
from gateway.hardware.door_controller import DoorController
from gateway.hardware.io import (
    DoorInputMap,
    FakeRelay,
    InputRole,
    LockSpec,
    OsdpRelay,
    relay_energized,
)
from gateway.hardware.lock import DoorLock
from gateway.hardware.readers import Reader

GpioBindings = list[tuple[InputRole, Any]]


def build_door(
    name: str, dc: DoorConfig, readers: dict[str, Reader], on_event: Callable[[Any], None]
) -> tuple[DoorRuntime, GpioBindings]:
    """A door controller with its lock relay and input map, and the door's inputs wired to
    GPIO lines (for :func:`gateway.gate.inputs.gpio_inputs`; empty when none is)."""
    from gateway.hardware.io import LockType as HwLockType

    spec = LockSpec(lock_type=HwLockType(dc.relay.lock_type.value))
    relay: Any
    if dc.relay.kind == "osdp":
        reader_name = dc.relay.reader or dc.reader
        assert reader_name is not None  # noqa: S101 - config validation guarantees it
        relay = OsdpRelay(readers[reader_name], dc.relay.output)
    elif dc.relay.kind == "gpio":
        from gateway.hardware.io import GpioRelay

        assert dc.relay.line is not None  # noqa: S101 - config validation guarantees it
        relay = GpioRelay(
            dc.relay.chip,
            dc.relay.line,
            name=f"{name}-relay",
            rest_level=relay_energized(spec, False),  # requested locked
        )
    else:
        relay = FakeRelay(f"{name}-no-lock")
    inputs = DoorInputMap(
        contact=dc.contact.input if dc.contact.kind == "osdp" else None,
        exit=dc.exit_button.input if dc.exit_button.kind == "osdp" else None,
        tamper=dc.tamper.input if dc.tamper.kind == "osdp" else None,
    )
    gpio = [
        (role, binding)
        for role, binding in (
            (InputRole.CONTACT, dc.contact),
            (InputRole.EXIT, dc.exit_button),
            (InputRole.TAMPER, dc.tamper),
        )
        if binding.kind == "gpio"
    ]
    machine = DoorStateMachine(
        MachineConfig(name, unlock_s=dc.unlock_seconds, held_open_s=dc.held_open_seconds)
    )
    bound = {b.reader or dc.reader for b in (dc.contact, dc.exit_button, dc.tamper)}
    controller = DoorController(
        machine,
        DoorLock(name, relay, spec),
        inputs,
        on_event=on_event,
        input_readers=(r for r in bound if r),
    )
    runtime = DoorRuntime(
        name=name,
        controller=controller,
        reader=dc.reader,
        camera=dc.camera,
        unlock_s=dc.unlock_seconds,
        held_open_s=dc.held_open_seconds,
    )
    return runtime, gpio
