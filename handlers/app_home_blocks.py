"""Block Kit of the App Home: the Home tab view, the block edit modal, and reading them back.

Pure functions: no Slack calls, no storage.
"""

from __future__ import annotations

import json
from typing import Any

from app.app_home import BlockHistory, HomeSnapshot
from handlers import long_text
from memory.backfill_state import ChannelBackfill
from memory.blocks import Block
from memory.conversations import Conversation
from memory.notes import Note

EDIT_ACTION = "home_edit_block"
REVERT_ACTION = "home_revert_block"
EXCLUDE_ACTION = "home_exclude_channel"
INCLUDE_ACTION = "home_include_channel"
EDIT_CALLBACK = "home_edit_modal"
TEXT_ACTION = "text"
SHOW_BLOCK_ACTION = "home_show_block"
SHOW_BACKFILL_ACTION = "home_show_backfill"
SHOW_EXCLUDED_ACTION = "home_show_excluded"
SHOW_NOTES_ACTION = "home_show_notes"
RETRACT_NOTE_ACTION = "home_retract_note"

SECTION_CHARS = 2900  # a section's text may hold 3000
INPUT_CHARS = 3000  # a plain_text_input may hold 3000
BACKFILL_LINES = 30
EXCLUDED_SHOWN = 10
VIEW_BLOCKS = 100  # Slack's most blocks in a Home tab or a modal
MEMORY_BUDGET = 60  # of those, for memory blocks (the rest is at most about 30)
MEMORY_SECTIONS = 12  # a memory block's text shown in at most this many sections
BACKFILL_SECTIONS = 4
EXCLUDED_SECTIONS = 3
NOTES_SHOWN = 5  # on the Home tab; a button opens them all
NOTE_CHARS = 600  # of a note's text shown with its sources in one section
MODAL_INPUTS = VIEW_BLOCKS - 1  # the edit modal: its context line, then the inputs

View = dict[str, Any]
Blocks = list[dict[str, Any]]


def home_view(snapshot: HomeSnapshot, *, admin: bool, notice: str | None = None) -> View:
    """The Home tab: blocks with versions (admins: edit and revert), counts, backfill, channels."""
    blocks: Blocks = [_header("Lore")]
    if notice:
        blocks.append(_mrkdwn(notice))
    blocks += _counts(snapshot)
    if snapshot.reflection:
        blocks.append(_context(snapshot.reflection))
    blocks.append(_header("Memory"))
    if not admin:
        blocks.append(_context("Workspace admins and owners can edit these blocks."))
    shown_blocks = snapshot.blocks[: MEMORY_BUDGET // 5]
    sections = max(1, min(MEMORY_SECTIONS, MEMORY_BUDGET // max(1, len(shown_blocks)) - 4))
    for history in shown_blocks:
        blocks += memory_block(history, admin=admin, sections=sections)
    if len(snapshot.blocks) > len(shown_blocks):
        hidden = len(snapshot.blocks) - len(shown_blocks)
        blocks.append(_context(f"…and {hidden} more blocks: `lore memory show` lists all."))
    blocks.append(_header("Notes"))
    blocks += notes_blocks(snapshot.notes, admin=admin)
    blocks.append(_header("Backfill"))
    blocks += backfill_blocks(snapshot.backfill)
    blocks.append(_header("Channels"))
    blocks += channel_controls(snapshot.excluded, admin=admin)
    return {"type": "home", "callback_id": "lore_home", "blocks": blocks}


def notes_blocks(notes: list[Note], *, admin: bool, shown: int = NOTES_SHOWN) -> Blocks:
    """The newest notes, each with the messages it was learned from (admins: a Retract button);
    past `shown` a button opens them all."""
    if not notes:
        return [_mrkdwn("No notes yet: Lore keeps durable facts here, with their sources.")]
    blocks = [note_block(note, admin=admin) for note in notes[:shown]]
    if len(notes) > shown:
        blocks.append(_show_button(SHOW_NOTES_ACTION, f"Show all {len(notes)} notes"))
    return blocks


def notes_modal(notes: list[Note], *, admin: bool) -> View:
    """Every note the viewer may see (as many as a modal holds), newest first."""
    room = VIEW_BLOCKS - 1
    blocks = [note_block(note, admin=admin) for note in notes[:room]]
    if len(notes) > room:
        blocks.append(_context(f"…and {len(notes) - room} more: the JSON API lists them all."))
    return {
        "type": "modal",
        "title": _plain("Notes"),
        "close": _plain("Close"),
        "blocks": blocks or [_mrkdwn("No notes.")],
    }


def note_block(note: Note, *, admin: bool) -> dict[str, Any]:
    """A note's text, then "learned from" links to its source messages and when."""
    links = " · ".join(
        f"<{s.permalink}|message {i}>" if s.permalink else f"<#{s.channel_id}> {s.ts}"
        for i, s in enumerate(note.sources, start=1)
    )
    when = int(note.learned_at.timestamp())
    fallback = note.learned_at.strftime("%Y-%m-%d %H:%M UTC")
    date = f"<!date^{when}^{{date_short_pretty}}|{fallback}>"
    learned = f"_learned from_ {links} in <#{note.channel_id}> · {date}"
    section: dict[str, Any] = {
        **_mrkdwn(_cut(note.text, NOTE_CHARS) + "\n" + _cut(learned, SECTION_CHARS - NOTE_CHARS)),
        "block_id": f"note:{note.id}",
    }
    if admin:
        section["accessory"] = {
            "type": "button",
            "action_id": RETRACT_NOTE_ACTION,
            "text": _plain("Retract"),
            "value": note.id,
            "confirm": {
                "title": _plain("Retract this note?"),
                "text": _plain("It is kept in the history but no longer found or shown."),
                "confirm": _plain("Retract"),
                "deny": _plain("Cancel"),
            },
        }
    return section


def backfill_blocks(channels: list[ChannelBackfill]) -> Blocks:
    """The backfill rows in sections; past BACKFILL_LINES a button shows every row."""
    shown = [_mrkdwn(part) for part in _parts(backfill_text(channels), BACKFILL_SECTIONS)]
    if len(channels) > BACKFILL_LINES:
        shown.append(_show_button(SHOW_BACKFILL_ACTION, f"Show all {len(channels)} channels"))
    return shown


def reading_modal(title: str, text: str, *, more: str = "") -> View:
    """A modal showing `text` (up to about 290,000 characters) in sections; past that it is cut
    and ends with `more`, which says where the rest is."""
    parts = long_text.split_text(text or "(empty)", SECTION_CHARS)
    blocks: Blocks = [_mrkdwn(part) for part in parts[: VIEW_BLOCKS - 1]]
    if len(parts) > VIEW_BLOCKS - 1:
        blocks.append(_context(more or "…the rest is cut."))
    return {
        "type": "modal",
        "title": _plain(_cut(title, 24)),
        "close": _plain("Close"),
        "blocks": blocks,
    }


def block_reading_modal(block: Block) -> View:
    """A memory block's whole text, for anyone who may see it on the Home tab."""
    return reading_modal(
        block.label, block.value, more="…the rest: `lore memory show` prints all of it."
    )


def backfill_modal(channels: list[ChannelBackfill]) -> View:
    """Every backfill row."""
    return reading_modal("Backfill", backfill_text(channels, lines=len(channels)))


def excluded_modal(excluded: list[str]) -> View:
    """Every channel excluded from the archive."""
    return reading_modal("Not archived", "\n".join(f"<#{c}>" for c in excluded))


def memory_block(history: BlockHistory, *, admin: bool, sections: int = MEMORY_SECTIONS) -> Blocks:
    """One memory block: its label and version, its text (past `sections` sections, a button
    shows all of it), its last change, admin controls."""
    block = history.block
    title: dict[str, Any] = {
        **_mrkdwn(f"*{block.label}* · version {block.version} of {history.versions}"),
        "block_id": f"block:{block.label}",
    }
    if admin:
        title["accessory"] = {
            "type": "button",
            "action_id": EDIT_ACTION,
            "text": _plain("Edit"),
            "value": block.label,
        }
    shown: Blocks = [title]
    parts = _chunks(block.value or "(empty)", SECTION_CHARS)
    shown += [{"type": "section", "text": _plain(part)} for part in parts[:sections]]
    if len(parts) > sections:
        rest = len(block.value) - sections * SECTION_CHARS
        shown.append(
            _show_button(SHOW_BLOCK_ACTION, f"Show all ({rest} more characters)", value=block.label)
        )
    shown.append(_context(last_change(block, history.thread)))
    if admin and history.earlier:
        shown.append(
            {
                "type": "actions",
                "block_id": f"revert:{block.label}",
                "elements": [revert_select(block, history.earlier)],
            }
        )
    return shown


def last_change(block: Block, thread: Conversation | None = None) -> str:
    """ "replace by @alice in #general, <date>" (or who created it)."""
    who = f" by <@{block.user_id}>" if block.user_id else ""
    if thread is not None:
        who += f" in a thread of <#{thread.channel_id}>"
    when = int(block.created_at.timestamp())
    fallback = block.created_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"{block.operation}{who} · <!date^{when}^{{date_short_pretty}} {{time}}|{fallback}>"


def revert_select(block: Block, earlier: list[Block]) -> dict[str, Any]:
    """A menu of earlier versions; choosing one (and confirming) stores it as a new version."""
    options = [
        {
            "text": _plain(_cut(f"v{v.version} · {v.operation} · {_preview(v.value)}", 75)),
            "value": json.dumps({"l": block.label, "v": v.version, "h": block.version}),
        }
        for v in earlier
    ]
    return {
        "type": "static_select",
        "action_id": REVERT_ACTION,
        "placeholder": _plain("Revert to…"),
        "options": options,
        "confirm": {
            "title": _plain("Revert this block?"),
            "text": _plain(f"{block.label} gets a new version with the text of the one chosen."),
            "confirm": _plain("Revert"),
            "deny": _plain("Cancel"),
        },
    }


def parse_revert(value: str) -> tuple[str, int, int] | None:
    """(label, version to restore, version it was shown at) from a revert option's value."""
    try:
        data = json.loads(value)
        return str(data["l"]), int(data["v"]), int(data["h"])
    except (ValueError, KeyError, TypeError):
        return None


def backfill_text(channels: list[ChannelBackfill], *, lines: int = BACKFILL_LINES) -> str:
    """One line per channel (the first `lines` of them): status, messages read, last error."""
    if not channels:
        return "No channel has been backfilled yet."
    shown = []
    for channel in channels[:lines]:
        line = f"<#{channel.channel_id}> · {channel.status} · {channel.messages} messages"
        if channel.last_error:
            line += f" · last error: {_cut(channel.last_error, 120)}"
        shown.append(line)
    if len(channels) > lines:
        shown.append(f"…and {len(channels) - lines} more channels")
    return "\n".join(shown)


def channel_controls(excluded: list[str], *, admin: bool) -> Blocks:
    """Excluded channels; admins can exclude another one or include one again."""
    shown: Blocks = []
    if excluded:
        names = ", ".join(f"<#{c}>" for c in excluded)
        parts = long_text.split_text(f"Not archived: {names}", SECTION_CHARS)
        shown += [_mrkdwn(part) for part in parts[:EXCLUDED_SECTIONS]]
        if len(parts) > EXCLUDED_SECTIONS:
            shown.append(_show_button(SHOW_EXCLUDED_ACTION, f"Show all {len(excluded)} channels"))
    else:
        shown.append(_mrkdwn("Every channel Lore is in is archived."))
    if not admin:
        return shown
    shown.append(
        {
            "type": "actions",
            "block_id": "exclude",
            "elements": [
                {
                    "type": "conversations_select",
                    "action_id": EXCLUDE_ACTION,
                    "placeholder": _plain("Exclude a channel from the archive…"),
                    "filter": {"include": ["public", "private"]},
                    "confirm": {
                        "title": _plain("Exclude this channel?"),
                        "text": _plain(
                            "Its archived messages are deleted and new ones are not archived."
                        ),
                        "confirm": _plain("Exclude"),
                        "deny": _plain("Cancel"),
                    },
                }
            ],
        }
    )
    for channel_id in excluded[:EXCLUDED_SHOWN]:
        shown.append(
            {
                **_mrkdwn(f"<#{channel_id}> is not archived"),
                "accessory": {
                    "type": "button",
                    "action_id": INCLUDE_ACTION,
                    "text": _plain("Archive again"),
                    "value": channel_id,
                },
            }
        )
    return shown


def edit_modal(block: Block) -> View:
    """A modal with the block's text, in parts of at most 3000 characters (Slack's input limit);
    a block too long for a modal's 99 inputs is shown to read, with where to edit it."""
    room = MODAL_INPUTS * INPUT_CHARS
    parts, joins = split_text(block.value, min(room, max(block.char_limit, len(block.value))))
    if len(parts) > MODAL_INPUTS:
        return reading_modal(
            f"Edit {block.label}",
            f"This block is too long to edit here ({len(block.value)} characters in "
            f"{len(parts)} parts, {MODAL_INPUTS} at most): use `lore memory edit`.",
        )
    inputs: Blocks = [
        {
            "type": "input",
            "block_id": f"part_{i}",
            "optional": True,
            "label": _plain("Text" if len(parts) == 1 else f"Text (part {i + 1} of {len(parts)})"),
            "element": {
                "type": "plain_text_input",
                "action_id": TEXT_ACTION,
                "multiline": True,
                "max_length": INPUT_CHARS,
                **({"initial_value": part} if part else {}),
            },
        }
        for i, part in enumerate(parts)
    ]
    metadata = {"label": block.label, "version": block.version, "joins": joins}
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK,
        "private_metadata": json.dumps(metadata),
        "title": _plain(_cut(f"Edit {block.label}", 24)),
        "submit": _plain("Save"),
        "close": _plain("Cancel"),
        "blocks": [
            _context(
                f"Version {block.version} · at most {block.char_limit} characters. "
                "Saving stores a new version."
            ),
            *inputs,
        ],
    }


def parse_edit(view: View) -> tuple[str, int, str] | None:
    """(label, version the modal was opened at, new text) from a submitted edit modal."""
    try:
        metadata = json.loads(view.get("private_metadata") or "")
        label, version, joins = str(metadata["label"]), int(metadata["version"]), metadata["joins"]
    except (ValueError, KeyError, TypeError):
        return None
    values = (view.get("state") or {}).get("values") or {}
    parts = [
        ((values.get(f"part_{i}") or {}).get(TEXT_ACTION) or {}).get("value") or ""
        for i in range(len(joins) + 1)
    ]
    text = parts[0]
    for join, part in zip(joins, parts[1:], strict=True):
        text += str(join) + part if part else ""
    return label, version, text


def first_input(view: View) -> str:
    """The block id an error shown in the modal attaches to."""
    return next(
        (b["block_id"] for b in view.get("blocks") or [] if b.get("type") == "input"), "part_0"
    )


def split_text(value: str, limit: int) -> tuple[list[str], list[str]]:
    """Split text into parts of at most INPUT_CHARS, at line breaks where possible, and enough
    of them for `limit` characters; the parts and what joins each to the next."""
    parts: list[str] = []
    joins: list[str] = []
    rest = value
    while len(rest) > INPUT_CHARS:
        cut = rest.rfind("\n", 0, INPUT_CHARS + 1)
        if cut > 0:
            parts.append(rest[:cut])
            joins.append("\n")
            rest = rest[cut + 1 :]
        else:
            parts.append(rest[:INPUT_CHARS])
            joins.append("")
            rest = rest[INPUT_CHARS:]
    parts.append(rest)
    while len(parts) < -(-limit // INPUT_CHARS):
        parts.append("")
        joins.append("\n")
    return parts, joins


def _parts(text: str, most: int) -> list[str]:
    """text in sections, the last of `most` ending with "…" when more was cut."""
    parts = long_text.split_text(text, SECTION_CHARS)
    if len(parts) > most:
        parts = [*parts[: most - 1], parts[most - 1] + "…"]
    return parts


def _show_button(action_id: str, label: str, value: str = "all") -> dict[str, Any]:
    return {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": action_id, "text": _plain(label), "value": value}
        ],
    }


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _preview(text: str) -> str:
    line = " ".join(text.split())
    return line or "(empty)"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": _plain(text)}


def _counts(snapshot: HomeSnapshot) -> Blocks:
    fields = [
        f"*Conversations*\n{snapshot.conversations}",
        f"*Archived messages*\n{snapshot.archived}",
        f"*Helpful answers*\n{snapshot.helpful}",
        f"*Not helpful*\n{snapshot.not_helpful}",
    ]
    return [{"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]}]
