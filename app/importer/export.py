"""Reading a Slack workspace export, as a ZIP file or an unpacked folder.

Layout: `users.json`, `channels.json` (public), `groups.json` (private), `dms.json`, `mpims.json`,
and one folder per conversation (named as the channel's `name`; DMs by id) holding
`YYYY-MM-DD.json` arrays of messages. Anything malformed becomes a `Problem` naming the file;
reading goes on with the rest.

The export is untrusted input: a conversation whose name would lead out of the export (`../x`,
`a/b`, an absolute path) and any file or folder that resolves outside it (a symlink) are refused,
and every file is read as a stream that stops at `max_file_bytes` (a ZIP member too, so a
small ZIP cannot unpack into gigabytes in memory).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
TS = re.compile(r"^\d+(\.\d+)?$")
METADATA = ("users.json", "channels.json", "groups.json", "dms.json", "mpims.json")
# metadata file -> the archive's channel_type of the conversations it lists
KINDS = {"channels.json": "channel", "groups.json": "group", "dms.json": "im", "mpims.json": "mpim"}
MAX_FILE_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1 << 20


class Node(Protocol):
    """A file or folder inside the export: a `pathlib.Path` or a `zipfile.Path`."""

    @property
    def name(self) -> str: ...

    def is_dir(self) -> bool: ...

    def is_file(self) -> bool: ...

    def iterdir(self) -> Iterator[Node]: ...

    def joinpath(self, *other: str) -> Node: ...

    def read_bytes(self) -> bytes: ...


class ExportError(Exception):
    """The path is not a Slack export at all (the message says why)."""


@dataclass(frozen=True)
class Problem:
    """Something in the export that was skipped, named by its path inside the export."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    is_bot: bool


@dataclass(frozen=True)
class Conversation:
    """One channel, private channel, DM or group DM, and the folder holding its days."""

    id: str
    name: str
    channel_type: str  # "channel" | "group" | "im" | "mpim"
    folder: str  # folder name inside the export


@dataclass(frozen=True)
class DayFile:
    conversation: Conversation
    path: str  # "general/2024-03-04.json", for reports
    node: Node


@dataclass
class SlackExport:
    """An opened export; `problems` collects what could not be read."""

    root: Node
    problems: list[Problem] = field(default_factory=list)
    max_file_bytes: int = MAX_FILE_BYTES

    def _json(self, node: Node, path: str) -> Any:
        if not self._inside(node, path):
            return None
        try:
            raw = self._read_capped(node)
        except OSError as error:
            self.problems.append(Problem(path, f"cannot be read ({error})"))
            return None
        if raw is None:
            self.problems.append(
                Problem(
                    path,
                    f"larger than {self.max_file_bytes} bytes "
                    "(LORE_IMPORT_MAX_DAY_FILE_BYTES), not read",
                )
            )
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            self.problems.append(Problem(path, f"invalid JSON ({error})"))
            return None

    def _read_capped(self, node: Node) -> bytes | None:
        """The file's bytes, read chunk by chunk; None as soon as it passes the cap."""
        chunks: list[bytes] = []
        size = 0
        with _open_binary(node) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
                if size > self.max_file_bytes:
                    return None
                chunks.append(chunk)
        return b"".join(chunks)

    def _inside(self, node: Node, path: str) -> bool:
        """Whether `node` lies inside the export (a folder's file may be a symlink to
        anywhere); if not, a problem names it."""
        if not isinstance(node, Path) or not isinstance(self.root, Path):
            return True  # a ZIP member is read from the ZIP file only
        if node.resolve().is_relative_to(self.root.resolve()):
            return True
        self.problems.append(Problem(path, "leads outside the export, not read"))
        return False

    def _list_of_objects(self, name: str) -> list[dict[str, Any]]:
        """A metadata file as a list of objects; [] (plus a problem) if missing shapes."""
        node = self.root.joinpath(name)
        if not node.is_file():
            return []
        data = self._json(node, name)
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            self.problems.append(Problem(name, "expected a JSON array of objects"))
            return []
        return data

    def users(self) -> dict[str, User]:
        """The workspace's users by id (from users.json)."""
        users: dict[str, User] = {}
        for item in self._list_of_objects("users.json"):
            if isinstance(item.get("id"), str):
                name = str(item.get("real_name") or item.get("name") or item["id"])
                users[item["id"]] = User(item["id"], name, bool(item.get("is_bot")))
        return users

    def conversations(self) -> list[Conversation]:
        """Every conversation listed in the metadata files, with its folder name."""
        found: list[Conversation] = []
        for metadata, kind in KINDS.items():
            for item in self._list_of_objects(metadata):
                conversation = _conversation(item, kind)
                if conversation is None:
                    self.problems.append(Problem(metadata, f"entry without an id: {item!r:.80}"))
                elif unsafe := _unsafe_folder(conversation):
                    self.problems.append(
                        Problem(
                            metadata,
                            f"conversation {conversation.id!r} has the name {unsafe!r}, which "
                            "leads outside the export; its messages were not imported",
                        )
                    )
                else:
                    found.append(self._with_folder(conversation))
        return found

    def _with_folder(self, conversation: Conversation) -> Conversation:
        """Slack names folders by name (channels, group DMs) or by id (DMs): try both."""
        for folder in (conversation.name, conversation.id):
            if folder and self._is_own_folder(folder):
                return Conversation(
                    conversation.id, conversation.name, conversation.channel_type, folder
                )
        return conversation

    def unlisted_folders(self, conversations: list[Conversation]) -> list[str]:
        """Folders that look like conversations but no metadata file lists."""
        listed = {c.folder for c in conversations}
        return sorted(
            node.name
            for node in self.root.iterdir()
            if node.is_dir() and node.name not in listed and not node.name.startswith(("_", "."))
        )

    def _is_own_folder(self, name: str) -> bool:
        """A folder of that name directly in the export, not leading out of it."""
        folder = self.root.joinpath(name)
        return folder.is_dir() and self._inside(folder, name + "/")

    def day_files(self, conversation: Conversation) -> list[DayFile]:
        """The conversation's `YYYY-MM-DD.json` files, oldest first."""
        if _unsafe_folder(conversation):
            return []
        folder = self.root.joinpath(conversation.folder)
        if not folder.is_dir() or not self._inside(folder, conversation.folder + "/"):
            return []
        names = sorted(n.name for n in folder.iterdir() if DAY_FILE.match(n.name) and n.is_file())
        return [
            DayFile(conversation, f"{conversation.folder}/{name}", folder.joinpath(name))
            for name in names
        ]

    def messages(self, day: DayFile) -> list[dict[str, Any]]:
        """The day's messages; a file that is not a JSON array is a problem and yields []."""
        data = self._json(day.node, day.path)
        if data is None:
            return []
        if not isinstance(data, list):
            self.problems.append(Problem(day.path, "expected a JSON array of messages"))
            return []
        good = [m for m in data if isinstance(m, dict) and _valid_ts(m.get("ts"))]
        if len(good) < len(data):
            bad = len(data) - len(good)
            self.problems.append(Problem(day.path, f"{bad} entries without a valid ts skipped"))
        return good


def _open_binary(node: Node) -> IO[bytes]:
    """A stream of the file's bytes (a ZIP member is decompressed as it is read)."""
    if isinstance(node, zipfile.Path):
        return node.open("rb")
    if isinstance(node, Path):
        return node.open("rb")
    raise TypeError(f"not a file of an export: {node!r}")


def _unsafe_name(name: str) -> bool:
    """A name that is not one plain path component inside the export."""
    return (
        name in ("", ".", "..")
        or any(sep in name for sep in ("/", "\\", "\0"))
        or Path(name).is_absolute()
    )


def _unsafe_folder(conversation: Conversation) -> str | None:
    """The conversation's name or id if either could lead outside the export, else None."""
    for name in (conversation.name, conversation.id, conversation.folder):
        if _unsafe_name(name):
            return name
    return None


def _valid_ts(ts: object) -> bool:
    return isinstance(ts, str) and TS.match(ts) is not None


def _conversation(item: dict[str, Any], kind: str) -> Conversation | None:
    conversation_id = item.get("id")
    if not isinstance(conversation_id, str) or not conversation_id:
        return None
    name = item.get("name")
    name = name if isinstance(name, str) and name else conversation_id
    return Conversation(conversation_id, name, kind, name)


def _export_root(top: Node) -> Node:
    """The folder holding the metadata files: top, or its only subfolder (a wrapped ZIP)."""
    if any(top.joinpath(name).is_file() for name in METADATA):
        return top
    folders = [node for node in top.iterdir() if node.is_dir()]
    if len(folders) == 1 and any(folders[0].joinpath(name).is_file() for name in METADATA):
        return folders[0]
    raise ExportError(f"no {' / '.join(METADATA)} found: not a Slack workspace export")


@contextmanager
def open_export(path: Path, max_file_bytes: int = MAX_FILE_BYTES) -> Iterator[SlackExport]:
    """Open a ZIP or a folder export; raises ExportError if it is neither. No file bigger than
    `max_file_bytes` is read."""
    if path.is_dir():
        yield SlackExport(_export_root(path), max_file_bytes=max_file_bytes)
    elif path.is_file():
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise ExportError(f"{path} is not a ZIP file or folder: {error}") from None
        with archive:
            yield SlackExport(_export_root(zipfile.Path(archive)), max_file_bytes=max_file_bytes)
    else:
        raise ExportError(f"{path} does not exist")
