"""A small progress bar on stderr: redrawn in place on a terminal, a line now and then if not."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`label [#####.....] done/total unit, extra`; call `advance`, then `close`."""

    def __init__(
        self,
        total: int,
        label: str,
        unit: str = "files",
        stream: TextIO | None = None,
        width: int = 30,
    ) -> None:
        self.total = max(0, total)
        self.done = 0
        self.extra = ""
        self._label = label
        self._unit = unit
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._tty = self._stream.isatty()
        self._interval = 0.1 if self._tty else 10.0
        self._shown = 0.0

    def advance(self, step: int = 1, extra: str | None = None) -> None:
        """Count step more units done and redraw if it is time."""
        self.done += step
        if extra is not None:
            self.extra = extra
        now = time.monotonic()
        if now - self._shown >= self._interval:
            self._shown = now
            self._draw()

    def line(self) -> str:
        """The bar as text."""
        filled = self._width * self.done // self.total if self.total else self._width
        bar = "#" * filled + "." * (self._width - filled)
        extra = f", {self.extra}" if self.extra else ""
        return f"{self._label} [{bar}] {self.done}/{self.total} {self._unit}{extra}"

    def _draw(self) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K" + self.line())
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw()
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()
