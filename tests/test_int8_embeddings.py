"""Tests of the int8 embedder: made once from the fp32 model into the cache, reused, fallback."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from memory import embeddings
from memory.archive import collection_name
from memory.embeddings import INT8_NAME, MODEL_NAME, OnnxEmbedder, load_embedder, quantized_model
from tests.conftest import MODEL_DIR

UNREACHABLE = "http://127.0.0.1:9"
TEXTS = [
    "",
    "ok",
    "The quarterly report is due on Friday, please send your numbers to finance.",
    "Deploy failed again: the migration timed out on the users table. " * 20,
    "Ünïcödé and emoji 🎉 work too",
]


@pytest.fixture(autouse=True)
def model_present() -> None:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refuse_to_quantize(source: Path, dest: Path) -> None:
    raise RuntimeError("quantizer unavailable")


def test_int8_embedder_is_its_own_vector_space_and_is_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "model"  # the operator's copy: nothing is written into it
    model_dir.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (model_dir / name).symlink_to(MODEL_DIR / name)
    cache = tmp_path / "data" / "models"
    inputs: list[Path] = []
    quantize = embeddings._quantize

    def spy(source: Path, dest: Path) -> None:
        inputs.append(source)  # the quantizer writes beside its input: never in the model dir
        quantize(source, dest)

    monkeypatch.setattr(embeddings, "_quantize", spy)
    int8 = load_embedder(model_dir, cache, precision="int8")
    assert len(inputs) == 1 and cache in inputs[0].parents
    fp32 = load_embedder(model_dir, cache)

    assert isinstance(int8, OnnxEmbedder) and isinstance(fp32, OnnxEmbedder)
    assert (int8.name, fp32.name) == (INT8_NAME, MODEL_NAME)
    assert collection_name("T1", int8.name) != collection_name("T1", fp32.name)
    vectors = np.array(int8.embed(TEXTS))
    assert vectors.shape == (len(TEXTS), fp32.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * np.array(fp32.embed(TEXTS))).sum(axis=1)
    assert cosines.min() > 0.8 and not np.allclose(cosines, 1.0)  # close, yet another space
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.onnx", "tokenizer.json"]

    made = cache / INT8_NAME / sha256(MODEL_DIR / "model.onnx") / "model.onnx"
    assert made.stat().st_size < (MODEL_DIR / "model.onnx").stat().st_size / 3
    before = made.stat().st_mtime_ns
    monkeypatch.setattr(embeddings, "_quantize", refuse_to_quantize)
    again = load_embedder(model_dir, cache, precision="int8")  # would fall back if it quantized
    assert again.name == INT8_NAME
    assert made.stat().st_mtime_ns == before
    np.testing.assert_allclose(np.array(again.embed(TEXTS)), vectors, atol=1e-6)
    assert [p.name for p in (cache / INT8_NAME).iterdir()] == [made.parent.name]


def test_int8_from_the_cached_model(tmp_path: Path) -> None:
    """Without a model dir, the int8 model is made from the cached (checked) fp32 copy."""
    cached = tmp_path / MODEL_NAME
    cached.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (cached / name).symlink_to(MODEL_DIR / name)
    embedder = load_embedder(None, tmp_path, download_base_url=UNREACHABLE, precision="int8")
    assert embedder.name == INT8_NAME
    assert (tmp_path / INT8_NAME / sha256(MODEL_DIR / "model.onnx") / "model.onnx").is_file()


def test_a_different_source_is_never_reused(tmp_path: Path) -> None:
    """The cache is keyed by the source model's sha256: another source gets its own copy."""
    first = quantized_model(MODEL_DIR, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.onnx").write_bytes(first.joinpath("model.onnx").read_bytes())
    (other / "tokenizer.json").symlink_to(MODEL_DIR / "tokenizer.json")
    second = quantized_model(other, tmp_path)
    assert second != first
    assert second.name == sha256(other / "model.onnx")
    assert OnnxEmbedder(second).dim == OnnxEmbedder(first).dim


def test_two_loads_at_once_leave_one_complete_copy(tmp_path: Path) -> None:
    made: list[Path] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            made.append(quantized_model(MODEL_DIR, tmp_path))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=make) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(made)) == 1
    assert [p.name for p in (tmp_path / INT8_NAME).iterdir()] == [made[0].name]  # no staging
    assert OnnxEmbedder(made[0]).embed(["check"])


def test_quantizing_fails_falls_back_to_fp32_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embeddings, "_quantize", refuse_to_quantize)
    with caplog.at_level(logging.WARNING, logger="lore.embeddings"):
        embedder = load_embedder(MODEL_DIR, tmp_path, precision="int8")
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.name == MODEL_NAME
    (message,) = [r.getMessage() for r in caplog.records if r.name == "lore.embeddings"]
    assert "LORE_EMBEDDING_PRECISION=int8" in message
    assert "quantizer unavailable" in message
    assert "fp32" in message
    assert list((tmp_path / INT8_NAME).iterdir()) == []  # nothing half-made left


def test_an_unwritable_cache_falls_back_to_fp32(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "models"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="lore.embeddings"):
        embedder = load_embedder(MODEL_DIR, blocked, precision="int8")
    assert embedder.name == MODEL_NAME
    assert any("fp32" in r.getMessage() for r in caplog.records)
