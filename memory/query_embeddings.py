"""Search queries embedded together: the queries asked while one batch runs make the next one.

A run of the model costs about as much as a dozen tokens of text whatever its batch (it reads
every weight once per run), so under load one run for many queries saves most of that; alone, a
query runs at once, as before.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from memory.embeddings import Embedder

MAX_BATCH = 32


class QueryEmbeddings:
    """Embeds queries on one thread of its own, a batch at a time."""

    def __init__(self, embedder: Embedder, max_batch: int = MAX_BATCH) -> None:
        self._embedder = embedder
        self._max_batch = max(1, max_batch)
        self._waiting: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lore-query-embed")
        self.runs = 0
        """Batches run so far (each one run of the model)."""

    async def embed(self, text: str) -> list[float]:
        """The vector of `text`, made in the next batch."""
        done: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._waiting.append((text, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="query-embeddings")
        return await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[str, asyncio.Future[list[float]]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                texts = [text for text, _ in batch]
                try:
                    vectors = await loop.run_in_executor(self._thread, self._embedder.embed, texts)
                except Exception as error:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                else:
                    for (_, done), vector in zip(batch, vectors, strict=True):
                        if not done.done():
                            done.set_result(vector)
                finally:
                    self.runs += 1
        finally:
            self._runner = None
            left, self._waiting = [*batch, *self._waiting], []
            for _, done in left:  # undone only when cancelled: nobody waits forever
                done.cancel()

    async def close(self) -> None:
        """Let the batch under way finish, then release the thread."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        await asyncio.to_thread(self._thread.shutdown, wait=True)
