"""Checking arguments: `parse` (and `parse_args`) validate data as a request model (`clarity.memory.model`)
and turn every problem into an `InvalidArgument` in Clarity's words (`explain`); `input_schema` is a
model's JSON schema as a tool's input schema.

This is the one place arguments are checked, whichever way a call comes: an MCP tool parses the
client's arguments with its `*Args` model (`input_schema` of the same model is what `tools/list`
advertises), the service parses JSON (the CLI's, or a peer's over the owner's socket) with the
operation's `*Request` model, and a request parsed in this process is not parsed again.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from clarity.errors import InvalidArgument
from clarity.memory.model import MEMORY_TYPE_PATTERN, Request
from clarity.values import number, quote, shown

T = TypeVar("T", bound=BaseModel)
MAX_PROBLEMS = 8  # a message names at most this many problems, then counts the rest


def parse(model: type[T], data: Any) -> T:
    """Validate `data` as `model`, raising InvalidArgument with a readable message. An instance of
    `model` is returned as is: it was validated when it was made (a request parsed at the MCP edge
    and handed to the service in the same process is not parsed again)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidArgument("invalid arguments: " + explain(model, e)) from None


def parse_args(model: type[T], args: object) -> T:
    """One operation's arguments as `model`: a JSON object (parsed here) or a request already parsed in
    this process (see `parse`); anything else is refused with InvalidArgument."""
    if not isinstance(args, dict | Request):
        raise InvalidArgument("arguments must be a JSON object")
    return parse(model, args)


# ---- input schemas and messages ----------------------------------------------------------------


@cache
def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of `model` as a tool's input schema: `additionalProperties: false` (unknown keys
    are refused) and the exact types and bounds `parse` checks, with nested models written in place
    (no `$ref`: some clients do not follow them). Cached: treat it as read-only."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    schema.pop("description", None)  # the class docstring is for Python readers; the tool has its own

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: inline(v) for k, v in node.items() if k != "$ref"}
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = {k: v for k, v in inline(defs[ref.rsplit("/", 1)[-1]]).items() if k != "description"}
            out = {**target, **out}
        return out

    result: dict[str, Any] = inline(schema)
    return result


_TYPE_NAMES = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
               "object": "an object", "array": "an array", "null": "null"}
_PLURALS = {"integer": "integers", "number": "numbers", "boolean": "booleans", "string": "strings",
            "object": "objects"}
_TYPE_ERRORS = {"int_type": "integer", "float_type": "number", "bool_type": "boolean", "string_type": "string",
                "list_type": "array", "dict_type": "object", "model_type": "object",
                "model_attributes_type": "object", "none_required": "null"}
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,39}$")


def _where(loc: tuple[int | str, ...]) -> str:
    """`tags[0]`, `updates.importance`, `metadata."odd key"`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _PLAIN_KEY.match(part) else quote(part)
            out += f".{name}" if out else name
    return out or "arguments"


def _schema_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> dict[str, Any] | None:
    """The part of `model`'s input schema that describes the value at `loc`, if there is one."""
    node: Any = input_schema(model)
    for part in loc:
        branches = node.get("anyOf", [node]) if isinstance(node, dict) else []
        node = None
        for b in branches:
            if isinstance(part, int) and isinstance(b.get("items"), dict):
                node = b["items"]
            elif isinstance(part, str) and part in b.get("properties", {}):
                node = b["properties"][part]
        if node is None:
            return None
    return node if isinstance(node, dict) else None


def expected(schema: dict[str, Any]) -> str:
    """What the schema asks for, in words: `an integer`, `an array of strings or null`."""
    if "anyOf" in schema:
        return " or ".join(expected(s) for s in schema["anyOf"])
    if "enum" in schema:
        values = [json.dumps(v) for v in schema["enum"]]
        return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"].get("type") in _PLURALS:
        return f"an array of {_PLURALS[schema['items']['type']]}"
    return _TYPE_NAMES.get(kind, "a valid value") if isinstance(kind, str) else "a valid value"


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose fields the keys at `loc` are (`updates` of UpdateRequest: MemoryFields)."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        inner = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return None
        model = inner[0]
    return model


def _unknown(model: type[BaseModel], parent: tuple[int | str, ...], keys: list[str]) -> str:
    inner = _model_at(model, parent)
    phrase = getattr(inner, "unknown_key", "not an argument")
    names = ", ".join(_where((*parent, k)) for k in keys[:MAX_PROBLEMS])
    if len(keys) > MAX_PROBLEMS:
        names += f" and {len(keys) - MAX_PROBLEMS} more"
    fields = list(inner.model_fields) if inner is not None else []
    takes = f"expected: {', '.join(fields)}" if fields else "it takes none"
    return f"{names}: {phrase} ({takes})"


def _problem(model: type[BaseModel], err: ErrorDetails) -> str:
    """One validation error in Clarity's words (without its location)."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in _TYPE_ERRORS or kind == "literal_error":
        schema = _schema_at(model, err["loc"])
        want = expected(schema) if schema is not None else _TYPE_NAMES[_TYPE_ERRORS.get(kind, "string")]
        return f"must be {want}, not {shown(value)}"
    if kind == "missing":
        return "is required"
    bound = next((ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx), None)
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most",
                 "less_than": "less than"}[kind]
        got = number(value) if isinstance(value, int | float) else shown(value)
        return f"must be {words} {bound}, not {got}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        items = "item" if n == 1 else "items"
        return (f"must hold {'at least' if kind == 'too_short' else 'at most'} {n} {items}, "
                f"not {ctx.get('actual_length', '?')}")
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        size = len(value) if isinstance(value, str) else "?"
        return f"must be at most {ctx.get('max_length')} characters, not {size}"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == MEMORY_TYPE_PATTERN:
            return ("must be a short slug (a lowercase letter, then up to 31 lowercase letters, digits, _ or -), "
                    f"not {shown(value)}")
        return f"must match {ctx.get('pattern')}, not {shown(value)}"
    if kind == "finite_number":
        return f"must be a finite number, not {number(value) if isinstance(value, float) else shown(value)}"
    msg = str(err["msg"])
    if kind in ("value_error", "assertion_error"):  # Clarity's own validators: their message as is
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    for subject in ("Input", "String", "List", "Dictionary", "Value"):  # any other kind: pydantic's words, reworded
        msg = msg.replace(f"{subject} should", "must")
    return msg[:1].lower() + msg[1:]


def explain(model: type[BaseModel], error: ValidationError) -> str:
    """Every problem `error` found parsing `model`, as `where: what` parts in Clarity's words (keys the
    model does not take first, grouped per object), at most MAX_PROBLEMS of them."""
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    parts: list[str] = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and loc:
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
        else:
            parts.append(f"{_where(loc)}: {_problem(model, err)}")
    parts = [_unknown(model, parent, keys) for parent, keys in unknown.items()] + parts
    more = len(parts) - MAX_PROBLEMS
    return "; ".join(parts[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
