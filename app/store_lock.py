"""One process at a time on an embedded Chroma directory (DESIGN: two processes never open one).

`serve`, `import-export` and `search` take an exclusive `flock` on `$LORE_DATA_DIR/chroma.lock`
while they use the embedded store; the file names the holder. The lock dies with its process, so
a crash leaves nothing stale. With CHROMA_URL (a Chroma server) no lock is taken.
`unshared_vectors` names the mix that looks scaled out but keeps vectors in one process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.settings import Settings

LOCK_FILE = "chroma.lock"


class StoreBusy(Exception):
    """Another process holds the embedded store; the message says which and what to do."""


@contextmanager
def embedded_store_lock(settings: Settings, command: str) -> Iterator[None]:
    """Hold the data dir's store lock for command; raises StoreBusy if another process has it."""
    if settings.chroma_url:
        yield
        return
    settings.lore_data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.lore_data_dir / LOCK_FILE
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(_busy_message(path, command)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {command}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _busy_message(path: Path, command: str) -> str:
    holder = path.read_text(encoding="utf-8").split()
    who = f"`{' '.join(holder[1:]) or 'lore'}` (pid {holder[0]})" if holder else "another process"
    return (
        f"{command}: the embedded store in {path.parent} is in use by {who}. Two processes must "
        "never open one Chroma directory: stop it first, or run Lore against a Chroma server "
        "(CHROMA_URL)."
    )


def unshared_vectors(settings: Settings) -> str | None:
    """A warning when PostgreSQL or Redis is shared but the vectors stay in this process."""
    if settings.chroma_url:
        return None
    shared = [
        name
        for name, value in (
            ("DATABASE_URL", settings.database.startswith("postgresql")),
            ("REDIS_URL", settings.redis_url),
        )
        if value
    ]
    if not shared:
        return None
    verb = "points" if len(shared) == 1 else "point"
    return (
        f"{' and '.join(shared)} {verb} at shared stores but CHROMA_URL is unset: this process "
        f"keeps the archive's vectors in its own embedded Chroma under LORE_DATA_DIR "
        f"({settings.lore_data_dir}), which other Lore processes cannot see. To run more than "
        "one process, set CHROMA_URL (README: Scaling out)."
    )
