"""What a request's texts and free-form JSON values may hold, checked where requests are parsed.

Guarantees: a value that passes `check_text` / `check_json` can be encoded by every part of Clarity
(UTF-8, orjson on the owner's socket, the engine's payload store, any JSON client) and is the same
value after a round trip: text is valid Unicode (no lone surrogates) without control characters
other than tab, newline and carriage return; JSON values are null, booleans, 64-bit signed
integers, finite floats, such texts, lists, and objects with text keys, nested at most
`MAX_DEPTH` deep. Each check raises ValueError with a message naming the offending place, which
`arguments.parse` turns into InvalidArgument. Size limits are the models' job, not these checks'.
`shown`/`quote` put a value into a message in JSON's words (`the string "5"`). Nothing here imports
any other part of Clarity: requests, records read from files and the engines' checks share it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

# C0 controls except \t \n \r, DEL, and the C1 controls
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# every control character: names (tags, types, sessions) are one line
_CONTROL_IN_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_unicode(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where} is not valid Unicode (a lone surrogate at character {e.start})") from None


def check_text(value: str, where: str = "text", *, multiline: bool = True) -> str:
    """Return `value` if it is valid Unicode without control characters (tab, newline and carriage
    return are allowed when `multiline`), else raise ValueError."""
    _check_unicode(value, where)
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL_IN_NAME).search(value)
    if found:
        raise ValueError(f"{where} contains the control character U+{ord(found.group()):04X} "
                         f"at character {found.start()}")
    return value


def check_json(value: Any, where: str = "value") -> Any:
    """Return `value` if it is a JSON value Clarity can store (see the module docstring), else raise
    ValueError naming the first offending place (e.g. `metadata.a[3]`)."""
    _walk(value, where, 0)
    return value


def _walk(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"{where} is an integer outside the 64-bit range -2**63..2**63-1")
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{where} must be a finite number, not {value}")
        return
    if isinstance(value, str):
        check_text(value, where)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a key that is not a string: {type(key).__name__}")
            check_text(key, f"a key of {where}", multiline=False)
            _walk(item, f"{where}.{key[:40]}", depth + 1)
        return
    raise ValueError(f"{where} holds a {type(value).__name__}, which is not a JSON value")


# ---- showing a value in a message -------------------------------------------------------------

def quote(text: str, limit: int = 40) -> str:
    """`text` as a short JSON string: cut to `limit` characters, escaped unless it is printable."""
    shown = json.dumps(text[:limit], ensure_ascii=not text[:limit].isprintable())
    return shown + (f" ({len(text)} characters)" if len(text) > limit else "")


def number(value: int | float) -> str:
    if isinstance(value, int) and value.bit_length() > 128:  # not printed whole (nor converted: slow)
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return repr(value)


def shown(value: Any) -> str:
    """What a caller sent, in JSON's words: `the string "5"`, `the number 5.0`, `true`, `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {number(value)}"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a value of type {type(value).__name__}"
