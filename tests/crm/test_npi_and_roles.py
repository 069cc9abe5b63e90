"""NPI check digits and spreadsheet damage; referring roles from taxonomy codes; display names."""

from __future__ import annotations

import pytest

from crm.names import display_case
from crm.npi import NpiError, check_digit_ok, normalise_npi, with_check_digit
from crm.referring_roles import ReferringRole, derive_role


def test_check_digit_follows_the_cms_luhn_rule():
    assert check_digit_ok("1234567893")
    assert not check_digit_ok("1234567890")
    assert with_check_digit("123456789") == "1234567893"


@pytest.mark.parametrize(
    "raw, expected",
    [("1234567893", "1234567893"), (" 1234567893 ", "1234567893"), ("1234567893.0", "1234567893")],
)
def test_valid_and_repairable_values(raw, expected):
    assert normalise_npi(raw) == expected


@pytest.mark.parametrize(
    "raw, message",
    [
        ("1.23457E+09", "scientific notation"),
        ("1234567890", "wrong check digit"),
        ("123456789", "not 10 digits"),
        ("12345678931", "not 10 digits"),
        ("12345-6789", "not 10 digits"),
        ("", "empty"),
    ],
)
def test_broken_values_say_what_is_wrong(raw, message):
    with pytest.raises(NpiError, match=message):
        normalise_npi(raw)


@pytest.mark.parametrize(
    "code, grouping, classification, role",
    [
        ("207Q00000X", "Allopathic & Osteopathic Physicians", "Family Medicine", ReferringRole.primary_care),
        ("207R00000X", "Allopathic & Osteopathic Physicians", "Internal Medicine", ReferringRole.primary_care),
        ("208M00000X", "Allopathic & Osteopathic Physicians", "Hospitalist", ReferringRole.hospitalist),
        ("208600000X", "Allopathic & Osteopathic Physicians", "Surgery", ReferringRole.surgeon),
        ("208800000X", "Allopathic & Osteopathic Physicians", "Urology", ReferringRole.surgeon),
        ("2085R0202X", "Allopathic & Osteopathic Physicians", "Radiology", ReferringRole.radiology),
        ("2085R0001X", "Allopathic & Osteopathic Physicians", "Radiology", ReferringRole.oncology_peer),
        ("207RX0202X", "Allopathic & Osteopathic Physicians", "Internal Medicine", ReferringRole.oncology_peer),
        ("207RG0100X", "Allopathic & Osteopathic Physicians", "Internal Medicine", ReferringRole.medical_specialist),
        ("363L00000X", "Physician Assistants & Advanced Practice Nursing Providers", "Nurse Practitioner",
         ReferringRole.advanced_practice),
        ("1223G0001X", "Dental Providers", "Dentist", ReferringRole.other),
    ],
)
def test_referring_role_is_derived_from_the_taxonomy(code, grouping, classification, role):
    assert derive_role(code, grouping, classification) is role


@pytest.mark.parametrize(
    "raw, shown",
    [("O'DONNELL", "O'Donnell"), ("VAN HOUTEN-SAUTER", "Van Houten-Sauter"), ("MCALLISTER", "McAllister"),
     ("ST. JOHN", "St. John"), ("ST. MARY'S FAMILY CARE", "St. Mary's Family Care"), ("JOSÉ", "José"), ("de la Cruz", "de la Cruz"), ("", "")],
)
def test_registry_capitals_become_readable_names(raw, shown):
    assert display_case(raw) == shown
