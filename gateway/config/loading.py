"""Where the configuration comes from: the TOML file and ``GATEWAY_*`` variables, checked.

Everything here turns bad input into a :class:`~gateway.errors.ConfigError` that names the
file and line, or the variable, instead of a traceback: a file that is not a regular file,
too large, not UTF-8, not TOML or nested too deep; a variable that is too long, not valid
JSON or nested too deep; a variable that names an entry of a named section (a door, reader,
camera or access group) that the file does not define.

Mapping of variable names to keys: ``GATEWAY_`` + key path joined with ``__``, case
insensitive (``GATEWAY_MQTT__PORT``). Environment variable names cannot hold ``-``, so an
entry name's ``_`` stands for ``-`` when the file has no entry of that exact name but has the
dashed one: ``GATEWAY_DOORS__MAIN_GATE__UNLOCK_SECONDS=7`` sets ``doors.main-gate``. A
variable may only change entries the file defines: one that names an unknown entry is an
error naming it (it would otherwise create an incomplete phantom entry).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
import types
import typing
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource
from pydantic_settings.exceptions import SettingsError

from gateway.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration file larger than this is refused (the example is ~6 KB)."""
MAX_DEPTH = 16
"""Deepest nesting of tables/arrays accepted (the schema needs 6)."""
MAX_ENV_BYTES = 64 * 1024
"""Longest ``GATEWAY_*`` value accepted."""
MAX_SECRET_BYTES = 64 * 1024
"""Largest secret file (keys are 16-32 bytes, certificates a few KB)."""
NAMED_SECTIONS = {
    "doors": "door",
    "readers": "reader",
    "cameras": "camera",
    "access_groups": "access group",
}
ENV_PREFIX = "GATEWAY_"
_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")

_parsed: ContextVar[dict[str, Any] | None] = ContextVar("gateway_config_toml", default=None)


def _problem(where: str, message: str, value: str = "") -> ConfigError:
    return ConfigError([(where, value, message)])


def read_toml(path: Path) -> dict[str, Any]:
    """Parse the configuration file; ConfigError naming the file (and line) on any fault."""
    data = read_regular_file(path, MAX_CONFIG_BYTES, missing="configuration file not found")
    return parse_toml(data, str(path))


def read_regular_file(path: Path, max_bytes: int, *, missing: str = "not found") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ConfigError naming it otherwise.

    Opened non-blocking and checked with fstat: a FIFO, a device (``/dev/zero``) or a
    directory is refused at once instead of blocking the daemon or filling its memory."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _problem(where, missing) from None
    except OSError as exc:
        raise _problem(where, f"cannot read: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # checked before fdopen, which refuses directories
        os.close(fd)
        raise _problem(where, "not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > max_bytes:
            raise _problem(where, f"{st.st_size} bytes, at most {max_bytes} accepted")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise _problem(where, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise _problem(where, f"more than {max_bytes} bytes")
    return data


def parse_toml(data: bytes, where: str) -> dict[str, Any]:
    """Parse TOML bytes; ConfigError ``where: line N: message`` on any fault."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _problem(
            f"{where}: line {line}",
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column})",
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        pos = _TOML_POS.search(msg)
        if pos:
            raise _problem(
                f"{where}: line {pos.group(1)}",
                f"not valid TOML: {msg[: pos.start()]} (column {pos.group(2)})",
            ) from None
        raise _problem(where, f"not valid TOML: {_TOML_END.sub(' at the end', msg)}") from None
    except RecursionError:
        raise _problem(where, f"not valid TOML: nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(doc, where)
    return doc


def _check_depth(doc: Any, where: str) -> None:
    """Iterative walk: ConfigError when tables/arrays nest deeper than MAX_DEPTH."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(doc, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            shown = ".".join(_printable(p) for p in path[:4])
            raise _problem(f"{where}: {shown}...", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, str(i))) for i, v in enumerate(node))


def _printable(key: str) -> str:
    return key if key.isprintable() and len(key) <= 64 else repr(key[:64])


def json_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class CheckedTomlSource(TomlConfigSettingsSource):
    """The TOML source, fed the document already read and checked by :func:`read_toml`."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        doc = _parsed.get()
        return dict(doc) if doc is not None else read_toml(Path(file_path))


class CheckedEnvSource(EnvSettingsSource):
    """``GATEWAY_*`` variables with bounded size and depth, JSON errors naming the variable,
    ``_`` standing for ``-`` in entry names, and no phantom entries (see the module doc)."""

    def __call__(self) -> dict[str, Any]:
        names = _gateway_vars(set(self.settings_cls.model_fields))
        for name, value in names.items():
            _check_env_value(name, value)
        try:
            data = super().__call__()
        except (SettingsError, RecursionError) as exc:
            raise _env_error(names, exc, self.settings_cls) from None
        doc = _parsed.get()
        if doc is not None:
            _map_entry_names(data, doc, names)
        return data


def _gateway_vars(sections: set[str]) -> dict[str, str]:
    """The ``GATEWAY_<SECTION>...`` variables of configuration sections (not, say,
    ``GATEWAY_CONFIG``, the path of the file)."""
    out = {}
    for name, value in os.environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        if name[len(ENV_PREFIX) :].lower().split("__", 1)[0] in sections:
            out[name] = value
    return out


def _looks_like_json(value: str) -> bool:
    return value.lstrip()[:1] in ("{", "[")


def _check_env_value(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _problem(name, "not valid UTF-8") from None
    if len(value) > MAX_ENV_BYTES:
        raise _problem(name, f"{len(value)} characters, at most {MAX_ENV_BYTES} accepted")
    if _looks_like_json(value) and json_depth(value) > MAX_DEPTH:
        raise _problem(name, f"JSON nested deeper than {MAX_DEPTH} levels")


def _env_error(names: dict[str, str], exc: BaseException, model: Any) -> ConfigError:
    """Name the variable(s) whose JSON does not parse."""
    problems: list[tuple[str, str, str]] = []
    for name, value in sorted(names.items()):
        kind = json_kind(model, name[len(ENV_PREFIX) :].lower().split("__"))
        if not _looks_like_json(value) and kind is None:
            continue
        try:
            json.loads(value)
        except ValueError as err:
            takes = f"this key takes JSON ({kind}); " if kind else ""
            problems.append((name, _short(value), f"{takes}not valid JSON: {err}"))
    if problems:
        return ConfigError(problems)
    field = re.search(r'field "([^"]+)"', str(exc))
    what = f"GATEWAY_{field.group(1).upper()}*" if field else "GATEWAY_*"
    cause = exc.__cause__ or exc
    return _problem(what, f"cannot use the environment value: {cause}")


def json_kind(model: Any, path: list[str]) -> str | None:
    """``list``/``table`` when the key at ``path`` (lower-case parts, entry names included)
    takes a JSON value from the environment, else None (a plain value, or unknown)."""
    annotation: Any = model
    parts = list(path)
    while parts:
        fields = getattr(annotation, "model_fields", None)
        if fields is None:
            return None
        field = fields.get(parts.pop(0))
        if field is None:
            return None
        annotation = _unwrap(field.annotation)
        if typing.get_origin(annotation) is dict:
            if not parts:
                return "table"
            parts.pop(0)  # the entry name
            annotation = _unwrap(typing.get_args(annotation)[1])
    origin = typing.get_origin(annotation) or annotation
    if origin in (list, tuple, set, frozenset):
        return "list"
    if origin is dict or hasattr(annotation, "model_fields"):
        return "table"
    return None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _map_entry_names(data: dict[str, Any], doc: dict[str, Any], names: dict[str, str]) -> None:
    """Rename ``main_gate`` to ``main-gate`` where only the dashed entry exists; refuse
    variables that name entries the file does not define."""
    for section, what in NAMED_SECTIONS.items():
        env_section = data.get(section)
        if not isinstance(env_section, dict):
            continue
        file_section = doc.get(section)
        known = file_section if isinstance(file_section, dict) else {}
        nested = _nested_entry_vars(names, section)
        problems: list[tuple[str, str, str]] = []
        for key in list(env_section):
            if key in known or key not in nested:
                continue  # known, or defined by a whole-section JSON value
            dashed = key.replace("_", "-")
            if dashed in known:
                value = env_section.pop(key)
                prior = env_section.get(dashed)
                if isinstance(prior, dict) and isinstance(value, dict):
                    value = {**prior, **value}
                env_section[dashed] = value
                continue
            have = ", ".join(sorted(known)) or "none"
            message = (
                f"{what} {key!r} is not configured in the file (configured: {have}); "
                "environment variables can only change existing entries"
            )
            problems.extend((var, "", message) for var in nested[key])
        if problems:
            raise ConfigError(problems)


def _nested_entry_vars(names: dict[str, str], section: str) -> dict[str, list[str]]:
    """Entry name -> the ``GATEWAY_<SECTION>__<ENTRY>...`` variables that name it."""
    head = f"{ENV_PREFIX}{section}__".lower()
    out: dict[str, list[str]] = {}
    for name in names:
        low = name.lower()
        if low.startswith(head):
            entry = low[len(head) :].split("__", 1)[0]
            out.setdefault(entry, []).append(name)
    return out


def parsed_document() -> ContextVar[dict[str, Any] | None]:
    """The context variable holding the checked TOML document while settings load."""
    return _parsed
