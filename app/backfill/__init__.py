"""Backfill: reading the history of channels Lore joins into the archive, resumably."""

from app.backfill.reader import ChannelReader, Page
from app.backfill.service import Backfill, BackfillLimits
from memory.backfill_state import ChannelBackfill

__all__ = ["Backfill", "BackfillLimits", "ChannelBackfill", "ChannelReader", "Page"]
