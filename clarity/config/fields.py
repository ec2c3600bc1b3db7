"""How a setting is declared: `setting(default, "CLARITY_...", "what it does")` names the field's
environment variable and its description on the field itself, and the helpers below find them again
(`var_of`, `leaf_fields`, `var_at`) for the environment source, error messages and README's table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

VAR_KEY = "env"  # the key of a field's json_schema_extra that names its environment variable


def setting(default: Any, var: str | None, doc: str, **limits: Any) -> Any:
    """A field that can be set: its `default`, the environment variable `var` that overrides it (None:
    config.json only), `doc` (what it does; README's table shows it) and pydantic's constraints
    (`ge`, `le`, `pattern`, ...)."""
    return Field(default=default, description=doc, json_schema_extra={VAR_KEY: var} if var else None, **limits)


def var_of(field: FieldInfo) -> str | None:
    """The environment variable a field declares (see `setting`), or None."""
    extra = field.json_schema_extra
    var = extra.get(VAR_KEY) if isinstance(extra, dict) else None
    return var if isinstance(var, str) else None


def section_of(field: FieldInfo) -> type[BaseModel] | None:
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def leaf_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every leaf field of `model` with its path (`("memory", "min_similarity")`), in declaration order."""
    for name, field in model.model_fields.items():
        section = section_of(field)
        if section is not None:
            yield from leaf_fields(section, (*prefix, name))
        else:
            yield (*prefix, name), field


def var_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> str | None:
    """The variable declared by the field at `loc` (a validation error's location), or None."""
    for path, field in leaf_fields(model):
        if tuple(str(p) for p in loc[:len(path)]) == path:
            return var_of(field)
    return None
