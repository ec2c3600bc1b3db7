"""Every file and folder of a Clarity home, named once. Nothing else spells these names.

```
<home>/.gitignore                    `*`: git ignores the whole store folder (written when it is made)
<home>/config.json                   shared configuration (defaults written on first start)
<home>/qdrant/                       the engine's storage (Edge: edge/, edge.gN/, edge.current, edge.lock)
<home>/qdrant/clarity-store.json     the store's format and the Clarity version that wrote it
<home>/qdrant/.qdrant_coordination/  lease.lock, records.lock, lease.json, epoch, standby.lock,
                                     waiters/<ticket>.json, owner.sock
<home>/qdrant/.qdrant_coordination.epoch   the epoch counter's copy that survives the folder's deletion
<home>/cache/  <home>/logs/clarity.log (+ .1 .. .3, rotated)  <home>/backups/
```

The embedding model's files are not in a home: one copy per user (`clarity.config.model_cache_dir`).

`Layout(home)` only names paths: it creates, opens and checks nothing (`config.make_layout` creates the
folders; `clarity.platform.files` opens what is named here safely).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COORDINATION_DIR = ".qdrant_coordination"


@dataclass(frozen=True)
class CoordinationFiles:
    """The files of the coordination folder `dir` (`<home>/qdrant/.qdrant_coordination`)."""

    dir: Path

    @property
    def lease_lock(self) -> Path:
        return self.dir / "lease.lock"

    @property
    def records_lock(self) -> Path:
        return self.dir / "records.lock"

    @property
    def lease_record(self) -> Path:
        return self.dir / "lease.json"

    @property
    def epoch(self) -> Path:
        return self.dir / "epoch"

    @property
    def epoch_backup(self) -> Path:
        return self.dir.parent / f"{self.dir.name}.epoch"

    @property
    def standby_lock(self) -> Path:
        return self.dir / "standby.lock"

    @property
    def waiters(self) -> Path:
        return self.dir / "waiters"

    @property
    def owner_socket(self) -> Path:
        """The natural path of the owner's socket (`owner_server.socket_path_for` may choose a shorter one)."""
        return self.dir / "owner.sock"


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def config_file(self) -> Path:
        return self.home / "config.json"

    @property
    def gitignore(self) -> Path:
        """`*`: keeps the store out of `git status` when the home is inside a repository."""
        return self.home / ".gitignore"

    @property
    def qdrant(self) -> Path:
        return self.home / "qdrant"

    @property
    def store_format(self) -> Path:
        """The store's format version and the Clarity version that wrote it (`clarity.engines.store_format`)."""
        return self.qdrant / "clarity-store.json"

    @property
    def edge_base(self) -> Path:
        """The Edge shard's base path (generation 0; see `clarity.engines.edge.layout`)."""
        return self.qdrant / "edge"

    @property
    def coordination(self) -> CoordinationFiles:
        return CoordinationFiles(self.qdrant / COORDINATION_DIR)

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "clarity.log"

    @property
    def backups(self) -> Path:
        return self.home / "backups"

    def private_folders(self) -> list[tuple[Path, str]]:
        """Every folder of the home, parents first, with what to call it in a message."""
        coord = self.coordination
        return [(self.home, "store home"), (self.qdrant, "engine folder"), (coord.dir, "coordination folder"),
                (coord.waiters, "waiters folder"), (self.cache, "cache folder"), (self.logs, "log folder"),
                (self.backups, "backups folder")]
