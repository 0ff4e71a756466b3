"""The consent model: who acts, what one Consent says, what was decided.

Plain frozen values with no behaviour beyond checking their own shape, so the
engine and hypothesis can build and compare them freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

CATEGORY_SYSTEM = "https://dossier.brussels/fhir/CodeSystem/dossier-category"
CATEGORIES: frozenset[str] = frozenset({"identity", "demarches", "network", "fragility", "psy"})
# What break-the-glass opens: never `demarches`, never `psy`.
BREAK_GLASS_CATEGORIES: frozenset[str] = frozenset({"identity", "network", "fragility"})

ACTIONS: frozenset[str] = frozenset({"access", "collect"})
BREAK_GLASS_PURPOSE = "BTG"  # v3-ActReason#BTG
PROFESSION_GROUP_PREFIX = "Group/profession-"

ProvisionType = Literal["permit", "deny"]

_FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
PRACTITIONER_REF = re.compile(rf"Practitioner/{_FHIR_ID}")
ORGANIZATION_REF = re.compile(rf"Organization/{_FHIR_ID}")
PROFESSION_CODE = re.compile(r"[a-z0-9]{1,53}")  # keeps "profession-<code>" a valid FHIR id
PROFESSION_REF = re.compile(rf"{PROFESSION_GROUP_PREFIX}{PROFESSION_CODE.pattern}")
# any of the three, in one pass
ACTOR_REF = re.compile("|".join(f"(?:{p.pattern})" for p in (PRACTITIONER_REF, ORGANIZATION_REF,
                                                             PROFESSION_REF)))


def require_aware(value: datetime, name: str) -> None:
    """Reject naive datetimes: a consent period is meaningless without a zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def as_utc(value: datetime, name: str) -> datetime:
    """The same instant in UTC, after rejecting a naive value. An instant past the
    calendar's edge in UTC (0001-01-01T00:00+01:00) is held at the first or last instant
    a datetime can hold, which every real instant compares with the same way."""
    if value.tzinfo is UTC:
        return value
    require_aware(value, name)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def profession_group(code: str) -> str:
    """The Group reference that stands for a CD-HCPARTY profession."""
    return PROFESSION_GROUP_PREFIX + code


def is_actor_reference(reference: str) -> bool:
    """True for the references a provision may name (§12)."""
    return ACTOR_REF.fullmatch(reference) is not None


@dataclass(frozen=True)
class Actor:
    """The one acting, with every reference a provision can name them by.

    `organizations` must hold only organisations where the practitioner has an
    ACTIVE PractitionerRole; resolving that is auth's job, not ours.
    """

    practitioner: str | None = None
    organizations: frozenset[str] = frozenset()
    professions: frozenset[str] = frozenset()  # CD-HCPARTY codes, e.g. "persphysician"
    # Any other reference the actor answers to, e.g. a hub acting as "Organization/hub".
    other_references: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "organizations", frozenset(self.organizations))
        object.__setattr__(self, "professions", frozenset(self.professions))
        object.__setattr__(self, "other_references", frozenset(self.other_references))
        if self.practitioner is not None and not PRACTITIONER_REF.fullmatch(self.practitioner):
            raise ValueError("Actor.practitioner must look like 'Practitioner/<id>'")
        if not all(ORGANIZATION_REF.fullmatch(ref) for ref in self.organizations):
            raise ValueError("Actor.organizations must look like 'Organization/<id>'")
        if not all(PROFESSION_CODE.fullmatch(code) for code in self.professions):
            raise ValueError("Actor.professions must be CD-HCPARTY codes such as 'persnurse'")
        if not all(is_actor_reference(ref) for ref in self.other_references):
            raise ValueError("Actor.other_references must be Practitioner/Organization/Group refs")

    def references(self) -> frozenset[str]:
        """Every reference that names this actor."""
        refs = set(self.organizations) | set(self.other_references)
        refs.update(profession_group(code) for code in self.professions)
        if self.practitioner is not None:
            refs.add(self.practitioner)
        return frozenset(refs)


@dataclass(frozen=True)
class Provision:
    """One parsed Consent: a single grant (permit) or exclusion (deny).

    Empty `actors`, `actions` or `categories` mean "all" and are allowed on a
    deny only; a permit must name each. `start` is inclusive, `end` exclusive.
    Empty `purposes` means every ordinary purpose (see engine for BTG).
    """

    consent_id: str | None
    type: ProvisionType
    actors: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    start: datetime | None = None
    end: datetime | None = None
    purposes: frozenset[str] = frozenset()
    patient: str | None = None  # "Patient/<id>" when parsed from a resource

    def __post_init__(self) -> None:
        for name in ("actors", "actions", "categories", "purposes"):
            value = getattr(self, name)
            if type(value) is not frozenset:
                object.__setattr__(self, name, frozenset(value))
        if self.type not in ("permit", "deny"):
            raise ValueError("Provision.type must be 'permit' or 'deny'")
        if not all(is_actor_reference(ref) for ref in self.actors):
            raise ValueError("Provision.actors must be Practitioner/Organization/Group refs")
        if not self.actions <= ACTIONS:
            raise ValueError("Provision.actions must be 'access' or 'collect'")
        if not self.categories <= CATEGORIES:
            raise ValueError("Provision.categories must come from dossier-category")
        if not all(code and not code.isspace() for code in self.purposes):
            raise ValueError("Provision.purposes must be non-empty codes")
        if self.type == "permit" and not (self.actors and self.actions and self.categories):
            raise ValueError("a permit must name actors, actions and categories")
        # Kept in UTC: same-zone comparisons ignore `fold` in the autumn hour.
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is not UTC:
                object.__setattr__(self, name, as_utc(value, f"Provision.{name}"))
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("Provision.start must not be after Provision.end")

    @property
    def ref(self) -> str:
        """How reasons name this provision."""
        return f"Consent/{self.consent_id}" if self.consent_id else "Consent/-"

    def in_period(self, at: datetime) -> bool:
        """Start inclusive, end exclusive; an open side never limits.

        `at` must be aware (the engine passes it in UTC).
        """
        return (self.start is None or self.start <= at) and (self.end is None or at < self.end)


@dataclass(frozen=True)
class Decision:
    """Permit or deny, with short machine-friendly reasons for the audit."""

    permit: bool
    reasons: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.permit
