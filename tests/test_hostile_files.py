"""Files Clarity reads but did not write, or that were damaged: a backup given to `clarity restore`, a
qdrant-client local store given to `clarity import --qdrant-path` (findings 3 and 5 of issue 16).

Whatever such a file holds, the answer is one sentence naming the file (and, for a backup, the line):
never a traceback, never a change to the store (restore is all or nothing, and a file whose model or
dimension is not the store's is refused before anything is touched), and never code from the file run
(qdrant-client stores are pickles: they are read with an unpickler that builds nothing but the classes
such a store holds).
"""

from __future__ import annotations

import os
import pickle
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from clarity.config import DEFAULT_MODEL
from clarity.engines.backup import write_backup
from clarity.engines.edge.engine import EdgeEngine, edge_dir
from clarity.errors import ClarityError
from clarity.memory.import_qdrant import ImportStats, read_store
from clarity.memory.restore import restore_into_edge

from .conftest import cli
from .test_roundtrip import DIM, memories

# ---- restore ----------------------------------------------------------------------------------------

Lines = list[bytes]


def _home_with_backup(home: Path) -> tuple[Path, Lines]:
    """A store holding 2 memories and a backup of it (its lines)."""
    engine = EdgeEngine(edge_dir(home / "qdrant"), flush_interval_s=0, index_threshold=0)
    engine.ensure_collection(DIM)
    try:
        engine.upsert(memories(2, seed=11))
        file, _ = write_backup(engine, home / "backups", DEFAULT_MODEL, DIM)
    finally:
        engine.close()
    return file, file.read_bytes().splitlines()


def _state(home: Path) -> dict[str, Any]:
    """What a refused restore must leave as it was: the folders, the replaced shards, every memory."""
    qdrant = home / "qdrant"
    engine = EdgeEngine(edge_dir(qdrant), flush_interval_s=0, index_threshold=0)
    engine.ensure_collection(DIM)
    try:
        pts = [p for page in [engine.page(None, 100)[0]] for p in page]
        payloads = {p.id: p.payload for p in pts}
    finally:
        engine.close()
    backups = home / "backups"
    return {"folders": sorted(p.name for p in qdrant.iterdir() if p.name.startswith("edge")),
            "replaced": sorted(p.name for p in backups.glob("edge-replaced-*")) if backups.exists() else [],
            "memories": payloads}


def _record(lines: Lines, n: int) -> dict[str, Any]:
    rec: dict[str, Any] = orjson.loads(lines[n])
    return rec


def _with_record(n: int, change: Callable[[dict[str, Any]], Any]) -> Callable[[Lines], Lines]:
    def edit(lines: Lines) -> Lines:
        rec = _record(lines, n)
        out = change(rec)
        lines[n] = orjson.dumps(rec if out is None else out)
        return lines
    return edit


def _with_payload(n: int, **fields: Any) -> Callable[[Lines], Lines]:
    return _with_record(n, lambda rec: rec["payload"].update(fields))


def _with_header(**fields: Any) -> Callable[[Lines], Lines]:
    def edit(lines: Lines) -> Lines:
        header = orjson.loads(lines[0])
        header.update(fields)
        lines[0] = orjson.dumps(header)
        return lines
    return edit


def _set(lines: Lines, n: int, line: bytes) -> Lines:
    lines[n] = line
    return lines


def _small_vectors(lines: Lines) -> Lines:
    """The dims-10 file of the issue: its header and vectors agree, the store's model has 384 dims."""
    lines = _with_header(dims=10)(lines)
    for n in (1, 2):
        lines = _with_record(n, lambda rec: rec.update(vector=rec["vector"][:10]))(lines)
    return lines


BIG = "x" * (50 * 1024 * 1024)


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


DEEP = _nested(40)  # deeper than a store takes (clarity.values.MAX_DEPTH)

# (name, how the good backup is damaged, the line named (None: the header, refused before anything), words)
CASES: list[tuple[str, Callable[[Lines], Lines], int | None, str]] = [
    ("dims 10", _small_vectors, None, "10"),
    ("dims 1e9", _with_header(dims=1e9), None, "dims"),
    ("dims huge int", _with_header(dims=10**9), None, "1000000000"),
    ("dims missing", _with_header(dims=None), None, "dims"),
    ("other model", _with_header(model="BAAI/bge-small-en-v1.5"), None, "BAAI/bge-small-en-v1.5"),
    ("newer version", _with_header(version=2), None, "version"),
    ("count not a number", _with_header(count="two"), None, "count"),
    ("empty payload", _with_record(1, lambda rec: rec.update(payload={})), 2, "content"),
    ("content a number", _with_payload(1, content=12345), 2, "content"),
    ("blank content", _with_payload(2, content="   "), 3, "content"),
    ("tags a string", _with_payload(2, tags="x"), 3, "tags"),
    ("importance a word", _with_payload(1, importance="high"), 2, "importance"),
    ("importance out of range", _with_payload(1, importance=7.5), 2, "importance"),
    ("memory_type not a slug", _with_payload(1, memory_type="Bad Type"), 2, "memory_type"),
    ("created_at garbage", _with_payload(1, created_at="garbage"), 2, "created_at"),
    ("updated_at without a zone", _with_payload(2, updated_at="2025-01-01T00:00:00"), 3, "updated_at"),
    ("created_at a week date", _with_payload(1, created_at="2025-W01-1T00:00:00+00:00"), 2, "created_at"),
    ("content over the limit", _with_payload(1, content="y" * 40_000), 2, "limit"),
    ("content of 50 MB", _with_payload(2, content=BIG), 3, "longer than"),
    ("metadata not an object", _with_payload(1, metadata=[1, 2]), 2, "metadata"),
    ("metadata too deep", _with_payload(1, metadata={"a": DEEP}),
     2, "metadata"),
    ("session with a newline", _with_payload(1, session="a\nb"), 2, "session"),
    ("supersedes not an id", _with_payload(1, supersedes="yesterday"), 2, "supersedes"),
    ("superseded_by not an id", _with_payload(2, superseded_by="nope"), 3, "superseded_by"),
    ("unknown payload field", _with_payload(1, bogus=1), 2, "bogus"),
    ("payload a list", _with_record(1, lambda rec: rec.update(payload=[1, 2])), 2, "payload"),
    ("payload missing", _with_record(2, lambda rec: rec.pop("payload")), 3, "payload"),
    ("record a list", lambda lines: _set(lines, 1, b"[1, 2, 3]"), 2, "object"),
    ("record with another key", _with_record(1, lambda rec: rec.update(extra=1)), 2, "extra"),
    ("id not a uuid", _with_record(1, lambda rec: rec.update(id="7")), 2, "id"),
    ("id a number", _with_record(1, lambda rec: rec.update(id=7)), 2, "id"),
    ("the same id twice", lambda lines: _set(lines, 2, lines[1]), 3, "line 2"),
    ("vector too short", _with_record(1, lambda rec: rec.update(vector=rec["vector"][:383])), 2, "383"),
    ("vector too long", _with_record(2, lambda rec: rec.update(vector=rec["vector"] + [0.0])), 3, "385"),
    ("vector with a text", _with_record(1, lambda rec: rec["vector"].__setitem__(5, "x")), 2, "vector[5]"),
    ("vector beyond float32", _with_record(1, lambda rec: rec["vector"].__setitem__(0, 1e39)), 2, "vector[0]"),
    ("vector all zeros", _with_record(1, lambda rec: rec.update(vector=[0.0] * DIM)), 2, "zero"),
    ("vector missing", _with_record(1, lambda rec: rec.pop("vector")), 2, "vector"),
    ("not JSON", lambda lines: _set(lines, 1, b"{nope"), 2, "JSON"),
    ("binary", lambda lines: _set(lines, 2, bytes(range(256)) * 4), 3, "JSON"),
    ("truncated", lambda lines: _set(lines, 2, lines[2][: len(lines[2]) // 2]), 3, "JSON"),
    ("a huge line", lambda lines: _set(lines, 1, b"[" + b"1," * (20 * 1024 * 1024)), 2, "longer than"),
    ("fewer records than the header says", lambda lines: lines[:2], None, "header says 2"),
    ("header not JSON", lambda lines: _set(lines, 0, b"\x00\xff\xfe garbage"), None, "not a clarity backup"),
    ("header a huge line", lambda lines: _set(lines, 0, b"{" + b" " * (20 * 1024 * 1024)), None,
     "not a clarity backup"),
    ("empty file", lambda lines: [], None, "not a clarity backup"),
]


@pytest.mark.parametrize(("damage", "line", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_restore_refuses_a_damaged_backup_and_changes_nothing(
        home: Path, tmp_path: Path, damage: Callable[[Lines], Lines], line: int | None, words: str) -> None:
    _good, lines = _home_with_backup(home)
    before = _state(home)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(x + b"\n" for x in damage(list(lines))))
    with pytest.raises((ClarityError, ValueError)) as err:
        restore_into_edge(bad, home / "qdrant", DEFAULT_MODEL)
    message = str(err.value)
    assert "\n" not in message and len(message) < 1000, message
    if line is not None:
        assert message.startswith(f"{bad}:{line}: "), message
    else:
        assert str(bad) in message, message
    assert words in message, message
    assert _state(home) == before


def test_restore_of_a_good_backup_still_works(home: Path) -> None:
    good, _ = _home_with_backup(home)
    before = _state(home)
    assert restore_into_edge(good, home / "qdrant", DEFAULT_MODEL)["restored"] == 2
    after = _state(home)
    assert after["memories"] == before["memories"] and len(after["replaced"]) == 1


def test_the_cli_names_the_file_and_line_in_one_sentence(home: Path, tmp_path: Path) -> None:
    cli(home, "store", "first memory of this store")
    cli(home, "store", "second memory of this store")
    file = orjson.loads(cli(home, "backup", "--json").stdout)["file"]
    lines = Path(file).read_bytes().splitlines()
    for name, damage, line in [("dims", _small_vectors, None), ("type", _with_payload(2, memory_type="Bad Type"), 3),
                               ("vector", _with_record(1, lambda rec: rec.update(vector=[1.0, 2.0])), 2)]:
        bad = tmp_path / f"{name}.jsonl"
        bad.write_bytes(b"".join(x + b"\n" for x in damage(list(lines))))
        proc = cli(home, "restore", str(bad), "--yes", check=False)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("clarity: nothing restored: ")
        assert (f"{bad}:{line}: " if line else str(bad)) in proc.stderr
    listed = orjson.loads(cli(home, "list", "--json").stdout)
    assert sorted(m["content"] for m in listed["memories"]) == ["first memory of this store",
                                                                "second memory of this store"]
    assert not list((home / "backups").glob("edge-replaced-*"))


# ---- qdrant-client stores ---------------------------------------------------------------------------


class Payload:
    """Pickles as a call of `func(*args)`: what a crafted store holds to run code in its reader."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def make_store(path: Path, n: int = 3, collection: str = "notes") -> Path:
    """A qdrant-client local store (written by qdrant-client) in mcp-server-qdrant's shape; its sqlite file."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    client = QdrantClient(path=str(path))
    client.create_collection(collection, vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE))
    client.upsert(collection, [qm.PointStruct(id=i + 1, vector=[0.1, 0.2, 0.3, float(i + 1)],
                                              payload={"document": f"hostile test note {i}", "metadata": {"i": i}})
                               for i in range(n)])
    client.close()
    return path / "collection" / collection / "storage.sqlite"


def _replace_row(sqlite: Path, blob: bytes) -> None:
    con = sqlite3.connect(sqlite)
    with con:
        con.execute("UPDATE points SET point = ? WHERE rowid = (SELECT min(rowid) FROM points)", (blob,))
    con.close()


def _evil_pickles(marker: Path) -> dict[str, bytes]:
    from qdrant_client import models as qm

    cmd = f"touch {marker}"
    inner = qm.PointStruct.model_construct(id=1, vector=[0.1, 0.2, 0.3, 0.4],
                                           payload={"document": "x", "metadata": Payload(os.system, cmd)})
    return {
        "os.system": pickle.dumps(Payload(os.system, cmd)),
        "eval": pickle.dumps(Payload(eval, f"__import__('os').system({cmd!r})")),
        "subprocess": pickle.dumps(Payload(__import__("subprocess").call, ["touch", str(marker)])),
        "inside a point": pickle.dumps(inner),
        "protocol 0": pickle.dumps(Payload(os.system, cmd), protocol=0),
        "open": pickle.dumps(Payload(open, str(marker), "w")),
    }


def _read_all(path: Path, collection: str | None = None) -> tuple[list[dict[str, Any]], ImportStats]:
    stats = ImportStats()
    out = [m for batch in read_store(path, collection, 32 * 1024, stats) for m in batch]
    return out, stats


def test_a_good_store_reads(tmp_path: Path) -> None:
    make_store(tmp_path / "s", 5)
    got, stats = _read_all(tmp_path / "s")
    assert stats.read == 5 and sorted(m["content"] for m in got) == [f"hostile test note {i}" for i in range(5)]
    assert all(m["metadata"] == {"i": int(m["content"][-1])} for m in got)


@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess", "inside a point", "protocol 0", "open"])
def test_reading_a_crafted_store_runs_nothing(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    sqlite = make_store(tmp_path / "s")
    _replace_row(sqlite, _evil_pickles(marker)[kind])
    with pytest.raises(ClarityError) as err:
        _read_all(tmp_path / "s")
    assert not marker.exists(), "a pickle in the store ran code"
    assert str(sqlite) in err.value.message and "unreadable" in err.value.message, err.value.message


def test_import_of_a_crafted_store_runs_nothing_and_imports_nothing(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    sqlite = make_store(tmp_path / "s", 5)
    _replace_row(sqlite, _evil_pickles(marker)["os.system"])
    proc = cli(home, "import", "--qdrant-path", str(tmp_path / "s"), check=False)
    assert not marker.exists(), "clarity import ran code from the store"
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert str(sqlite) in proc.stderr and "unreadable" in proc.stderr, proc.stderr
    listed = orjson.loads(cli(home, "list", "--json").stdout)
    assert listed["total"] == 0


META_CASES: dict[str, bytes] = {
    "binary": b"\x00\xff\xfe garbage \x80",
    "a list": b"[]",
    "collections a number": b'{"collections": 5}',
    "no collections": b'{"aliases": {}}',
    "a collection outside": b'{"collections": {"../../etc": {"vectors": {"size": 4, "distance": "Cosine"}}}}',
    "a collection named by a path": b'{"collections": {"/tmp": {}}}',
    "a config a list": b'{"collections": {"notes": []}}',
    "truncated": b'{"collections": {"notes": {"vectors": {"si',
}


@pytest.mark.parametrize("content", list(META_CASES.values()), ids=list(META_CASES))
def test_garbage_meta_json_is_one_sentence_naming_it(tmp_path: Path, content: bytes) -> None:
    make_store(tmp_path / "s")
    (tmp_path / "s" / "meta.json").write_bytes(content)
    with pytest.raises(ClarityError) as err:
        _read_all(tmp_path / "s")
    assert str(tmp_path / "s" / "meta.json") in err.value.message and "\n" not in err.value.message


def test_a_huge_meta_json_is_not_read_whole(tmp_path: Path) -> None:
    make_store(tmp_path / "s")
    with open(tmp_path / "s" / "meta.json", "ab") as f:
        f.truncate(4 << 30)  # sparse: 4 GiB that take no disk
    with pytest.raises(ClarityError) as err:
        _read_all(tmp_path / "s")
    assert "meta.json" in err.value.message


def _not_a_database(sqlite: Path) -> None:
    sqlite.write_bytes(b"this is not a database" * 100)


def _another_table(sqlite: Path) -> None:
    sqlite.unlink()
    con = sqlite3.connect(sqlite)
    con.execute("CREATE TABLE other (x)")
    con.commit()
    con.close()


def _a_view(sqlite: Path) -> None:
    sqlite.unlink()
    con = sqlite3.connect(sqlite)
    con.execute("CREATE VIEW points AS SELECT 1 AS id, x'00' AS point")
    con.commit()
    con.close()


def _half_the_file(sqlite: Path) -> None:
    data = sqlite.read_bytes()
    sqlite.write_bytes(data[: len(data) // 2])


def _text_rows(sqlite: Path) -> None:
    con = sqlite3.connect(sqlite)
    with con:
        con.execute("UPDATE points SET point = 'text, not a pickle'")
    con.close()


def _not_a_pickle(sqlite: Path) -> None:
    _replace_row(sqlite, b"\x80\x04garbage that is no pickle")


def _a_pickle_of_something_else(sqlite: Path) -> None:
    _replace_row(sqlite, pickle.dumps({"id": 1, "vector": [1.0], "payload": {}}))


SQLITE_CASES: dict[str, Callable[[Path], None]] = {
    "not a database": _not_a_database, "another table": _another_table, "a view": _a_view,
    "half the file": _half_the_file, "text rows": _text_rows, "not a pickle": _not_a_pickle,
    "a pickle of something else": _a_pickle_of_something_else,
}


@pytest.mark.parametrize("damage", list(SQLITE_CASES.values()), ids=list(SQLITE_CASES))
def test_a_corrupt_storage_sqlite_is_one_sentence_naming_it(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    sqlite = make_store(tmp_path / "s", 20)
    damage(sqlite)
    before = sqlite.read_bytes()
    with pytest.raises(ClarityError) as err:
        _read_all(tmp_path / "s")
    assert str(sqlite) in err.value.message and "\n" not in err.value.message, err.value.message
    assert sqlite.read_bytes() == before  # read-only: not even qdrant-client's table or cleanup


def test_the_cli_says_one_sentence_for_a_garbage_store(home: Path, tmp_path: Path) -> None:
    make_store(tmp_path / "s")
    (tmp_path / "s" / "meta.json").write_bytes(b"\x00garbage")
    proc = cli(home, "import", "--qdrant-path", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "meta.json" in proc.stderr, proc.stderr
    sqlite = make_store(tmp_path / "t")
    _not_a_database(sqlite)
    proc = cli(home, "import", "--qdrant-path", str(tmp_path / "t"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and str(sqlite) in proc.stderr, proc.stderr


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_points_pickled_with_any_protocol_python_wrote_are_read(tmp_path: Path, protocol: int) -> None:
    """qdrant-client pickles with the interpreter's default protocol: 3 before Python 3.8, 4 since, 5 from 3.14."""
    sqlite = make_store(tmp_path / "s", 4)
    con = sqlite3.connect(sqlite)
    with con:
        for rowid, blob in con.execute("SELECT rowid, point FROM points").fetchall():
            again = pickle.dumps(pickle.loads(blob), protocol=protocol)  # our own store: trusted here
            con.execute("UPDATE points SET point = ? WHERE rowid = ?", (again, rowid))
    con.close()
    got, stats = _read_all(tmp_path / "s")
    assert stats.read == 4 and not stats.skipped
    assert sorted(m["content"] for m in got) == [f"hostile test note {i}" for i in range(4)]


def test_named_sparse_and_outdated_rows(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    from clarity.engines.qdrant_local import LegacyPoint, open_store

    client = QdrantClient(path=str(tmp_path / "s"))
    client.create_collection("c", vectors_config={"d": qm.VectorParams(size=2, distance=qm.Distance.DOT)},
                             sparse_vectors_config={"sp": qm.SparseVectorParams()})
    client.upsert("c", [qm.PointStruct(id=i, vector={"d": [0.5, float(i)], "sp": qm.SparseVector(indices=[1],
                                                                                              values=[0.5])},
                                       payload={"text": f"t{i}", "f": 0.1 * i}) for i in range(3)])
    client.close()
    sqlite = tmp_path / "s" / "collection" / "c" / "storage.sqlite"
    con = sqlite3.connect(sqlite)
    with con:  # a copy of point 1 under another key, written later: qdrant-client reads the newest row
        (blob,) = con.execute("SELECT point FROM points WHERE rowid = 2").fetchone()
        point = pickle.loads(blob)
        point.payload = {"text": "newer copy"}
        con.execute("INSERT INTO points VALUES (?, ?)", ("another spelling", pickle.dumps(point)))
    con.close()
    points = list(open_store(tmp_path / "s").points("c", with_vectors=True))
    assert all(isinstance(p, LegacyPoint) for p in points)
    by_id = {p.id: p for p in points if isinstance(p, LegacyPoint)}
    assert len(points) == 3 and sorted(by_id) == [0, 1, 2]
    assert by_id[1].payload == {"text": "newer copy"} and by_id[2].payload == {"text": "t2", "f": 0.1 * 2}
    assert by_id[2].dense == {"d": [0.5, 2.0]}


def test_a_point_that_is_not_json_is_skipped_not_fatal(tmp_path: Path) -> None:
    from qdrant_client import models as qm

    sqlite = make_store(tmp_path / "s", 3)
    odd = qm.PointStruct.model_construct(id=99, vector=[0.1, 0.2, 0.3, 0.4], payload={"document": ("a", "tuple")})
    con = sqlite3.connect(sqlite)
    with con:
        con.execute("INSERT INTO points VALUES (?, ?)", ("odd", pickle.dumps(odd)))
    con.close()
    got, stats = _read_all(tmp_path / "s")
    assert len(got) == 3 and stats.read == 4 and stats.skipped == {"unreadable point": 1}
    assert stats.examples[0].startswith("point 99 of notes: ") and "tuple" in stats.examples[0]


def test_fuzzed_backups_are_refused_in_one_sentence_or_restored(home: Path, tmp_path: Path) -> None:
    """Random damage (bytes flipped, cut, inserted, lines swapped) never ends in anything but a restore
    or RestoreRefused (one line naming the file)."""
    import random

    from clarity.memory.restore import RestoreRefused

    good, _ = _home_with_backup(home)
    data = good.read_bytes()
    rng = random.Random(16)
    outcomes = {"restored": 0, "refused": 0}
    for i in range(120):
        bad = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            kind, at = rng.randrange(4), rng.randrange(len(bad))
            if kind == 0:
                bad[at] = rng.randrange(256)
            elif kind == 1:
                del bad[at:at + rng.randrange(1, 400)]
            elif kind == 2:
                bad[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
            else:
                bad[at:at] = rng.choice([b"\n", b'"', b"{", b"]", b"1e999", b"\xff", b"null", b"-0"])
        file = tmp_path / f"fuzz{i}.jsonl"
        file.write_bytes(bytes(bad))
        try:
            restore_into_edge(file, home / "qdrant", DEFAULT_MODEL)
            outcomes["restored"] += 1
        except RestoreRefused as e:
            assert str(file) in e.message and "\n" not in e.message, e.message
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100, outcomes


def test_fuzzed_stores_are_one_sentence_or_skipped_points(tmp_path: Path) -> None:
    """Random damage to the pickles of a store, or to its database file, never ends in anything but a
    ClarityError naming the file or skipped points; and never runs anything."""
    import random
    import shutil

    rng = random.Random(5)
    sqlite = make_store(tmp_path / "s", 6)
    con = sqlite3.connect(sqlite)
    rows = con.execute("SELECT rowid, point FROM points").fetchall()
    con.close()
    pristine = tmp_path / "pristine"
    shutil.copytree(tmp_path / "s", pristine)
    outcomes = {"read": 0, "refused": 0}
    for i in range(150):
        shutil.rmtree(tmp_path / "s")
        shutil.copytree(pristine, tmp_path / "s")
        if i % 3:
            rowid, blob = rng.choice(rows)
            bad = bytearray(blob)
            for _ in range(rng.randrange(1, 4)):
                at = rng.randrange(len(bad))
                bad[at:at + rng.randrange(0, 3)] = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3)))
            con = sqlite3.connect(sqlite)
            with con:
                con.execute("UPDATE points SET point = ? WHERE rowid = ?", (bytes(bad), rowid))
            con.close()
        else:
            raw = bytearray(sqlite.read_bytes())
            for _ in range(rng.randrange(1, 20)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            sqlite.write_bytes(bytes(raw))
        try:
            _read_all(tmp_path / "s")
            outcomes["read"] += 1
        except ClarityError as e:
            assert str(tmp_path / "s") in e.message and "\n" not in e.message, e.message
            outcomes["refused"] += 1
    assert outcomes["refused"] > 20, outcomes
