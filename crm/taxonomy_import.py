"""Loading the NUCC Health Care Provider Taxonomy code set (current and older file layouts).

Current files: Code, Grouping, Classification, Specialization, Definition, Notes, Display Name,
Section (UTF-8). Older files call Grouping "Type", have no Display Name or Section, and are
Windows-1252 encoded. Re-running updates codes in place.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from crm.csv_input import InputRefused, normalise_header, open_csv
from crm.db import atomic
from crm.import_report import DryRun, ImportReport
from crm.referring_roles import derive_role
from crm.tables import Taxonomy

CODE = re.compile(r"[0-9A-Z]{9}X")
BATCH = 500


def _display_name(classification: str, specialization: str) -> str:
    if specialization:
        return f"{specialization} ({classification})" if classification else specialization
    return classification


async def import_taxonomy(path: str | Path, *, dry_run: bool = False, display_name: str | None = None) -> ImportReport:
    source = open_csv(path, display_name=display_name)
    report = ImportReport(kind="Taxonomy", source=source.name, dry_run=dry_run)
    try:
        columns = {normalise_header(name): index for index, name in enumerate(source.header)}
        grouping_column = columns.get("grouping", columns.get("type"))
        if "code" not in columns or "classification" not in columns or grouping_column is None:
            raise InputRefused(
                f"{source.name}: this is not a NUCC taxonomy file (expected the columns Code, "
                "Grouping or Type, Classification and Specialization)"
            )
        report.file_format = "NUCC, current layout" if "display name" in columns else "NUCC, older layout"
        known = {existing["code"] for existing in await Taxonomy.select(Taxonomy.code).run()}

        def cell(values: list[str], key: str | int | None) -> str:
            index = columns.get(key) if isinstance(key, str) else key
            return values[index].strip() if index is not None and index < len(values) else ""

        now = datetime.now(timezone.utc)
        try:
            async with atomic():
                batch: list[Taxonomy] = []
                seen: dict[str, int] = {}
                for row_number, values in source.rows():
                    report.rows_read += 1
                    code = cell(values, "code").upper()
                    if not CODE.fullmatch(code):
                        report.reject(row_number, "Code", f"{code!r} is not a taxonomy code (10 characters ending in X)")
                        continue
                    if code in seen:
                        report.reject(row_number, "Code", f"{code} appears twice (also on row {seen[code]})")
                        continue
                    seen[code] = row_number
                    grouping = cell(values, grouping_column)
                    classification = cell(values, "classification")
                    specialization = cell(values, "specialization")
                    too_long = next(
                        (label for label, value, limit in (
                            ("Grouping", grouping, 200), ("Classification", classification, 200),
                            ("Specialization", specialization, 200), ("Display Name", cell(values, "display name"), 300),
                            ("Section", cell(values, "section"), 30)) if len(value) > limit),
                        None,
                    )
                    if too_long:
                        report.reject(row_number, too_long, "the value is longer than its column holds")
                        continue
                    batch.append(
                        Taxonomy(
                            code=code,
                            grouping=grouping,
                            classification=classification,
                            specialization=specialization,
                            display_name=cell(values, "display name") or _display_name(classification, specialization),
                            section=cell(values, "section"),
                            referring_role=derive_role(code, grouping, classification).value,
                            updated_at=now,
                        )
                    )
                    if code in known:
                        report.updated += 1
                    else:
                        report.created += 1
                    if len(batch) >= BATCH:
                        await _upsert(batch)
                        batch = []
                if batch:
                    await _upsert(batch)
                report.rejected.extend(source.errors)
                if report.rows_read == 0:
                    raise InputRefused(f"{source.name}: the file has a header but no rows")
                if dry_run:
                    raise DryRun()
        except DryRun:
            pass
    finally:
        source.close()
    return report


async def _upsert(batch: list[Taxonomy]) -> None:
    await Taxonomy.insert(*batch).on_conflict(
        target=Taxonomy.code,
        action="DO UPDATE",
        values=[
            Taxonomy.grouping,
            Taxonomy.classification,
            Taxonomy.specialization,
            Taxonomy.display_name,
            Taxonomy.section,
            Taxonomy.referring_role,
            Taxonomy.updated_at,
        ],
    ).run()
