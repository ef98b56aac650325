"""A small async facade over Chroma's embedded and HTTP clients.

The embedded client lives in one worker process (`chroma_worker.py`), because its Rust calls
hold the GIL and would freeze the event loop even from a thread; the HTTP client is awaited
directly. Workers are forked from multiprocessing's fork server, started once per process with
Chroma already imported, so a worker (a first one, or one replacing a dead one) is up in ~0.1 s
instead of the ~1 s a fresh interpreter takes to import Chroma. Collections are cosine-space
and are given embeddings explicitly: no embedding function is ever attached, so Chroma never
loads a model.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import chromadb
from chromadb.config import Settings
from chromadb.errors import NotFoundError

from memory import chroma_worker

log = logging.getLogger("lore.chroma")

Metadata = Mapping[str, str | int | float | bool]
Where = dict[str, Any]


CollectionCall = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Record:
    """One stored record: id, document and metadata (distance set by queries only)."""

    id: str
    document: str
    metadata: Metadata
    distance: float | None = None


class ChromaCollection:
    """One Chroma collection, used through async methods whichever client backs it."""

    def __init__(self, call: CollectionCall) -> None:
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
            "upsert",
            {"ids": ids, "embeddings": embeddings, "documents": documents, "metadatas": metadatas},
        )

    async def get(self, ids: list[str]) -> list[Record]:
        """The records among ids that exist."""
        res = await self._call("get", {"ids": ids, "include": ["documents", "metadatas"]})
        return [
            Record(id=i, document=d or "", metadata=m or {})
            for i, d, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        ]

    async def existing(self, ids: list[str]) -> set[str]:
        """The ids among these that have a record."""
        res = await self._call("get", {"ids": ids, "include": []})
        return set(res["ids"])

    async def query(
        self,
        embedding: list[float],
        limit: int,
        where: Where | None = None,
        *,
        ids: list[str] | None = None,
        documents: bool = True,
        metadatas: bool = True,
    ) -> list[Record]:
        """The nearest records to embedding, nearest first: among `ids` when given, and
        satisfying `where` when given. Documents and metadata left out read as empty."""
        include = ["distances"]
        include += ["documents"] if documents else []
        include += ["metadatas"] if metadatas else []
        kwargs: dict[str, Any] = {
            "query_embeddings": [embedding],
            "n_results": limit,
            "include": include,
        }
        if where is not None:
            kwargs["where"] = where
        if ids is not None:
            kwargs["ids"] = ids
        res = await self._call("query", kwargs)
        found = res["ids"][0]
        docs = res["documents"][0] if documents else [""] * len(found)
        metas = res["metadatas"][0] if metadatas else [{}] * len(found)
        rows = zip(found, docs, metas, res["distances"][0], strict=True)
        return [Record(id=i, document=d or "", metadata=m or {}, distance=x) for i, d, m, x in rows]

    async def update_metadata(self, ids: list[str], metadatas: list[Metadata]) -> None:
        """Merge these keys into the metadata of existing records (vectors unchanged)."""
        await self._call("update", {"ids": ids, "metadatas": metadatas})

    async def delete(self, ids: list[str]) -> None:
        """Delete records by id."""
        await self._call("delete", {"ids": ids})

    async def count(self) -> int:
        """Number of records."""
        return int(await self._call("count", {}))


class ChromaStore(Protocol):
    """A Chroma client (embedded or HTTP) with async collection management."""

    max_batch_size: int

    async def collection(self, name: str, *, create: bool) -> ChromaCollection | None:
        """The named collection; created (cosine space) when create, else None if absent."""
        ...

    async def drop(self, name: str) -> None:
        """Delete the named collection if it exists."""
        ...

    async def close(self) -> None:
        """Release the client's resources."""
        ...


async def open_embedded(path: Path) -> ChromaStore:
    """A persistent on-disk store at path, served by its own worker process."""
    return await EmbeddedStore.start(path)


async def open_http(url: str) -> ChromaStore:
    """A store on a Chroma server at url (http:// or https://)."""
    return await HttpStore.start(url)


class EmbeddedStore:
    """The embedded PersistentClient, run in one worker process (never two: see DESIGN).

    A worker that dies (killed, out of memory) is replaced by a new one at the next call, and
    the calls it took down are made again in the new one: every call Lore makes is safe to
    repeat (upserts, deletes by id, reads).
    """

    def __init__(self, path: Path, pool: ProcessPoolExecutor, max_batch_size: int) -> None:
        self._path = path
        self._pool = pool
        self._replacing = asyncio.Lock()
        self.max_batch_size = max_batch_size
        self.restarts = 0

    @staticmethod
    def _new_pool(path: Path) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=_worker_context(),
            initializer=chroma_worker.open_client,
            initargs=(str(path),),
        )

    @classmethod
    async def start(cls, path: Path) -> EmbeddedStore:
        pool = cls._new_pool(path)
        loop = asyncio.get_running_loop()
        try:
            batch = await loop.run_in_executor(pool, chroma_worker.max_batch_size)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        return cls(path, pool, batch)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            await self._replace(pool)
            return await loop.run_in_executor(self._pool, fn, *args)

    async def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Start a new worker in place of the dead one (once, whoever notices first)."""
        async with self._replacing:
            if self._pool is not broken:
                return
            log.warning("the Chroma worker process died; starting a new one")
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool(self._path)
            self.restarts += 1

    async def collection(self, name: str, *, create: bool) -> ChromaCollection | None:
        try:
            await self._run(chroma_worker.open_collection, name, create)
        except NotFoundError:
            return None

        async def call(method: str, kwargs: dict[str, Any]) -> Any:
            return await self._run(chroma_worker.call, name, method, kwargs)

        return ChromaCollection(call)

    async def drop(self, name: str) -> None:
        try:
            await self._run(chroma_worker.drop, name)
        except NotFoundError:
            pass

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True)


class HttpStore:
    """A Chroma server reached with chromadb's AsyncHttpClient."""

    def __init__(self, client: Any, max_batch_size: int) -> None:
        self._client = client
        self.max_batch_size = max_batch_size

    @classmethod
    async def start(cls, url: str) -> HttpStore:
        host, port, ssl = parse_server_url(url)
        settings = Settings(anonymized_telemetry=False)
        client = await chromadb.AsyncHttpClient(host=host, port=port, ssl=ssl, settings=settings)
        return cls(client, int(await client.get_max_batch_size()))

    async def collection(self, name: str, *, create: bool) -> ChromaCollection | None:
        try:
            if create:
                raw = await self._client.get_or_create_collection(
                    name=name, configuration=dict(chroma_worker.COSINE), embedding_function=None
                )
            else:
                raw = await self._client.get_collection(name=name, embedding_function=None)
        except NotFoundError:
            return None

        async def call(method: str, kwargs: dict[str, Any]) -> Any:
            return await getattr(raw, method)(**kwargs)

        return ChromaCollection(call)

    async def drop(self, name: str) -> None:
        try:
            await self._client.delete_collection(name=name)
        except NotFoundError:
            pass

    async def close(self) -> None:
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


def _worker_context() -> multiprocessing.context.BaseContext:
    """Forks from a clean server process (never from Lore's own, which runs threads)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["memory.chroma_worker"])
    return context
