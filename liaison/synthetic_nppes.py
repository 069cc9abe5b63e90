"""A realistic NPPES-format extract, written from the published layout, for the demo, tests and
benchmarks: every column of the bulk file, valid NPIs, real NUCC codes with the primary switch in
varying slots, names in capitals with apostrophes and hyphens, 5- and 9-digit ZIPs, organisations,
clinicians at their practice's address, and a few deactivated NPIs. Same seed, same file."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from crm.npi import with_check_digit


def nppes_header(columns: int = 330) -> list[str]:
    """The NPPES dissemination header: 330 columns now, 329 in older files (which have
    'Provider Gender Code' where current ones have 'Provider Sex Code', and no Certification Date)."""
    head = [
        "NPI", "Entity Type Code", "Replacement NPI", "Employer Identification Number (EIN)",
        "Provider Organization Name (Legal Business Name)", "Provider Last Name (Legal Name)",
        "Provider First Name", "Provider Middle Name", "Provider Name Prefix Text",
        "Provider Name Suffix Text", "Provider Credential Text", "Provider Other Organization Name",
        "Provider Other Organization Name Type Code", "Provider Other Last Name",
        "Provider Other First Name", "Provider Other Middle Name", "Provider Other Name Prefix Text",
        "Provider Other Name Suffix Text", "Provider Other Credential Text",
        "Provider Other Last Name Type Code", "Provider First Line Business Mailing Address",
        "Provider Second Line Business Mailing Address", "Provider Business Mailing Address City Name",
        "Provider Business Mailing Address State Name", "Provider Business Mailing Address Postal Code",
        "Provider Business Mailing Address Country Code (If outside U.S.)",
        "Provider Business Mailing Address Telephone Number", "Provider Business Mailing Address Fax Number",
        "Provider First Line Business Practice Location Address",
        "Provider Second Line Business Practice Location Address",
        "Provider Business Practice Location Address City Name",
        "Provider Business Practice Location Address State Name",
        "Provider Business Practice Location Address Postal Code",
        "Provider Business Practice Location Address Country Code (If outside U.S.)",
        "Provider Business Practice Location Address Telephone Number",
        "Provider Business Practice Location Address Fax Number", "Provider Enumeration Date",
        "Last Update Date", "NPI Deactivation Reason Code", "NPI Deactivation Date",
        "NPI Reactivation Date", "Provider Sex Code" if columns == 330 else "Provider Gender Code",
        "Authorized Official Last Name", "Authorized Official First Name",
        "Authorized Official Middle Name", "Authorized Official Title or Position",
        "Authorized Official Telephone Number",
    ]
    for n in range(1, 16):
        head += [
            f"Healthcare Provider Taxonomy Code_{n}", f"Provider License Number_{n}",
            f"Provider License Number State Code_{n}", f"Healthcare Provider Primary Taxonomy Switch_{n}",
        ]
    for n in range(1, 51):
        head += [
            f"Other Provider Identifier_{n}", f"Other Provider Identifier Type Code_{n}",
            f"Other Provider Identifier State_{n}", f"Other Provider Identifier Issuer_{n}",
        ]
    head += [
        "Is Sole Proprietor", "Is Organization Subpart", "Parent Organization LBN",
        "Parent Organization TIN", "Authorized Official Name Prefix Text",
        "Authorized Official Name Suffix Text", "Authorized Official Credential Text",
    ]
    head += [f"Healthcare Provider Taxonomy Group_{n}" for n in range(1, 16)]
    if columns == 330:
        head.append("Certification Date")
    assert len(head) == columns, len(head)
    return head


# Primary taxonomies of individuals, weighted roughly as a state's referring population.
INDIVIDUAL_TAXONOMIES = [
    ("207Q00000X", 22, "MD"), ("207R00000X", 18, "MD"), ("208M00000X", 6, "MD"),
    ("208600000X", 5, "MD"), ("2085R0202X", 5, "MD"), ("207RG0100X", 4, "MD"),
    ("207RP1001X", 3, "MD"), ("208800000X", 3, "MD"), ("207V00000X", 4, "MD"),
    ("207RC0000X", 3, "MD"), ("363L00000X", 11, "NP"), ("363A00000X", 8, "PA-C"),
    ("207RX0202X", 2, "MD"), ("207RH0003X", 2, "MD"), ("2086X0206X", 1, "MD"),
    ("208D00000X", 3, "DO"),
]
PHYSICIANS = "Allopathic & Osteopathic Physicians"
# The NUCC names of the codes above (grouping, classification, specialization, display name),
# for benchmarks and tests that need a taxonomy without the full code set.
TAXONOMY_NAMES = {
    "207Q00000X": (PHYSICIANS, "Family Medicine", "", "Family Medicine Physician"),
    "207R00000X": (PHYSICIANS, "Internal Medicine", "", "Internal Medicine Physician"),
    "208M00000X": (PHYSICIANS, "Hospitalist", "", "Hospitalist Physician"),
    "208600000X": (PHYSICIANS, "Surgery", "", "Surgery Physician"),
    "2085R0202X": (PHYSICIANS, "Radiology", "Diagnostic Radiology", "Diagnostic Radiology Physician"),
    "207RG0100X": (PHYSICIANS, "Internal Medicine", "Gastroenterology", "Gastroenterology Physician"),
    "207RP1001X": (PHYSICIANS, "Internal Medicine", "Pulmonary Disease", "Pulmonary Disease Physician"),
    "208800000X": (PHYSICIANS, "Urology", "", "Urology Physician"),
    "207V00000X": (PHYSICIANS, "Obstetrics & Gynecology", "", "Obstetrics & Gynecology Physician"),
    "207RC0000X": (PHYSICIANS, "Internal Medicine", "Cardiovascular Disease", "Cardiovascular Disease Physician"),
    "363L00000X": ("Physician Assistants & Advanced Practice Nursing Providers", "Nurse Practitioner", "",
                   "Nurse Practitioner"),
    "363A00000X": ("Physician Assistants & Advanced Practice Nursing Providers", "Physician Assistant", "",
                   "Physician Assistant"),
    "207RX0202X": (PHYSICIANS, "Internal Medicine", "Medical Oncology", "Medical Oncology Physician"),
    "207RH0003X": (PHYSICIANS, "Internal Medicine", "Hematology & Oncology", "Hematology & Oncology Physician"),
    "2086X0206X": (PHYSICIANS, "Surgery", "Surgical Oncology", "Surgical Oncology Physician"),
    "208D00000X": (PHYSICIANS, "General Practice", "", "General Practice Physician"),
    "261QP2300X": ("Ambulatory Health Care Facilities", "Clinic/Center", "Primary Care", "Primary Care Clinic/Center"),
    "193200000X": ("Group", "Multi-Specialty", "", "Multi-Specialty Group"),
    "261QR0200X": ("Ambulatory Health Care Facilities", "Clinic/Center", "Radiology", "Radiology Clinic/Center"),
    "282N00000X": ("Hospitals", "General Acute Care Hospital", "", "General Acute Care Hospital"),
}


def write_taxonomy(path: Path) -> Path:
    """A NUCC-layout code set holding the codes of the synthetic extract (not the real file)."""
    lines = ["Code,Grouping,Classification,Specialization,Definition,Notes,Display Name,Section"]
    for code, (grouping, classification, specialization, display) in TAXONOMY_NAMES.items():
        lines.append(f'{code},"{grouping}","{classification}","{specialization}",,,"{display}",')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


ORGANIZATION_TAXONOMIES = [("261QP2300X", 5), ("193200000X", 3), ("261QR0200X", 1), ("282N00000X", 1)]
CREDENTIALS = {"MD": ["M.D.", "MD", "MD, PHD", "M.D., F.A.C.P."], "DO": ["D.O.", "DO"],
               "NP": ["NP", "FNP-C", "APRN"], "PA-C": ["PA-C", "PA"]}
LAST_NAMES = [
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "NGUYEN", "PATEL", "KIM", "CHEN", "O'DONNELL", "O'BRIEN", "D'ANGELO",
    "VAN HOUTEN-SAUTER", "DE LA CRUZ", "MCALLISTER", "MACDONALD", "SMITH-JONES", "ST. JOHN",
    "OKAFOR", "ADEBAYO", "HOFFMANN", "NOWAK", "LEE", "WASHINGTON", "THOMPSON", "CLARK",
    "LEWIS", "WALKER", "HALL", "ALLEN", "YOUNG", "HERNANDEZ", "KING", "WRIGHT", "LOPEZ",
    "HILL", "SCOTT", "GREEN", "ADAMS", "BAKER", "GONZALEZ", "NELSON", "CARTER", "MITCHELL",
    "PEREZ", "ROBERTS", "TURNER", "PHILLIPS", "CAMPBELL", "PARKER", "EVANS", "EDWARDS",
]
FIRST_NAMES = [
    "JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID",
    "ELIZABETH", "WILLIAM", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA", "THOMAS",
    "SARAH", "ANNE-MARIE", "JEAN-PAUL", "PRIYA", "WEI", "OLUWASEUN", "MARIA", "JOSE", "AISHA",
    "DMITRI", "SIOBHAN", "MEI", "RAFAEL", "NOOR", "KWAME", "INGRID", "TOMAS", "LUCIA",
]
ORG_WORDS = ["FAMILY", "PRIMARY", "COMMUNITY", "INTERNAL", "VALLEY", "RIVERSIDE", "BLUE RIDGE",
             "TIDEWATER", "PIEDMONT", "SHENANDOAH", "CHESAPEAKE", "JAMES RIVER", "ST. MARY'S"]
ORG_KINDS = {"261QP2300X": "PRIMARY CARE CLINIC", "193200000X": "PHYSICIANS GROUP, PLLC",
             "261QR0200X": "IMAGING CENTER", "282N00000X": "HOSPITAL"}
STREETS = ["MAIN ST", "BROAD ST", "MEDICAL PKWY", "HOSPITAL DR", "UNIVERSITY BLVD", "PARK AVE",
           "CHURCH ST", "COLLEGE AVE", "PATTERSON AVE", "HEALTH WAY", "RIVER RD", "MONUMENT AVE"]
STATE_CITIES = {
    "VA": [("RICHMOND", "232"), ("NORFOLK", "235"), ("VIRGINIA BEACH", "234"), ("ARLINGTON", "222"),
           ("ROANOKE", "240"), ("CHARLOTTESVILLE", "229"), ("LYNCHBURG", "245"), ("ALEXANDRIA", "223"),
           ("HARRISONBURG", "228"), ("FREDERICKSBURG", "224")],
    "MA": [("BOSTON", "021"), ("WORCESTER", "016"), ("SPRINGFIELD", "011"), ("LOWELL", "018")],
    "NC": [("RALEIGH", "276"), ("DURHAM", "277"), ("CHARLOTTE", "282"), ("ASHEVILLE", "288")],
}


@dataclass(frozen=True)
class ExtractSummary:
    path: Path
    rows: int
    clinicians: int
    organizations: int
    deactivated: int
    other_state: int


class _Npis:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def new(self) -> str:
        while True:
            npi = with_check_digit(str(self.rng.randint(100_000_000, 299_999_999)))
            if npi not in self.used:
                self.used.add(npi)
                return npi


def write_extract(
    path: Path,
    *,
    clinicians: int = 2000,
    practices: int = 300,
    state: str = "VA",
    seed: int = 7,
    deactivated_share: float = 0.01,
    other_state_share: float = 0.0,
    columns: int = 330,
) -> ExtractSummary:
    """Write the extract to ``path``; rows come in NPI order, as in the real file."""
    rng = random.Random(seed)
    npis = _Npis(rng)
    header = nppes_header(columns)
    index = {name: i for i, name in enumerate(header)}
    cities = STATE_CITIES.get(state, STATE_CITIES["VA"])
    other = "MA" if state != "MA" else "VA"

    def place(city_state: str) -> tuple[str, str, str, str, str]:
        city, prefix = rng.choice(STATE_CITIES.get(city_state, cities))
        zip5 = prefix + f"{rng.randint(0, 99):02d}"
        postal = zip5 + (f"{rng.randint(0, 9999):04d}" if rng.random() < 0.6 else "")
        street = f"{rng.randint(1, 9999)} {rng.choice(STREETS)}"
        suite = f"SUITE {rng.randint(100, 450)}" if rng.random() < 0.4 else ""
        phone = f"{rng.randint(200, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        return street, suite, city, postal, phone

    def blank() -> list[str]:
        return [""] * len(header)

    def fill(row: list[str], **values: str) -> None:
        for name, value in values.items():
            row[index[name]] = value

    def location(row: list[str], where: tuple[str, str, str, str, str], row_state: str) -> None:
        street, suite, city, postal, phone = where
        fill(row, **{
            "Provider First Line Business Practice Location Address": street,
            "Provider Second Line Business Practice Location Address": suite,
            "Provider Business Practice Location Address City Name": city,
            "Provider Business Practice Location Address State Name": row_state,
            "Provider Business Practice Location Address Postal Code": postal,
            "Provider Business Practice Location Address Country Code (If outside U.S.)": "US",
            "Provider Business Practice Location Address Telephone Number": phone,
            "Provider First Line Business Mailing Address": street,
            "Provider Business Mailing Address City Name": city,
            "Provider Business Mailing Address State Name": row_state,
            "Provider Business Mailing Address Postal Code": postal,
            "Provider Business Mailing Address Country Code (If outside U.S.)": "US",
        })

    def taxonomies(row: list[str], codes: list[str], primary: int, license_state: str) -> None:
        for n, code in enumerate(codes, start=1):
            fill(row, **{
                f"Healthcare Provider Taxonomy Code_{n}": code,
                f"Provider License Number_{n}": f"{rng.randint(10000, 999999)}",
                f"Provider License Number State Code_{n}": license_state,
                f"Healthcare Provider Primary Taxonomy Switch_{n}": "Y" if n - 1 == primary else "N",
            })

    dates = lambda: f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(2005, 2024)}"  # noqa: E731
    rows: list[tuple[str, list[str]]] = []
    org_places = []
    org_codes = [code for code, weight in ORGANIZATION_TAXONOMIES for _ in range(weight)]
    for _ in range(practices):
        npi = npis.new()
        code = rng.choice(org_codes)
        where = place(state)
        org_places.append(where)
        row = blank()
        name = f"{rng.choice(ORG_WORDS)} {ORG_KINDS[code]}"
        fill(row, **{
            "NPI": npi, "Entity Type Code": "2", "Employer Identification Number (EIN)": "<UNAVAIL>",
            "Provider Organization Name (Legal Business Name)": name,
            "Provider Enumeration Date": dates(), "Last Update Date": dates(),
            "Authorized Official Last Name": rng.choice(LAST_NAMES),
            "Authorized Official First Name": rng.choice(FIRST_NAMES),
            "Authorized Official Title or Position": "PRACTICE MANAGER",
            "Is Organization Subpart": "N",
        })
        location(row, where, state)
        taxonomies(row, [code], 0, state)
        rows.append((npi, row))

    individual_codes = [(code, cred) for code, weight, cred in INDIVIDUAL_TAXONOMIES for _ in range(weight)]
    secondary = [code for code, _, _ in INDIVIDUAL_TAXONOMIES]
    deactivated = other_state = 0
    for _ in range(clinicians):
        npi = npis.new()
        row = blank()
        if rng.random() < deactivated_share:
            fill(row, **{"NPI": npi, "NPI Deactivation Date": dates()})
            rows.append((npi, row))
            deactivated += 1
            continue
        row_state = state
        if rng.random() < other_state_share:
            row_state = other
            other_state += 1
            where = place(other)
        elif rng.random() < 0.9 and org_places:
            where = rng.choice(org_places)
        else:
            where = place(state)
        code, credential_kind = rng.choice(individual_codes)
        codes = [code] + rng.sample([c for c in secondary if c != code], k=rng.choice((0, 0, 1, 2)))
        primary = rng.randrange(len(codes))
        codes[0], codes[primary] = codes[primary], codes[0]  # the primary is often not slot 1
        fill(row, **{
            "NPI": npi, "Entity Type Code": "1",
            "Provider Last Name (Legal Name)": rng.choice(LAST_NAMES),
            "Provider First Name": rng.choice(FIRST_NAMES),
            "Provider Middle Name": rng.choice(["", "", "A", "J", "MARIE", "LEE"]),
            "Provider Credential Text": rng.choice(CREDENTIALS[credential_kind]),
            "Provider Sex Code" if columns == 330 else "Provider Gender Code": rng.choice("FM"),
            "Provider Enumeration Date": dates(), "Last Update Date": dates(),
            "Is Sole Proprietor": rng.choice(["N", "N", "Y", "X"]),
        })
        location(row, where, row_state)
        taxonomies(row, codes, primary, row_state)
        rows.append((npi, row))

    rows.sort(key=lambda item: item[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(row for _, row in rows)
    return ExtractSummary(path, len(rows), clinicians - deactivated, practices, deactivated, other_state)
