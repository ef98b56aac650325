"""Who may read search results: the conversations an audience is allowed to see."""

from __future__ import annotations

from dataclasses import dataclass, field

PUBLIC = "channel"  # the channel_type of public channels


@dataclass(frozen=True)
class Audience:
    """Public channels (when `public`) plus the conversations in `channels`.

    `Audience.everyone()` sees every conversation; it is for admin tools such as the CLI.
    """

    channels: frozenset[str]
    public: bool = True
    everything: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.channels, frozenset):  # a set or list would make it unhashable
            object.__setattr__(self, "channels", frozenset(self.channels))

    @classmethod
    def everyone(cls) -> Audience:
        """Every conversation of the workspace."""
        return cls(frozenset(), everything=True)

    @property
    def sees_nothing(self) -> bool:
        return not self.everything and not self.public and not self.channels

    def allows(self, channel_id: str, channel_type: str) -> bool:
        """Whether a message in this conversation may be shown to the audience."""
        return (
            self.everything
            or (self.public and channel_type == PUBLIC)
            or channel_id in self.channels
        )


def audience_check_needed(audience: Audience, channels: frozenset[str] | None) -> bool:
    """Whether a search limited to `channels` (None = all) must still apply the audience rule."""
    return not (audience.everything or (channels is not None and channels <= audience.channels))


def sees_nothing(audience: Audience, channels: frozenset[str] | None) -> bool:
    """Whether no message at all can pass both the audience and a channel filter."""
    if audience.sees_nothing or (channels is not None and not channels):
        return True
    if audience.everything or audience.public or channels is None:
        return False
    return not channels & audience.channels
