"""Reading every memory a `list` call selects, page by page, through any `call(op, args)` (a Coordinator's,
or the service's in its own process): the one paging loop of the start-up context, `clarity forget` and
the web page's overview.

Pages are asked for by offset, newest first, as `list` answers them; the loop ends at an empty page, when
as many memories as the last page's `total` have been read, or at `most` (then `complete` is False). A
memory stored or deleted while it pages can shift a page by one: callers that must not miss one (forget)
drop duplicate ids and say what they did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clarity.memory.model import MAX_LIMIT

Call = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class Listed:
    memories: list[dict[str, Any]]
    total: int  # the `total` of the last page read
    complete: bool  # False when `most` stopped the reading before the end


def list_all(call: Call, args: dict[str, Any], most: int | None = None, page: int = MAX_LIMIT) -> Listed:
    """Every memory `list` answers for `args` (filters, include_content, ...), at most `most`."""
    memories: list[dict[str, Any]] = []
    total = 0
    while most is None or len(memories) < most:
        limit = page if most is None else min(page, most - len(memories))
        res = call("list", {**args, "limit": limit, "offset": len(memories)})
        total = int(res["total"])
        memories.extend(res["memories"])
        if not res["memories"] or len(memories) >= total:
            return Listed(memories, total, True)
    return Listed(memories, total, False)
