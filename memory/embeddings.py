"""Sentence embedders: the ONNX all-MiniLM-L6-v2 model (fp32, or quantized to int8), and a
lexical hashing fallback."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

logger = logging.getLogger("lore.embeddings")

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256
MODEL_SHA256 = "2c367d107dda7923d11ff52aa572a01aa5cfdde9639578bd3841c9122c345732"
DEFAULT_DOWNLOAD_BASE_URL = (
    "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main"
)
REQUIRED_FILES = ("model.onnx", "tokenizer.json")
# (remote path under the base URL, local file name); the first two are required.
DOWNLOAD_FILES = (
    ("tokenizer.json", "tokenizer.json"),
    ("onnx/model.onnx", "model.onnx"),
    ("tokenizer_config.json", "tokenizer_config.json"),
    ("special_tokens_map.json", "special_tokens_map.json"),
    ("config.json", "config.json"),
    ("vocab.txt", "vocab.txt"),
)

Precision = Literal["fp32", "int8"]
INT8_NAME = f"{MODEL_NAME}-int8"
"""The int8 model's name: its vectors are a vector space of their own (its own collection)."""

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of one vector space."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts (sync and CPU-bound: async callers use asyncio.to_thread)."""
        ...


def _l2_normalise(matrix: FloatArray) -> FloatArray:
    """Scale each row to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class OnnxEmbedder:
    """all-MiniLM-L6-v2 run with onnxruntime on CPU: mean pooling, then L2 normalisation."""

    def __init__(
        self,
        model_dir: Path,
        batch_size: int = 32,
        threads: int | None = None,
        *,
        name: str = MODEL_NAME,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.name = name
        self.batch_size = max(1, batch_size)
        self._tokenizer = self._load_tokenizer(self.model_dir / "tokenizer.json")
        self._session = self._load_session(self.model_dir / "model.onnx", threads)
        self.dim = self._output_dim()

    @staticmethod
    def _load_tokenizer(path: Path) -> Tokenizer:
        """Load the tokenizer with per-batch-longest padding and truncation to 256."""
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        return tokenizer

    @staticmethod
    def _load_session(path: Path, threads: int | None) -> ort.InferenceSession:
        """Create a CPU inference session."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def _output_dim(self) -> int:
        """The embedding width: from the graph when static, else by embedding one text."""
        last = self._session.get_outputs()[0].shape[-1]
        if isinstance(last, int):
            return last
        return len(self.embed([""])[0])

    def _tokenize(self, texts: Sequence[str]) -> tuple[Int64Array, Int64Array]:
        """Token ids and attention masks, right-padded to the longest text."""
        encodings: list[Encoding] = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def _batch_width(self, lengths: Int64Array, full_width: int) -> int:
        """Columns to keep for a batch: its longest text (padding is on the right)."""
        return max(1, int(lengths.max()))

    def _infer(self, ids: Int64Array, mask: Int64Array) -> FloatArray:
        """Run the model on one batch and mean-pool the last hidden state."""
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        counts = np.maximum(weights.sum(axis=1), 1e-9)
        return _l2_normalise(summed / counts)

    def embed_array(self, texts: Sequence[str]) -> FloatArray:
        """Embed texts into an (n, dim) float32 array, batching texts of similar length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask = self._tokenize(texts)
        lengths = mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows in self._runs(order, lengths):
            width = self._batch_width(lengths[rows], ids.shape[1])
            out[rows] = self._infer(ids[rows, :width], mask[rows, :width])
        return out

    def _runs(self, order: Int64Array, lengths: Int64Array) -> Iterator[Int64Array]:
        """Split the length-sorted rows into batches padded by at most a fifth.

        The model costs about the same per token whatever the batch, so a batch padded to one
        long text costs more than running that text alone (3x per message on chat messages).
        """
        start = 0
        while start < len(order):
            shortest = int(lengths[order[start]])
            stop = start + 1
            while (
                stop < len(order)
                and stop - start < self.batch_size
                and int(lengths[order[stop]]) <= shortest + shortest // 4
            ):
                stop += 1
            yield order[start:stop]
            start = stop

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts, returned in input order."""
        result: list[list[float]] = self.embed_array(texts).tolist()
        return result


_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Lexical fallback: signed feature hashing of lower-cased word unigrams and bigrams."""

    def __init__(self, dim: int = 384) -> None:
        if dim < 2:
            raise ValueError("dim must be at least 2")
        self.dim = dim
        self.name = f"hashing-{dim}"

    @staticmethod
    def _features(text: str) -> list[str]:
        """Unigrams and bigrams of the lower-cased words of text."""
        words = _WORD.findall(text.lower())
        bigrams = [f"{a} {b}" for a, b in itertools.pairwise(words)]
        return words + bigrams

    def _slot(self, feature: str) -> tuple[int, float]:
        """Stable (index, sign) of a feature, identical in every process."""
        digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8)
        value = int.from_bytes(digest.digest(), "little")
        return value % self.dim, (1.0 if (value >> 63) & 1 else -1.0)

    def _vector(self, text: str) -> FloatArray:
        """One L2-normalised vector; a text with no words gets a fixed unit vector."""
        vector = np.zeros(self.dim, dtype=np.float32)
        for feature in self._features(text):
            index, sign = self._slot(feature)
            vector[index] += sign
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            index, sign = self._slot("\x00empty")
            vector[index] = sign
            return vector
        return (vector / norm).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts, returned in input order."""
        return [self._vector(text).tolist() for text in texts]


def _missing_files(model_dir: Path) -> list[str]:
    """The required model files absent from model_dir."""
    return [f for f in REQUIRED_FILES if not (model_dir / f).is_file()]


def _download(url: str, dest: Path, timeout: float) -> None:
    """Fetch url into dest through a temporary file in the same directory."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRefused(Exception):
    """A fetched or cached model is not the known build (its sha256 differs)."""


def _check_hash(model_dir: Path, what: str) -> None:
    """Raise ModelRefused unless model_dir's model.onnx is the known build."""
    found = _sha256(model_dir / "model.onnx")
    if found != MODEL_SHA256:
        raise ModelRefused(
            f"{what} has sha256 {found}, not {MODEL_SHA256} of the known {MODEL_NAME} "
            "build, so it was refused"
        )


def _fetch_model(base_url: str, target: Path, timeout: float) -> None:
    """Download the model files into a staging dir, check its hash and that it loads, then
    rename it to target; a model that is not the known build is deleted, never loaded."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        for remote, local in DOWNLOAD_FILES:
            try:
                _download(f"{base_url.rstrip('/')}/{remote}", staging / local, timeout)
            except OSError:
                if local in REQUIRED_FILES:
                    raise
                logger.debug("optional model file %s not fetched", remote)
        _check_hash(staging, "the downloaded model.onnx")
        OnnxEmbedder(staging).embed(["check"])
        if not target.exists():
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fallback(reason: str, cache_dir: Path) -> HashingEmbedder:
    """Log the single 'model unavailable' warning and return the lexical embedder."""
    logger.warning(
        "Embedding model %s is unavailable (%s); search falls back to lexical matching. "
        "To fix it, set LORE_EMBEDDING_MODEL_DIR to a directory holding the ONNX model "
        "(model.onnx and tokenizer.json), or allow the download into %s.",
        MODEL_NAME,
        reason,
        cache_dir / MODEL_NAME,
    )
    return HashingEmbedder()


class _QuantizerChatter(logging.Filter):
    """Drops the quantizer's per-tensor notes, which it logs on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "quantization" not in record.pathname


def _quantize(source: Path, dest: Path) -> None:
    """Write the dynamic int8 quantization of the ONNX model at source to dest."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    chatter = _QuantizerChatter()
    logging.getLogger().addFilter(chatter)
    try:
        quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(chatter)


def quantized_model(source_dir: Path, cache_dir: Path) -> Path:
    """The folder of source_dir's model quantized to int8, made once under cache_dir.

    Keyed by the source model.onnx's sha256, so another source never reuses it; made in a
    staging folder and renamed into place, so a concurrent start never sees half of it.
    """
    target = cache_dir / INT8_NAME / _sha256(source_dir / "model.onnx")
    if not _missing_files(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name[:16]}.partial-"))
    try:
        # The quantizer writes a shape-inferred copy beside its input: keep it in staging.
        source = shutil.copyfile(source_dir / "model.onnx", staging / "source.onnx")
        _quantize(source, staging / "model.onnx")
        source.unlink()
        shutil.copyfile(source_dir / "tokenizer.json", staging / "tokenizer.json")
        try:
            os.replace(staging, target)
        except OSError:  # another process renamed its copy into place first
            if _missing_files(target):
                raise
        logger.info("quantized %s to int8 into %s", source_dir / "model.onnx", target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _onnx(
    source_dir: Path, cache_dir: Path, precision: Precision, threads: int | None
) -> OnnxEmbedder:
    """The ONNX embedder of source_dir's model at the precision asked for; fp32 (with a
    warning) when the int8 model cannot be made or loaded."""
    if precision == "int8":
        try:
            quantized = quantized_model(source_dir, cache_dir)
            return OnnxEmbedder(quantized, threads=threads, name=INT8_NAME)
        except Exception as exc:
            logger.warning(
                "LORE_EMBEDDING_PRECISION=int8, but the int8 model could not be made from %s "
                "in %s (%s); embedding with the fp32 model instead.",
                source_dir / "model.onnx",
                cache_dir / INT8_NAME,
                exc,
            )
    return OnnxEmbedder(source_dir, threads=threads)


def load_embedder(
    model_dir: Path | None,
    cache_dir: Path,
    *,
    download_base_url: str = DEFAULT_DOWNLOAD_BASE_URL,
    allow_download: bool = True,
    timeout: float = 10.0,
    threads: int | None = None,
    precision: Precision = "fp32",
) -> Embedder:
    """The ONNX embedder from model_dir or the cache (fetched once), else the hashing fallback.

    A downloaded or cached model.onnx must have the known build's sha256 (MODEL_SHA256);
    one that does not is refused and search falls back as when no model is present. An
    explicit model_dir (the operator's own copy) is not hashed; one that lacks the model files
    raises ValueError. With precision "int8" the model is quantized once into cache_dir
    (`quantized_model`) and named INT8_NAME.
    """
    cache_dir = Path(cache_dir)
    if model_dir is not None:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ValueError(f"embedding model directory {model_dir} does not exist")
        missing = _missing_files(model_dir)
        if missing:
            raise ValueError(f"embedding model directory {model_dir} lacks {', '.join(missing)}")
        return _onnx(model_dir, cache_dir, precision, threads)
    target = cache_dir / MODEL_NAME
    if not _missing_files(target):
        try:
            _check_hash(target, f"the cached {target / 'model.onnx'}")
            return _onnx(target, cache_dir, precision, threads)
        except ModelRefused as exc:
            return _fallback(str(exc), cache_dir)
        except Exception as exc:  # a corrupt cache must not stop the app
            return _fallback(f"cached copy in {target} does not load: {exc}", cache_dir)
    if not allow_download:
        return _fallback("not found and downloading is disabled", cache_dir)
    try:
        _fetch_model(download_base_url, target, timeout)
        return _onnx(target, cache_dir, precision, threads)
    except ModelRefused as exc:
        return _fallback(f"{exc} (downloaded from {download_base_url})", cache_dir)
    except Exception as exc:
        return _fallback(f"download from {download_base_url} failed: {exc}", cache_dir)
