"""``gateway demo --rotate-keys``: every key of the demo gate rotated before the library plays.

After the set-up a resident is provisioned with face templates, a card and a PIN; the daemon
is stopped and every key is rotated in turn with the operation ``gateway keys rotate`` runs
(:func:`gateway.services.key_rotation.rotate_stopped`), each rotation checking that what it
retired is gone from the database, its WAL and the key directory. The demo gate starts
without a gates key of its own (the site key stands in, as on a gate installed before it
existed): the ``transform`` rotation moves it to one (``privacy.gates_key``). At the end
every key and keyed value of before the first rotation is looked for once more; then the
daemon is started again and the resident must still get in by face, by card and by PIN,
with the templates and credentials stored before the rotations (no re-enrolment).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

if TYPE_CHECKING:
    from gateway.demo.run import DemoStack

log = logging.getLogger(__name__)

#: Every key ``gateway keys rotate --what`` names; ``transform`` first (it writes the
#: gates key file the config now names).
ORDER = ("transform", "site", "device", "audit", "access-log", "card", "pin", "pseudonym")
ACTOR = "demo"
#: The resident the rotations must not lock out (as the library's resident-by-face has it).
RESIDENT = {
    "ref": "resident1",
    "face": True,
    "consent": True,
    "card": {"number": 4242, "facility": 10},
    "pin": "2580",
}
#: method -> the step that presents it at main-gate, and when the door is opened.
_ACCESS: dict[str, tuple[str, dict[str, Any], float]] = {
    "face": (
        "person-approaches",
        {"camera": "main-cam", "person": "resident1", "variant": "live"},
        5.0,
    ),
    "card": ("present-card", {"reader": "entry", "card": 4242, "facility": 10}, 2.0),
    "pin": ("type-pin", {"reader": "entry", "pin": "2580"}, 2.0),
}


def _scenario(method: str) -> dict[str, Any]:
    """The resident let in by ``method`` at main-gate, with nothing provisioned anew."""
    name, args, opened_at = _ACCESS[method]
    action = {"at": 0.5, "action": name, "args": args}
    return {
        "name": f"rotated-keys-{method}",
        "description": f"After every key was rotated, the resident provisioned before gets in "
        f"by {method} (templates and credentials stored before the rotations).",
        "requires": ["face", "osdp"] if method == "face" else ["osdp"],
        "steps": [action, {"at": opened_at, "action": "open-door", "args": {"door": "main-gate"}}],
        "expect": [
            {
                "event": "access.granted",
                "fields": {"door": "main-gate", "method": method},
                "within": [0.5, opened_at],
            },
            {
                "absent": "access.denied",
                "fields": {"door": "main-gate"},
                "within": [0.5, opened_at],
            },
            {"never_published": ["{resident1}", "4242", "2580"]},
        ],
    }


def write_scenarios(folder: Path) -> list[Path]:
    """The three after-rotation scenarios (face, card, PIN) as YAML files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for method in ("face", "card", "pin"):
        path = folder / f"rotated-keys-{method}.yaml"
        path.write_text(yaml.safe_dump(_scenario(method), sort_keys=False))
        paths.append(path)
    return paths


def adopt_gates_key(stack: DemoStack) -> str:
    """Name a gates key file in the daemon's config (not written yet: the ``transform``
    rotation writes it); the demo's office enrolment station uses it from then on. Returns
    the config's text before (:func:`_unless_written` puts it back)."""
    path = stack.workdir / "keys" / "gates-key"
    text = stack.config_path.read_text()
    if "gates_key" not in text:
        line = f'gates_key = {{ file = "{path}" }}\nsite_key'
        stack.config_path.write_text(text.replace("site_key", line, 1))
    stack.keys["gates"] = path
    return text


def _unless_written(stack: DemoStack, before: str) -> None:
    """After a failed rotation: the config without the gates key if none was written."""
    gates = stack.keys.get("gates")
    if gates is not None and not gates.exists():
        stack.config_path.write_text(before)
        del stack.keys["gates"]


def rotate_all(config: Path) -> list[str]:
    """Every rotation of :data:`ORDER` on the stopped gate, then the check of everything
    retired since the first; the lines to print. RuntimeError naming the first problem."""
    from gateway.config.root import load_config
    from gateway.services.key_rotation import residue, retired, rotate_stopped, snapshot_stopped

    cfg = load_config(config)
    first = snapshot_stopped(cfg)
    lines = []
    for what in ORDER:
        t0 = time.monotonic()
        outcome = rotate_stopped(cfg, what, actor=ACTOR)
        done = outcome.rotation
        lines.append(
            f"rotated {what}: key {done.old_key_id} -> {done.new_key_id}, {done.people} people, "
            f"{done.templates} templates ({time.monotonic() - t0:.1f} s); "
            + outcome.residue.describe()
        )
        if not outcome.residue.clean:
            raise RuntimeError(f"after the {what} rotation: {outcome.residue.describe()}")
        cfg = load_config(config)  # the transform rotation wrote the gates key
    overall = residue(cfg, retired(first, snapshot_stopped(cfg)))
    lines.append("every rotation together: " + overall.describe())
    if not overall.clean:
        raise RuntimeError(f"after every rotation: {overall.describe()}")
    return lines


async def rotate_every_key(stack: DemoStack, unmet: dict[str, str]) -> list[Any]:
    """Provision the resident, stop the daemon, rotate every key, start it again and play
    the resident's face, card and PIN entries; their results (a failed rotation is a
    failed ``rotate-every-key`` result; the daemon is started again in every case)."""
    from gateway.demo.run import PREFIX
    from hw_sim.runner import format_report, run_scenarios_async

    t0 = time.monotonic()
    person = {**RESIDENT, "name": stack.sim.corpus.resolve(str(RESIDENT["ref"]))}
    person.pop("ref")
    print("== rotating every key (gateway keys rotate --what ...)", flush=True)
    results: list[Any] = []
    config = stack.config_path.read_text()
    try:
        await stack.harness("provision", {"people": [person]})
        stack.site_pin_index_key()  # kept by the management side over the site rotation
        await stack.stop_daemon()
        config = adopt_gates_key(stack)
        for line in await asyncio.to_thread(rotate_all, stack.config_path):
            print(f"  {line}", flush=True)
    except Exception as exc:  # noqa: BLE001 - reported as a failed result; the library goes on
        log.warning("demo: key rotation failed: %s", exc)
        _unless_written(stack, config)
        results.append(_result("rotate-every-key", "fail", str(exc), t0))
    else:
        done = f"{len(ORDER)} keys rotated, old key material gone"
        results.append(_result("rotate-every-key", "pass", done, t0))
    try:
        if stack.proc is None or stack.proc.poll() is not None:
            await stack.start_daemon()
    except Exception as exc:  # noqa: BLE001 - every later scenario fails and says why
        results.append(_result("rotate-every-key", "fail", f"daemon restart: {exc}", t0))
        return results
    for path in write_scenarios(stack.workdir / "rotation-scenarios"):
        await stack.settle()
        one = await run_scenarios_async(
            [path], stack.sim, stack.mqtt_url, PREFIX, harness=stack.harness, unmet=unmet
        )
        results.extend(one)
        for r in one:
            if not r.passed:
                print(format_report([r]), flush=True)
    print(f"key rotation and its checks: {time.monotonic() - t0:.0f} s", flush=True)
    return results


def _result(name: str, status: Literal["pass", "fail"], message: str, t0: float) -> Any:
    from hw_sim.runner import ScenarioResult

    return ScenarioResult(
        name, "--rotate-keys", status, message=message, duration_s=time.monotonic() - t0
    )
