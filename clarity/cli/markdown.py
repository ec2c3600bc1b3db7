"""Memories as Markdown files: one file per memory, front matter for its fields, the content as the body;
what `clarity export --format markdown DIR` writes and `clarity import DIR` (or one of its files) reads.

A file:

    ---
    id: "0b6c3c9e-..."
    memory_type: "decision"
    importance: 0.8
    tags: ["deploy", "staging"]
    ...
    metadata: {"ticket": 42}
    context: {}
    ---
    <the content, byte for byte>

Guarantees:
- Lossless: every field of the stored memory is a `key: <JSON>` line of the front matter (JSON is a
  subset of YAML's flow style, so YAML readers and GitHub's front-matter view read it too), in a fixed
  order (`FIELD_ORDER`, then any other key sorted); the body after the closing `---` line is the
  content exactly (no newline added or taken: trailing whitespace, `---` lines and front-matter-like
  text inside the content stay as they are, because the front matter ends at its first `---` line and
  its JSON values never hold a line break). Reading a file and storing it gives back every field but
  `origin`, which an import sets to `import` (the file's claim is kept in `origin_detail`).
- Stable, safe names: `<created date>-<slug of the first line>-<first 8 of the id>.md` (the full id
  when two memories would share a name): ASCII letters, digits and dashes only, the same memory
  always gets the same name, so a re-export rewrites the same files (a memory deleted since leaves its
  old file: export into an empty folder to get exactly the store).
- Private: the folder is made 0700 when it is new, every file 0600 (the export holds every memory);
  files are created and opened without following links: a link in the folder where a file goes is
  refused (exit 2), never written through.
- Reading refuses, before anything is sent to the store: a link or anything not a regular file among
  the folder's `*.md` entries, a file over `MAX_FILE_BYTES`, text that is not UTF-8, a file without
  front matter, a line of it that is not `key: value`, a key given twice, a `content` key (the content
  is the body). The message names the file (quoted: a name may hold any byte). Other files of the folder
  (`notes.txt`), hidden ones (`.#x.md`, an editor's lock link) and sub-folders are not read; a README.md
  without front matter is a `*.md` file and is refused.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from clarity.errors import InvalidArgument
from clarity.values import quote

FIELD_ORDER = ("id", "memory_type", "importance", "tags", "created_at", "updated_at", "session", "origin",
               "origin_detail", "flagged", "supersedes", "superseded_by", "content_hash", "metadata", "context")
SUFFIX = ".md"
MAX_FILE_BYTES = 64 * 1024 * 1024
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DELIMITER = "---"


# ---- one memory <-> one file -------------------------------------------------------------------------

def to_markdown(memory: dict[str, Any]) -> bytes:
    """The file of an exported memory (`{"id", **payload}`)."""
    keys = [k for k in FIELD_ORDER if k in memory] + sorted(k for k in memory if k not in FIELD_ORDER
                                                              and k != "content")
    lines = [DELIMITER] + [f"{k}: {orjson.dumps(memory[k]).decode()}" for k in keys] + [DELIMITER]
    return ("\n".join(lines) + "\n" + str(memory.get("content", ""))).encode("utf-8")


def _value(raw: str, where: str) -> Any:
    """A front-matter value: JSON, else (a hand-written plain YAML scalar) the text itself."""
    if raw == "":
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        if raw[0] in "[{\"":
            raise InvalidArgument(f"{where}: {quote(raw, 60)} is not valid JSON") from None
        return raw


def from_markdown(data: bytes, source: str) -> dict[str, Any]:
    """The memory (`{"id", ..., "content"}`, as in a JSON export) a file holds; InvalidArgument naming
    `source` and the line when it is not one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"{source}: not UTF-8 text (byte {e.start})") from None
    text = text.removeprefix("\ufeff")
    if not (text.startswith(DELIMITER + "\n") or text.startswith(DELIMITER + "\r\n")):
        raise InvalidArgument(f"{source}: no front matter (a memory's file starts with a `---` line)")
    fields: dict[str, Any] = {}
    pos = text.index("\n") + 1
    number = 1
    while True:
        number += 1
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        if line.rstrip("\r") == DELIMITER:
            body = "" if end < 0 else text[end + 1:]
            break
        if end < 0:
            raise InvalidArgument(f"{source}: the front matter has no closing `---` line")
        pos = end + 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = line.partition(":")
        key = key.strip()
        where = f"{source}, line {number}"
        if not sep or not key:
            raise InvalidArgument(f"{where}: not a `key: value` line: {quote(line, 60)}")
        if key in fields:
            raise InvalidArgument(f"{where}: {quote(key, 40)} is given twice")
        if key == "content":
            raise InvalidArgument(f"{where}: the content is the text after the front matter, not a field")
        fields[key] = _value(raw.strip(), where)
    memory = {k: v for k, v in fields.items() if v is not None}
    memory["content"] = body
    return memory


# ---- file names -------------------------------------------------------------------------------------

def _slug(content: str, limit: int = 48) -> str:
    first = next((line for line in content.splitlines() if line.strip()), "")
    slug = _SLUG_CHARS.sub("-", first.lower()).strip("-")[:limit].rstrip("-")
    return slug or "memory"


def file_name(memory: dict[str, Any], full_id: bool = False) -> str:
    created = str(memory.get("created_at", ""))[:10]
    date = created if _DATE.match(created) else "undated"
    mid = re.sub(r"[^0-9a-f-]", "", str(memory.get("id", "")).lower()) or "no-id"
    return f"{date}-{_slug(str(memory.get('content', '')))}-{mid if full_id else mid[:8]}{SUFFIX}"


def file_names(memories: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, memory) for each memory: the short name, or the full-id one where short ones collide."""
    items = list(memories)
    short = [file_name(m) for m in items]
    seen: dict[str, int] = {}
    for n in short:
        seen[n] = seen.get(n, 0) + 1
    return [(n if seen[n] == 1 else file_name(m, full_id=True), m) for n, m in zip(short, items, strict=True)]


# ---- folders ----------------------------------------------------------------------------------------

def _open_folder(folder: Path, create: bool) -> int:
    if create:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if create else 0))
    except NotADirectoryError:
        raise InvalidArgument(f"{folder} is not a folder") from None
    except OSError as e:
        if create and os.path.islink(folder):
            raise InvalidArgument(f"{folder} is a symbolic link: export into a real folder") from None
        raise InvalidArgument(f"cannot open the folder {folder}: {e.strerror or e}") from None


def write_folder(folder: Path, memories: Iterable[dict[str, Any]]) -> int:
    """Write each memory's file into `folder` (made 0700 when missing); how many were written."""
    dfd = _open_folder(folder, create=True)
    count = 0
    try:
        for name, memory in file_names(memories):
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
                             | os.O_NONBLOCK, 0o600, dir_fd=dfd)
            except OSError as e:
                raise InvalidArgument(f"cannot write {folder / name}: {e.strerror or e} (a link or something "
                                      "else that is not a file is in the way)") from None
            with os.fdopen(fd, "wb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise InvalidArgument(f"{folder / name} is not a regular file: not written")
                os.fchmod(fd, 0o600)
                f.write(to_markdown(memory))
            count += 1
    finally:
        os.close(dfd)
    return count


def _read_entry(dfd: int, name: str, where: str) -> bytes:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        why = "a symbolic link" if link else (e.strerror or e)
        raise InvalidArgument(f"{where}: refused ({why}): nothing imported") from None
    return _read_regular(fd, where, ": nothing imported")


def _read_regular(fd: int, where: str, then: str = "") -> bytes:
    """The bytes of the open file `fd` (closed here) when it is a regular file under MAX_FILE_BYTES."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{where}: refused (not a regular file){then}")
        if st.st_size > MAX_FILE_BYTES:
            raise InvalidArgument(f"{where}: refused ({st.st_size} bytes, over {MAX_FILE_BYTES}){then}")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise InvalidArgument(f"{where}: refused (it grew over {MAX_FILE_BYTES} bytes while read){then}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_path(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, memory) for every memory of a Markdown export: each `*.md` file of the folder `path`
    (sorted by name), or the one file `path`. Everything is read and parsed before anything is returned."""
    if not path.is_dir():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise InvalidArgument(f"cannot read {path}: {e.strerror or e}") from None
        return [(str(path), from_markdown(_read_regular(fd, str(path)), str(path)))]
    dfd = _open_folder(path, create=False)
    try:
        names = sorted(n for n in os.listdir(dfd) if n.endswith(SUFFIX) and not n.startswith("."))
        memories: list[tuple[str, dict[str, Any]]] = []
        for name in names:
            where = f"{path}/{quote(name, 80)}"
            memories.append((where, from_markdown(_read_entry(dfd, name, where), where)))
        return memories
    finally:
        os.close(dfd)
