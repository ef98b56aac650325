"""What a process and its descendants use, read from /proc (Linux; no psutil needed)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The direct children of a process (every thread's list), [] if it is gone."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """The process and all its descendants, the process first."""
    out = [pid]
    for child in children(pid):
        out.extend(tree(child))
    return out


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) in KiB, 0 if the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kib(pid: int) -> tuple[int, int]:
    """(RSS of the process, sum of the RSS of it and its descendants) in KiB.

    The sum counts pages shared between them (e.g. libraries) once per process."""
    return rss_kib(pid), sum(rss_kib(p) for p in tree(pid))


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU time of the process (and its live descendants), in seconds."""
    total = 0
    for p in tree(pid) if descendants else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / TICKS
