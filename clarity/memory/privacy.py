"""`<private>…</private>`: text a person marks as never to be stored.

Guarantee: every write path parses its memory through a request model (`StoreArgs`, `StoreRequest`,
`MemoryFields`: tools, CLI, hooks, the web page, import, restore), and those models remove private text
from the content, the tags, and every string (keys included) of `metadata` and `context` before anything
else sees the values: the content hash, the embedding, the flag and the payload are all made from what
is left. So private text never reaches the store, its vectors or its log lines.

What counts as private: everything from an opening `<private>` to its matching `</private>`, tags
matched case-insensitively and with spaces inside the brackets allowed (`< PRIVATE >`). Nesting is
followed (the outer closing tag ends it); an opening tag that is never closed makes the rest of the text
private (a forgotten closing tag must not leak the secret); a closing tag without an opening one is
removed. A tag left empty by the removal is dropped, as is a metadata/context key left empty. A content
left blank is an error of the request (`content is empty once its <private> parts are removed`): nothing
is stored, rather than an empty memory.
"""

from __future__ import annotations

import re
from typing import Any

_TAG = re.compile(r"<\s*(/?)\s*private\s*>", re.IGNORECASE)


def has_private(text: str) -> bool:
    return _TAG.search(text) is not None


def strip_private(text: str) -> str:
    """`text` without its private parts (see the module docstring); `text` itself when it has none."""
    if "<" not in text or not has_private(text):
        return text
    out: list[str] = []
    depth = 0
    pos = 0
    for tag in _TAG.finditer(text):
        if depth == 0:
            out.append(text[pos:tag.start()])
        closing = tag.group(1) == "/"
        depth = max(depth - 1, 0) if closing else depth + 1
        pos = tag.end()
    if depth == 0:
        out.append(text[pos:])
    return "".join(out)


def strip_private_json(value: Any) -> Any:
    """A JSON value with private text removed from every string in it (object keys included; an entry
    whose key is left empty is dropped)."""
    if isinstance(value, str):
        return strip_private(value)
    if isinstance(value, list):
        return [strip_private_json(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = strip_private(k) if isinstance(k, str) else k
            if key == "" and k != "":
                continue
            out[key] = strip_private_json(v)
        return out
    return value


def strip_private_tags(tags: list[str]) -> list[str]:
    """`tags` with private text removed; a tag left blank is dropped, duplicates made by it are kept once."""
    if not any(has_private(tag) for tag in tags):
        return tags
    out: list[str] = []
    for tag in tags:
        clean = strip_private(tag).strip() if has_private(tag) else tag
        if clean and clean not in out:
            out.append(clean)
    return out
