"""From validated token claims to the actor a request runs as, and the coarse access gate.

A practitioner's professions and organisations come from the server's own
directory (active PractitionerRoles, period respected), never from the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from auth.errors import Forbidden, InvalidToken
from auth.rules import COMPARTMENT_TYPES, ROLES, SCOPE_CONTEXT, Role, role_allows
from auth.scopes import Scope, allows
from auth.tokens import TokenClaims

_ID = r"[A-Za-z0-9\-.]{1,64}"
_REFERENCE = {
    kind: re.compile(rf"{kind}/{_ID}") for kind in ("Patient", "Practitioner", "Organization")
}


class Directory(Protocol):
    """The server's directory of practitioners (implemented on the FHIR store)."""

    def practitioner_active(self, reference: str) -> bool:
        """Whether ``Practitioner/x`` exists and is active."""
        ...

    def active_roles(self, practitioner_ref: str,
                     at: datetime) -> list[tuple[str | None, str | None]]:
        """(organization reference, profession code) of each PractitionerRole active at ``at``."""
        ...


@dataclass(frozen=True)
class Representation:
    """A person this citizen represents (SPEC §13): through which RelatedPerson, with
    which mandate (``decide`` | ``see``), and whether it is still in force."""

    patient: str  # "Patient/x"
    related_person: str  # "RelatedPerson/y"
    relationship: str  # GUARD | POWATT | PRN
    mandate: str  # decide | see
    in_force: bool


@dataclass(frozen=True)
class Principal:
    """The actor of a request, as the consent decision and the audit see it."""

    role: Role
    roles: frozenset[str]
    fhir_user: str | None
    patient: str | None  # a citizen's own "Patient/x"
    practitioner: str | None  # "Practitioner/x": the practitioner, or the one a hub acts for
    organizations: frozenset[str]
    professions: frozenset[str]
    client_id: str | None
    scopes: tuple[Scope, ...]
    on_behalf_of: str | None  # hub only: the practitioner whose grants apply
    subject: str = ""  # the token's sub, for the audit
    niss: str | None = None  # a citizen signed in with their national number
    represents: tuple[Representation, ...] = ()  # the people a citizen represents

    def representation(self, patient_ref: str) -> Representation | None:
        """How this citizen represents ``patient_ref`` (None: they do not)."""
        return next((r for r in self.represents if r.patient == patient_ref), None)


def _is(kind: str, reference: str | None) -> bool:
    return reference is not None and _REFERENCE[kind].fullmatch(reference) is not None


def role_of(claims: TokenClaims) -> Role:
    """The one actor role a token carries (``InvalidToken`` for none or several)."""
    found = [role for role in ROLES if role in claims.roles]
    if len(found) != 1:
        # One token acts in one role: admin and auditor stay separate duties.
        raise InvalidToken("token must carry exactly one actor role")
    return found[0]


def _principal(claims: TokenClaims, role: Role, *, patient: str | None = None,
               practitioner: str | None = None,
               organizations: frozenset[str] = frozenset(),
               professions: frozenset[str] = frozenset(),
               on_behalf_of: str | None = None,
               represents: tuple[Representation, ...] = ()) -> Principal:
    return Principal(
        role=role, roles=claims.roles, fhir_user=claims.fhir_user, patient=patient,
        practitioner=practitioner, organizations=organizations, professions=professions,
        client_id=claims.client_id, scopes=claims.scopes, on_behalf_of=on_behalf_of,
        subject=claims.subject, niss=claims.niss if role == "citizen" else None,
        represents=represents,
    )


def resolve_principal(claims: TokenClaims, directory: Directory, now: datetime) -> Principal:
    """The principal of ``claims``; ``InvalidToken`` when the token names no valid actor."""
    role = role_of(claims)
    fhir_user = claims.fhir_user
    if role == "citizen":
        if claims.niss is not None:
            return _citizen_by_niss(claims, directory, now)
        if fhir_user is None or not _is("Patient", fhir_user):
            raise InvalidToken("citizen token without a Patient fhirUser")
        return _principal(claims, role, patient=fhir_user)
    if role == "practitioner" or (role == "hub" and _is("Practitioner", fhir_user)):
        if role == "hub" and claims.client_id is None:
            raise InvalidToken("hub token without client_id")
        practitioner, memberships = _practitioner(fhir_user, directory, now)
        return _principal(
            claims, role, practitioner=practitioner,
            organizations=frozenset(org for org, _ in memberships if org),
            professions=frozenset(code for _, code in memberships if code),
            on_behalf_of=practitioner if role == "hub" else None,
        )
    if role == "hub":
        if claims.client_id is None:
            raise InvalidToken("hub token without client_id")
        if fhir_user is None:
            return _principal(claims, role)
        if not _is("Organization", fhir_user):
            raise InvalidToken("hub fhirUser is neither a Practitioner nor an Organization")
        return _principal(claims, role, organizations=frozenset({fhir_user}))
    # admin and auditor: operator accounts, which need not exist in FHIR.
    return _principal(claims, role)


def _citizen_by_niss(claims: TokenClaims, directory: Directory, now: datetime) -> Principal:
    """A citizen named by their national number: their own dossier (if any) and the people
    they represent, matched by the keyed blind index (SPEC §8, §13)."""
    lookup = getattr(directory, "citizen", None)
    if lookup is None:
        raise InvalidToken("no directory to resolve a national number")
    assert claims.niss is not None
    patient, represents = lookup(claims.niss, now)
    linked = getattr(directory, "linked_login", None)
    if patient is None and claims.fhir_user is None and linked is not None:
        patient = linked(claims.issuer, claims.subject)  # a pseudonymous dossier, enrolled
    if claims.fhir_user is not None:
        if not _is("Patient", claims.fhir_user):
            raise InvalidToken("citizen token without a Patient fhirUser")
        if patient is not None and claims.fhir_user != patient:
            raise InvalidToken("fhirUser and the national number name different people")
        patient = claims.fhir_user  # an existing client's fhirUser keeps working
    return _principal(claims, "citizen", patient=patient, represents=tuple(represents))


def _practitioner(fhir_user: str | None, directory: Directory,
                  now: datetime) -> tuple[str, list[tuple[str | None, str | None]]]:
    """The practitioner and their active memberships; one directory call when the
    directory can answer both at once (``practitioner``)."""
    combined = getattr(directory, "practitioner", None)
    if combined is None or fhir_user is None or not _is("Practitioner", fhir_user):
        practitioner = _active_practitioner(fhir_user, directory)
        return practitioner, directory.active_roles(practitioner, now)
    active, memberships = combined(fhir_user, now)
    if not active:
        raise InvalidToken("practitioner missing or inactive in the directory")
    return fhir_user, memberships


def _active_practitioner(fhir_user: str | None, directory: Directory) -> str:
    if fhir_user is None or not _is("Practitioner", fhir_user):
        raise InvalidToken("practitioner token without a Practitioner fhirUser")
    if not directory.practitioner_active(fhir_user):
        raise InvalidToken("practitioner missing or inactive in the directory")
    return fhir_user


def check_interaction(principal: Principal, resource_type: str, interaction: str, *,
                      compartment_patient: str | None) -> None:
    """Raise ``Forbidden`` unless role and scopes allow ``interaction`` on ``resource_type``.

    ``compartment_patient`` is the ``Patient/x`` whose compartment the request
    touches (for a search, the patient it is narrowed to), or ``None``.
    A citizen reaches compartment types only in their own compartment.
    """
    if not role_allows(principal.role, resource_type, interaction):
        raise Forbidden(f"role {principal.role} may not {interaction} {resource_type}")
    context = SCOPE_CONTEXT[principal.role]
    usable = [scope for scope in principal.scopes if scope.context == context]
    if not allows(usable, resource_type, interaction):
        raise Forbidden(f"no {context}/ scope for {interaction} {resource_type}")
    if principal.role == "citizen" and resource_type in COMPARTMENT_TYPES:
        opening = resource_type == "Patient" and interaction in "cs" and principal.niss
        reachable = {principal.patient} | {r.patient for r in principal.represents}
        if not opening and (compartment_patient is None or compartment_patient not in
                            reachable):
            raise Forbidden("outside the citizen's own compartment")
