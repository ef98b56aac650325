"""The memory-edit rule: how insert, replace, rethink and forget change a block's text.

Pure functions: they take the block's current text and return the new text, or raise EditError
with a message the model (or a person) can act on. Storage and locking live in `blocks.py`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


class EditError(ValueError):
    """An edit that cannot be applied; the message says why in one sentence."""


@dataclass(frozen=True)
class Insert:
    """Add `text` as a new line, at `line` (0-based) or at the end."""

    text: str
    line: int | None = None
    operation: str = "insert"


@dataclass(frozen=True)
class Replace:
    """Replace `old`, which must occur exactly once, by `new`."""

    old: str
    new: str
    operation: str = "replace"


@dataclass(frozen=True)
class Rethink:
    """Replace the whole block by `new_value`."""

    new_value: str
    operation: str = "rethink"


@dataclass(frozen=True)
class Forget:
    """Remove the one line that contains `text`."""

    text: str
    operation: str = "forget"


Edit = Insert | Replace | Rethink | Forget


def apply_edit(value: str, edit: Edit, char_limit: int) -> str:
    """Return the block's text after `edit`, checking the block's character limit."""
    new_value = _apply(value, edit)
    if len(new_value) > char_limit:
        raise EditError(
            f"the block would hold {len(new_value)} characters, over its limit of {char_limit}; "
            "shorten or condense it (memory_rethink) first"
        )
    return new_value


def _apply(value: str, edit: Edit) -> str:
    match edit:
        case Insert(text=text, line=line):
            if not text.strip():
                raise EditError("nothing to insert: the text is empty")
            lines = value.splitlines() if value else []
            position = len(lines) if line is None else line
            if not 0 <= position <= len(lines):
                raise EditError(f"line {line} is out of range: the block has {len(lines)} lines")
            lines[position:position] = text.splitlines()
            return "\n".join(lines)
        case Replace(old=old, new=new):
            if not old:
                raise EditError("old text is empty; use memory_insert to add text")
            count = value.count(old)
            if count == 0:
                raise EditError(f"old text not found in the block: {old!r}")
            if count > 1:
                raise EditError(
                    f"old text occurs {count} times; include more context so it occurs once"
                )
            return value.replace(old, new, 1)
        case Rethink(new_value=new_value):
            return new_value
        case Forget(text=text):
            lines = value.splitlines()
            matches = [i for i, candidate in enumerate(lines) if text.lower() in candidate.lower()]
            if not matches:
                raise EditError(f"no line mentions {text!r}")
            if len(matches) > 1:
                raise EditError(f"{len(matches)} lines mention {text!r}; be more specific")
            del lines[matches[0]]
            return "\n".join(lines)
    raise EditError(f"unknown edit {edit!r}")


def short_diff(before: str, after: str, label: str) -> str:
    """A unified diff of a block's change, without headers, for tool results and logs."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=label, tofile=label, lineterm="", n=1
    )
    body = [line for line in lines if not line.startswith(("---", "+++"))]
    return "\n".join(body) or "(no change)"
