"""Searching the archive for an answer: what the access rule allows, never the question itself."""

from __future__ import annotations

from app.agent.access import Access
from app.agent.ports import TurnRequest
from memory.archive import NO_FILTERS, Archive, SearchFilters, SearchHit


async def search_for_answer(
    archive: Archive,
    access: Access,
    request: TurnRequest,
    query: str,
    *,
    filters: SearchFilters | None = None,
    limit: int,
) -> list[SearchHit]:
    """At most `limit` hits `access` may show; the asked message is the question, not an answer."""
    hits = await archive.search(
        request.team_id,
        query,
        audience=access.audience,
        filters=filters or NO_FILTERS,
        limit=limit + 1,
    )
    asked = (request.channel_id, request.ts)
    return [hit for hit in hits if (hit.message.channel_id, hit.message.ts) != asked][:limit]
