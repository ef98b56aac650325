"""What bench/soak.py counts at the end of a run, from plain records: what Slack was told
"received" against what the archive holds, and each taught line against the memory block."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]
"""A message: (channel, ts)."""


@dataclass
class Acknowledged:
    """Human messages whose events Lore acknowledged (HTTP 2xx), in delivery order."""

    posted: set[Key] = field(default_factory=set)
    edited: dict[Key, str] = field(default_factory=dict)  # the last acknowledged edit's text
    deleted: set[Key] = field(default_factory=set)
    unacknowledged: int = 0  # message events every delivery attempt of which failed


def acknowledged(
    deliveries: Iterable[tuple[Mapping[str, Any], bool]], bot_user: str
) -> Acknowledged:
    """Sort `(event, acknowledged)` pairs of delivered `message` events by what they ask of the
    archive; the bot's own messages are left out."""
    found = Acknowledged()
    for event, acked in deliveries:
        if event.get("type") != "message":
            continue
        subtype = event.get("subtype")
        channel = str(event.get("channel", ""))
        if subtype in (None, "thread_broadcast"):
            if event.get("bot_id") or event.get("user") == bot_user:
                continue
            key = (channel, str(event["ts"]))
            target = found.posted
        elif subtype == "message_changed":
            message = event.get("message") or {}
            if message.get("bot_id") or message.get("user") == bot_user:
                continue
            key = (channel, str(message["ts"]))
            if acked:
                found.edited[key] = str(message.get("text", ""))
            else:
                found.unacknowledged += 1
            continue
        elif subtype == "message_deleted":
            previous = event.get("previous_message") or {}
            if previous.get("bot_id") or previous.get("user") == bot_user:
                continue
            key = (channel, str(event["deleted_ts"]))
            target = found.deleted
        else:
            continue
        if acked:
            target.add(key)
        else:
            found.unacknowledged += 1
    return found


@dataclass
class ArchiveCheck:
    """Acknowledged messages against the archive's records (SQL) and vectors (Chroma)."""

    expected: int
    missing: list[Key]
    stale: list[Key]  # kept with a text older than its last acknowledged edit
    deleted_but_kept: list[Key]
    vectors_missing: list[Key]


def check_archive(
    acked: Acknowledged,
    records: Mapping[Key, str],
    vector_keys: set[Key],
    current_text: Mapping[Key, str | None],
) -> ArchiveCheck:
    """`records`: archived text by message; `vector_keys`: messages with a vector;
    `current_text`: the text each message has in Slack now, None once deleted there (edits whose
    event was acknowledged must show in the archive; a message deleted in Slack is not missing
    even if its deletion was never acknowledged)."""
    kept = sorted(acked.posted - acked.deleted)
    stale = [
        key
        for key in kept
        if key in records
        and key in acked.edited
        and current_text.get(key) == acked.edited[key]
        and records[key] != acked.edited[key]
    ]
    return ArchiveCheck(
        expected=len(kept),
        missing=[key for key in kept if key not in records and current_text.get(key) is not None],
        stale=stale,
        deleted_but_kept=sorted(key for key in acked.deleted if key in records),
        vectors_missing=[key for key in kept if key in records and key not in vector_keys],
    )


@dataclass
class MemoryCheck:
    """Each taught line ("fact TAG") against the newest version of the block."""

    served: int  # memory_insert tool calls the model made
    confirmed: int  # turns that told the person the edit was saved
    applied_once: int
    doubled: list[str]
    lost: list[str]  # confirmed, yet not in the block
    not_applied: list[str]  # the turn failed (fault) and the edit was not kept: no promise broken
    refused: list[str]  # the edit's tool result was an error, and the person was told so
    strays: list[str]  # lines in the block no model call asked for


def check_memory(
    block: str,
    served: set[str],
    confirmed: set[str],
    refused: set[str],
    line_of: Mapping[str, str],
) -> MemoryCheck:
    """`served`/`confirmed`/`refused`: tags; `line_of`: tag -> the line its edit inserts."""
    counts = Counter(block.splitlines())
    wanted = {line_of[tag]: tag for tag in served}
    return MemoryCheck(
        served=len(served),
        confirmed=len(confirmed),
        applied_once=sum(1 for tag in served if counts[line_of[tag]] == 1),
        doubled=sorted(tag for tag in served if counts[line_of[tag]] > 1),
        lost=sorted(tag for tag in confirmed if counts[line_of[tag]] == 0),
        not_applied=sorted(
            tag for tag in served - confirmed - refused if counts[line_of[tag]] == 0
        ),
        refused=sorted(refused),
        strays=sorted(line for line in counts if line.startswith("fact ") and line not in wanted),
    )
