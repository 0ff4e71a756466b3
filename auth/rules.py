"""Which role may do which interaction on which resource type (issue 3, §6; SPEC §4-§8).

This is the coarse gate, before consent: it says what a role can ever do.
Within a patient's compartment the consent decision (``consent/``) then says
what a practitioner or hub may do for this patient. Interactions are the
SMART letters: c create, r read, u update, d delete, s search.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["citizen", "practitioner", "auditor", "admin", "hub"]
ROLES: tuple[Role, ...] = ("citizen", "practitioner", "auditor", "admin", "hub")

# The directory, kept by admin and readable by every authenticated user.
DIRECTORY_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "Group",
                             "Endpoint", "Location", "HealthcareService"})

# Resource types that live in a patient's compartment.
COMPARTMENT_TYPES = frozenset({
    "Patient", "Task", "CareTeam", "RelatedPerson", "Observation", "Flag",
    "Provenance", "Consent", "AuditEvent", "Communication",
})

# The SMART scope context each role must use.
SCOPE_CONTEXT: dict[Role, str] = {
    "citizen": "patient",
    "practitioner": "user",
    "auditor": "user",
    "admin": "user",
    "hub": "system",
}

_DIRECTORY_READ = dict.fromkeys(DIRECTORY_TYPES, "rs")
_PROFESSIONAL = {
    # Professionals record démarches, the network map and fragility (collect grant);
    # Flag is derived and Provenance written by the server; nobody deletes entries.
    "Patient": "crus", "Task": "crus", "CareTeam": "crus", "RelatedPerson": "crus",
    "Observation": "crus", "Flag": "rs", "Provenance": "rs",
    "Communication": "rs",  # one's own inbox only (SPEC §14; core/access.py)
}

RULES: dict[Role, dict[str, str]] = {
    "citizen": {
        **_DIRECTORY_READ,
        **dict.fromkeys(COMPARTMENT_TYPES, "rs"),
        "Patient": "crs",  # opens their own dossier, by their national number (SPEC §13)
        "RelatedPerson": "cruds",  # names or removes their mandataire, personne de confiance
        "Consent": "cruds",  # only the citizen writes Consent; DELETE revokes
    },
    # Subscription: one's own topic subscriptions (never dossier data, see subscriptions)
    # HealthcareService: their own organisation's services only (core/access.py);
    # Consent "c": only the assisted consent of a person present (SPEC §13)
    "practitioner": {**_DIRECTORY_READ, **_PROFESSIONAL, "Subscription": "crds",
                     "HealthcareService": "crsud", "Consent": "c"},
    "hub": {**_DIRECTORY_READ, **_PROFESSIONAL, "Patient": "rus",  # a hub opens no dossier
            "Subscription": "crds"},
    "auditor": {**_DIRECTORY_READ, "AuditEvent": "rs"},
    "admin": {
        **dict.fromkeys(DIRECTORY_TYPES, "cruds"),
        "Patient": "c",  # may open a dossier, then has no access until consent
        "RelatedPerson": "c",  # records a guardian or a parent (SPEC §13)
    },
}


def role_allows(role: Role, resource_type: str, interaction: str) -> bool:
    return interaction in RULES[role].get(resource_type, "")
