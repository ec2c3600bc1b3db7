"""Qdrant Edge, the default engine: one shard in `<home>/qdrant/edge*/` (see `engine`).

- `engine`: `EdgeEngine`, the Engine over the shard; `shard`: its on-disk layout, filters, payloads;
- `layout`: generations, the current pointer, the engine's fence (`lock_store`), restore finishing;
- `build` / `build_child`: the background HNSW index build (parent / child process);
- `group_commit`: syncs shared by every write that arrived meanwhile;
- `migrate` / `migrate_child`: the one-time move of a legacy qdrant-client store (parent / child).
"""
