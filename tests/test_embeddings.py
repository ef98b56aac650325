"""Tests of the ONNX embedder, the hashing fallback and load_embedder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from memory.embeddings import (
    Embedder,
    HashingEmbedder,
    OnnxEmbedder,
    load_embedder,
)

MODEL_DIR = Path(__file__).resolve().parents[2] / "shared" / "models" / "all-MiniLM-L6-v2"
UNREACHABLE = "http://127.0.0.1:9"  # discard port, closed: connections are refused at once

MIXED = [
    "",
    "Hi",
    "The quarterly report is due on Friday, please send your numbers to finance.",
    "ok",
    "Deploy failed again: the migration timed out on the users table. " * 20,
    "Ünïcödé and emoji 🎉 work too",
    "a b c d e f g",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    return OnnxEmbedder(MODEL_DIR, batch_size=3)


def cosine_matrix(vectors: list[list[float]]) -> np.ndarray:
    m = np.array(vectors)
    return m @ m.T


def test_onnx_reproduces_published_similarities(onnx: OnnxEmbedder) -> None:
    sims = cosine_matrix(
        onnx.embed(
            ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
        )
    )
    assert sims[0, 1] == pytest.approx(0.6660, abs=5e-4)
    assert sims[0, 2] == pytest.approx(0.1046, abs=5e-4)
    assert sims[1, 2] == pytest.approx(0.1411, abs=5e-4)


def test_onnx_identity(onnx: OnnxEmbedder) -> None:
    assert isinstance(onnx, Embedder)
    assert onnx.name == "all-MiniLM-L6-v2"
    assert onnx.dim == 384


def test_batch_of_mixed_lengths_matches_one_by_one(onnx: OnnxEmbedder) -> None:
    batched = np.array(onnx.embed(MIXED))
    single = np.array([onnx.embed([t])[0] for t in MIXED])
    assert batched.shape == (len(MIXED), 384)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_batches_group_similar_lengths_and_pad_to_their_own_longest(
    onnx: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[tuple[int, int, int, int]] = []  # rows, width, shortest, longest
    real_infer = onnx._infer

    def spy(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        lengths = mask.sum(axis=1)
        batches.append((ids.shape[0], ids.shape[1], int(lengths.min()), int(lengths.max())))
        return real_infer(ids, mask)

    monkeypatch.setattr(onnx, "_infer", spy)
    onnx.embed(MIXED + MIXED)
    assert sum(rows for rows, *_ in batches) == 2 * len(MIXED)
    assert all(rows <= 3 for rows, *_ in batches)  # batch_size=3
    assert any(rows > 1 for rows, *_ in batches)  # equal lengths share a batch
    for _, width, shortest, longest in batches:
        assert width == longest <= 256
        assert longest <= shortest * 5 / 4  # a long text never pads a batch of short ones


def test_vectors_are_unit_length_and_empty_text_works(onnx: OnnxEmbedder) -> None:
    vectors = np.array(onnx.embed(["", "x" * 5000, "hello"]))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(vectors))
    assert onnx.embed([]) == []


def test_long_text_is_truncated_not_rejected(onnx: OnnxEmbedder) -> None:
    head = "Our database migration plan for the billing service. "
    long_text = head * 2000  # far beyond 256 tokens
    a, b = onnx.embed([long_text, head * 60])
    # both are truncated to the same first 256 tokens of an identical repeating text
    assert float(np.dot(a, b)) > 0.999


def test_paraphrase_outranks_unrelated(onnx: OnnxEmbedder) -> None:
    q, para, other = onnx.embed(
        ["How do I reset my password?", "Steps to change a forgotten login password", "Lunch menu"]
    )
    assert np.dot(q, para) > np.dot(q, other) + 0.3


def test_hashing_ranks_overlap_above_unrelated() -> None:
    h = HashingEmbedder()
    q, near, far = h.embed(
        [
            "deploy the billing service",
            "We deploy the billing service on Fridays",
            "Lunch is pizza today",
        ]
    )
    assert np.dot(q, near) > 0.4
    assert np.dot(q, near) > np.dot(q, far) + 0.3


def test_hashing_is_deterministic_unit_and_named() -> None:
    h = HashingEmbedder(dim=384)
    assert isinstance(h, Embedder)
    assert (h.name, h.dim) == ("hashing-384", 384)
    a = h.embed(["Same Text here", "", "!!!"])
    b = HashingEmbedder(dim=384).embed(["same text HERE", "", "!!!"])
    assert a == b  # case-insensitive and independent of the instance (no hash() salt)
    np.testing.assert_allclose(np.linalg.norm(np.array(a), axis=1), 1.0, atol=1e-6)
    # a known slot: blake2b makes the layout identical in every process
    assert int(np.argmax(np.abs(h.embed(["kubernetes"])[0]))) == h._slot("kubernetes")[0]


def test_load_embedder_explicit_dir(tmp_path: Path) -> None:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    embedder = load_embedder(MODEL_DIR, tmp_path, allow_download=False)
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.dim == 384


def test_load_embedder_bad_explicit_dir_raises(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match=r"model\.onnx") as info:
        load_embedder(tmp_path / "model", tmp_path / "cache")
    assert str(tmp_path / "model") in str(info.value)
    assert "tokenizer.json" not in str(info.value)
    with pytest.raises(ValueError, match="does not exist"):
        load_embedder(tmp_path / "nowhere", tmp_path / "cache")


def test_load_embedder_falls_back_when_download_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="lore.embeddings"):
        embedder = load_embedder(None, cache, download_base_url=UNREACHABLE, timeout=2.0)
    assert isinstance(embedder, HashingEmbedder)
    warnings = [r for r in caplog.records if r.name == "lore.embeddings"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "unavailable" in message
    assert "lexical" in message
    assert "LORE_EMBEDDING_MODEL_DIR" in message
    # nothing half-written is left behind
    leftovers = [p for p in cache.rglob("*")] if cache.exists() else []
    assert leftovers == []


def test_load_embedder_uses_cached_copy(tmp_path: Path) -> None:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    cached = tmp_path / "all-MiniLM-L6-v2"
    cached.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (cached / name).symlink_to(MODEL_DIR / name)
    embedder = load_embedder(None, tmp_path, download_base_url=UNREACHABLE)
    assert isinstance(embedder, OnnxEmbedder)


def test_load_embedder_fetches_into_cache(tmp_path: Path) -> None:
    """A working download (served from the local copy over file://) lands complete."""
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    remote = tmp_path / "remote"
    (remote / "onnx").mkdir(parents=True)
    (remote / "onnx" / "model.onnx").symlink_to(MODEL_DIR / "model.onnx")
    for name in ("tokenizer.json", "config.json", "vocab.txt"):
        (remote / name).symlink_to(MODEL_DIR / name)
    cache = tmp_path / "cache"
    embedder = load_embedder(None, cache, download_base_url=remote.as_uri())
    assert isinstance(embedder, OnnxEmbedder)
    target = cache / "all-MiniLM-L6-v2"
    assert (target / "model.onnx").stat().st_size == (MODEL_DIR / "model.onnx").stat().st_size
    assert (target / "vocab.txt").is_file()
    # the missing optional files were skipped, and no partial files remain
    assert sorted(p.name for p in cache.iterdir()) == ["all-MiniLM-L6-v2"]
    assert not list(target.glob("*.part"))


def test_a_downloaded_model_that_is_not_the_known_build_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model served with the right names but other bytes is never loaded; search falls back
    to lexical matching as when no model is present, and nothing is kept in the cache."""
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    remote = tmp_path / "remote"
    (remote / "onnx").mkdir(parents=True)
    tampered = (MODEL_DIR / "model.onnx").read_bytes() + b"\0"
    (remote / "onnx" / "model.onnx").write_bytes(tampered)
    (remote / "tokenizer.json").symlink_to(MODEL_DIR / "tokenizer.json")
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="lore.embeddings"):
        embedder = load_embedder(None, cache, download_base_url=remote.as_uri())
    assert isinstance(embedder, HashingEmbedder)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "lore.embeddings"]
    assert "the downloaded model.onnx has sha256" in message and "refused" in message
    assert "falls back to lexical matching" in message
    assert not (cache / "all-MiniLM-L6-v2").exists()


def test_a_cached_model_that_is_not_the_known_build_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    cached = tmp_path / "all-MiniLM-L6-v2"
    cached.mkdir()
    (cached / "model.onnx").write_bytes((MODEL_DIR / "model.onnx").read_bytes()[:-1] + b"\0")
    (cached / "tokenizer.json").symlink_to(MODEL_DIR / "tokenizer.json")
    with caplog.at_level(logging.WARNING, logger="lore.embeddings"):
        embedder = load_embedder(None, tmp_path, download_base_url=UNREACHABLE)
    assert isinstance(embedder, HashingEmbedder)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "lore.embeddings"]
    assert f"the cached {cached / 'model.onnx'} has sha256" in message
