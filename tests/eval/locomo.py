"""A long-conversation evaluation on LoCoMo (Maharana et al., ACL 2024: "Evaluating Very Long-Term
Conversational Memory of LLM Agents"), whose file `locomo10.json` is NOT shipped here (its licence is
the authors'; pass its path): 10 conversations of 19-32 dated sessions, 5,882 turns, 1,986 questions
annotated with the turns that answer them (`evidence`, dialogue ids like "D1:3").

Each conversation is one fresh store: every turn is one memory (content "Speaker: text", plus
"[shares a photo: caption]" for a photo turn), type `conversation`, created at its session's date and
time, with the previous turn of the session as its `context` ({"previous": "Speaker: text"}). Every
question with evidence is asked through the service's `retrieve` (limit 5, min_similarity -1); recall@5
is the share of its evidence turns in the top 5 (over min(evidence, 5)), hit@5 whether any is. The
categories are LoCoMo's: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial (the
question asks about something the conversation does not say; its evidence is the nearest turn).
`all` averages categories 1-4.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clarity.memory.service import MemoryService

K = 5
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
_NAMESPACE = uuid.UUID("1f0e4c52-3a7d-4e61-9b2a-7c5d0e8f4a11")


@dataclass(frozen=True)
class Conversation:
    sample_id: str
    memories: list[dict[str, Any]]  # import items (id, content, memory_type, context, created_at)
    dia_ids: dict[str, str]  # memory id -> dialogue id
    questions: list[tuple[str, int, list[str]]]  # question, category, evidence dialogue ids


def _when(text: str) -> str:
    """LoCoMo's "1:56 pm on 8 May, 2023" as ISO 8601 (UTC)."""
    d = datetime.strptime(" ".join(text.split()), "%I:%M %p on %d %B, %Y")
    return d.replace(tzinfo=UTC).isoformat(timespec="microseconds")


def load(path: Path) -> list[Conversation]:
    out = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conv = sample["conversation"]
        memories: list[dict[str, Any]] = []
        dia: dict[str, str] = {}
        n = 1
        while f"session_{n}" in conv:
            when = _when(conv[f"session_{n}_date_time"])
            base = datetime.fromisoformat(when)
            previous = ""
            for i, turn in enumerate(conv[f"session_{n}"]):
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo: {turn['blip_caption']}]"
                mid = str(uuid.uuid5(_NAMESPACE, f"{sample['sample_id']}/{turn['dia_id']}"))
                ts = base.replace(second=min(59, i), microsecond=i).isoformat(timespec="microseconds")
                item: dict[str, Any] = {"id": mid, "content": text, "memory_type": "conversation",
                                        "created_at": ts, "context": {"previous": previous} if previous else {}}
                memories.append(item)
                dia[mid] = turn["dia_id"]
                previous = text
            n += 1
        questions = [(str(q["question"]), int(q["category"]), [str(e) for e in q.get("evidence", [])])
                     for q in sample["qa"] if q.get("evidence")]
        out.append(Conversation(str(sample["sample_id"]), memories, dia, questions))
    return out


def evaluate(service: MemoryService, conv: Conversation) -> list[tuple[int, float, float]]:
    """Import `conv` into the (fresh) `service` and ask its questions: (category, recall@5, hit@5) each."""
    res = service.execute("import", {"memories": conv.memories, "source": "locomo"})
    if res["imported"] != len(conv.memories):
        raise RuntimeError(f"{conv.sample_id}: imported {res} of {len(conv.memories)}")
    out = []
    for query, cat, evidence in conv.questions:
        got = service.execute("retrieve", {"query": query, "limit": K, "min_similarity": -1.0})["memories"]
        ids = [conv.dia_ids.get(m["id"], "") for m in got][:K]
        want = set(evidence)
        found = sum(1 for d in ids if d in want)
        out.append((cat, found / min(len(want), K), 1.0 if found else 0.0))
    return out


def summarize(rows: Sequence[tuple[int, float, float]]) -> dict[str, dict[str, float]]:
    """recall@5 and hit@5 per category name, and `all` over categories 1-4."""
    out: dict[str, dict[str, float]] = {}
    groups: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        groups.setdefault(CATEGORY_NAMES.get(r[0], str(r[0])), []).append(r)
    groups["all"] = [r for r in rows if r[0] in (1, 2, 3, 4)]
    for name, rs in groups.items():
        if rs:
            out[name] = {"n": len(rs), "recall@5": round(sum(r[1] for r in rs) / len(rs), 4),
                         "hit@5": round(sum(r[2] for r in rs) / len(rs), 4)}
    return out
