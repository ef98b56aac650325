"""Identifiers the way Slack shapes them: message timestamps, event and envelope ids."""

from __future__ import annotations

import secrets
import string
import time
import uuid

_ALNUM = string.ascii_uppercase + string.digits


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_event_id() -> str:
    """An Events API event id such as `Ev08ABCDEF12`."""
    return "Ev" + _random(_ALNUM, 10)


def new_envelope_id() -> str:
    """A Socket Mode envelope id (Slack uses UUIDs)."""
    return str(uuid.uuid4())


def new_trigger_id() -> str:
    """A trigger id such as `1764000000123.98765.abcdef0123456789`; its first part is when it
    was issued (milliseconds), so `views.open` can refuse one older than Slack's 3 seconds."""
    return f"{time.time_ns() // 1_000_000}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"


def trigger_age(trigger_id: str) -> float | None:
    """Seconds since a trigger id of `new_trigger_id` was issued; None if it is not one."""
    issued, _, rest = trigger_id.partition(".")
    if not issued.isdigit() or not rest:
        return None
    return time.time() - int(issued) / 1000


def new_view_id() -> str:
    """A view id such as `V08ABCDEF12`."""
    return "V" + _random(_ALNUM, 10)


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key of a Slack timestamp ("1700000000.000100" -> (1700000000, 100))."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds), int((fraction or "0").ljust(6, "0")[:6])


def format_ts(micros: int) -> str:
    """Format microseconds since the epoch as a Slack timestamp with 6 decimals."""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


class TsClock:
    """Hands out strictly increasing Slack timestamps derived from the wall clock."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        """A new timestamp, later than every one handed out or observed before."""
        micros = max(time.time_ns() // 1000, self._last + 1)
        self._last = micros
        return format_ts(micros)

    def observe(self, ts: str) -> None:
        """Take note of a timestamp chosen elsewhere so later ones sort after it."""
        seconds, micros = ts_key(ts)
        self._last = max(self._last, seconds * 1_000_000 + micros)
