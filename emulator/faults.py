"""Fault injection: make the next call(s) of a Web API method fail."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Fault:
    """A pending failure of one method."""

    error: str
    remaining: int
    status: int
    retry_after: int | None
    after: int = 0  # calls of the method that succeed before this failure starts


class FaultInjector:
    """Queues failures per method; each call of that method consumes one."""

    def __init__(self) -> None:
        self._faults: dict[str, list[Fault]] = {}
        self._delays: dict[str, float] = {}

    def add(
        self,
        method: str,
        error: str = "internal_error",
        times: int = 1,
        *,
        status: int | None = None,
        retry_after: int = 1,
        after: int = 0,
    ) -> None:
        """Fail the next `times` calls of `method` with `error` (after `after` calls succeed,
        so `after=N-1` fails the Nth call from now).

        "ratelimited" answers HTTP 429 with `Retry-After` like Slack; other errors answer
        HTTP 200 `{"ok": false}` unless `status` says otherwise.
        """
        limited = error == "ratelimited"
        fault = Fault(
            error=error,
            remaining=times,
            status=status if status is not None else (429 if limited else 200),
            retry_after=retry_after if limited else None,
            after=after,
        )
        self._faults.setdefault(method, []).append(fault)

    def take(self, method: str) -> Fault | None:
        """The failure for this call of `method`, if one is queued."""
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        if fault.after > 0:
            fault.after -= 1
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        return fault

    def slow(self, method: str, seconds: float) -> None:
        """Answer every later call of `method` only after `seconds` (0 stops the delay)."""
        if seconds > 0:
            self._delays[method] = seconds
        else:
            self._delays.pop(method, None)

    def delay(self, method: str) -> float:
        """How long a call of `method` waits before it is answered."""
        return self._delays.get(method, 0.0)

    def clear(self) -> None:
        """Forget every queued failure and delay."""
        self._faults.clear()
        self._delays.clear()
