"""A small async facade over Chroma's embedded (sync) and HTTP (async) clients.

The embedded client's calls run in a worker thread (asyncio.to_thread) so the event loop never
blocks; the HTTP client is awaited directly. Collections are cosine-space and are given
embeddings explicitly: no embedding function is ever attached, so Chroma never loads a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
from chromadb.config import Settings
from chromadb.errors import NotFoundError

Metadata = Mapping[str, str | int | float | bool]
Where = dict[str, Any]
Call = Callable[..., Awaitable[Any]]

COSINE: dict[str, Any] = {"hnsw": {"space": "cosine"}}


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking Chroma call in a worker thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def _direct(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """Await an async Chroma call."""
    return await fn(*args, **kwargs)


@dataclass(frozen=True)
class Record:
    """One stored record: id, document and metadata (distance set by queries only)."""

    id: str
    document: str
    metadata: Metadata
    distance: float | None = None


class ChromaCollection:
    """One Chroma collection, used through async methods whichever client backs it."""

    def __init__(self, raw: Any, call: Call) -> None:
        self._raw = raw
        self._call = call

    async def upsert(
        self,
        ids: list[str],
        embeddings: list[list[float]],
        documents: list[str],
        metadatas: list[Metadata],
    ) -> None:
        """Insert or replace records by id."""
        await self._call(
            self._raw.upsert,
            ids=ids,
            embeddings=embeddings,
            documents=documents,
            metadatas=metadatas,
        )

    async def get(self, ids: list[str]) -> list[Record]:
        """The records among ids that exist."""
        res = await self._call(self._raw.get, ids=ids, include=["documents", "metadatas"])
        return [
            Record(id=i, document=d or "", metadata=m or {})
            for i, d, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        ]

    async def query(self, embedding: list[float], limit: int, where: Where | None) -> list[Record]:
        """The nearest records to embedding that satisfy where, nearest first."""
        res = await self._call(
            self._raw.query,
            query_embeddings=[embedding],
            n_results=limit,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        rows = zip(
            res["ids"][0],
            res["documents"][0],
            res["metadatas"][0],
            res["distances"][0],
            strict=True,
        )
        return [Record(id=i, document=d or "", metadata=m or {}, distance=x) for i, d, m, x in rows]

    async def delete(self, ids: list[str]) -> None:
        """Delete records by id."""
        await self._call(self._raw.delete, ids=ids)

    async def count(self) -> int:
        """Number of records."""
        return int(await self._call(self._raw.count))


class ChromaStore:
    """A Chroma client (embedded or HTTP) with async collection management."""

    def __init__(self, client: Any, call: Call, max_batch_size: int) -> None:
        self._client = client
        self._call = call
        self.max_batch_size = max_batch_size

    @classmethod
    async def embedded(cls, path: Path) -> ChromaStore:
        """A persistent on-disk store at path."""
        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        client = await asyncio.to_thread(chromadb.PersistentClient, str(path), settings)
        batch = await asyncio.to_thread(client.get_max_batch_size)
        return cls(client, _in_thread, int(batch))

    @classmethod
    async def http(cls, url: str) -> ChromaStore:
        """A store on a Chroma server at url (http:// or https://)."""
        host, port, ssl = parse_server_url(url)
        settings = Settings(anonymized_telemetry=False)
        client = await chromadb.AsyncHttpClient(host=host, port=port, ssl=ssl, settings=settings)
        batch = await client.get_max_batch_size()
        return cls(client, _direct, int(batch))

    async def collection(self, name: str, *, create: bool) -> ChromaCollection | None:
        """The named collection; created (cosine space) when create, else None if absent."""
        try:
            if create:
                raw = await self._call(
                    self._client.get_or_create_collection,
                    name=name,
                    configuration=dict(COSINE),
                    embedding_function=None,
                )
            else:
                raw = await self._call(
                    self._client.get_collection, name=name, embedding_function=None
                )
        except NotFoundError:
            return None
        return ChromaCollection(raw, self._call)

    async def drop(self, name: str) -> None:
        """Delete the named collection if it exists."""
        try:
            await self._call(self._client.delete_collection, name=name)
        except NotFoundError:
            pass

    async def close(self) -> None:
        """Release the client's resources."""
        close = getattr(self._client, "close", None)
        if callable(close):
            await self._call(close)
            return
        cleanup = getattr(getattr(self._client, "_server", None), "_cleanup", None)
        if callable(cleanup):  # AsyncHttpClient has no public close: shut its HTTP sessions
            await cleanup()


def parse_server_url(url: str) -> tuple[str, int, bool]:
    """(host, port, ssl) of a Chroma server URL; the port defaults to 8000 (443 for https)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Chroma server URL must look like http://host:port, got {url!r}")
    ssl = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if ssl else 8000), ssl
