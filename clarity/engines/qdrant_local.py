"""Reading a qdrant-client local store (what `QdrantClient(path=...)` writes) without qdrant-client, and
without ever running code the store holds: `clarity import --qdrant-path` and the migration of a legacy
store read it with this module.

The store: `meta.json` (JSON, `{"collections": {name: config}, ...}`) and, per collection,
`collection/<name>/storage.sqlite`, a table `points (id TEXT PRIMARY KEY, point BLOB)` whose blobs are
pickles of qdrant-client's `PointStruct` (an older version could leave several rows for one point: the
highest rowid is the current one, as qdrant-client reads it).

Why not qdrant-client: unpickling calls whatever the pickle names, and qdrant-client reads every row with
`pickle.loads`, so a crafted `storage.sqlite` runs any code in the process that opens it. Here a row is
unpickled by `SafeUnpickler`, which resolves no name but those in `ALLOWED`, and those to inert stand-ins
(`_Fields`: they keep the state the pickle gives them and do nothing else; nothing of qdrant-client is
imported). A pickle naming anything else (`os.system`, `builtins.eval`, any class) stops at that name, with
nothing called: the file is unreadable. What a point holds is then copied into plain JSON values with a
budget (as many values as its row has bytes) and a depth limit, so shared references in a crafted pickle
cannot turn into exponential work. Pickle extension codes resolve only through `find_class` while
`copyreg`'s extension registry is empty, which is checked before every file (nothing in Clarity registers
one). Not bounded: a crafted memo index can make the unpickler allocate a large table (MemoryError at worst).

The database is opened read-only (`mode=ro`, `query_only`, `trusted_schema` off) and `points` must be a
table: nothing is written (not the empty table nor the cleanup of outdated rows qdrant-client does), no
lock is taken (a store in use by a running server can be read; each pass reads the rows as they are when
it starts). Bounded reads: `meta.json` at most `MAX_META_BYTES`, a row at most `MAX_ROW_BYTES` (a larger
one is not loaded: a bad point); what is not a regular file (a FIFO, a device) is refused unopened.

Problems with a file are one sentence naming it (`ClarityError`): meta.json not JSON or not a store's, a
collection name that is not a folder name, a database sqlite cannot read, a row that is not a pickle of a
point. A point that unpickles but holds what no point can (a payload that is not JSON, a vector that is
not numbers, an id that is neither an integer nor a text) is a `BadPoint` the caller skips (import) or
refuses (migration).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sqlite3
import stat
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from clarity.errors import ClarityError
from clarity.platform.files import open_regular

MAX_META_BYTES = 64 * 1024 * 1024
MAX_ROW_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64  # of a payload (a store takes 32: `clarity.values.MAX_DEPTH`)
STORAGE_FILE = "storage.sqlite"
LEGACY_STORAGE_FILE = "storage.dbm"
FETCH = 256


class _Fields:
    """A stand-in for a pydantic model of qdrant-client: keeps the state a pickle gives it, does nothing."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _PointStruct(_Fields):
    __slots__ = ()


class _SparseVector(_Fields):
    __slots__ = ()


_MODELS = "qdrant_client.http.models.models"
# Every name a qdrant-client local store's pickles hold (qdrant_client/local/persistence.py pickles one
# `models.PointStruct` per row; the classes a PointStruct's fields can hold that are not plain data):
ALLOWED: dict[tuple[str, str], Any] = {
    # the row itself: a point (id, vector, payload); a pydantic model, pickled as NEWOBJ of the class then
    # BUILD with its state {"__dict__": fields, ...} (pydantic 1 and 2 alike)
    (_MODELS, "PointStruct"): _PointStruct,
    # a sparse vector among a point's named vectors (indices, values)
    (_MODELS, "SparseVector"): _SparseVector,
    # the set of fields a pydantic model's state holds: protocol 4+ writes a set without naming a class;
    # protocols 2 and 3 (the default before Python 3.8) as a call of `set` on a list, named `builtins.set`,
    # or `__builtin__.set` (protocol 2 written with fix_imports); `set` of a list runs nothing else
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
}


class _Forbidden(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"names {module[:80]}.{name[:80]}, which a qdrant-client store never holds (nothing was run)")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in `ALLOWED` (to inert stand-ins): nothing else is called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _Forbidden(str(module), str(name)) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("holds a persistent reference, which a qdrant-client store never holds")


def safe_loads(data: bytes) -> Any:
    """Unpickle `data` with `SafeUnpickler` (pickle.UnpicklingError and others when it is not a pickle of
    what a qdrant-client store holds)."""
    if copyreg._extension_registry or copyreg._extension_cache:  # type: ignore[attr-defined]
        raise pickle.UnpicklingError("pickle extension codes are registered in this process: refusing to unpickle")
    return SafeUnpickler(io.BytesIO(data)).load()


@dataclass
class LegacyPoint:
    """A point of a collection: its id, payload (plain JSON) and dense vectors by name ("" for an unnamed
    vector; only when read `with_vectors`)."""

    rowid: int
    id: int | str
    payload: dict[str, Any]
    dense: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class BadPoint:
    """A row holding a point that cannot be used, and why."""

    rowid: int
    id: int | str | None
    why: str

    @property
    def label(self) -> str:
        return str(self.id) if self.id is not None else f"in row {self.rowid}"


class _Bad(Exception):
    pass


def _open_regular(path: Path) -> io.BufferedReader:
    """`path` opened for reading when it is a regular file (never blocks on a FIFO); OSError otherwise."""
    f = open_regular(path)
    if f is None:
        raise OSError(f"{path} is not a regular file")
    return f


def _safe_name(name: str) -> bool:
    return (0 < len(name.encode("utf-8", "surrogatepass")) <= 255 and name not in (".", "..")
            and not any(c in name for c in "/\\\x00"))


class LocalStore:
    """The qdrant-client local store at `path` (its meta.json read and checked); see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        meta = path / "meta.json"
        try:
            with _open_regular(meta) as f:
                data = f.read(MAX_META_BYTES + 1)
        except FileNotFoundError:
            raise ClarityError(f"{path} is not a qdrant-client local store (no meta.json)") from None
        except OSError as e:
            raise ClarityError(f"cannot read {meta}: {e.strerror or e}") from None
        if len(data) > MAX_META_BYTES:
            raise ClarityError(f"{meta} is larger than {MAX_META_BYTES >> 20} MiB: not a qdrant-client store's "
                               "meta.json")
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ClarityError(f"{meta} is not JSON ({' '.join(str(e).split())}): not a qdrant-client "
                               "store's meta.json") from None
        collections = parsed.get("collections") if isinstance(parsed, dict) else None
        if not isinstance(collections, dict):
            raise ClarityError(f"{meta} holds no object of collections: not a qdrant-client store's meta.json")
        for name, config in collections.items():
            if not _safe_name(name):
                raise ClarityError(f"{meta} names a collection {name[:80]!r}, which is not a folder name: "
                                   "not a qdrant-client store's meta.json")
            if not isinstance(config, dict):
                raise ClarityError(f"{meta}: the configuration of the collection {name!r} is not an object")
        self.collections: dict[str, dict[str, Any]] = collections

    def storage(self, collection: str) -> Path:
        return self.path / "collection" / collection / STORAGE_FILE

    def _connect(self, collection: str) -> sqlite3.Connection | None:
        """A read-only connection to the collection's database (None: the collection has none, no points)."""
        if collection not in self.collections:
            raise ClarityError(f"{self.path} has no collection {collection!r}")
        db = self.storage(collection)
        try:
            mode = db.stat().st_mode
        except FileNotFoundError:
            if (db.parent / LEGACY_STORAGE_FILE).exists():
                raise ClarityError(f"{db.parent} holds the dbm storage of qdrant-client before 1.1.7, which "
                                   "cannot be read: open it once with qdrant-client 1.1.7 to convert it") from None
            return None
        except OSError as e:
            raise ClarityError(f"cannot read {db}: {e.strerror or e}") from None
        if not stat.S_ISREG(mode):
            raise ClarityError(f"{db} is unreadable: not a regular file")
        try:
            con = sqlite3.connect(f"file:{urllib.parse.quote(str(db))}?mode=ro", uri=True, timeout=10.0)
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise _unreadable(db, e) from None
        con.text_factory = bytes  # a damaged file can hold text that is not UTF-8: never decoded here
        try:
            con.execute("PRAGMA query_only = ON")
            con.execute("PRAGMA trusted_schema = OFF")
            con.execute("PRAGMA cell_size_check = ON")
            kind = con.execute("SELECT type FROM sqlite_master WHERE name = 'points'").fetchone()
            if kind is None or kind[0] != b"table":
                raise ClarityError(f"{db} is unreadable: it has no table of points (not a qdrant-client collection)")
        except (sqlite3.Error, UnicodeDecodeError) as e:
            con.close()
            raise _unreadable(db, e) from None
        except BaseException:
            con.close()
            raise
        return con

    def row_count(self, collection: str) -> int:
        """The rows of the collection's table (points, and outdated copies an older version left)."""
        con = self._connect(collection)
        if con is None:
            return 0
        try:
            return int(con.execute("SELECT count(*) FROM points").fetchone()[0])
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise _unreadable(self.storage(collection), e) from None
        finally:
            con.close()

    def points(self, collection: str, with_vectors: bool = False) -> Iterator[LegacyPoint | BadPoint]:
        """Every point of `collection` once (its newest row), newest row first. Raises ClarityError (naming
        the database, and the row) as soon as a row is not a pickle of a qdrant-client point."""
        con = self._connect(collection)
        if con is None:
            return
        db = self.storage(collection)
        seen: set[int | str] = set()
        try:
            cur = con.execute("SELECT rowid, typeof(point), length(point), "
                              "CASE WHEN length(point) <= ? THEN point END FROM points ORDER BY rowid DESC",
                              (MAX_ROW_BYTES,))
            while True:
                rows = cur.fetchmany(FETCH)
                if not rows:
                    break
                for rowid, kind, size, blob in rows:
                    if kind != b"blob":
                        raise ClarityError(f"{db} is unreadable: row {rowid} holds {kind.decode(errors='replace')}, "
                                           "not a pickled point")
                    if blob is None:
                        yield BadPoint(rowid, None, f"its row is {size} bytes, more than a point can be "
                                                    f"({MAX_ROW_BYTES >> 20} MiB)")
                        continue
                    item = _read_row(db, rowid, bytes(blob), with_vectors)
                    if item.id is not None:
                        key = _normal_id(item.id)
                        if key in seen:
                            continue  # an outdated copy: the newest row (read first) is the point
                        seen.add(key)
                    yield item
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise _unreadable(db, e) from None
        finally:
            con.close()


def _unreadable(db: Path, error: Exception) -> ClarityError:
    if isinstance(error, UnicodeDecodeError):  # sqlite's own message about the damage is not even text
        return ClarityError(f"{db} is unreadable (sqlite: a damaged database)")
    return ClarityError(f"{db} is unreadable (sqlite: {' '.join(str(error).split())[:200]})")


def open_store(path: Path) -> LocalStore:
    return LocalStore(path)


def _normal_id(pid: int | str) -> int | str:
    if isinstance(pid, str):
        try:
            return str(uuid.UUID(pid))
        except ValueError:
            return pid
    return pid


def _read_row(db: Path, rowid: int, blob: bytes, with_vectors: bool) -> LegacyPoint | BadPoint:
    try:
        obj = safe_loads(blob)
    except _Forbidden as e:
        raise ClarityError(f"{db} is unreadable: row {rowid} {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever a damaged pickle raises: nothing outside ALLOWED ran
        raise ClarityError(f"{db} is unreadable: row {rowid} is not a pickled point "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if type(obj) is not _PointStruct:
        raise ClarityError(f"{db} is unreadable: row {rowid} holds a pickled {_what(obj)}, not a qdrant-client point")
    fields = _state_fields(obj)
    if fields is None:
        raise ClarityError(f"{db} is unreadable: row {rowid} holds a point without fields")
    pid = fields.get("id")
    if isinstance(pid, bool) or not isinstance(pid, int | str) or (isinstance(pid, str) and len(pid) > 200):
        return BadPoint(rowid, None, f"its id is {_what(pid)}, not an integer or a text")
    budget = [len(blob) + 16]
    try:
        raw = fields.get("payload")
        payload = {} if raw is None else _plain(raw, budget, 0)
        if not isinstance(payload, dict):
            raise _Bad(f"its payload is {_what(raw)}, not an object")
        dense = _dense(fields.get("vector"), budget) if with_vectors else {}
    except _Bad as e:
        return BadPoint(rowid, pid, str(e))
    except RecursionError:
        return BadPoint(rowid, pid, "its payload is nested too deep")
    return LegacyPoint(rowid, pid, payload, dense)


def _what(value: Any) -> str:
    if isinstance(value, _Fields):
        return type(value).__name__.lstrip("_")
    return "null" if value is None else f"a {type(value).__name__}"


def _state_fields(obj: _Fields) -> dict[str, Any] | None:
    state = getattr(obj, "state", None)
    fields = state.get("__dict__") if isinstance(state, dict) else None
    return fields if isinstance(fields, dict) else None


def _plain(value: Any, budget: list[int], depth: int) -> Any:
    """A copy of `value` made of JSON values only (null, bool, int, float, text, list, object with text keys)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _Bad("its payload holds more values than its row has bytes (a crafted pickle)")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float or kind is str:
        return value
    if depth >= MAX_DEPTH:
        raise _Bad(f"its payload is nested more than {MAX_DEPTH} levels deep")
    if kind is list:
        return [_plain(v, budget, depth + 1) for v in value]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _Bad(f"its payload has a key that is {_what(k)}, not a text")
            out[k] = _plain(v, budget, depth + 1)
        return out
    raise _Bad(f"its payload holds {_what(value)}, which is not a JSON value")


def _numbers(value: list[Any], budget: list[int]) -> list[float] | None:
    """`value` as floats if it is a list of numbers; None if it is a list of lists (a multivector)."""
    budget[0] -= len(value)
    if budget[0] < 0:
        raise _Bad("its vectors hold more values than its row has bytes (a crafted pickle)")
    if value and all(type(x) is list for x in value):
        return None
    out = []
    for x in value:
        if type(x) not in (float, int) or (type(x) is int and abs(x) > 2**128):
            raise _Bad(f"its vector holds {_what(x)}, not a number")
        out.append(float(x))
    return out


def _dense(vector: Any, budget: list[int]) -> dict[str, list[float]]:
    """The dense vectors of a point's `vector` field by name ("" for the unnamed one)."""
    if vector is None:
        return {}
    if type(vector) is list:
        nums = _numbers(vector, budget)
        return {} if nums is None else {"": nums}
    if type(vector) is dict:
        out = {}
        for name, v in vector.items():
            if type(name) is not str:
                raise _Bad("its vectors have a name that is not a text")
            if type(v) is list:
                nums = _numbers(v, budget)
                if nums is not None:
                    out[name] = nums
            elif type(v) is not _SparseVector:
                raise _Bad(f"its vector {name!r} is {_what(v)}, not a vector")
        return out
    raise _Bad(f"its vector is {_what(vector)}, not a vector")
