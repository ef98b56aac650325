"""Synthetic Slack messages for benchmarks, made as bench/search_latency.py makes them.

Channels, threads and users over a year; texts of one to three clauses drawn from workplace
sentences (Zipf-distributed topic words) and the LoCoMo sentences. `clause_vectors` embeds the
clauses once, so a large archive can be written with realistic vectors without embedding every
message (a message's vector is the normalised mean of its clauses', as in search_latency).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np

from bench import search_latency as source
from memory.embeddings import OnnxEmbedder
from memory.messages import ArchivedMessage


@dataclass(frozen=True)
class Corpus:
    """Messages (oldest first), the clauses they are made of, and which clauses each one uses."""

    messages: list[ArchivedMessage]
    clauses: list[str]
    parts: list[list[int]]

    def vectors(self, clause_vectors: np.ndarray, start: int, stop: int) -> list[list[float]]:
        """Unit vectors of messages[start:stop] from their clauses' vectors."""
        out = []
        for i in range(start, stop):
            vector = clause_vectors[self.parts[i]].mean(axis=0)
            out.append((vector / np.linalg.norm(vector)).tolist())
        return out


def make_corpus(messages: int, *, team_id: str, clauses: int = 3000, seed: int = 7) -> Corpus:
    """`messages` synthetic messages of workspace `team_id`, texts from `clauses` clauses."""
    rng = random.Random(seed)
    locomo = source.locomo_clauses()
    words = source.vocabulary(rng, locomo, 30_000)
    wanted = max(0, clauses - len(locomo))
    pool = source.workplace_clauses(rng, wanted, words) + locomo[: max(0, clauses - wanted)]
    rng.shuffle(pool)
    source.CLAUSES[:] = pool  # search_latency.synthesise reads its texts from there
    made, parts = source.synthesise(rng, messages, len(pool))
    named = [replace(m, team_id=team_id, user_name=author_name(m.user_id)) for m in made]
    return Corpus(named, pool, parts)


def author_name(user_id: str | None) -> str | None:
    """A stable made-up display name per user id, as live messages carry their author's."""
    if user_id is None:
        return None
    number = int(user_id.lstrip("U") or 0)
    return f"{source.PEOPLE[number % len(source.PEOPLE)]} {chr(ord('A') + number // 16 % 26)}."


def clause_vectors(embedder: OnnxEmbedder, corpus: Corpus) -> np.ndarray:
    """Every clause of the corpus embedded once, row i for clause i."""
    return embedder.embed_array(corpus.clauses)
