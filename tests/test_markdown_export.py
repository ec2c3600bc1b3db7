"""`clarity export --format markdown DIR` and `clarity import DIR`: one readable file per memory, read back
losslessly, through real `clarity` processes over a real store.

The round trip: 200 varied memories (unicode of every plane, newlines and CRs, `---` lines and front-matter
look-alikes in the content, trailing whitespace and newlines, empty and full tag lists, nested metadata
and context, supersede chains, old timestamps) go into a store from a JSON export, out as Markdown, into a
fresh store from the Markdown folder, and out again as JSON: every field of every memory is compared
exactly (types included), except `origin`, which an import sets to `import` by design (and
`origin_detail`, which says where it came from). Also: the files are this user's only and their names
stable and safe; links, FIFOs and malformed files in the folder are refused before anything is stored;
`<private>` text in a file never reaches the store.
"""

from __future__ import annotations

import os
import random
import re
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from clarity.cli.markdown import file_name, from_markdown, to_markdown

from .conftest import cli

NAME = re.compile(r"^(\d{4}-\d{2}-\d{2}|undated)-[a-z0-9-]+-[0-9a-f-]{8,36}\.md$")
TRICKY = [
    "plain words",
    "---\nlooks: like front matter\n---\nafter it",
    "ends with a delimiter line\n---",
    "---",
    "id: \"not-the-id\"\nmemory_type: \"fake\"",
    "trailing spaces   ",
    "trailing newlines\n\n\n",
    "\nleading newline",
    "windows\r\nline\r\nends\r\n",
    "tabs\tand\ttabs\t",
    "\U0001F600 astral \U0001D518\U0001D52B and e\u0301 a\u0308\u0323 \u0915\u094D\u0937",
    "\u200f\u202e bidi marks \u202c",
    "# a heading\n\n- a list\n- ```code```\n\n> quote",
    "unicode line separator \u2028 and \u2029 paragraph",
    "quote \" backslash \\ slash /",
    " \u00a0nbsp\u00a0 ",
    "\ufeffbom at the start",
]


def _memories(n: int, seed: int = 18) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    base = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(n):
        created = base + timedelta(hours=rng.randrange(0, 20000), microseconds=rng.randrange(1_000_000))
        content = rng.choice(TRICKY) + f" #{i}" + rng.choice(["", "\n", "  ", "\n---\n", "\n\n"])
        meta = rng.choice([{}, {"ticket": i, "nested": {"list": [1, 2.5, None, True, {"deep": ["x", {}]}],
                                                           "text": "a\nb"}},
                           {"emoji": "\U0001F680", "float": rng.random(), "neg": -(2**63)}])
        mem = {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "content": content,
               "memory_type": rng.choice(["note", "decision", "fact", "session", "code-ref"]),
               "importance": round(rng.random(), 6), "tags": rng.choice([[], ["a"], ["ü-tag", "two words", "x" * 64]]),
               "metadata": meta, "context": rng.choice([{}, {"file": "src/a.py", "line": i}]),
               "session": rng.choice(["", "sess-1", f"claude-{i % 7}"]), "created_at": created.isoformat(),
               "updated_at": (created + timedelta(seconds=rng.randrange(0, 5))).isoformat()}
        out.append(mem)
    for i in range(0, min(60, n - 2), 3):  # chains: i superseded by i+1 superseded by i+2
        a, b, c = out[i], out[i + 1], out[i + 2]
        a["superseded_by"], b["supersedes"] = b["id"], a["id"]
        b["superseded_by"], c["supersedes"] = c["id"], b["id"]
    return out


def _export(home: Path) -> dict[str, dict[str, Any]]:
    res = orjson.loads(cli(home, "export").stdout)
    return {m["id"]: m for m in res["memories"]}


def test_a_file_round_trips_in_process() -> None:
    for mem in _memories(200, seed=7):
        mem = {**mem, "origin": "tool", "flagged": "", "content_hash": "x" * 64}
        back = from_markdown(to_markdown(mem), "t.md")
        assert back == mem, (mem, back)
        assert NAME.match(file_name(mem)), file_name(mem)


def test_200_memories_round_trip_every_field(tmp_path: Path) -> None:
    source = tmp_path / "source.json"
    source.write_bytes(orjson.dumps({"memories": _memories(200)}))
    first, second, folder = tmp_path / "first", tmp_path / "second", tmp_path / "md"
    cli(first, "import", str(source))
    before = _export(first)
    assert len(before) == 200

    done = cli(first, "export", "--format", "markdown", str(folder), "--json")
    assert orjson.loads(done.stdout)["count"] == 200
    files = sorted(folder.iterdir())
    assert len(files) == 200 and all(NAME.match(f.name) for f in files), [f.name for f in files][:5]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    text = files[0].read_text()
    assert text.startswith("---\nid: \"") and "\norigin: \"import\"\n" in text  # readable, every field in it

    # a second export writes the same names with the same bytes
    snapshot = {f.name: f.read_bytes() for f in files}
    cli(first, "export", "--format", "markdown", str(folder))
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == snapshot

    res = orjson.loads(cli(second, "import", str(folder), "--json").stdout)
    assert res == {"imported": 200, "skipped": 0}
    after = _export(second)
    assert after.keys() == before.keys()
    for mid, mem in before.items():
        got = after[mid]
        assert got["origin"] == "import"
        left = {k: v for k, v in mem.items() if k not in ("origin", "origin_detail")}
        right = {k: v for k, v in got.items() if k not in ("origin", "origin_detail")}
        assert orjson.dumps(left, option=orjson.OPT_SORT_KEYS) == orjson.dumps(right, option=orjson.OPT_SORT_KEYS), \
            (mid, left, right)
    chained = [m for m in after.values() if m.get("superseded_by")]
    assert len(chained) == 40

    # one file of the folder imports on its own (already present: skipped)
    res = orjson.loads(cli(second, "import", str(files[0]), "--json").stdout)
    assert res == {"imported": 0, "skipped": 1}


def _folder_with(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "md"
    folder.mkdir()
    for mem in _memories(n, seed=3):
        (folder / file_name(mem)).write_bytes(to_markdown(mem))
    return folder


@pytest.mark.parametrize("hostile", ["symlink", "fifo", "folder", "no front matter", "bad json", "twice", "content key",
                                     "not utf-8", "no closing line"])
def test_a_bad_entry_in_the_folder_is_refused_and_nothing_is_stored(tmp_path: Path, hostile: str) -> None:
    folder = _folder_with(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("---\nid: \"00000000-0000-4000-8000-000000000001\"\n---\nsecret of another file")
    bad = folder / "zz-bad.md"
    if hostile == "symlink":
        bad.symlink_to(secret)
    elif hostile == "fifo":
        os.mkfifo(bad)
    elif hostile == "folder":
        bad.mkdir()
    else:
        body = {"no front matter": b"just text\n", "bad json": b"---\ntags: [\"a\", \n---\nx",
                "twice": b"---\nmemory_type: \"a\"\nmemory_type: \"b\"\n---\nx",
                "content key": b"---\ncontent: \"x\"\n---\nx", "not utf-8": b"---\nid: \"\xff\"\n---\nx",
                "no closing line": b"---\nmemory_type: \"note\"\nx"}[hostile]
        bad.write_bytes(body)
    home = tmp_path / "home"
    ran = cli(home, "import", str(folder), check=False, timeout=60)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "zz-bad.md" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    assert not (home / "config.json").exists()  # refused before the store was made: nothing stored


def test_export_refuses_to_write_through_a_link(tmp_path: Path) -> None:
    home, folder, target = tmp_path / "home", tmp_path / "md", tmp_path / "elsewhere.txt"
    cli(home, "store", "a memory whose file would go through a link")
    mem = _export(home)
    (only,) = mem.values()
    folder.mkdir()
    target.write_text("untouched")
    (folder / file_name(only)).symlink_to(target)
    ran = cli(home, "export", "--format", "markdown", str(folder), check=False)
    assert ran.returncode == 2 and "link" in ran.stderr, ran.stderr
    assert target.read_text() == "untouched"
    ran = cli(home, "export", "--format", "markdown", check=False)
    assert ran.returncode == 2 and "folder" in ran.stderr, ran.stderr


def test_private_text_in_a_markdown_file_never_reaches_the_store(tmp_path: Path) -> None:
    folder = tmp_path / "md"
    folder.mkdir()
    mem = {"id": str(uuid.uuid4()), "memory_type": "note", "importance": 0.5,
           "tags": ["public", "<private>tag-secret-7</private>"],
           "metadata": {"note": "keep <private>meta-secret-7</private>"}, "context": {"<private>k</private>x": 1},
           "content": "deploy key is <private>content-secret-7</private> (rotated monthly)\n<private>tail-secret-7"}
    (folder / file_name(mem)).write_bytes(to_markdown(mem))
    home = tmp_path / "home"
    cli(home, "import", str(folder))
    raw = cli(home, "export").stdout
    assert "secret-7" not in raw and "private>" not in raw, raw
    (got,) = _export(home).values()
    assert got["content"].startswith("deploy key is  (rotated monthly)") and got["tags"] == ["public"]
