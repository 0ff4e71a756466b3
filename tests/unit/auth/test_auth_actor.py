"""Actor resolution from token claims and the directory, and the role and scope gate."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auth.actor import Principal, check_interaction, resolve_principal
from auth.errors import Forbidden, InvalidToken
from auth.rules import COMPARTMENT_TYPES, DIRECTORY_TYPES, ROLES
from auth.scopes import INTERACTIONS, parse_scopes
from auth.tokens import TokenClaims

NOW = datetime(2027, 3, 5, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass
class Membership:
    organization: str | None
    profession: str | None
    start: datetime | None = None
    end: datetime | None = None
    active: bool = True


@dataclass
class InMemoryDirectory:
    """A Directory as the lead implements it on the FHIR store, in memory."""

    practitioners: dict[str, bool] = field(default_factory=dict)
    roles: dict[str, list[Membership]] = field(default_factory=dict)

    def practitioner_active(self, reference: str) -> bool:
        return self.practitioners.get(reference, False)

    def active_roles(self, practitioner_ref: str,
                     at: datetime) -> list[tuple[str | None, str | None]]:
        return [(m.organization, m.profession) for m in self.roles.get(practitioner_ref, [])
                if m.active and (m.start is None or m.start <= at)
                and (m.end is None or at < m.end)]


@pytest.fixture
def directory() -> InMemoryDirectory:
    return InMemoryDirectory(
        practitioners={"Practitioner/dr-dupont": True, "Practitioner/sw-janssens": True,
                       "Practitioner/retired": False},
        roles={
            "Practitioner/dr-dupont": [
                Membership("Organization/mm-marolles", "persphysician", NOW - DAY),
                Membership("Organization/old-clinic", "persphysician", NOW - 9 * DAY, NOW - DAY),
                Membership("Organization/future-clinic", "persphysician", NOW + DAY),
                Membership("Organization/suspended", "persnurse", active=False),
            ],
            "Practitioner/sw-janssens": [
                Membership("Organization/cpas-bxl", "perssocialworker"),
                Membership(None, "perspsychologist", None, NOW + DAY),
            ],
        },
    )


def claims(roles: str, fhir_user: str | None, scope: str, client_id: str | None = "portal",
           act: dict[str, str] | None = None) -> TokenClaims:
    return TokenClaims(subject=fhir_user or client_id or "x", issuer="https://i.test/auth",
                       client_id=client_id, fhir_user=fhir_user,
                       roles=frozenset(roles.split(",")), scopes=parse_scopes(scope),
                       expires_at=NOW + DAY, raw_scope=scope, act=act)


# -- resolution ----------------------------------------------------------------------

def test_citizen_is_their_own_patient(directory: InMemoryDirectory) -> None:
    principal = resolve_principal(claims("citizen", "Patient/martin", "patient/*.rs"),
                                  directory, NOW)
    assert principal.role == "citizen"
    assert principal.patient == "Patient/martin"
    assert principal.practitioner is None
    assert principal.organizations == frozenset()


def test_practitioner_gets_active_roles_from_the_directory(
        directory: InMemoryDirectory) -> None:
    principal = resolve_principal(
        claims("practitioner", "Practitioner/dr-dupont", "user/*.rs"), directory, NOW)
    assert principal.practitioner == "Practitioner/dr-dupont"
    assert principal.organizations == frozenset({"Organization/mm-marolles"})
    assert principal.professions == frozenset({"persphysician"})
    assert principal.on_behalf_of is None


def test_role_periods_are_respected_over_time(directory: InMemoryDirectory) -> None:
    token = claims("practitioner", "Practitioner/dr-dupont", "user/*.rs")
    assert resolve_principal(token, directory, NOW - 2 * DAY).organizations == \
        frozenset({"Organization/old-clinic"})
    assert resolve_principal(token, directory, NOW + 2 * DAY).organizations == \
        frozenset({"Organization/mm-marolles", "Organization/future-clinic"})


def test_role_without_organization_still_gives_its_profession(
        directory: InMemoryDirectory) -> None:
    principal = resolve_principal(
        claims("practitioner", "Practitioner/sw-janssens", "user/*.rs"), directory, NOW)
    assert principal.organizations == frozenset({"Organization/cpas-bxl"})
    assert principal.professions == frozenset({"perssocialworker", "perspsychologist"})


def test_token_claims_never_add_organisations_or_professions(
        directory: InMemoryDirectory) -> None:
    token = claims("practitioner", "Practitioner/sw-janssens", "user/*.rs")
    principal = resolve_principal(replace(token, roles=frozenset({"practitioner",
                                                                  "persphysician"})),
                                  directory, NOW)
    assert "persphysician" not in principal.professions


@pytest.mark.parametrize("fhir_user", ["Practitioner/unknown", "Practitioner/retired",
                                       None, "Patient/martin", "Practitioner/a b"])
def test_practitioner_missing_or_inactive_is_401(directory: InMemoryDirectory,
                                                 fhir_user: str | None) -> None:
    with pytest.raises(InvalidToken) as caught:
        resolve_principal(claims("practitioner", fhir_user, "user/*.rs"), directory, NOW)
    assert caught.value.status == 401


@pytest.mark.parametrize("fhir_user", [None, "Practitioner/dr-dupont", "Patient/", "martin"])
def test_citizen_without_a_patient_is_401(directory: InMemoryDirectory,
                                          fhir_user: str | None) -> None:
    with pytest.raises(InvalidToken):
        resolve_principal(claims("citizen", fhir_user, "patient/*.rs"), directory, NOW)


@pytest.mark.parametrize("roles", ["", "nurse", "admin,auditor", "citizen,practitioner",
                                   "hub,practitioner"])
def test_a_token_acts_in_exactly_one_role(directory: InMemoryDirectory, roles: str) -> None:
    with pytest.raises(InvalidToken):
        resolve_principal(claims(roles, "Practitioner/dr-dupont", "user/*.rs"), directory, NOW)


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_operator_roles_need_no_fhir_resource(directory: InMemoryDirectory, role: str) -> None:
    principal = resolve_principal(claims(role, "Person/operator-7", "user/*.rs"), directory, NOW)
    assert principal.role == role
    assert principal.fhir_user == "Person/operator-7"
    assert principal.practitioner is None


def test_hub_as_an_organisation(directory: InMemoryDirectory) -> None:
    principal = resolve_principal(
        claims("hub", "Organization/abrumet", "system/*.rs", client_id="hub-abrumet"),
        directory, NOW)
    assert principal.client_id == "hub-abrumet"
    assert principal.organizations == frozenset({"Organization/abrumet"})
    assert principal.on_behalf_of is None


def test_hub_on_behalf_of_a_practitioner_uses_the_practitioner_grants(
        directory: InMemoryDirectory) -> None:
    principal = resolve_principal(
        claims("hub", "Practitioner/dr-dupont", "system/*.rs", client_id="hub-abrumet",
               act={"sub": "hub-abrumet"}), directory, NOW)
    assert principal.role == "hub"
    assert principal.on_behalf_of == "Practitioner/dr-dupont"
    assert principal.practitioner == "Practitioner/dr-dupont"
    assert principal.organizations == frozenset({"Organization/mm-marolles"})
    assert principal.client_id == "hub-abrumet"


@pytest.mark.parametrize(("fhir_user", "client_id"), [
    ("Practitioner/retired", "hub-x"), ("Patient/martin", "hub-x"), (None, None),
    ("Practitioner/dr-dupont", None),
])
def test_bad_hub_tokens_are_401(directory: InMemoryDirectory, fhir_user: str | None,
                                client_id: str | None) -> None:
    with pytest.raises(InvalidToken):
        resolve_principal(claims("hub", fhir_user, "system/*.rs", client_id=client_id),
                          directory, NOW)


# -- the gate ------------------------------------------------------------------------

def principal(role: str, scope: str, *, patient: str | None = None) -> Principal:
    return Principal(role=role, roles=frozenset({role}), fhir_user=patient,  # type: ignore[arg-type]
                     patient=patient, practitioner=None, organizations=frozenset(),
                     professions=frozenset(), client_id="c", scopes=parse_scopes(scope),
                     on_behalf_of=None)


def allowed(who: Principal, resource_type: str, interaction: str,
            compartment: str | None = None) -> bool:
    try:
        check_interaction(who, resource_type, interaction, compartment_patient=compartment)
    except Forbidden as error:
        status = error.status
    else:
        return True
    assert status == 403
    return False


@pytest.mark.parametrize("resource_type", sorted(DIRECTORY_TYPES))
def test_only_admin_writes_the_directory(resource_type: str) -> None:
    full = {"citizen": "patient/*.cruds", "practitioner": "user/*.cruds",
            "auditor": "user/*.cruds", "admin": "user/*.cruds", "hub": "system/*.cruds"}
    for role in ROLES:
        who = principal(role, full[role], patient="Patient/martin")
        for interaction in "cud":
            # a HealthcareService is also kept by its organisation's members (the consent
            # policy checks the organisation: core/access.py)
            keeper = role == "admin" or (role == "practitioner" and
                                         resource_type == "HealthcareService")
            assert allowed(who, resource_type, interaction) is keeper
        assert allowed(who, resource_type, "r")  # every user reads the directory
        assert allowed(who, resource_type, "s")


def test_citizen_reaches_only_their_own_compartment() -> None:
    martin = principal("citizen", "patient/*.cruds", patient="Patient/martin")
    assert allowed(martin, "Task", "r", "Patient/martin")
    assert allowed(martin, "AuditEvent", "s", "Patient/martin")
    assert allowed(martin, "Consent", "c", "Patient/martin")
    assert allowed(martin, "Consent", "d", "Patient/martin")
    assert not allowed(martin, "Task", "r", "Patient/simone")
    assert not allowed(martin, "Consent", "c", "Patient/simone")
    assert not allowed(martin, "Task", "s", None)
    assert not allowed(martin, "Task", "c", "Patient/martin")  # professionals write entries


def test_citizen_needs_patient_scopes() -> None:
    martin = principal("citizen", "user/*.cruds system/*.cruds", patient="Patient/martin")
    assert not allowed(martin, "Task", "r", "Patient/martin")
    narrow = principal("citizen", "patient/Task.rs", patient="Patient/martin")
    assert allowed(narrow, "Task", "r", "Patient/martin")
    assert not allowed(narrow, "Observation", "r", "Patient/martin")


def test_hub_only_with_system_scopes() -> None:
    assert allowed(principal("hub", "system/*.rs"), "Task", "r", "Patient/martin")
    assert not allowed(principal("hub", "user/*.rs patient/*.rs"), "Task", "r", "Patient/m")
    assert not allowed(principal("hub", "system/*.rs"), "Task", "c", "Patient/m")
    assert allowed(principal("hub", "system/*.cruds"), "Task", "c", "Patient/m")
    assert not allowed(principal("hub", "system/*.cruds"), "Patient", "c")  # only locally
    assert not allowed(principal("hub", "system/*.cruds"), "Consent", "r", "Patient/m")


def test_practitioner_rules() -> None:
    gp = principal("practitioner", "user/*.cruds")
    assert allowed(gp, "Patient", "c")  # opens a dossier
    assert allowed(gp, "Task", "u", "Patient/martin")  # consent decides within
    assert not allowed(gp, "Task", "d", "Patient/martin")
    assert allowed(gp, "Consent", "c", "Patient/martin")  # only as assisted consent (§13)
    assert not allowed(gp, "Consent", "u", "Patient/martin")
    assert not allowed(gp, "Consent", "r", "Patient/martin")
    assert not allowed(gp, "AuditEvent", "r", "Patient/martin")  # professionals none
    assert allowed(gp, "Communication", "s", "Patient/martin")  # their own inbox only
    assert not allowed(gp, "Communication", "c", "Patient/martin")
    assert not allowed(principal("practitioner", "patient/*.cruds"), "Task", "r", "Patient/m")


def test_auditor_reads_the_log_and_nothing_of_the_dossier() -> None:
    auditor = principal("auditor", "user/*.cruds")
    assert allowed(auditor, "AuditEvent", "s")
    assert allowed(auditor, "AuditEvent", "r")
    assert not allowed(auditor, "AuditEvent", "c")
    assert not allowed(auditor, "Task", "r", "Patient/martin")
    assert not allowed(auditor, "Patient", "r", "Patient/martin")


def test_admin_opens_a_dossier_but_reads_none() -> None:
    admin = principal("admin", "user/*.cruds")
    assert allowed(admin, "Patient", "c")
    assert not allowed(admin, "Patient", "r", "Patient/martin")
    assert not allowed(admin, "AuditEvent", "s")


@given(st.sampled_from(ROLES), st.sampled_from(sorted(COMPARTMENT_TYPES | DIRECTORY_TYPES)),
       st.sampled_from(list(INTERACTIONS)))
def test_no_scope_no_access(role: str, resource_type: str, interaction: str) -> None:
    assert not allowed(principal(role, "openid fhirUser", patient="Patient/martin"),
                       resource_type, interaction, "Patient/martin")


@given(st.sampled_from(ROLES), st.sampled_from(list(INTERACTIONS)))
def test_unknown_resource_types_are_closed(role: str, interaction: str) -> None:
    who = principal(role, "patient/*.cruds user/*.cruds system/*.cruds",
                    patient="Patient/martin")
    assert not allowed(who, "Basic", interaction, "Patient/martin")


def test_forbidden_reason_is_for_the_audit_and_message_is_generic() -> None:
    with pytest.raises(Forbidden) as caught:
        check_interaction(principal("practitioner", "user/*.rs"), "Consent", "c",
                          compartment_patient="Patient/martin")
    assert "martin" not in str(caught.value)
    assert caught.value.reason
    assert 'error="insufficient_scope"' in caught.value.headers["WWW-Authenticate"]
