"""Which folder under `<home>/qdrant/` holds the current Edge shard: generations and the pointer.

A store's shard is a *generation* folder beside the base path `<qdrant>/edge` (`base`): generation 0 is
`base` itself, later ones are `edge.g1`, `edge.g2`, ... The file `edge.current` (beside `base`) names the
current one; without it the current one is generation 0. A new generation (an indexed copy built by
`clarity.engines.edge.build`, or a restored backup) becomes current by `set_current`: the pointer is
written to a temporary file, fsynced, renamed over `edge.current`, and the folder is fsynced. That
rename is the commit point: before it the old generation is current, after it the new one is. Folders
are never renamed while a shard in them is open (Edge keeps the path), hence generations.

`lock_store` is the fence across generations: the process that opens the store holds an exclusive
lock (`clarity.platform.locks`) on `edge.lock` until it closes it (the kernel drops it when the process
dies), so a second process gets `EngineLocked` before it reads the pointer or removes anything (Edge's own WAL lock only
covers one generation folder). `remove_strays` (run by the owner, under that lock, before it opens the
shard) deletes every generation folder that is not current and the build work folder: leftovers of a
build or swap that a kill interrupted. A restored backup is marked `READY` (the file names the
generation it replaces) until `finish_restore` has made it current and moved the replaced one to
`<home>/backups/`, so a kill at any point of that is finished by the next open rather than removed.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from clarity.engines.edge.shard import remove_tree
from clarity.errors import EngineLocked
from clarity.layout import Layout
from clarity.platform.files import publish, sync_dir
from clarity.platform.locks import FileLock, try_lock_file

log = logging.getLogger(__name__)

POINTER_SUFFIX = ".current"
BUILD_SUFFIX = ".build"
READY = "READY"
LEGACY_NEXT = ".next"  # restore's staging folder of earlier versions (edge.next/READY)


def pointer_file(base: Path) -> Path:
    return base.parent / (base.name + POINTER_SUFFIX)


def build_dir(base: Path) -> Path:
    """The work folder of an index build (the export file); removed after each build."""
    return base.parent / (base.name + BUILD_SUFFIX)


def lock_store(base: Path) -> FileLock:
    """Take the store's exclusive lock (non-blocking); `close()` it when done. Raises EngineLocked
    when another process (or another open in this one) holds it."""
    base.parent.mkdir(parents=True, exist_ok=True)
    lock = try_lock_file(base.parent / (base.name + ".lock"))
    if lock is None:
        raise EngineLocked(f"the Edge store {base} is open in another process")
    return lock


def current_dir(base: Path) -> Path:
    """The folder of the current generation (generation 0, `base`, when there is no pointer)."""
    try:
        name = pointer_file(base).read_text().strip()
    except FileNotFoundError:
        return base
    if not _generation_number(base, name) and name != base.name:
        raise ValueError(f"{pointer_file(base)} names {name!r}, not a generation of {base}")
    return base.parent / name


def _generation_number(base: Path, name: str) -> int:
    m = re.fullmatch(re.escape(base.name) + r"\.g(\d+)", name)
    return int(m.group(1)) if m else 0


def generations(base: Path) -> list[Path]:
    """Every generation folder present (generation 0 included when it exists)."""
    if not base.parent.is_dir():
        return []
    found = [p for p in base.parent.iterdir() if p.is_dir() and _generation_number(base, p.name)]
    if base.is_dir():
        found.append(base)
    return sorted(found, key=lambda p: _generation_number(base, p.name))


def new_generation(base: Path) -> Path:
    """A fresh (not yet existing) generation folder, numbered after every one present."""
    top = max([_generation_number(base, p.name) for p in generations(base)] + [0])
    cur = _generation_number(base, current_dir(base).name)
    return base.parent / f"{base.name}.g{max(top, cur) + 1}"


def set_current(base: Path, gen: Path) -> None:
    """Make `gen` (a folder beside `base`, complete and synced) the current generation, atomically."""
    if gen.parent != base.parent:
        raise ValueError(f"{gen} is not beside {base}")
    publish(pointer_file(base), (gen.name + "\n").encode())


def mark_ready(gen: Path, replaces: Path) -> None:
    """Mark a complete, synced restored generation: `finish_restore` makes it current."""
    publish(gen / READY, (replaces.name + "\n").encode())


def remove_strays(base: Path) -> list[Path]:
    """Delete every generation that is not current (and not a restore waiting to finish) and the build
    work folder. Only for the process that owns the store, before it opens the shard."""
    cur = current_dir(base)
    gone = [g for g in generations(base) if g != cur and not (g / READY).exists()]
    if build_dir(base).exists():
        gone.append(build_dir(base))
    for path in gone:
        log.info("removing %s (left by an interrupted index build or swap)", path)
        remove_tree(path)
    return gone


def finish_restore(base: Path) -> None:
    """Finish a restore: a generation holding `READY` (its text: the generation it replaces) becomes
    current, the replaced one moves to `<home>/backups/edge-replaced-*`, then `READY` goes. Idempotent;
    a kill at any step is finished by the next call. A legacy `edge.next/READY` is adopted first."""
    legacy = base.parent / (base.name + LEGACY_NEXT)
    if (legacy / READY).exists():
        gen = new_generation(base)
        publish(legacy / READY, current_dir(base).name.encode())
        os.rename(legacy, gen)
        sync_dir(base.parent)
    for gen in generations(base):
        marker = gen / READY
        if not marker.exists():
            continue
        replaced = base.parent / (marker.read_text().strip() or base.name)
        if current_dir(base) != gen:
            set_current(base, gen)
        if replaced != gen and replaced.exists():
            backups = Layout(base.parent.parent).backups
            backups.mkdir(exist_ok=True)
            os.rename(replaced, backups / f"edge-replaced-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        marker.unlink()
