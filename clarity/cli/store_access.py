"""How a command reaches the store: whether one exists yet, the "no store yet" line, and one call
through a coordinator (which forwards to the owner when a session holds the store).

Nothing here creates a store: `store_exists` only looks, so a read-only command on a project with no
store can answer empty and make nothing. The coordination code is imported only when a call is made.
"""

from __future__ import annotations

import argparse
from typing import Any

from clarity.cli.output import note, out
from clarity.config import Settings


def store_exists(settings: Settings) -> bool:
    """A store was made here (or lives on a Qdrant server named by the settings)."""
    lay = settings.layout
    return lay.config_file.is_file() or lay.qdrant.is_dir() or bool(settings.engine.kind == "qdrant"
                                                                    and settings.engine.url)


def no_store(settings: Settings) -> str:
    """The line that says there is no store yet, where it would be, and what creates it."""
    return (f"no store yet at {settings.home} (chosen by: {settings.home_source}); `clarity store` or the first "
            "`clarity serve` session creates it")


def out_no_store(data: Any, a: argparse.Namespace, settings: Settings, text: str) -> None:
    """An empty answer where there is no store: the line says so (on stderr beside --json's document)."""
    if a.json:
        note(no_store(settings))
    out(data, a.json, text)


def with_coordinator(settings: Settings, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """One operation through a coordinator of this store, closed afterwards."""
    from clarity.coordination.coordinator import Coordinator

    coordinator = Coordinator(settings)
    try:
        return coordinator.call(op, args)
    finally:
        coordinator.close()
