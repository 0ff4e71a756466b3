"""The access policy at the choke point: role and SMART scope gate (auth/), then the
citizen's consent (consent/) for every row of a patient's dossier.

Built per request from the request's session and principal; it reads the patient's
Consent resources and break-the-glass grants from the database each time it needs them
and keeps nothing beyond the request (revocation is immediate).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import combinations
from typing import Any

from sqlalchemy import and_, bindparam, false, or_, select

import consent
from auth import Forbidden as AuthForbidden
from auth import Principal, check_interaction
from auth.rules import COMPARTMENT_TYPES, DIRECTORY_TYPES
from dossier.core import access_index
from dossier.core.repository import RowMeta
from dossier.db.models import break_glass, resources
from dossier.db.tx import Tx
from dossier.errors import Forbidden, not_found

R = resources.c
PROFESSIONALS = ("practitioner", "hub")
DENY_ALL = consent.Provision(consent_id=None, type="deny", actors=frozenset(),
                             actions=frozenset(), categories=frozenset(), purposes=frozenset())


def actor_of(principal: Principal) -> consent.Actor:
    return consent.Actor(practitioner=principal.practitioner,
                         organizations=principal.organizations,
                         professions=principal.professions)


def category_key(categories: Iterable[str]) -> str:
    return ",".join(sorted(categories))


def subsets(granted: frozenset[str]) -> list[str]:
    """Every non-empty category set a row may carry and still be readable."""
    items = sorted(granted)
    return [",".join(c) for n in range(1, len(items) + 1) for c in combinations(items, n)]


_CONSENTS = select(R.patient_id, R.content).where(  # built once: see directory.py
    R.res_type == "Consent", R.patient_id.in_(bindparam("patients", expanding=True)),
    R.deleted == false())
# one person's (a read): no expanding IN to render per execution
_CONSENTS_OF = select(R.patient_id, R.content).where(
    R.res_type == "Consent", R.patient_id == bindparam("patient"), R.deleted == false())


def load_consents(session: Tx, patient_ids: list[str]) -> dict[str, list[consent.Provision]]:
    """The provisions of the patients' current Consents, read and parsed now (one query
    per 500 patients). A Consent that cannot be parsed gives [DENY_ALL]."""
    contents: dict[str, list[Any]] = {pid: [] for pid in patient_ids}
    for start in range(0, len(patient_ids), 500):
        chunk = patient_ids[start:start + 500]
        found = session.connection().execute(_CONSENTS_OF, {"patient": chunk[0]}) \
            if len(chunk) == 1 else session.connection().execute(_CONSENTS, {"patients": chunk})
        for pid, content in found:
            contents[pid].append(content)
    return {pid: provisions_of(found) for pid, found in contents.items()}


def provisions_of(contents: Iterable[Any]) -> list[consent.Provision]:
    """The provisions of one person's current Consents (their stored contents). A Consent
    that cannot be parsed gives [DENY_ALL]: it could be an exclusion (fail closed)."""
    out = []
    for content in contents:
        try:
            provision = consent.parse_consent(content)
        except consent.ConsentFormatError:
            return [DENY_ALL]
        if provision is not None:
            out.append(provision)
    return out


def _own_messages(T: Any, practitioner: str | None) -> Any:
    """Messages addressed to this practitioner (resources.addressee); none from a table
    without the column (versions: a message is read where it is, not in history)."""
    if practitioner is None or not hasattr(T, "addressee"):
        return false()
    return T.addressee == practitioner


class ConsentPolicy:
    def __init__(self, session: Tx, principal: Principal, now: datetime) -> None:
        self.session = session
        self.principal = principal
        self.now = now
        self.actor = actor_of(principal)
        self._provisions: dict[str, list[consent.Provision]] = {}
        self._grants: list[Any] | None = None  # this practitioner's live break-glass grants
        self.last_decision: consent.Decision | None = None
        self.break_glass_used: set[str] = set()
        self._scoped: dict[str, bool] = {}
        # off for standing access (subscriptions): break-the-glass is for one urgent read
        self.break_glass_allowed = True

    # ---------------------------------------------------------------- gate
    def gate(self, resource_type: str, interaction: str) -> None:
        """Role and SMART scopes, before any consent question (403 when refused)."""
        try:
            check_interaction(self.principal, resource_type, interaction,
                              compartment_patient=self._compartment())
        except AuthForbidden:
            raise Forbidden("Your role or the scopes of your token do not allow this "
                            "interaction on this resource type.") from None

    def _compartment(self) -> str | None:
        """The compartment the gate checks: a citizen's own, else (a representative
        without a dossier of their own) one they represent; rows are decided one by one."""
        p = self.principal
        if p.role != "citizen" or p.patient is not None:
            return p.patient
        return next((r.patient for r in p.represents), None)

    def creates_on_update(self, resource_type: str) -> bool:
        """PUT creates only in the directory; in a dossier it would tell a hidden id from a
        missing one."""
        return resource_type in DIRECTORY_TYPES

    # ---------------------------------------------------------------- consent inputs
    def provisions(self, patient_id: str) -> list[consent.Provision]:
        """The patient's active Consents (read now, for this request only)."""
        if patient_id not in self._provisions:
            self._load([patient_id])
        return self._provisions[patient_id]

    def preload(self, patient_id: str, provisions: list[consent.Provision]) -> None:
        """Use Consents already read in this transaction (`load_consents`); only without
        break-the-glass, whose grants are the actor's own."""
        assert not self.break_glass_allowed
        self._provisions[patient_id] = provisions

    def decides_by_consent(self) -> bool:
        """Whether this actor's reads of dossier rows are decided by the person's Consents
        (then a read fetches them with the row: `take_consents`)."""
        return self.principal.role in PROFESSIONALS

    def take_consents(self, patient_id: str, contents: list[Any]) -> None:
        """The person's current Consents, read in this transaction with the row about to
        be decided (Repository.read: one statement for both)."""
        self._provisions[patient_id] = provisions_of(contents)

    def _load(self, patient_ids: list[str]) -> None:
        """Read the Consents of several patients in one query per 500."""
        self._provisions.update(load_consents(self.session, patient_ids))

    def _urgent(self, patient_id: str) -> list[consent.Provision] | None:
        """The Consents plus this practitioner's live break-the-glass grants for the
        patient; None when break-the-glass cannot apply. The grants are read once per
        request, and only when the Consents alone do not permit."""
        if not (self.principal.practitioner and self.break_glass_allowed):
            return None
        provisions = self.provisions(patient_id)
        if provisions[:1] == [DENY_ALL]:  # an unreadable Consent: nothing else counts
            return None
        grants = [g for g in self._my_grants() if g.patient_id == patient_id]
        if not grants:
            return None
        return provisions + [
            consent.break_glass_provision(g.practitioner, g.granted_at, g.minutes,
                                          f"break-glass/{g.id}") for g in grants]

    def _my_grants(self) -> list[Any]:
        if self._grants is None:
            self._grants = list(self.session.execute(select(break_glass).where(
                break_glass.c.practitioner == self.principal.practitioner,
                break_glass.c.expires_at > self.now)))
        return self._grants

    def granted(self, patient_id: str, action: str = "access") -> frozenset[str]:
        provisions = self.provisions(patient_id)
        ordinary = consent.granted_categories(self.actor, provisions, action, self.now)
        if action != "access":
            return ordinary
        urgent_provisions = self._urgent(patient_id)
        if urgent_provisions is None:
            return ordinary
        urgent = consent.granted_categories(self.actor, urgent_provisions, action, self.now,
                                            consent.BREAK_GLASS_PURPOSE)
        if urgent - ordinary:
            self.break_glass_used.add(patient_id)
        return ordinary | urgent

    def decide(self, patient_id: str, categories: frozenset[str], action: str) -> bool:
        provisions = self.provisions(patient_id)
        decision = consent.decide(self.actor, provisions, categories, action, self.now)
        if not decision.permit and action == "access":
            urgent_provisions = self._urgent(patient_id)
            if urgent_provisions is not None:
                urgent = consent.decide(self.actor, urgent_provisions, categories, action,
                                        self.now, consent.BREAK_GLASS_PURPOSE)
                if urgent.permit:
                    self.break_glass_used.add(patient_id)
                    decision = urgent
        self.last_decision = decision
        return decision.permit

    # ---------------------------------------------------------------- rows
    def scoped(self, resource_type: str) -> bool:
        """Whether the token's scopes let it read ``resource_type`` (asked once per type and
        request). Every row shown is checked by its own type, so an `_include`, a
        `_revinclude`, `$everything` or a history never shows a type the scopes exclude."""
        found = self._scoped.get(resource_type)
        if found is None:
            try:
                self.gate(resource_type, "r")
                found = True
            except Forbidden:
                found = False
            self._scoped[resource_type] = found
        return found

    def can_read(self, row: RowMeta) -> bool:
        if not self.scoped(row.resource_type):
            return False
        role = self.principal.role
        if row.patient_id is None:
            return row.resource_type in DIRECTORY_TYPES or self._own_server_row(row)
        if role == "citizen":
            ref = f"Patient/{row.patient_id}"
            if ref in self.citizen_reach():
                return True
            self._refuse_ended(ref)
            return False
        if role in PROFESSIONALS and row.resource_type == "Communication":
            # a professional reads only the messages addressed to them (SPEC §14)
            return row.addressee is not None and row.addressee == self.principal.practitioner
        if role in PROFESSIONALS and row.resource_type != "Consent":
            return self.decide(row.patient_id, row.categories, "access")
        return False

    def citizen_reach(self, mandates: tuple[str, ...] = ("see", "decide")) -> set[str]:
        """The dossiers a citizen reaches: their own, and those of the people they represent
        with a mandate in force among `mandates` (SPEC §13)."""
        p = self.principal
        reach = {p.patient} if p.patient else set()
        return reach | {r.patient for r in p.represents if r.in_force and r.mandate in mandates}

    def _refuse_ended(self, patient_ref: str) -> None:
        """A representative whose mandate has ended: 403 on every act (SPEC §13)."""
        rep = self.principal.representation(patient_ref)
        if rep is not None and not rep.in_force and patient_ref != self.principal.patient:
            raise Forbidden("Your mandate to act for this person has ended (its period is "
                            "over, or the child has come of age).")

    def sees(self, patient_id: str, category: str) -> bool:
        """Whether the actor holds `category` of this dossier by the person's Consents now
        (element-level labels, SPEC §14). Break-the-glass never opens psy, so its grants
        are not read here."""
        role = self.principal.role
        if role == "citizen":
            return f"Patient/{patient_id}" in self.citizen_reach()
        if role not in PROFESSIONALS:
            return False
        return category in consent.granted_categories(
            self.actor, self.provisions(patient_id), "access", self.now)

    def _own_server_row(self, row: RowMeta) -> bool:
        return False

    def prepare(self, patient_ids: Iterable[str | None]) -> None:
        """Read, in one query, the Consents of the people whose rows are about to be
        decided one by one (a page of search results)."""
        wanted = sorted({p for p in patient_ids if p and p not in self._provisions})
        if wanted:
            self._load(wanted)

    def reach(self, resource_type: str) -> str | None:
        """Whom `narrow` starts this actor's statement over `resource_type` from: "own" (a
        citizen's own dossier and those they represent: a few), "caseload" (a
        professional's grants: up to thousands), or None (no bounded set of dossiers)."""
        role = self.principal.role
        if role == "citizen":
            return "own"
        if role in PROFESSIONALS and resource_type != "*" and \
                resource_type not in DIRECTORY_TYPES:
            return "caseload"
        return None

    def narrow(self, stmt: Any, table: Any = resources, resource_type: str = "*") -> Any:
        """`stmt` (over `table`, of `resource_type` or "*") narrowed in SQL to the rows
        this actor may read: the directory; a citizen's own dossier; for a professional,
        the access index (Consents and live break-the-glass grants) joined on the patient,
        a cost that does not grow with the caseload. The decision point still decides each
        returned row (`can_read`)."""
        T = table.c
        directory = and_(T.patient_id.is_(None), T.res_type.in_(sorted(DIRECTORY_TYPES)))
        role = self.principal.role
        if role == "citizen":
            own = sorted(ref.split("/", 1)[1] for ref in self.citizen_reach())
            if resource_type not in DIRECTORY_TYPES and resource_type != "*":
                return stmt.where(T.patient_id.in_(own))  # one dossier type
            return stmt.where(or_(directory, T.patient_id.in_(own)))
        if role not in PROFESSIONALS:
            return stmt.where(directory)
        if resource_type in DIRECTORY_TYPES:
            return stmt.where(directory)
        mine = _own_messages(T, self.principal.practitioner)
        if resource_type == "Communication":  # the inbox: one's own messages, no others
            return stmt.where(mine)
        refs, glass = self.actor.references(), bool(
            self.principal.practitioner and self.break_glass_allowed)
        visible = and_(T.res_type != "Consent", or_(T.res_type != "Communication", mine),
                       T.patient_id.in_(access_index.candidates(refs, self.now,
                                                                break_glass=glass)),
                       access_index.readable_now(T.cat_mask, T.patient_id, refs, self.now,
                                                 break_glass=glass))
        if resource_type != "*":  # one dossier type
            return stmt.where(visible)
        return stmt.where(or_(directory, visible))

    # ---------------------------------------------------------------- writes
    def check_write(self, resource_type: str, patient_id: str | None,
                    categories: frozenset[str], existing: RowMeta | None, *,
                    providers: frozenset[str] = frozenset()) -> None:
        role = self.principal.role
        if patient_id is None:
            if resource_type in DIRECTORY_TYPES and role == "admin":
                return
            if resource_type == "HealthcareService" and role == "practitioner" and \
                    providers and providers <= self.principal.organizations:
                return  # an organisation's members keep its services (SPEC §14)
            raise Forbidden("Only an administrator keeps the directory.")
        patient_ref = f"Patient/{patient_id}"
        if resource_type == "Patient" and existing is None and role in (
                "admin", "practitioner"):
            return  # opening a dossier: then no access until the citizen consents
        if resource_type == "Consent" and existing is None and role == "practitioner":
            return  # an assisted consent (Repository._check_assisted has checked it)
        if resource_type == "RelatedPerson" and existing is None and role == "admin":
            return  # a guardian or a parent (dossier/domain/people.py says which)
        if role == "citizen":
            if (resource_type == "Patient" and existing is None and self.principal.niss
                    and self.principal.patient is None):
                return  # opening their own dossier (Repository.open_dossier checks the NISS)
            if self.principal.patient == patient_ref:
                if resource_type in ("Consent", "RelatedPerson"):  # representatives: see
                    return                                        # dossier/domain/people.py
                raise Forbidden("A citizen changes their dossier through their consents.")
            rep = self.principal.representation(patient_ref)
            if rep is None:
                raise not_found(resource_type)
            self._refuse_ended(patient_ref)
            if rep.mandate != "decide":
                raise Forbidden("A personne de confiance sees the dossier but changes "
                                "nothing in it.")
            if resource_type == "Consent":
                return  # a mandataire decides as the person does
            raise Forbidden("A representative decides on access; they do not change the "
                            "dossier's entries.")
        if role in PROFESSIONALS and resource_type in COMPARTMENT_TYPES and \
                resource_type != "Consent":
            old = existing.categories if existing is not None else frozenset()
            if existing is not None and not self.can_read(existing):
                raise not_found(resource_type)
            if self.decide(patient_id, categories | old, "collect"):
                return
            # without access the dossier does not exist for this actor
            if not self.granted(patient_id):
                raise not_found("Patient")
            raise Forbidden("The person's consent does not let you record this kind of "
                            "entry.")
        raise not_found(resource_type)


def describe(policy: Any) -> str:
    return type(policy).__name__
