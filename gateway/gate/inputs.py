"""Door contact, exit button and tamper on GPIO lines: debounced levels to the door."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from gateway.aio import run_together
from gateway.hardware.door_controller import DoorController
from gateway.hardware.io import InputRole

log = logging.getLogger(__name__)


class InputsFactory(Protocol):
    """Opens the input source of one GPIO chip (:func:`open_gpio_inputs`, or a test fake)."""

    def __call__(self, chip: str, lines: dict[int, Any], name: str, stable_s: float) -> Any: ...


def open_gpio_inputs(chip: str, lines: dict[int, Any], name: str, stable_s: float) -> Any:
    """The GPIO input source (libgpiod)."""
    from gateway.hardware.io import GpioInputs

    return GpioInputs(chip, lines, name=name, stable_s=stable_s)


async def gpio_inputs(
    door: str,
    controller: DoorController,
    bindings: list[tuple[InputRole, Any]],
    factory: InputsFactory = open_gpio_inputs,
) -> None:
    """Door contact / exit button / tamper on GPIO lines: debounced levels -> the door.

    One input source per GPIO chip; a line's NC wiring and debounce come from its
    binding. Failure to open the lines (no libgpiod, no permission) is raised to the
    supervisor, which logs it and retries with backoff; readers' inputs are unaffected.
    """
    from gateway.hardware.events import InputChanged
    from gateway.hardware.io import Wiring

    # One source per chip and debounce time, so that each line keeps its own debounce.
    groups: dict[tuple[str, int], dict[int, tuple[InputRole, Any]]] = {}
    for role, b in bindings:
        groups.setdefault((b.chip, b.debounce_ms), {})[b.line] = (role, b)

    async def one(chip: str, debounce_ms: int, lines: dict[int, tuple[InputRole, Any]]) -> None:
        wiring = {
            line: Wiring.NC if b.normally_closed else Wiring.NO for line, (_, b) in lines.items()
        }
        source = factory(chip, wiring, f"{door}-gpio", debounce_ms / 1000)
        try:
            await source.start()
            log.info("door %s: %d GPIO input(s) on %s", door, len(lines), chip)
            async for event in source.events():
                if isinstance(event, InputChanged) and event.input_no in lines:
                    role = lines[event.input_no][0]
                    await controller.handle_role(role, event.active)
        finally:
            await source.close()

    # not a TaskGroup: on 3.11 a source failing while stopped would turn the stop into an
    # error that the supervisor restarts (gateway.aio)
    await run_together(
        *(one(chip, debounce_ms, lines) for (chip, debounce_ms), lines in groups.items()),
        name=f"gpio-{door}",
    )
