"""Embedding throughput: per-batch padding (OnnxEmbedder) against fixed padding to 256 tokens.

Run: .venv/bin/python bench/embed_speed.py [--n 2000] [--batch-size 32] [--threads N]
Sentences are LoCoMo turn texts (evaluation data in shared/bench-data, not part of the product).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from itertools import cycle, islice
from pathlib import Path

import numpy as np

from memory.embeddings import MAX_TOKENS, Int64Array, OnnxEmbedder

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODEL_DIR = SHARED / "models" / "all-MiniLM-L6-v2"
LOCOMO = SHARED / "bench-data" / "locomo-dev.json"


class FixedPaddingEmbedder(OnnxEmbedder):
    """The same model with every input padded to 256 tokens (the slow way)."""

    def __init__(self, model_dir: Path, batch_size: int = 32, threads: int | None = None) -> None:
        super().__init__(model_dir, batch_size, threads)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=MAX_TOKENS)

    def _batch_width(self, lengths: Int64Array, full_width: int) -> int:
        return full_width


def locomo_sentences(n: int) -> list[str]:
    """n turn texts from the LoCoMo conversations (repeated if there are fewer)."""
    samples = json.loads(LOCOMO.read_text())
    texts: list[str] = []
    for sample in samples:
        conv = sample["conversation"]
        sessions = sorted(
            (k for k in conv if re.fullmatch(r"session_\d+", k)),
            key=lambda k: int(k.split("_")[1]),
        )
        for key in sessions:
            texts.extend(turn["text"] for turn in conv[key] if turn.get("text"))
    return list(islice(cycle(texts), n))


def rate(embedder: OnnxEmbedder, texts: Sequence[str]) -> tuple[float, np.ndarray]:
    """Sentences per second over texts, and the vectors."""
    embedder.embed_array(texts[:64])  # warm-up
    start = time.perf_counter()
    vectors = embedder.embed_array(texts)
    return len(texts) / (time.perf_counter() - start), vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    texts = locomo_sentences(args.n)
    dynamic = OnnxEmbedder(MODEL_DIR, args.batch_size, args.threads)
    fixed = FixedPaddingEmbedder(MODEL_DIR, args.batch_size, args.threads)
    tokens = [sum(e.attention_mask) for e in dynamic._tokenizer.encode_batch(texts)]
    print(
        f"{len(texts)} LoCoMo sentences, batch {args.batch_size}, "
        f"tokens/sentence mean {np.mean(tokens):.1f} max {max(tokens)}"
    )
    fast, v_fast = rate(dynamic, texts)
    slow, v_slow = rate(fixed, texts)
    print(f"per-batch padding (sorted by length): {fast:8.1f} sentences/s")
    print(f"fixed padding to {MAX_TOKENS}:              {slow:8.1f} sentences/s")
    print(f"ratio: {fast / slow:.1f}x")
    print(
        f"max |difference| between the two variants' vectors: {np.abs(v_fast - v_slow).max():.2e}"
    )


if __name__ == "__main__":
    main()
