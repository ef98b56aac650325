"""Who may read search results: public channels plus the conversations named."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Audience:
    """The readers of a search's results.

    `public`: public channels are visible; `channels`: further (private) conversations that
    are visible; `everything`: no restriction (admin tools only).
    """

    channels: frozenset[str] = frozenset()
    public: bool = True
    everything: bool = False

    @classmethod
    def everyone(cls) -> Audience:
        """No restriction: for workspace admins' own tools (the CLI), never for Slack answers."""
        return cls(everything=True)
