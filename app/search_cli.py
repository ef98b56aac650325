"""`python -m app search`: the archive's search from the command line, with the admin view.

One query (`QUERY`, printed for people or with `--json` as one JSON line) or a file of JSON lines
(`--queries FILE`, `-` for stdin): in `{"id", "query"}`, out
`{"id", "results": [{"channel", "ts", "thread_ts", "user", "text", "permalink", "score"}]}`
(each result also has "user_name", the author's name when known), in input order. The model
and the store are opened once for the whole file.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from app.agent.access import Access
from memory.archive import Archive, SearchHit

SNIPPET_CHARS = 80


@dataclass(frozen=True)
class Query:
    id: Any
    query: str


class QueryFileError(Exception):
    """A line of the queries file is not `{"id": ..., "query": "..."}`."""


def read_queries(lines: Iterator[str]) -> Iterator[Query | QueryFileError]:
    """The queries of a JSON-lines file; a bad line yields an error naming its line number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            yield QueryFileError(f"line {number}: invalid JSON ({error})")
            continue
        if not isinstance(item, dict) or not isinstance(item.get("query"), str):
            yield QueryFileError(f'line {number}: expected {{"id": ..., "query": "..."}}')
            continue
        yield Query(item.get("id"), item["query"])


def result_json(hit: SearchHit) -> dict[str, Any]:
    """One result in the JSON contract."""
    m = hit.message
    return {
        "channel": m.channel_id,
        "ts": m.ts,
        "thread_ts": m.thread_ts,
        "user": m.user_id,
        "user_name": m.user_name,
        "text": m.text,
        "permalink": m.permalink,
        "score": round(hit.score, 6),
    }


def human_line(hit: SearchHit) -> str:
    """`score  #channel  date  author  snippet  permalink` on one line, two spaces apart."""
    m = hit.message
    when = datetime.fromtimestamp(float(m.ts), UTC).strftime("%Y-%m-%d %H:%M")
    snippet = re.sub(r"\s+", " ", m.text).strip()
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1] + "…"
    link = m.permalink or f"{m.channel_id}/{m.ts}"
    author = m.user_name or m.user_id or "-"
    return f"{hit.score:.4f}  #{m.channel_id}  {when}  {author}  {snippet}  {link}"


async def search(archive: Archive, team_id: str, query: str, k: int) -> list[SearchHit]:
    """The top k messages of the whole workspace (admin view: every channel, private too)."""
    return await archive.search(
        team_id, query, audience=Access.for_operator(team_id).audience, limit=k
    )


async def search_one(
    archive: Archive, team_id: str, query: str, k: int, as_json: bool, out: TextIO
) -> int:
    """Print one query's results (a JSON line with as_json); exit status 0."""
    hits = await search(archive, team_id, query, k)
    if as_json:
        out.write(json.dumps({"query": query, "results": [result_json(h) for h in hits]}) + "\n")
        return 0
    if not hits:
        print(f"no results in {team_id}", file=sys.stderr)
    for hit in hits:
        out.write(human_line(hit) + "\n")
    return 0


def load_queries(path: str) -> list[Query | QueryFileError]:
    """The queries file (`-` = stdin) read whole, before any store is opened."""
    if path == "-":
        return list(read_queries(iter(sys.stdin)))
    with Path(path).open(encoding="utf-8") as source:
        return list(read_queries(source))


async def search_file(
    archive: Archive,
    team_id: str,
    items: list[Query | QueryFileError],
    k: int,
    out: TextIO,
    err: TextIO,
) -> int:
    """Answer every query, one JSON line each in input order; exit status 1 if a line was bad."""
    bad = 0
    for item in items:
        if isinstance(item, QueryFileError):
            bad += 1
            print(f"lore: queries {item}", file=err)
            continue
        hits = await search(archive, team_id, item.query, k)
        out.write(json.dumps({"id": item.id, "results": [result_json(h) for h in hits]}) + "\n")
        out.flush()
    return 1 if bad else 0
