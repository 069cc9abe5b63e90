"""Loading the NUCC taxonomy: current and older layouts, re-runs, and refusals."""

from __future__ import annotations

import pytest

from crm.csv_input import InputRefused
from crm.tables import Taxonomy
from crm.taxonomy_import import import_taxonomy
from tests.crm.importing import NUCC_HEADER, NUCC_ROWS, write_csv, write_nucc


async def test_current_layout_loads_with_referring_roles(db, tmp_path):
    report = await import_taxonomy(write_nucc(tmp_path / "nucc.csv"))
    assert (report.created, report.updated, report.rejected) == (len(NUCC_ROWS), 0, [])
    assert report.file_format == "NUCC, current layout"
    onc = await Taxonomy.objects().get(Taxonomy.code == "207RX0202X").run()
    assert (onc.display_name, onc.referring_role, onc.section) == (
        "Medical Oncology Physician", "oncology_peer", "Individual")


async def test_rerunning_updates_in_place(db, tmp_path):
    await import_taxonomy(write_nucc(tmp_path / "nucc.csv"))
    changed = [row[:] for row in NUCC_ROWS]
    changed[0][6] = "Family Medicine Physician (renamed)"
    report = await import_taxonomy(write_csv(tmp_path / "nucc2.csv", NUCC_HEADER, changed))
    assert (report.created, report.updated) == (0, len(NUCC_ROWS))
    assert await Taxonomy.count().run() == len(NUCC_ROWS)
    family = await Taxonomy.objects().get(Taxonomy.code == "207Q00000X").run()
    assert family.display_name == "Family Medicine Physician (renamed)"


async def test_older_windows_1252_layout_with_type_column(db, tmp_path):
    header = ["Code", "Type", "Classification", "Specialization", "Definition", "Notes"]
    rows = [
        ["207RX0202X", "Allopathic & Osteopathic Physicians", "Internal Medicine", "Medical Oncology",
         "Diagnosis and treatment of cancer \u2013 the physician\u2019s role.", ""],
        ["2085R0202X", "Allopathic & Osteopathic Physicians", "Radiology", "Diagnostic Radiology", "", ""],
    ]
    path = write_csv(tmp_path / "old.csv", header, rows, encoding="cp1252")
    report = await import_taxonomy(path)
    assert report.file_format == "NUCC, older layout" and report.created == 2
    onc = await Taxonomy.objects().get(Taxonomy.code == "207RX0202X").run()
    assert onc.display_name == "Medical Oncology (Internal Medicine)"
    assert onc.referring_role == "oncology_peer"


async def test_bad_codes_are_rejected_by_row_and_the_rest_applied(db, tmp_path):
    rows = [NUCC_ROWS[0], ["NOT-A-CODE", "x", "y", "", "", "", "", ""], NUCC_ROWS[1], NUCC_ROWS[0]]
    report = await import_taxonomy(write_csv(tmp_path / "bad.csv", NUCC_HEADER, rows))
    assert [(e.row, e.column) for e in report.rejected] == [(3, "Code"), (5, "Code")]
    assert "appears twice (also on row 2)" in report.rejected[1].reason
    assert report.exit_code == 3
    assert await Taxonomy.count().run() == 2


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"NPI,First Name\r\n1234567893,Ann\r\n", "not a NUCC taxonomy file"),
        (b"PK\x03\x04\x14\x00binary", "Excel workbook"),
        (",".join(NUCC_HEADER).encode() + b"\r\n", "no rows"),
    ],
)
async def test_files_refused_as_a_whole_write_nothing(db, tmp_path, content, message):
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(InputRefused, match=message):
        await import_taxonomy(path)
    assert await Taxonomy.count().run() == 0


async def test_dry_run_writes_nothing(db, tmp_path):
    report = await import_taxonomy(write_nucc(tmp_path / "nucc.csv"), dry_run=True)
    assert report.created == len(NUCC_ROWS) and report.dry_run
    assert await Taxonomy.count().run() == 0
