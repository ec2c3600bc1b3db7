"""The text form of answers (what prints without `--json`): a memory's head line, a memory in a list,
the note on what `--max-chars` cut, and the status block of `status` and `doctor`.

Pure functions of the answer's dict: they read the stable keys of the JSON form and change nothing.
"""

from __future__ import annotations

from typing import Any


def head(mem: dict[str, Any]) -> str:
    """`<id>  [<type>]  importance <i>`, then the similarity and the tags when there are any."""
    text = f"{mem['id']}  [{mem['memory_type']}]  importance {mem['importance']}"
    if mem.get("similarity") is not None:
        text += f"  similarity {mem['similarity']:.3f}"
    if mem.get("tags"):
        text += "  tags " + ",".join(mem["tags"])
    return text


def fmt_memory(mem: dict[str, Any]) -> str:
    """A memory in a list: its head line, then its content indented (or its creation time without one)."""
    body = mem.get("content")
    flag = f"\n    FLAGGED: {mem['flagged']}" if mem.get("flagged") else ""
    return head(mem) + flag + (f"\n    {body}" if body is not None else f"  {mem['created_at']}")


def trimmed_note(res: dict[str, Any]) -> str:
    """What fitting into `--max-chars` cut or left out, in parentheses on a line of its own; "" if nothing."""
    parts = []
    if res["trimmed"]:
        parts.append(f"{len(res['trimmed'])} contents cut to fit --max-chars {res['max_chars']}")
    if res["omitted"]:
        parts.append(f"{res['omitted']} memories left out to fit --max-chars {res['max_chars']}")
    return ("\n(" + "; ".join(parts) + ")") if parts else ""


def status_text(st: dict[str, Any]) -> str:
    """The mode and home, who owns the store (and in which state), and who waits for it."""
    o = st["owner"]
    lines = [f"mode {st['mode']}, home {st['home']}"]
    if st.get("home_source"):
        lines.append(f"store chosen by: {st['home_source']}")
    if o is None:
        lines.append("owner: none (nobody holds the lease)")
    elif o["state"] == "starting":
        lines.append("owner: a process is taking over the lease, STARTING")
    else:
        lines.append(f"owner: {o['where']}, epoch {o['epoch']}, since {o['since']}, "
                     f"heartbeat {o['heartbeat_age_s']} s ago, {o['state'].upper()}")
    lines.append(f"waiters: {len(st['waiters'])}" + "".join(f"\n  pid {w['pid']} since {w['since']}"
                                                           for w in st["waiters"]))
    problem = (st.get("versions") or {}).get("problem")
    if problem:
        lines.append(f"versions: {problem}")
    return "\n".join(lines)
