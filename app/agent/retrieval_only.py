"""Retrieval-only turns (no API key): answer with the best matching messages; edit memory."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

from app.agent.access import ASK_IN_A_DM, THIN_RESULTS, Access
from app.agent.answer_search import search_for_answer
from app.agent.ports import PostedReply, Reply, Source, TurnRequest
from memory.archive import Archive
from memory.blocks import MemoryBlocks
from memory.edits import EditError, Forget, Insert

MODE_NOTE = (
    "_I'm running in retrieval-only mode (no ANTHROPIC_API_KEY is set), so I show the "
    "closest messages instead of writing an answer._"
)
MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")
COMMAND = re.compile(r"^\s*(remember|forget)\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)
SNIPPET_CHARS = 280
RESULTS = 5


class RetrievalOnly:
    """What Lore does for a turn when no model is configured."""

    def __init__(self, archive: Archive, blocks: MemoryBlocks) -> None:
        self._archive = archive
        self._blocks = blocks

    async def answer(
        self, request: TurnRequest, access: Access, reply: Reply, conversation_id: str
    ) -> PostedReply | None:
        question = MENTION.sub("", request.text).strip()
        command = COMMAND.match(question)
        if command:
            await reply.append(
                await self._edit_memory(request, access, conversation_id, *command.groups())
            )
            return await reply.finish([])
        if not question:
            await reply.append(f"Ask me something, or say `remember: …`.\n\n{MODE_NOTE}")
            return await reply.finish([])
        hits = await search_for_answer(self._archive, access, request, question, limit=RESULTS * 4)
        visible = [hit for hit in hits if not hit.message.is_bot][:RESULTS]
        thin = f"\n\n{ASK_IN_A_DM}" if access.suggests_dm and len(visible) < THIN_RESULTS else ""
        if not visible:
            await reply.append(
                f"I found nothing about that in the archive yet.{thin}\n\n{MODE_NOTE}"
            )
            return await reply.finish([])
        lines = [MODE_NOTE, ""]
        quoted: list[Source] = []
        for hit in visible:
            message = hit.message
            day = datetime.fromtimestamp(float(message.ts), UTC).strftime("%Y-%m-%d")
            snippet = " ".join(message.text.split())
            if len(snippet) > SNIPPET_CHARS:
                snippet = snippet[:SNIPPET_CHARS] + "…"
            link = f"[{day}]({message.permalink})" if message.permalink else day
            author = message.user_name or "someone"  # a name, never a mention: quoting pings no one
            lines.append(f"• {author} in <#{message.channel_id}>, {link}: {snippet}")
            quoted.append(
                Source(
                    message.permalink or "",
                    author,
                    message.channel_id,
                    message.ts,
                    snippet,
                )
            )
        await reply.append("\n".join(lines) + thin)
        posted = await reply.finish([])
        return replace(posted, sources=tuple(quoted)) if posted is not None else None

    async def _edit_memory(
        self, request: TurnRequest, access: Access, conversation_id: str, verb: str, text: str
    ) -> str:
        """`remember:` / `forget:` in the `org` block, or where the access rule sends it."""
        edit = Insert(text.strip()) if verb.lower() == "remember" else Forget(text.strip())
        try:
            target = access.edit_target("org", edit)
            result = await self._blocks.edit(
                request.team_id,
                target,
                edit,
                scope=access.memory,
                conversation_id=conversation_id,
                user_id=request.user_id,
            )
        except EditError as error:
            return f"I couldn't change my memory: {error}.\n\n{MODE_NOTE}"
        done = "Noted" if verb.lower() == "remember" else "Forgotten"
        where = "`org` memory" if target == "org" else f"memory for this conversation (`{target}`)"
        return f"{done}. My {where} is now version {result.block.version}.\n\n{MODE_NOTE}"
