"""What an import did: counts, rejected rows (row, column, reason) and rows sent for review."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from crm import audit
from crm.audit import Actor
from crm.csv_input import RowError

EXIT_OK = 0
EXIT_SOME_REJECTED = 3


class DryRun(Exception):
    """Raised inside an import's transaction to roll a dry run back."""


@dataclass
class ImportReport:
    kind: str
    source: str
    file_format: str = ""
    dry_run: bool = False
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    deactivations_read: int = 0
    filtered_out: int = 0
    sent_to_review: int = 0
    practices_created: int = 0
    practices_updated: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)

    def reject(self, row: int, column: str, reason: str) -> None:
        self.rejected.append(RowError(row, column, reason))

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_REJECTED if self.rejected else EXIT_OK

    def summary_lines(self, max_errors: int = 20) -> list[str]:
        lines = [
            f"{self.kind} import from {self.source}" + (f" ({self.file_format})" if self.file_format else "")
            + (" — dry run, nothing written" if self.dry_run else ""),
            f"  rows read:        {self.rows_read}",
            f"  created:          {self.created}",
            f"  updated:          {self.updated}",
        ]
        if self.deactivations_read:
            lines.append(
                f"  deactivated:      {self.deactivated} (of {self.deactivations_read} deactivated NPIs in the "
                "file; the others were not on the roster)"
            )
        if self.practices_created or self.practices_updated:
            lines.append(
                f"  practices:        {self.practices_created} created, {self.practices_updated} updated"
            )
        if self.filtered_out:
            lines.append(f"  filtered out:     {self.filtered_out}")
        if self.sent_to_review:
            lines.append(f"  sent to review:   {self.sent_to_review} (email already used by another NPI)")
        lines.append(f"  rejected:         {len(self.rejected)}")
        if self.ignored_columns:
            lines.append(f"  ignored columns:  {', '.join(self.ignored_columns)}")
        for error in self.rejected[:max_errors]:
            where = f"row {error.row}" + (f", column {error.column}" if error.column else "")
            lines.append(f"  ! {where}: {error.reason}")
        if len(self.rejected) > max_errors:
            lines.append(f"  … and {len(self.rejected) - max_errors} more rejected rows")
        return lines

    def write_errors(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "column", "reason"])
            for error in self.rejected:
                writer.writerow([error.row, error.column, error.reason])


async def record_import(report: ImportReport, actor: Actor) -> None:
    """The audit row for an applied import (dry runs change nothing and are not recorded)."""
    if report.dry_run:
        return
    await audit.record(
        f"import.{report.kind.lower()}", actor=actor, object_type="import", object_id=report.source,
        after={"rows": report.rows_read, "created": report.created, "updated": report.updated,
               "rejected": len(report.rejected), "review": report.sent_to_review},
    )
