"""How hybrid search ranks: each retrieval's depth, their rank fusion, the thread context's weight.

Settings (LORE_SEARCH_*) may change these; the defaults were chosen on two LoCoMo
conversations (conv-26 and conv-30) and are reported on the other three (bench/locomo.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Key = tuple[str, str]  # (channel_id, ts)


@dataclass(frozen=True)
class Ranking:
    depth: int = 64  # candidates each retrieval returns
    rrf_k: float = 10.0  # reciprocal rank fusion: a candidate scores weight / (rrf_k + rank)
    dense_weight: float = 0.5  # of the dense ranking; the lexical ranking weighs 1
    context_weight: float = 0.35  # of a match in the thread context; the text weighs 1

    def fuse(self, lexical: Sequence[Key], dense: Sequence[Key]) -> dict[Key, float]:
        """Weighted reciprocal rank fusion of two rankings: each key's score."""
        scores: dict[Key, float] = {}
        for weight, ranking in ((1.0, lexical), (self.dense_weight, dense)):
            for rank, key in enumerate(ranking, start=1):
                scores[key] = scores.get(key, 0.0) + weight / (self.rrf_k + rank)
        return scores
