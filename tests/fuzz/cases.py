"""Fuzz classes shared by the fuzz tests and ``benchmarks/fuzz_report.py``.

OSDP replies, Wiegand frames and images are in :mod:`tests.fuzz.device_cases`.
Each class pairs a hypothesis strategy with a target that feeds one input to the project's
own parser or loader (called directly, no broker, no daemon) and accepts only the outcomes
the project promises: a result, or one of its own error types with a message. Anything else
(a traceback, a hang past the per-input deadline) is a :class:`FuzzError`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.conftest import REPO

EXAMPLE = REPO / "config" / "gateway.example.toml"
SITE, GATE = "riverside-garden", "north-gate"
HANG_S = 5.0
"""An input that takes longer than this counts as a hang."""


class FuzzError(AssertionError):
    """An input gave an outcome the project does not promise."""


# ----------------------------------------------------------------------------- values

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    _scalars,
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=5)
    ),
    max_leaves=25,
)


def deep_json(depth: int, kind: str) -> str:
    """``kind``: ``[`` for arrays, ``{`` for objects."""
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep_json_texts = st.builds(deep_json, st.integers(10, 30_000), st.sampled_from(["[", "{"]))


# ----------------------------------------------------------------------------- config


def _toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def to_toml_value(value: Any) -> str | None:
    """A TOML inline rendering of a JSON-like value (None: TOML has no null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        items = [to_toml_value(v) for v in value]
        return "[" + ", ".join(i for i in items if i is not None) + "]"
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            rendered = to_toml_value(v)
            if rendered is not None:
                parts.append(f"{_toml_key(str(k))} = {rendered}")
        return "{" + ", ".join(parts) + "}"
    raise TypeError(type(value))


def to_toml(doc: dict[str, Any]) -> str:
    """A whole document as ``key = inline value`` lines."""
    lines = []
    for k, v in doc.items():
        rendered = to_toml_value(v)
        if rendered is not None:
            lines.append(f"{_toml_key(str(k))} = {rendered}")
    return "\n".join(lines) + "\n"


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


EXAMPLE_DOC = tomllib.loads(EXAMPLE.read_text())
EXAMPLE_PATHS = [p for p in _paths(EXAMPLE_DOC) if p]


def _mutate_doc(edits: list[tuple[int, str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(EXAMPLE_DOC, default=str))
    for index, op, value in edits:
        path = EXAMPLE_PATHS[index % len(EXAMPLE_PATHS)]
        parent: Any = doc
        with contextlib.suppress(KeyError, IndexError, TypeError):
            for p in path[:-1]:
                parent = parent[p]
            last = path[-1]
            if op == "set":
                parent[last] = value
            elif op == "delete" and isinstance(parent, dict):
                parent.pop(last, None)
            elif op == "add" and isinstance(parent, dict):
                parent[str(value)[:20] or "x"] = value
    return doc


config_structures = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from(["set", "delete", "add"]), json_values),
    min_size=1,
    max_size=4,
).map(lambda edits: to_toml(_mutate_doc(edits)).encode("utf-8"))


def _mutate_text(base: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    data = bytearray(base)
    for op, pos, blob in ops:
        at = pos % (len(data) + 1)
        if op == "insert":
            data[at:at] = blob
        elif op == "delete":
            del data[at : at + len(blob) + 1]
        elif op == "flip" and data:
            data[at % len(data)] ^= (blob[:1] or b"\x01")[0] or 1
        elif op == "truncate":
            del data[at:]
        elif op == "dup_line":
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            data[end:end] = data[start:end]
    return bytes(data)


_fragments = st.sampled_from(
    [
        b"[",
        b"]",
        b"{",
        b"}",
        b"=",
        b'"',
        b"'''",
        b"\n",
        b"[[doors.x]]\n",
        b"\xff",
        b"\x00",
        b"a.b.c = 1\n",
        b"nan",
        b"1979-05-27T07:32:00Z",
        b"\\u0000",
        b"[doors.main-gate]\n",
    ]
) | st.binary(max_size=12)
config_text_mutants = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "flip", "truncate", "dup_line"]),
        st.integers(0, 10_000),
        _fragments,
    ),
    min_size=1,
    max_size=6,
).map(lambda ops: _mutate_text(EXAMPLE.read_bytes(), ops))
config_files = st.one_of(
    config_text_mutants,
    config_structures,
    st.binary(max_size=400),
    st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda d, k: ("a = " + deep_json(d, k)).encode(),
        st.integers(10, 5000),
        st.sampled_from(["["]),
    ),
    st.builds(lambda d: ("[" + ".".join(["t"] * d) + "]\n").encode(), st.integers(10, 3000)),
)


def run_config_file(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` and load it: a config or a ConfigError with messages."""
    from gateway.config.root import format_problems, load_config
    from gateway.errors import ConfigError

    path.write_bytes(data)
    try:
        load_config(path, env=False)
    except ConfigError as exc:
        _check_problems(exc.problems)
        format_problems(exc.problems)
        return "error"
    return "ok"


def _check_problems(problems: list[tuple[str, str, str]]) -> None:
    if not problems:
        raise FuzzError("ConfigError without problems")
    for where, _value, msg in problems:
        if not where or not msg:
            raise FuzzError(f"problem without a key path or message: {(where, msg)!r}")
        if "\n" in where or "\n" in msg:
            raise FuzzError(f"problem spans lines: {where!r}: {msg!r}")


# ----------------------------------------------------------------------------- environment

_env_names = st.sampled_from(
    [
        "GATEWAY_SITE",
        "GATEWAY_SITE__ID",
        "GATEWAY_SITE__NAME",
        "GATEWAY_DOORS",
        "GATEWAY_DOORS__MAIN_GATE__UNLOCK_SECONDS",
        "GATEWAY_DOORS__MAIN_GATE",
        "GATEWAY_DOORS__MAIN_GATE__METHODS",
        "GATEWAY_DOORS__MAIN_GATE__RELAY",
        "GATEWAY_DOORS__NEW_DOOR__UNLOCK_SECONDS",
        "GATEWAY_DOORS__SIDE_DOOR__ACCESS_GROUPS",
        "GATEWAY_READERS__ENTRY__ADDRESS",
        "GATEWAY_READERS",
        "GATEWAY_CAMERAS__NORTH_CAM__FPS",
        "GATEWAY_ACCESS_GROUPS__STAFF__SCHEDULE",
        "GATEWAY_MQTT",
        "GATEWAY_MQTT__PORT",
        "GATEWAY_FACE__THRESHOLD",
        "GATEWAY_PRIVACY__WARN_PEOPLE",
        "GATEWAY_STORAGE",
        "GATEWAY_RUNTIME__LOG_FORMAT",
        "GATEWAY_BOGUS",
        "GATEWAY_DOORS____X",
    ]
) | st.from_regex(r"GATEWAY_[A-Z_]{1,30}", fullmatch=True)
_env_values = st.one_of(
    st.text(max_size=60),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    json_values.map(lambda v: json.dumps(v)[:-1]),  # cut short: bad JSON
    deep_json_texts,
    st.sampled_from(["7", "-1", "1e999", "nan", "[]", "{}", "null", '{"kind": ', "true", ""]),
).map(lambda s: s.replace("\x00", ""))
env_sets = st.dictionaries(_env_names, _env_values, min_size=1, max_size=4)


def run_env(env: dict[str, str]) -> str:
    """Load the example with ``env`` set: a config or a ConfigError with messages."""
    from gateway.config.root import load_config
    from gateway.errors import ConfigError

    saved = {k: v for k, v in os.environ.items() if k.startswith("GATEWAY_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(env)
    try:
        load_config(EXAMPLE)
    except ConfigError as exc:
        _check_problems(exc.problems)
        return "error"
    finally:
        for k in env:
            os.environ.pop(k, None)
        os.environ.update(saved)
    return "ok"


# ----------------------------------------------------------------------------- MQTT

_command_names = st.sampled_from(
    [
        "unlock",
        "sync_person",
        "withdraw_consent",
        "revoke_card",
        "set_pin",
        "revoke_pin",
        "reload_config",
        "purge",
        "nope",
    ]
)


@dataclass
class MqttTarget:
    """A command processor with a trusted key and recording handlers, a fan-out receiver."""

    processor: Any
    key: Any
    fanout: Any
    fanout_key: bytes
    topics: Any

    @classmethod
    @contextlib.contextmanager
    def open(cls) -> Iterator[MqttTarget]:
        from gateway.command_args import COMMAND_ARGS
        from gateway.mqtt import sign
        from gateway.mqtt.commands import CommandProcessor
        from gateway.mqtt.fanout import FanoutReceiver
        from gateway.mqtt.topics import Topics
        from gateway.store import database as store

        db = store.connect(":memory:")
        key = sign.generate()
        kid = sign.key_id_of(key.public_key())
        proc = CommandProcessor(
            db, {kid: sign.public_b64(key.public_key())}, site=SITE, gate=GATE, audit=_no_audit
        )

        async def handler(args: Any) -> dict[str, Any]:
            return {"seen": type(args).__name__}

        for name in COMMAND_ARGS:
            proc.register(name, handler)
        fanout_key = b"k" * 32
        try:
            yield cls(
                proc,
                key,
                FanoutReceiver(fanout_key, GATE),
                fanout_key,
                Topics("access", SITE, GATE),
            )
        finally:
            db.close()


def _no_audit(actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class MqttInput:
    """One message: its topic and payload, or a signed envelope to build."""

    topic: str
    payload: bytes | None
    signed: tuple[str, dict[str, Any], dict[str, Any]] | None = None


def _envelope_mutations() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        st.sampled_from(["name", "args", "site", "gate", "ts", "nonce", "key_id", "sig", "x"]),
        json_values,
        max_size=2,
    )


mqtt_inputs = st.one_of(
    st.builds(
        MqttInput,
        st.sampled_from(["cmd/unlock", "cmd/purge", "withdrawal"]),
        st.binary(max_size=300),
    ),
    st.builds(
        MqttInput,
        st.sampled_from(["cmd/unlock", "cmd/sync_person", "withdrawal", "enrolled", "status"]),
        json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    ),
    st.builds(
        MqttInput,
        st.sampled_from(["cmd/unlock", "withdrawal", "enrolled", "status"]),
        deep_json_texts.map(str.encode),
    ),
    st.builds(
        MqttInput,
        _command_names.map(lambda n: f"cmd/{n}"),
        st.none(),
        st.tuples(
            _command_names,
            st.dictionaries(st.text(max_size=12), json_values, max_size=4)
            | st.fixed_dictionaries({"door": st.text(max_size=70), "seconds": json_values})
            | st.fixed_dictionaries({"person_id": st.text(max_size=70)}),
            _envelope_mutations(),
        ),
    ),
    st.builds(MqttInput, st.text(max_size=60), st.binary(max_size=40)),
)


def run_mqtt(target: MqttTarget, item: MqttInput) -> str:
    """Feed one message to the parser of its topic; only the promised outcomes pass."""
    import asyncio

    from gateway.errors import ProtocolError
    from gateway.mqtt import fleet, sign

    topic = f"{target.topics.base}/{item.topic}"
    payload = item.payload
    if item.signed is not None:
        name, args, changes = item.signed
        try:
            env = sign.sign_envelope(
                name, args, target.key, ts=sign.now_rfc3339(), site=SITE, gate=GATE
            )
        except ValueError:  # the signer refuses NaN/inf args: send them unsigned instead
            env = {"name": name, "args": args, "site": SITE, "gate": GATE, "sig": "x"}
        env.update(changes)
        payload = json.dumps(env, allow_nan=True).encode()
    assert payload is not None
    if item.topic == "withdrawal":
        try:
            target.fanout.accept(payload)
        except ProtocolError as exc:
            if not str(exc):
                raise FuzzError("ProtocolError without a message") from exc
            return "error"
        return "ok"
    if item.topic == "enrolled":
        return "ok" if fleet.parse_enrolled(topic, payload) is not None else "error"
    if item.topic == "status":
        fleet.parse_state(payload)
        return "ok"
    name = target.topics.command_name(topic)
    result = asyncio.run(target.processor.process(name, payload))
    if not result.ok and not (result.error and result.detail):
        raise FuzzError(f"refusal without a reason: {result!r}")
    result.to_json()
    return "ok" if result.ok else "error"


# ----------------------------------------------------------------------------- timing


def timed(run: Callable[[], str]) -> str:
    """Run one input; an input slower than HANG_S is a hang."""
    start = time.monotonic()
    outcome = run()
    took = time.monotonic() - start
    if took > HANG_S:
        raise FuzzError(f"input took {took:.1f} s (hang limit {HANG_S} s)")
    return outcome
