"""Tests of the query batcher: queries asked together share one run of the real model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from memory.embeddings import OnnxEmbedder
from memory.query_embeddings import QueryEmbeddings

MODEL_DIR = Path(__file__).resolve().parents[2] / "shared" / "models" / "all-MiniLM-L6-v2"
QUERIES = [
    "who is on call for payments",
    "the deploy freeze",
    "what did Acme ask about SSO last spring?",
    "postgres upgrade",
    "",
    "Ünïcödé 🎉",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    return OnnxEmbedder(MODEL_DIR)


async def test_queries_asked_together_share_one_run_and_get_their_own_vectors(
    onnx: OnnxEmbedder,
) -> None:
    queries = QueryEmbeddings(onnx)
    try:
        vectors = await asyncio.gather(*(queries.embed(q) for q in QUERIES))
        runs_together = queries.runs
        alone = await queries.embed(QUERIES[2])
    finally:
        await queries.close()
    assert runs_together == 1
    assert queries.runs == 2  # a query asked alone runs alone
    expected = np.array([onnx.embed([q])[0] for q in QUERIES])
    np.testing.assert_allclose(np.array(vectors), expected, atol=1e-5)
    np.testing.assert_allclose(alone, expected[2], atol=1e-5)


async def test_queries_asked_while_a_run_is_under_way_make_the_next_one(
    onnx: OnnxEmbedder,
) -> None:
    queries = QueryEmbeddings(onnx)
    try:
        first = asyncio.ensure_future(queries.embed(QUERIES[0]))
        await asyncio.sleep(0)  # the query is taken...
        await asyncio.sleep(0)  # ...and its run started on the model's thread
        rest = await asyncio.gather(*(queries.embed(q) for q in QUERIES[1:]))
        await first
    finally:
        await queries.close()
    assert queries.runs == 2
    expected = np.array([onnx.embed([q])[0] for q in QUERIES[1:]])
    np.testing.assert_allclose(np.array(rest), expected, atol=1e-5)


async def test_batches_hold_at_most_max_batch(onnx: OnnxEmbedder) -> None:
    queries = QueryEmbeddings(onnx, max_batch=2)
    try:
        vectors = await asyncio.gather(*(queries.embed(q) for q in QUERIES))
    finally:
        await queries.close()
    assert queries.runs == 3  # 6 queries, 2 a run
    assert len(vectors) == len(QUERIES)


class Failing:
    """An embedder whose model run fails."""

    name = "failing"
    dim = 3

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise RuntimeError(f"no model for {len(texts)} texts")


async def test_a_failed_run_fails_each_of_its_queries_and_the_next_ones_run() -> None:
    queries = QueryEmbeddings(Failing())
    try:
        results = await asyncio.gather(
            *(queries.embed(q) for q in QUERIES[:3]), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        with pytest.raises(RuntimeError, match="no model for 1 texts"):
            await queries.embed("later")
    finally:
        await queries.close()
    assert queries.runs == 2


async def test_a_query_whose_asker_gave_up_does_not_stop_the_others(onnx: OnnxEmbedder) -> None:
    queries = QueryEmbeddings(onnx)
    try:
        first = asyncio.ensure_future(queries.embed(QUERIES[0]))
        dropped = asyncio.ensure_future(queries.embed(QUERIES[1]))
        kept = asyncio.ensure_future(queries.embed(QUERIES[2]))
        await asyncio.sleep(0)
        dropped.cancel()
        vector = await kept
        await first
    finally:
        await queries.close()
    np.testing.assert_allclose(vector, onnx.embed([QUERIES[2]])[0], atol=1e-5)
    assert dropped.cancelled()
