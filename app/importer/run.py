"""The import itself: read every day file, convert, write in batches, report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from app.importer.convert import skip_reason, to_archived
from app.importer.export import Problem, SlackExport
from app.importer.progress import Progress
from app.importer.writer import BatchWriter, WriteCounts
from memory.archive import Archive


@dataclass
class ImportReport:
    """What an import did."""

    team_id: str
    conversations: int = 0
    files: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)
    skipped: Counter[str] = field(default_factory=Counter)  # messages left out, by reason
    problems: list[Problem] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report for people, one fact per line."""
        c = self.counts
        lines = [
            f"read {c.total} messages for {self.team_id} from {self.conversations} "
            f"conversations ({self.files} day files): {c.new} new, {c.updated} updated, "
            f"{c.present} already present"
        ]
        if self.skipped:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
            lines.append(f"left out {sum(self.skipped.values())} messages: {reasons}")
        for problem in self.problems:
            lines.append(f"skipped (malformed) {problem}")
        return lines


async def import_export(
    export: SlackExport,
    archive: Archive,
    team_id: str,
    host: str,
    progress_stream: TextIO | None = None,
) -> ImportReport:
    """Import every conversation of export into team_id's archive; permalinks use host."""
    report = ImportReport(team_id)
    users = export.users()
    conversations = export.conversations()
    for folder in export.unlisted_folders(conversations):
        export.problems.append(Problem(folder + "/", "folder not listed in any metadata file"))
    days = [day for conversation in conversations for day in export.day_files(conversation)]
    report.conversations = len({day.conversation.id for day in days})
    report.files = len(days)
    writer = BatchWriter(archive)
    progress = Progress(len(days), f"importing into {team_id}", stream=progress_stream)
    seen = 0
    for day in days:
        for raw in export.messages(day):
            reason = skip_reason(raw)
            if reason is not None:
                report.skipped[reason] += 1
                continue
            await writer.add(to_archived(raw, day.conversation, team_id, host, users))
            seen += 1
        progress.advance(extra=f"{seen} messages")
    await writer.flush()
    progress.close()
    report.counts = writer.counts
    report.problems = list(export.problems)
    return report
