"""Referring roles: how an oncology program groups the clinicians who send it patients.

The role is derived from the clinician's primary NUCC taxonomy code by the rules below (a manager
can override it per clinician). Rules are checked in order; the first that matches wins.
"""

from __future__ import annotations

from enum import Enum


class ReferringRole(str, Enum):
    primary_care = "primary_care"
    hospitalist = "hospitalist"
    surgeon = "surgeon"
    radiology = "radiology"
    medical_specialist = "medical_specialist"
    oncology_peer = "oncology_peer"
    advanced_practice = "advanced_practice"
    other = "other"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    ReferringRole.primary_care: "Primary care",
    ReferringRole.hospitalist: "Hospitalist",
    ReferringRole.surgeon: "Surgeon",
    ReferringRole.radiology: "Radiology",
    ReferringRole.medical_specialist: "Medical specialist",
    ReferringRole.oncology_peer: "Oncology peer",
    ReferringRole.advanced_practice: "Advanced practice provider",
    ReferringRole.other: "Other",
}

# Oncologists and hematologists: peers who refer for second opinions and coordination.
ONCOLOGY_CODES = frozenset({
    "207RH0003X",  # Internal Medicine, Hematology & Oncology
    "207RX0202X",  # Internal Medicine, Medical Oncology
    "207RH0000X",  # Internal Medicine, Hematology
    "2085R0001X",  # Radiology, Radiation Oncology
    "2086X0206X",  # Surgery, Surgical Oncology
    "207VX0201X",  # Obstetrics & Gynecology, Gynecologic Oncology
    "2080P0207X",  # Pediatrics, Pediatric Hematology-Oncology
})

PRIMARY_CARE_CODES = frozenset({
    "207Q00000X", "207QA0000X", "207QA0505X", "207QG0300X", "207QS0010X",  # Family Medicine
    "207R00000X", "207RA0000X", "207RG0300X",  # Internal Medicine, adolescent, geriatric
    "208000000X", "2080A0000X",  # Pediatrics
    "208D00000X",  # General Practice
    "207V00000X", "207VG0400X",  # Obstetrics & Gynecology, Gynecology
    "261QP2300X",  # Clinic/Center, Primary Care
})

HOSPITALIST_CODES = frozenset({"208M00000X"})

# Classifications (within the physician grouping) whose members operate.
SURGICAL_CLASSIFICATIONS = frozenset({
    "Surgery", "Colon & Rectal Surgery", "Neurological Surgery", "Orthopaedic Surgery",
    "Plastic Surgery", "Thoracic Surgery (Cardiothoracic Vascular Surgery)", "Otolaryngology",
    "Urology", "Transplant Surgery", "Oral & Maxillofacial Surgery",
})

PHYSICIANS = "Allopathic & Osteopathic Physicians"
ADVANCED_PRACTICE = "Physician Assistants & Advanced Practice Nursing Providers"


def derive_role(code: str, grouping: str, classification: str) -> ReferringRole:
    """The referring role for a taxonomy code, given its NUCC grouping and classification."""
    if code in ONCOLOGY_CODES:
        return ReferringRole.oncology_peer
    if code in HOSPITALIST_CODES:
        return ReferringRole.hospitalist
    if code in PRIMARY_CARE_CODES:
        return ReferringRole.primary_care
    if classification in ("Radiology", "Nuclear Medicine") or code == "261QR0200X":
        return ReferringRole.radiology
    if classification in SURGICAL_CLASSIFICATIONS:
        return ReferringRole.surgeon
    if grouping == ADVANCED_PRACTICE:
        return ReferringRole.advanced_practice
    if grouping == PHYSICIANS:
        return ReferringRole.medical_specialist
    return ReferringRole.other


def role_label(value: str | None) -> str:
    try:
        return ReferringRole(value).label
    except ValueError:
        return value or ""
