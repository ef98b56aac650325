"""How hybrid search ranks: each retrieval's depth, their rank fusion, the thread context's weight,
and the weight of a second search within the dates a query names.

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
    date_weight: float = 1.0  # of the search within a date the query names, against the plain one

    def fuse(
        self,
        lexical: Sequence[Key],
        dense: Sequence[Key],
        dated: Sequence[tuple[Sequence[Key], Sequence[Key]]] = (),
    ) -> dict[Key, float]:
        """Weighted reciprocal rank fusion: each key's score over the lexical and dense
        rankings, and the (lexical, dense) rankings of each dated search at date_weight."""
        weighted = [(1.0, lexical), (self.dense_weight, dense)]
        for dated_lexical, dated_dense in dated:
            weighted += [
                (self.date_weight, dated_lexical),
                (self.date_weight * self.dense_weight, dated_dense),
            ]
        scores: dict[Key, float] = {}
        for weight, ranking in weighted:
            for rank, key in enumerate(ranking, start=1):
                scores[key] = scores.get(key, 0.0) + weight / (self.rrf_k + rank)
        return scores
