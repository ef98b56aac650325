"""The process that owns the embedded Chroma client.

Chroma's Rust bindings hold the GIL for a whole write (20-60 ms for a batch, longer when the
index is flushed), so calling them from a thread still freezes Lore's event loop. The embedded
client therefore lives in this one worker process; the functions below run there.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import chromadb
from chromadb.config import Settings

COSINE: dict[str, Any] = {"hnsw": {"space": "cosine"}}

_client: Any = None
_collections: dict[str, Any] = {}


def open_client(path: str) -> None:
    """Process initializer: open the persistent client once, at a priority below requests."""
    global _client
    with contextlib.suppress(OSError):
        os.nice(5)
    _client = chromadb.PersistentClient(
        path, Settings(anonymized_telemetry=False, allow_reset=False)
    )


def max_batch_size() -> int:
    return int(_client.get_max_batch_size())


def open_collection(name: str, create: bool) -> None:
    """Open (or create, cosine space) a collection; raises NotFoundError when absent."""
    if create:
        _collections[name] = _client.get_or_create_collection(
            name=name, configuration=dict(COSINE), embedding_function=None
        )
    else:
        _collections[name] = _client.get_collection(name=name, embedding_function=None)


def drop(name: str) -> None:
    _collections.pop(name, None)
    _client.delete_collection(name=name)


def call(name: str, method: str, kwargs: dict[str, Any]) -> Any:
    """Call one collection method; the collection must have been opened in this process."""
    collection = _collections.get(name)
    if collection is None:
        open_collection(name, create=False)
        collection = _collections[name]
    return getattr(collection, method)(**kwargs)
