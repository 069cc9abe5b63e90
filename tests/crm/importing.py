"""Small import fixtures written from the format facts (never copies of real files)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from crm.npi import with_check_digit
from liaison.synthetic_nppes import nppes_header

NUCC_HEADER = ["Code", "Grouping", "Classification", "Specialization", "Definition", "Notes",
               "Display Name", "Section"]
NUCC_ROWS = [
    ["207Q00000X", "Allopathic & Osteopathic Physicians", "Family Medicine", "", "Family medicine.", "",
     "Family Medicine Physician", "Individual"],
    ["207R00000X", "Allopathic & Osteopathic Physicians", "Internal Medicine", "", "", "",
     "Internal Medicine Physician", "Individual"],
    ["207RX0202X", "Allopathic & Osteopathic Physicians", "Internal Medicine", "Medical Oncology", "", "",
     "Medical Oncology Physician", "Individual"],
    ["208M00000X", "Allopathic & Osteopathic Physicians", "Hospitalist", "", "", "", "Hospitalist Physician",
     "Individual"],
    ["208600000X", "Allopathic & Osteopathic Physicians", "Surgery", "", "", "", "Surgery Physician", "Individual"],
    ["2085R0202X", "Allopathic & Osteopathic Physicians", "Radiology", "Diagnostic Radiology", "", "",
     "Diagnostic Radiology Physician", "Individual"],
    ["363L00000X", "Physician Assistants & Advanced Practice Nursing Providers", "Nurse Practitioner", "", "", "",
     "Nurse Practitioner", "Individual"],
    ["261QP2300X", "Ambulatory Health Care Facilities", "Clinic/Center", "Primary Care", "", "",
     "Primary Care Clinic/Center", "Non-Individual"],
]


def npi(n: int) -> str:
    """The n-th valid test NPI (deterministic)."""
    return with_check_digit(str(100_000_000 + n * 7919))


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8",
              delimiter: str = ",", quote_all: bool = False) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n",
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_nucc(path: Path) -> Path:
    return write_csv(path, NUCC_HEADER, NUCC_ROWS)


def nppes_row(header: list[str], columns: dict[str, str]) -> list[str]:
    """A row of the NPPES layout with these columns filled and the rest empty."""
    row = [""] * len(header)
    index = {name: i for i, name in enumerate(header)}
    for name, value in columns.items():
        row[index[name]] = value
    return row


def individual(header: list[str], number: int, *, last: str = "O'DONNELL", first: str = "MARY",
               codes: tuple[str, ...] = ("207Q00000X",), primary_slot: int = 1, state: str = "VA",
               street: str = "1200 MAIN ST", postal: str = "232191234", city: str = "RICHMOND",
               credential: str = "M.D.") -> list[str]:
    columns = {
        "NPI": npi(number), "Entity Type Code": "1",
        "Provider Last Name (Legal Name)": last, "Provider First Name": first,
        "Provider Credential Text": credential,
        "Provider First Line Business Practice Location Address": street,
        "Provider Business Practice Location Address City Name": city,
        "Provider Business Practice Location Address State Name": state,
        "Provider Business Practice Location Address Postal Code": postal,
        "Provider Business Practice Location Address Telephone Number": "8045551234",
    }
    for slot, code in enumerate(codes, start=1):
        columns[f"Healthcare Provider Taxonomy Code_{slot}"] = code
        columns[f"Healthcare Provider Primary Taxonomy Switch_{slot}"] = "Y" if slot == primary_slot else "N"
    return nppes_row(header, columns)


def organization(header: list[str], number: int, *, name: str = "JAMES RIVER FAMILY PRACTICE, PLLC",
                 street: str = "1200 MAIN ST", postal: str = "232191234", state: str = "VA") -> list[str]:
    return nppes_row(header, {
        "NPI": npi(number), "Entity Type Code": "2",
        "Employer Identification Number (EIN)": "<UNAVAIL>",
        "Provider Organization Name (Legal Business Name)": name,
        "Provider First Line Business Practice Location Address": street,
        "Provider Business Practice Location Address City Name": "RICHMOND",
        "Provider Business Practice Location Address State Name": state,
        "Provider Business Practice Location Address Postal Code": postal,
        "Healthcare Provider Taxonomy Code_1": "261QP2300X",
        "Healthcare Provider Primary Taxonomy Switch_1": "Y",
    })


def deactivated(header: list[str], number: int, on: str = "03/15/2024") -> list[str]:
    return nppes_row(header, {"NPI": npi(number), "NPI Deactivation Date": on})


def write_nppes(path: Path, rows: list[list[str]], columns: int = 330) -> Path:
    return write_csv(path, nppes_header(columns), rows, quote_all=True)

