"""Choose search's ranking settings on the LoCoMo tuning conversations only (conv-26, conv-30).

Run: .venv/bin/python bench/tune_ranking.py [--workdir DIR] [--rrf-k 10,30,60]
     [--dense-weight 0.5,1,1.5] [--context-weight 0.2,0.35,0.5] [--date-weight 1]

Imports the tuning conversations as bench/locomo.py does, then asks their questions through
`python -m app search --queries` once per combination of LORE_SEARCH_RRF_K,
LORE_SEARCH_DENSE_WEIGHT, LORE_SEARCH_CONTEXT_WEIGHT and LORE_SEARCH_DATE_WEIGHT, and prints
recall@10 (and hit@5) of each, best first. The defaults in memory/ranking.py are the best row;
bench/locomo.py then reports the three conversations that played no part in the choice.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
from pathlib import Path

from locomo import LOCOMO, MODEL_DIR, TUNING, ask, build, cli, scores


def values(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="keep exports and data here (default: temp)")
    parser.add_argument("--rrf-k", type=values, default=[10.0, 30.0, 60.0])
    parser.add_argument("--dense-weight", type=values, default=[0.5, 1.0, 1.5])
    parser.add_argument("--context-weight", type=values, default=[0.2, 0.35, 0.5])
    parser.add_argument("--date-weight", type=values, default=[1.0])
    args = parser.parse_args()
    samples = [s for s in json.loads(LOCOMO.read_text()) if s["sample_id"] in TUNING]
    with tempfile.TemporaryDirectory(prefix="lore-tune-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LORE_DATA_DIR": str(workdir / "data"),
            "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
            "DATABASE_URL": "",
            "CHROMA_URL": "",
            "REDIS_URL": "",
            "LORE_LOG_LEVEL": "WARNING",
        }
        spaces = build(samples, workdir)
        for space in spaces:
            cli(["import-export", str(space.export), "--team", space.team], env, capture=True)
        questions = [q for space in spaces for q in space.questions]
        results = []
        for k, dense, context, date in itertools.product(
            args.rrf_k, args.dense_weight, args.context_weight, args.date_weight
        ):
            run_env = {
                **env,
                "LORE_SEARCH_RRF_K": str(k),
                "LORE_SEARCH_DENSE_WEIGHT": str(dense),
                "LORE_SEARCH_CONTEXT_WEIGHT": str(context),
                "LORE_SEARCH_DATE_WEIGHT": str(date),
            }
            answers: dict[str, list[str]] = {}
            for space in spaces:
                answers.update(ask(space, workdir, run_env, 20))
            table = scores(questions, answers)
            results.append((table[10][1], table[5][0], k, dense, context, date))
            print(
                f"k={k:<5} dense={dense:<4} context={context:<5} date={date:<4} "
                f"recall@10={table[10][1]:.3f}"
            )
        print(f"\n{len(questions)} questions of {', '.join(sorted(TUNING))}, best first:")
        for recall, hit5, k, dense, context, date in sorted(results, reverse=True)[:10]:
            print(
                f"recall@10 {recall:.3f}  hit@5 {hit5:.3f}  "
                f"RRF_K={k} DENSE_WEIGHT={dense} CONTEXT_WEIGHT={context} DATE_WEIGHT={date}"
            )


if __name__ == "__main__":
    main()
