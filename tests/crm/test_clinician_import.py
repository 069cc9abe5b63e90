"""Importing clinicians: the NPPES bulk format and plain CSVs, re-runs, matching and bad input."""

from __future__ import annotations

import pytest

from crm.clinician_import import Filters, import_clinicians
from crm.csv_input import InputRefused
from crm.tables import Clinician, ClinicianTag, ImportReview, Practice
from crm.taxonomy_import import import_taxonomy
from liaison.synthetic_nppes import nppes_header
from tests.crm.importing import deactivated, individual, npi, organization, write_csv, write_nppes, write_nucc

H = nppes_header(330)


@pytest.fixture
async def taxonomy(db, tmp_path):
    await import_taxonomy(write_nucc(tmp_path / "nucc.csv"))


async def clinician(number: int) -> Clinician:
    return await Clinician.objects().get(Clinician.npi == npi(number)).run()


# ------------------------------------------------------------------------------------------------
# NPPES


async def test_nppes_individuals_and_organisations(taxonomy, tmp_path):
    rows = [
        organization(H, 1),
        individual(H, 2, last="O'DONNELL", first="MARY", codes=("207R00000X", "208M00000X", "207Q00000X"),
                   primary_slot=3),
        individual(H, 3, last="VAN HOUTEN-SAUTER", first="JEAN-PAUL", codes=("2085R0202X",), postal="02134",
                   street="9 ELM ST", credential="MD, PHD"),
    ]
    report = await import_clinicians(write_nppes(tmp_path / "npidata_pfile.csv", rows))
    assert (report.created, report.practices_created, report.rejected) == (2, 1, [])
    assert report.file_format == "NPPES, 330 columns"

    mary = await clinician(2)
    # The primary taxonomy is the slot whose switch is Y, here slot 3.
    assert (mary.first_name, mary.last_name, mary.credential) == ("Mary", "O'Donnell", "M.D.")
    assert (mary.taxonomy_code, mary.role) == ("207Q00000X", "primary_care")
    assert (mary.city, mary.state, mary.postal_code) == ("Richmond", "VA", "23219-1234")
    practice = await Practice.objects().get(Practice.organization_npi == npi(1)).run()
    assert practice.name == "James River Family Practice, Pllc"
    assert mary.practice == practice.id  # same practice location

    jean = await clinician(3)
    assert (jean.first_name, jean.last_name, jean.role) == ("Jean-Paul", "Van Houten-Sauter", "radiology")
    assert jean.postal_code == "02134" and jean.practice is None


async def test_reimporting_updates_in_place_and_never_duplicates(taxonomy, tmp_path):
    rows = [organization(H, 1), individual(H, 2), individual(H, 3, last="SMITH")]
    await import_clinicians(write_nppes(tmp_path / "a.csv", rows))
    rows[2] = individual(H, 3, last="SMITH-JONES", codes=("208600000X",))
    report = await import_clinicians(write_nppes(tmp_path / "b.csv", rows))
    assert (report.created, report.updated, report.practices_updated) == (0, 2, 1)
    assert await Clinician.count().run() == 2 and await Practice.count().run() == 1
    smith = await clinician(3)
    assert (smith.last_name, smith.role) == ("Smith-Jones", "surgeon")


async def test_deactivated_npis_are_marked_inactive(taxonomy, tmp_path):
    await import_clinicians(write_nppes(tmp_path / "a.csv", [individual(H, 2), individual(H, 3)]))
    report = await import_clinicians(write_nppes(tmp_path / "b.csv", [deactivated(H, 2)]))
    assert report.deactivated == 1
    gone = await clinician(2)
    assert not gone.active and str(gone.deactivated_on) == "2024-03-15"
    assert (await clinician(3)).active


async def test_the_older_329_column_header_works(taxonomy, tmp_path):
    old = nppes_header(329)
    report = await import_clinicians(write_nppes(tmp_path / "old.csv", [individual(old, 2)], columns=329))
    assert report.created == 1 and report.file_format == "NPPES, 329 columns"


async def test_state_and_taxonomy_filters(taxonomy, tmp_path):
    rows = [
        individual(H, 2, state="VA", codes=("207Q00000X",)),
        individual(H, 3, state="MD", codes=("207Q00000X",)),
        individual(H, 4, state="VA", codes=("207RX0202X",)),
        individual(H, 5, state="VA", codes=("2085R0202X", "207Q00000X"), primary_slot=2),
    ]
    report = await import_clinicians(
        write_nppes(tmp_path / "f.csv", rows),
        filters=Filters(states=frozenset({"VA"}), taxonomy_prefixes=("207Q",)),
    )
    assert (report.created, report.filtered_out) == (2, 2)
    assert {c["npi"] for c in await Clinician.select(Clinician.npi).run()} == {npi(2), npi(5)}


async def test_row_errors_name_row_and_column_and_the_rest_is_applied(taxonomy, tmp_path):
    bad_check = individual(H, 3)
    bad_check[0] = npi(3)[:9] + str((int(npi(3)[9]) + 1) % 10)
    unknown = individual(H, 4, codes=("999999999X",))
    rows = [individual(H, 2), bad_check, unknown, individual(H, 2, last="AGAIN")]
    path = write_nppes(tmp_path / "e.csv", rows)
    with path.open("ab") as handle:
        handle.write(b'"' + npi(9).encode() + b'","1","","","trunc')  # truncated last line
    report = await import_clinicians(path)
    found = [(e.row, e.column, e.reason) for e in report.rejected]
    assert found[0][:2] == (3, "NPI") and "wrong check digit" in found[0][2]
    assert found[1][:2] == (4, "Healthcare Provider Taxonomy Code") and "999999999X" in found[1][2]
    assert found[2][:2] == (5, "NPI") and "more than once" in found[2][2]
    assert found[3][0] == 6 and "truncated" in found[3][2]
    assert report.created == 1 and report.exit_code == 3
    assert (await clinician(2)).last_name == "O'Donnell"


async def test_nppes_needs_the_taxonomy_first(db, tmp_path):
    with pytest.raises(InputRefused, match="liaison import taxonomy"):
        await import_clinicians(write_nppes(tmp_path / "n.csv", [individual(H, 2)]))


# ------------------------------------------------------------------------------------------------
# Plain CSV


async def test_plain_csv_with_aliases_semicolons_and_a_bom(taxonomy, tmp_path):
    header = ["NPI", "first_name", "Last Name", "Credentials", "Email Address", "Practice", "Address",
              "City", "ST", "Zip Code", "Taxonomy", "Tier", "Tags", "Favourite colour"]
    rows = [
        [npi(2) + ".0", "Zoë", "D'Angelo-Núñez", "MD", " Zoe.DAngelo@Clinic.ORG ", "Harbor Family Care",
         "10 Dock St", "Boston", "ma", "02110", "207q00000x", "a", "VIP; lunch-and-learn", "blue"],
        [npi(3), "José", "de la Cruz", "NP", "", "Harbor Family Care", "10 Dock St", "Boston", "MA", "02110",
         "363L00000X", "", "", "green"],
    ]
    path = write_csv(tmp_path / "roster.csv", header, rows, encoding="utf-8-sig", delimiter=";")
    report = await import_clinicians(path)
    assert report.rejected == [] and report.created == 2 and report.practices_created == 1
    assert report.file_format == "CSV (semicolon, utf-8-sig)"
    assert report.ignored_columns == ["Favourite colour"]
    zoe = await clinician(2)
    assert (zoe.first_name, zoe.last_name, zoe.email) == ("Zoë", "D'Angelo-Núñez", "zoe.dangelo@clinic.org")
    assert (zoe.state, zoe.postal_code, zoe.tier, zoe.role) == ("MA", "02110", "A", "primary_care")
    assert zoe.practice == (await clinician(3)).practice
    tags = await ClinicianTag.select(ClinicianTag.tag).where(ClinicianTag.clinician == zoe.id).run()
    assert sorted(t["tag"] for t in tags) == ["lunch-and-learn", "vip"]


async def test_windows_1252_csv_keeps_accents(taxonomy, tmp_path):
    path = write_csv(tmp_path / "old.csv", ["NPI", "First Name", "Last Name"],
                     [[npi(2), "Renée", "Müller-O'Brien"]], encoding="cp1252")
    report = await import_clinicians(path)
    assert report.created == 1 and "cp1252" in report.file_format
    assert (await clinician(2)).last_name == "Müller-O'Brien"


async def test_spreadsheet_damage_is_reported(taxonomy, tmp_path):
    rows = [
        ["1.23457E+09", "A", "One", "", ""],
        [npi(3), "B", "Two", "2134", ""],
        [npi(4), "C", "Three", "", "not-an-email"],
        [npi(5), "D", "Four", "02134", ""],
    ]
    report = await import_clinicians(write_csv(tmp_path / "d.csv", ["NPI", "First", "Last", "ZIP", "Email"], rows))
    reasons = {(e.row, e.column): e.reason for e in report.rejected}
    assert "scientific notation" in reasons[(2, "NPI")]
    assert "leading zeros" in reasons[(3, "ZIP")]
    assert "not an email address" in reasons[(4, "Email")]
    assert report.created == 1 and (await clinician(5)).postal_code == "02134"


async def test_matching_by_npi_then_email_and_conflicts_go_to_review(taxonomy, tmp_path):
    header = ["NPI", "First Name", "Last Name", "Email", "Phone"]
    await import_clinicians(write_csv(tmp_path / "a.csv", header, [
        [npi(2), "Ann", "Lee", "ann@clinic.org", "555-0100"],
        ["", "Bob", "Stone", "bob@clinic.org", ""],
    ]))
    report = await import_clinicians(write_csv(tmp_path / "b.csv", header, [
        [npi(2), "Ann", "Lee", "", ""],                      # by NPI: empty cells keep the stored values
        [npi(3), "Bob", "Stone", "bob@clinic.org", ""],     # by email: Bob gains his NPI
        [npi(4), "Eve", "Other", "ann@clinic.org", ""],     # Ann's email under another NPI: review
    ]))
    assert (report.created, report.updated, report.sent_to_review) == (0, 2, 1)
    ann = await clinician(2)
    assert (ann.email, ann.phone) == ("ann@clinic.org", "555-0100")
    bob = await clinician(3)
    assert bob.email == "bob@clinic.org" and await Clinician.count().run() == 2
    review = await ImportReview.objects().output(load_json=True).first().run()
    assert review.row_number == 4 and "belongs to the clinician with NPI " + npi(2) in review.reason
    assert review.data["npi"] == npi(4)


async def test_an_import_can_set_do_not_contact_but_never_clear_it(taxonomy, tmp_path):
    header = ["NPI", "Last Name", "Do Not Contact"]
    await import_clinicians(write_csv(tmp_path / "a.csv", header, [[npi(2), "Lee", "Y"]]))
    await import_clinicians(write_csv(tmp_path / "b.csv", header, [[npi(2), "Lee", "N"]]))
    assert (await clinician(2)).do_not_contact is True


async def test_duplicate_npis_inside_one_csv(taxonomy, tmp_path):
    rows = [[npi(2), "Lee"], [npi(2), "Lee again"]]
    report = await import_clinicians(write_csv(tmp_path / "d.csv", ["NPI", "Last Name"], rows))
    assert [(e.row, e.column) for e in report.rejected] == [(3, "NPI")]
    assert (await clinician(2)).last_name == "Lee"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"Colour,Shape\r\nblue,round\r\n", "no recognisable clinician columns"),
        (b"\x00\x01\x02binary\x00", "binary file"),
        (b"%PDF-1.7 ...", "PDF"),
        (b"NPI,Last Name\r\n", "no rows"),
    ],
)
async def test_files_refused_as_a_whole(taxonomy, tmp_path, content, message):
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(InputRefused, match=message):
        await import_clinicians(path)
    assert await Clinician.count().run() == 0


async def test_a_file_that_breaks_half_way_leaves_nothing_behind(taxonomy, tmp_path):
    """Valid UTF-8 for the first megabyte, then a byte that is not: refused, nothing written."""
    path = tmp_path / "half.csv"
    lines = [b"NPI,Last Name\r\n"] + [f"{npi(n)},Name{n}\r\n".encode() for n in range(2, 80_000)]
    path.write_bytes(b"".join(lines) + b"9999999999,Caf\xe9\r\n")
    with pytest.raises(InputRefused, match="not valid utf-8"):
        await import_clinicians(path)
    assert await Clinician.count().run() == 0


async def test_dry_run_reports_and_writes_nothing(taxonomy, tmp_path):
    report = await import_clinicians(write_nppes(tmp_path / "n.csv", [organization(H, 1), individual(H, 2)]),
                                     dry_run=True)
    assert (report.created, report.practices_created, report.dry_run) == (1, 1, True)
    assert await Clinician.count().run() == 0 and await Practice.count().run() == 0


async def test_a_managers_role_override_outlives_reimports(taxonomy, tmp_path):
    await import_clinicians(write_nppes(tmp_path / "a.csv", [individual(H, 2, codes=("207R00000X",))]))
    await Clinician.update({Clinician.role_override: "oncology_peer", Clinician.role: "oncology_peer"},
                           force=True).run()
    await import_clinicians(write_nppes(tmp_path / "b.csv", [individual(H, 2, codes=("208600000X",))]))
    again = await clinician(2)
    assert (again.taxonomy_code, again.role) == ("208600000X", "oncology_peer")
    await import_clinicians(write_csv(tmp_path / "c.csv", ["NPI", "Taxonomy"], [[npi(2), "207Q00000X"]]))
    assert (await clinician(2)).role == "oncology_peer"


async def test_a_bom_in_front_of_windows_1252_text_is_read_as_windows_1252(taxonomy, tmp_path):
    path = tmp_path / "excel.csv"
    content = "NPI;First Name;Last Name\r\n" + f"{npi(2)};José;Muñoz-Pérez\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + content.encode("cp1252"))
    report = await import_clinicians(path)
    assert report.created == 1 and "cp1252" in report.file_format
    assert (await clinician(2)).last_name == "Muñoz-Pérez"


async def test_the_taxonomy_filter_keeps_the_practices_for_linking(taxonomy, tmp_path):
    rows = [organization(H, 1), individual(H, 2, codes=("207Q00000X",)), individual(H, 3, codes=("208600000X",))]
    report = await import_clinicians(write_nppes(tmp_path / "f.csv", rows),
                                     filters=Filters(states=frozenset({"VA"}), taxonomy_prefixes=("207Q",)))
    assert (report.created, report.practices_created, report.filtered_out) == (1, 1, 1)
    assert (await clinician(2)).practice is not None


async def test_deactivated_npis_in_the_file_are_accounted_for(taxonomy, tmp_path):
    await import_clinicians(write_nppes(tmp_path / "a.csv", [individual(H, 2)]))
    report = await import_clinicians(write_nppes(tmp_path / "b.csv", [deactivated(H, 2), deactivated(H, 7)]))
    assert (report.deactivated, report.deactivations_read) == (1, 2)
    assert any("of 2 deactivated NPIs" in line for line in report.summary_lines())


async def test_values_longer_than_their_column_are_rejected_by_row_on_both_databases(taxonomy, tmp_path):
    rows = [[npi(2), "A" * 101, "Lee", ""], [npi(3), "Ann", "Kim", "P" * 301], [npi(4), "Ann", "Park", ""]]
    report = await import_clinicians(write_csv(tmp_path / "long.csv", ["NPI", "First Name", "Last Name", "Practice"], rows))
    found = [(e.row, e.column) for e in report.rejected]
    assert found == [(2, "First Name"), (3, "Practice")]
    assert "at most 100 fit" in report.rejected[0].reason
    assert report.created == 1 and await Clinician.count().run() == 1


async def test_a_damaged_nppes_header_is_refused_not_read_as_a_plain_csv(taxonomy, tmp_path):
    header = [name.replace("Taxonomy Code_1", "Taxonomy Code 1") for name in H]
    path = write_csv(tmp_path / "renamed.csv", header, [organization(H, 1)], quote_all=True)
    with pytest.raises(InputRefused, match="lacks the column 'Healthcare Provider Taxonomy Code_1'"):
        await import_clinicians(path)
    assert await Practice.count().run() == 0


async def test_a_new_clinician_needs_a_last_name(taxonomy, tmp_path):
    report = await import_clinicians(write_csv(tmp_path / "n.csv", ["NPI", "Tier"], [[npi(2), "A"]]))
    assert [(e.row, e.column) for e in report.rejected] == [(2, "Last Name")]
    assert await Clinician.count().run() == 0


async def test_a_reactivated_npi_whose_email_was_taken_goes_to_review(taxonomy, tmp_path):
    await import_clinicians(write_nppes(tmp_path / "a.csv", [individual(H, 2)]))
    await Clinician.update({Clinician.email: "shared@clinic.org", Clinician.active: False}, force=True).run()
    await import_clinicians(write_csv(tmp_path / "b.csv", ["NPI", "Last Name", "Email"],
                                      [[npi(3), "New", "shared@clinic.org"]]))
    report = await import_clinicians(write_nppes(tmp_path / "c.csv", [individual(H, 2)]))
    assert report.sent_to_review == 1 and report.rejected == []
    assert not (await clinician(2)).active
    again = await import_clinicians(write_nppes(tmp_path / "c.csv", [individual(H, 2)]))
    assert again.sent_to_review == 1 and await ImportReview.count().run() == 1  # not a second item


async def test_practices_match_by_name_in_any_case_and_by_zip(taxonomy, tmp_path):
    header = ["NPI", "Last Name", "Practice", "ZIP"]
    rows = [[npi(2), "A", "Acme Clinic", "02134"], [npi(3), "B", "ACME CLINIC", "02134"],
            [npi(4), "C", "Acme Clinic", "23220"], [npi(5), "D", "acme clinic", ""]]
    report = await import_clinicians(write_csv(tmp_path / "p.csv", header, rows))
    assert report.practices_created == 2
    a, b, c, d = [await clinician(n) for n in (2, 3, 4, 5)]
    assert a.practice == b.practice == d.practice != c.practice
