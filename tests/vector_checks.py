"""Checks that a Chroma collection holds, for each archived message, the vector of its current
text (Chroma keeps no text of its own: the record lives in SQL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from memory.archive import Archive
from memory.chroma_client import ChromaCollection, Record
from memory.embeddings import Embedder
from memory.lexical import TABLE
from memory.messages import message_key


def stored_vectors(collection: Any) -> dict[str, np.ndarray]:
    """Record id -> vector of every record of a chromadb collection (embedded or HTTP client)."""
    found = collection.get(include=["embeddings"])
    embeddings = found["embeddings"]
    assert embeddings is not None
    return {i: np.asarray(v) for i, v in zip(found["ids"], list(embeddings), strict=True)}


def indexed_texts(data_dir: Path, team: str) -> dict[str, str]:
    """Record id -> what the dense index embeds ("Author: text"), from a Lore's SQLite file."""
    with sqlite3.connect(f"file:{data_dir / 'lore.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            f"SELECT channel_id, ts, text, user_name FROM {TABLE} WHERE team_id = ?", (team,)
        ).fetchall()
    return {message_key(c, ts): f"{name}: {text}" if name else text for c, ts, text, name in rows}


def vectors_are_of(
    vectors: dict[str, np.ndarray], texts: dict[str, str], embedder: Embedder
) -> bool:
    """Whether the records are exactly these and each vector is the embedding of its text
    (fp32 vectors: int8 ones vary a little with the batch a text was embedded in)."""
    if set(vectors) != set(texts):
        return False
    keys = sorted(texts)
    fresh = np.asarray(embedder.embed([texts[k] for k in keys]))
    stored = np.asarray([vectors[k] for k in keys])
    return bool(np.all((fresh * stored).sum(axis=1) > 0.9999))


async def nearest_record(archive: Archive, team: str, embedder: Embedder, text: str) -> Record:
    """The archive's stored record nearest to `text`'s vector, with its distance."""
    vector = embedder.embed([text])[0]

    async def query(collection: ChromaCollection) -> list[Record]:
        return await collection.query(vector, 1, documents=False, metadatas=False)

    (nearest,) = await archive._read(team, query, list[Record]())
    return nearest
