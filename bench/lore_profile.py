"""Lore's `serve` under a CPU profiler of every thread: what bench/turn_overhead.py `--profile`
runs instead of `python -m app serve`.

A sampler thread reads each Python thread's stack (`sys._current_frames`) every `INTERVAL`
seconds and charges the CPU time that thread used since the last sample (its own CPU clock) to
that stack; threads Python does not know (onnxruntime's or tokenizers' pools) are counted from
/proc. It samples only between SIGUSR1 (start) and SIGUSR2 (stop and write the report), so the
benchmark profiles its measured rounds alone. The report (JSON) holds CPU seconds per thread
(named as Python names them, digits folded), per function (self and inclusive, per thread) and
the folded stacks (`file:function;...` CPU milliseconds, for a flame graph). The event loop's
thread is also traced by cProfile (deterministic, so its own overhead inflates Python-heavy
code; read it for shares, not for milliseconds): its 40 most costly functions by own time go
into the report, the whole profile beside it (`.pstats`, for `python -m pstats`). SQL
statements run meanwhile are counted by text. With `LORE_PROFILE_THREADS_ONLY=1` in its
environment it neither samples nor traces: CPU per thread and SQL statements only, without the
profilers' own cost (which inflates the event loop's CPU several times).

    python bench/lore_profile.py OUT.json [app arguments, e.g. serve]
    python bench/lore_profile.py OUT.json bench/turn_floor.py  # a script instead of Lore
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import re
import runpy
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

from sqlalchemy import event
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INTERVAL = 0.004
THREADS_ONLY = os.environ.get("LORE_PROFILE_THREADS_ONLY") == "1"
DEPTH = 60
TICKS = os.sysconf("SC_CLK_TCK")
_DIGITS = re.compile(r"\d+")


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _where(frame: FrameType) -> str:
    return f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}"


def _stack(frame: FrameType | None) -> tuple[str, ...]:
    names: list[str] = []
    while frame is not None and len(names) < DEPTH:
        names.append(_where(frame))
        frame = frame.f_back
    return tuple(reversed(names))


def _task_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process, by native id."""
    found: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            continue
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


class Sampler:
    """Charges each thread's CPU time to the stack it is in, sample by sample."""

    def __init__(self, out: Path) -> None:
        self._out = out
        self._running = threading.Event()
        self._stacks: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self._clocks: dict[int, int] = {}
        self._last: dict[int, float] = {}
        self._tasks_before: dict[int, float] = {}
        self._samples = 0
        self._started = 0.0
        self._thread: threading.Thread | None = None
        self._main = cProfile.Profile(time.thread_time)  # CPU time, not time waiting
        self._statements: Counter[str] = Counter()

    def start(self, *_: object) -> None:
        if self._running.is_set():
            return
        self._tasks_before = _task_cpu()
        self._started = time.monotonic()
        self._running.set()
        event.listen(Engine, "before_cursor_execute", self._count_statement)
        if THREADS_ONLY:
            return
        self._thread = threading.Thread(target=self._run, name="profiler", daemon=True)
        self._thread.start()
        self._main.enable()  # signal handlers run in the main thread: the event loop's

    def stop(self, *_: object) -> None:
        if not self._running.is_set():
            return
        self._main.disable()
        event.remove(Engine, "before_cursor_execute", self._count_statement)
        self._running.clear()
        if self._thread is not None:
            self._thread.join()
        self._write()
        if not THREADS_ONLY:
            self._main.dump_stats(self._out.with_suffix(".pstats"))

    def _count_statement(self, *args: object) -> None:
        statement = " ".join(str(args[2]).split())
        self._statements[statement[:160]] += 1

    def _cpu(self, ident: int) -> float | None:
        clock = self._clocks.get(ident)
        try:
            if clock is None:
                clock = self._clocks[ident] = time.pthread_getcpuclockid(ident)
            return time.clock_gettime(clock)
        except (OSError, ValueError):
            self._clocks.pop(ident, None)
            return None

    def _run(self) -> None:
        me = threading.get_ident()
        while self._running.is_set():
            time.sleep(INTERVAL)
            names = {t.ident: t.name for t in threading.enumerate()}
            frames = sys._current_frames()
            for ident, frame in frames.items():
                if ident == me:
                    continue
                now = self._cpu(ident)
                if now is None:
                    continue
                used = now - self._last.get(ident, now)
                self._last[ident] = now
                if used > 0:
                    name = _DIGITS.sub("N", names.get(ident, "?"))
                    self._stacks[(name, _stack(frame))] += used
            self._samples += 1

    def _write(self) -> None:
        seconds = time.monotonic() - self._started
        tasks = _task_cpu()
        python = {t.native_id: _DIGITS.sub("N", t.name) for t in threading.enumerate()}
        per_thread: Counter[str] = Counter()
        for tid, cpu in tasks.items():
            used = cpu - self._tasks_before.get(tid, 0.0)
            if used > 0:
                per_thread[python.get(tid, "native (not a Python thread)")] += used
        inclusive: dict[str, Counter[str]] = {}
        own: dict[str, Counter[str]] = {}
        for (thread, stack), used in self._stacks.items():
            for where in set(stack):
                inclusive.setdefault(thread, Counter())[where] += used
            if stack:
                own.setdefault(thread, Counter())[stack[-1]] += used
        traced = {} if THREADS_ONLY else pstats.Stats(self._main).stats  # type: ignore[attr-defined]
        rows = sorted(traced.items(), key=lambda item: -item[1][2])
        event_loop = {
            f"{_short(file)}:{line}:{name}": {
                "calls": calls,
                "own_s": round(own, 3),
                "cumulative_s": round(cumulative, 3),
            }
            for (file, line, name), (_, calls, own, cumulative, _) in rows[:40]
        }
        report = {
            "seconds": round(seconds, 2),
            "samples": self._samples,
            "cpu_s_per_thread": {k: round(v, 3) for k, v in per_thread.most_common()},
            "sampled_cpu_s_per_thread": {
                thread: round(sum(c for (t, _), c in self._stacks.items() if t == thread), 3)
                for thread in inclusive
            },
            "inclusive_s": {
                thread: {k: round(v, 3) for k, v in counts.most_common(150)}
                for thread, counts in inclusive.items()
            },
            "event_loop_cprofile": event_loop,
            "sql_statements": dict(self._statements.most_common()),
            "self_s": {
                thread: {k: round(v, 3) for k, v in counts.most_common(80)}
                for thread, counts in own.items()
            },
        }
        self._out.write_text(json.dumps(report, indent=1) + "\n")
        folded = self._out.with_suffix(".folded")
        folded.write_text(
            "".join(
                f"{thread};{';'.join(stack)} {round(used * 1000)}\n"
                for (thread, stack), used in self._stacks.most_common()
                if round(used * 1000)
            )
        )


def main() -> int:
    out = Path(sys.argv[1])
    sampler = Sampler(out)
    signal.signal(signal.SIGUSR1, sampler.start)
    signal.signal(signal.SIGUSR2, sampler.stop)
    if sys.argv[2].endswith(".py"):  # a script instead of Lore, e.g. bench/turn_floor.py
        runpy.run_path(sys.argv[2], run_name="__main__")
        return 0
    from app.cli import main as lore

    return lore(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
