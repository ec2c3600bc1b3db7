"""The store's format version and the Clarity version that wrote it: `Layout.store_format`
(`<home>/qdrant/clarity-store.json`, `{"format": 1, "clarity": "0.2.0"}`).

`FORMAT` is the format this Clarity reads and writes. It is bumped when a store written by this Clarity
could not be read correctly by the previous one (a new engine layout, a changed payload); a store
without the file was written by Clarity 0.1.x, in format 1.

Guarantees:
- `check(settings)` raises `StoreTooNew`, naming both Clarity versions and both formats, when the file
  names a newer format than `FORMAT`; it opens, creates and writes nothing (the caller checks before
  it builds the service: no migration, no model load, no engine open). Stores of an older or the
  same format pass.
- `open_store(settings)` (called by `clarity.engines.open_engine` just before it builds a local
  engine, in the lease owner) checks, then records `FORMAT` and this Clarity's version, atomically
  (`clarity.platform.files.publish_json`: the file is whole or absent, never half written), and only
  when the file does not already say exactly that (no write on an ordinary open). It says which
  Clarity opened the store last.
- A server engine (`engine.kind = "qdrant"` with a url) has no store in the home: nothing is checked or
  written (`engine_is_exclusive` is False).
- Every future format keeps this file a JSON object with an integer `format`: a file that is not (a
  hand edit) is taken for format 1 and rewritten at the next open, with a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from clarity import __version__
from clarity.errors import StoreTooNew
from clarity.platform import files

if TYPE_CHECKING:
    from clarity.config import Settings

log = logging.getLogger(__name__)

FORMAT = 1
LEGACY: dict[str, Any] = {"format": 1, "clarity": None, "recorded": False}  # a store without the file


def read(settings: Settings) -> dict[str, Any]:
    """`{"format", "clarity", "recorded"}`: what the store's file says (`recorded` False, `clarity` None:
    no usable file: a store of Clarity 0.1.x, or one not opened yet)."""
    path = settings.layout.store_format
    data = files.read_json(path)
    if data is None:
        return dict(LEGACY)
    fmt = data.get("format")
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        log.warning("store format: %s names no format (%r): taken for format 1", path, fmt)
        return dict(LEGACY)
    clarity = data.get("clarity")
    return {"format": fmt, "clarity": clarity if isinstance(clarity, str) else "an unknown version",
            "recorded": True}


def check(settings: Settings) -> dict[str, Any]:
    """What the store's file says; StoreTooNew when its format is newer than this Clarity's."""
    found = read(settings)
    if found["format"] > FORMAT:
        raise StoreTooNew(
            f"the store {settings.home} was written by Clarity {found['clarity']} in store format "
            f"{found['format']}; this is Clarity {__version__}, which reads store format {FORMAT} at most: "
            f"nothing was opened. Upgrade this Clarity (or point it at another store with --home)."
        )
    return found


def open_store(settings: Settings) -> None:
    """Check, then record this Clarity as the store's last writer (see the module docstring)."""
    found = check(settings)
    if found["recorded"] and found["format"] == FORMAT and found["clarity"] == __version__:
        return
    path = settings.layout.store_format
    files.ensure_private_dir(path.parent, "engine folder")
    files.publish_json(path, {"format": FORMAT, "clarity": __version__})
    if found["recorded"]:
        log.info("store format: %s was written by Clarity %s (format %s); now Clarity %s (format %s)",
                 path, found["clarity"], found["format"], __version__, FORMAT)
