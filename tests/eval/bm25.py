"""A plain BM25 baseline, outside any engine, with a tokenizer of our own.

Tokenizer: lowercase; every run of letters and digits is a token; in addition, an identifier made of
such runs joined by `.`, `_`, `-`, `/` or `+` (`retry.max_backoff_ms`, `services/api/handlers/auth.py`,
`ERR_LEASE_EXPIRED`) is also kept whole, so a query naming it matches it exactly while its parts still
match prose. A short English stopword list is dropped. No stemming. Okapi BM25 with k1=1.2, b=0.75 and
the non-negative idf log(1 + (N - df + 0.5) / (df + 0.5)). Ties keep corpus order (deterministic).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_PART = re.compile(r"[a-z0-9]+")
_WHOLE = re.compile(r"[a-z0-9]+(?:[._\-/+][a-z0-9]+)+")
STOPWORDS = frozenset(
    "a an and are as at be by do does for from how i in is it of on or our the this to was we what when "
    "where which who why with you".split()
)


def tokenize(text: str) -> list[str]:
    low = text.lower()
    parts = [t for t in _PART.findall(low) if t not in STOPWORDS]
    wholes = [t for t in _WHOLE.findall(low) if "_" in t or "." in t or "/" in t or "+" in t or "-" in t]
    return parts + wholes


class BM25:
    """An index over `docs` (id, text); `search` returns ids ranked by score, best first."""

    def __init__(self, docs: Sequence[tuple[str, str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.ids = [d for d, _ in docs]
        self.tf = [Counter(tokenize(text)) for _, text in docs]
        self.len = [sum(c.values()) for c in self.tf]
        self.avg = sum(self.len) / max(1, len(self.len))
        df: Counter[str] = Counter()
        for c in self.tf:
            df.update(c.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = [t for t in tokenize(query) if t in self.idf]
        out = []
        for tf, length in zip(self.tf, self.len, strict=True):
            s = 0.0
            norm = self.k1 * (1 - self.b + self.b * length / self.avg)
            for t in terms:
                f = tf.get(t, 0)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            out.append(s)
        return out

    def search(self, query: str, limit: int) -> list[str]:
        sc = self.scores(query)
        order = sorted(range(len(sc)), key=lambda i: (-sc[i], i))
        return [self.ids[i] for i in order[:limit] if sc[i] > 0]
