"""`/recall`: the best matching messages for a question, and with a model a short cited answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anthropic

from app.agent.access import Access
from app.agent.citations import search_result_block
from memory.archive import Archive, SearchHit

log = logging.getLogger("lore.recall")

PAGE = 5
ANSWER_TOKENS = 400
ANSWER_RULES = (
    "You are Lore, a Slack workspace's memory. Answer the question in at most three sentences "
    "using only the search results, citing them. If they do not answer it, say so in one "
    "sentence."
)


@dataclass(frozen=True)
class RecallPage:
    """One page of matches, and the short answer shown above the first page."""

    question: str
    hits: list[SearchHit]
    offset: int
    has_more: bool
    answer: str | None = None


class Recall:
    """Searches for `/recall`; answers briefly when a model is configured."""

    def __init__(self, archive: Archive, llm: anthropic.AsyncAnthropic | None, model: str) -> None:
        self._archive = archive
        self._llm = llm
        self._model = model

    async def ask(self, question: str, access: Access, offset: int = 0) -> RecallPage:
        """A page of what `access` may see that matches `question`."""
        hits = await self._archive.search(
            access.team_id, question, audience=access.audience, limit=offset + PAGE + 1
        )
        page = hits[offset : offset + PAGE]
        answer = None
        if self._llm is not None and offset == 0 and page:
            answer = await self._answer(self._llm, question, page)
        return RecallPage(question, page, offset, len(hits) > offset + PAGE, answer)

    async def _answer(
        self, llm: anthropic.AsyncAnthropic, question: str, hits: list[SearchHit]
    ) -> str | None:
        """A short answer with [n] markers that point into the listed matches."""
        blocks = [search_result_block(hit) for hit in hits]
        content: list[Any] = [*blocks, {"type": "text", "text": question}]
        try:
            message = await llm.messages.create(
                model=self._model,
                max_tokens=ANSWER_TOKENS,
                system=ANSWER_RULES,
                messages=[{"role": "user", "content": content}],
            )
        except anthropic.APIError as error:
            log.warning("recall answer failed: %s", error)
            return None
        numbers = {block["source"]: n for n, block in enumerate(blocks, start=1)}
        parts: list[str] = []
        for block in message.content:
            if block.type != "text":
                continue
            parts.append(block.text)
            sources = [getattr(citation, "source", None) for citation in block.citations or []]
            cited = sorted({numbers[source] for source in sources if source in numbers})
            parts.extend(f" [{n}]" for n in cited)
        return "".join(parts).strip() or None
