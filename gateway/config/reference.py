"""Generate the Markdown reference of every configuration key from the models."""

from __future__ import annotations

import types
import typing
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gateway.config.root import GatewayConfig


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return " | ".join(repr(m.value) for m in annotation)
        if annotation is type(None):
            return "none"
        return annotation.__name__
    return str(annotation)


def _models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_models(arg))
    return found


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
        if isinstance(value, Enum):
            value = value.value
        return "" if value is None else f"`{value!r}`"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`"
    return "**required**"


def reference_markdown() -> str:
    """The whole reference as Markdown (deterministic)."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the models in `gateway/config/` by `gateway config reference`;",
        "a test keeps this file in sync. Every key can also be set by an environment",
        "variable `GATEWAY_<SECTION>__<KEY>` (nested keys joined by `__`, case-insensitive;",
        "tables and lists as JSON). Variable names cannot hold `-`: in the name of a door,",
        "reader, camera or access group, `_` stands for `-` when the file has no entry of",
        "that exact name but has the dashed one (`GATEWAY_DOORS__MAIN_GATE__UNLOCK_SECONDS=7`",
        "sets `doors.main-gate`). A variable naming an entry (`GATEWAY_DOORS__<NAME>...`) can",
        "only change one the file defines: an unknown name is an error naming the variable,",
        "never a new, incomplete entry.",
        'Secrets are references: `{ credential = "name" }` (systemd `LoadCredential=`)',
        'or `{ file = "/path" }`, never the secret itself.',
        "",
    ]
    seen: set[type[BaseModel]] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("(top level)", GatewayConfig)]
    while queue:
        path, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        out += [f"## `{path}` — {model.__name__}", "", doc, ""]
        out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|")
            typ = _type_name(field.annotation).replace("|", "\\|")
            out.append(f"| `{name}` | {typ} | {_default(field)} | {desc} |")
            for sub in _models(field.annotation):
                origin = typing.get_origin(field.annotation)
                sub_path = f"{path}.{name}" if path != "(top level)" else name
                if origin is dict:
                    sub_path += ".<name>"
                elif origin is list:
                    sub_path += "[]"
                queue.append((sub_path, sub))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
