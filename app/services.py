"""The services the Slack edge (`handlers`) calls; built by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from app.agent.turn import Agent
from app.app_home import AppHome
from app.archive_queue import ArchiveQueue
from app.askers import Askers
from app.backfill import Backfill
from app.background import TaskPool
from app.feedback import ReplyFeedback
from app.ingest import Ingest
from app.intake import Intake
from app.metrics import LoreMetrics
from app.quiet_queue import QuietQueue
from app.recall import Recall
from app.reflection import Reflection
from app.thread_summaries import Summariser
from app.turns import TurnQueue
from app.workspace_data import WorkspaceData
from memory.dedupe import OnceKeys


@dataclass(frozen=True)
class Services:
    agent: Agent
    turns: TurnQueue
    ingest: Ingest
    recall: Recall
    background: TaskPool
    archiving: ArchiveQueue
    once: OnceKeys
    feedback: ReplyFeedback
    workspace_data: WorkspaceData
    backfill: Backfill
    app_home: AppHome
    askers: Askers
    metrics: LoreMetrics
    intake: Intake
    deferred: QuietQueue
    """Deliveries acknowledged before Bolt handles them (`handlers.early_ack`)."""
    summariser: Summariser | None = None
    reflection: Reflection | None = None
    """None in retrieval-only mode, or with no reflection budget."""
