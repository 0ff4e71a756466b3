"""The server's own directory, as auth/ needs it to resolve a practitioner (never the token)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, false, select, tuple_, union_all
from sqlalchemy.orm import Session

from auth import Representation
from dossier.db.models import login_links, resources, search_index
from dossier.db.tx import Tx
from dossier.domain.people import SSIN, mandate_of, relationship_of
from schemas.fhirtime import bounds

R = resources.c
S = search_index.c

# Built once: a request resolves its principal with this statement, and building the
# expression anew cost more than running it (measured under load). Two branches, each a
# primary-key lookup: one OR across them made PostgreSQL read every directory row
# (Locations, Groups, their Provenance…) on every request.
_DIRECTORY_ROW = (R.deleted == false(), R.patient_id.is_(None))  # one partition when
# `dossier db partition` has run
def practitioner_rows(rid: str = "rid", reference: str = "reference") -> Any:
    """The Practitioner `rid` names and the PractitionerRoles naming `reference` (the
    names of the two bound parameters): (res_type, content) rows."""
    return union_all(
        select(R.res_type, R.content).where(
            R.res_type == "Practitioner", R.res_id == bindparam(rid), *_DIRECTORY_ROW),
        select(R.res_type, R.content).where(
            R.res_type == "PractitionerRole", R.res_id.in_(
                select(S.res_id).where(S.res_type == "PractitionerRole",
                                       S.param == "practitioner",
                                       S.value == bindparam(reference))), *_DIRECTORY_ROW))


_PRACTITIONER = practitioner_rows()
# Reads a practitioner's rows another way: (transaction, practitioner id, reference) →
# (res_type, content) rows. The unit of a plain read reads them in the statement that
# fetches the row asked for (core/repository.py ReadAlong).
PractitionerReader = Callable[[Tx, str, str], list[tuple[str, dict[str, Any]]]]
# The people a national number names, found from the blind index (not correlated with the
# outer row: PostgreSQL then probed the index once per Patient of the region).
_CITIZEN = select(R.res_type, R.res_id, R.patient_id, R.content).where(
    R.deleted == false(), tuple_(R.res_type, R.res_id).in_(
        select(S.res_type, S.res_id).where(
            S.res_type.in_(("Patient", "RelatedPerson")), S.param == "identifier",
            S.system == SSIN, S.value == bindparam("value"))))


def _active(content: dict[str, Any]) -> bool:
    return content.get("active", True) is not False


def _in_period(period: Any, at: datetime) -> bool:
    if not isinstance(period, dict):
        return True
    try:
        if "start" in period and bounds(period["start"])[0] > at:
            return False
        if "end" in period and bounds(period["end"])[1] <= at:
            return False
    except ValueError:
        return False  # a period we cannot read never widens access
    return True


class StoreDirectory:
    """Reads Practitioner and PractitionerRole from the FHIR store (current versions)."""

    def __init__(self, engine: Engine | None, session: Tx | None = None,
                 blind: Callable[[str, str], str] | None = None,
                 practitioner_reader: PractitionerReader | None = None) -> None:
        self.engine = engine
        self.session = session  # read inside this transaction when given
        self.blind = blind  # the keyed blind index, to find a person by national number
        self.practitioner_reader = practitioner_reader

    def citizen(self, niss: str,
                at: datetime) -> tuple[str | None, list[Representation]]:
        """The dossier whose NISS this is, and the people whose representative it names,
        in ONE query on the blind index (never the clear number)."""
        assert self.blind is not None, "finding a citizen needs the blind index"
        value = self.blind(SSIN, niss)
        with self._session() as session:
            rows = session.execute(_CITIZEN, {"value": value}).all()
        own = next((f"Patient/{r.res_id}" for r in rows if r.res_type == "Patient"), None)
        represents = [rep for r in rows if r.res_type == "RelatedPerson"
                      for rep in [representation(r.res_id, r.patient_id, r.content, at)]
                      if rep is not None]
        return own, sorted(represents, key=lambda rep: rep.patient)

    def linked_login(self, issuer: str, subject: str) -> str | None:
        """The pseudonymous dossier an enrolment code linked to this login, if any."""
        assert self.blind is not None
        with self._session() as session:
            return _linked(session, self.blind("login", f"{issuer}|{subject}"))

    @contextmanager
    def _session(self) -> Iterator[Tx]:
        if self.session is not None:
            yield self.session
            return
        assert self.engine is not None, "a StoreDirectory needs a session or an engine"
        with Session(self.engine) as session:
            yield session

    def practitioner(self, reference: str,
                     at: datetime) -> tuple[bool, list[tuple[str | None, str | None]]]:
        """Whether the Practitioner is active, and its active memberships, in ONE query
        (a request resolves its principal with a single round trip)."""
        rtype, _, rid = reference.partition("/")
        if rtype != "Practitioner":
            return False, []
        with self._session() as session:
            if self.practitioner_reader is not None:
                rows = self.practitioner_reader(session, rid, reference)
            else:
                rows = [(t, c) for t, c in session.connection().execute(_PRACTITIONER, {
                    "rid": rid, "reference": reference})]
        active = any(t == "Practitioner" and _active(c) for t, c in rows)
        return active, _memberships([c for t, c in rows if t == "PractitionerRole"], at)

    def practitioner_active(self, reference: str) -> bool:
        rtype, _, rid = reference.partition("/")
        if rtype != "Practitioner":
            return False
        with self._session() as session:
            row = session.execute(select(R.content).where(
                R.res_type == "Practitioner", R.res_id == rid, R.deleted == false())).first()
        return row is not None and _active(row.content)

    def active_roles(self, practitioner_ref: str,
                     at: datetime) -> list[tuple[str | None, str | None]]:
        with self._session() as session:
            rows = session.execute(select(R.content).where(
                R.res_type == "PractitionerRole", R.deleted == false(),
                R.res_id.in_(select(S.res_id).where(
                    S.res_type == "PractitionerRole", S.param == "practitioner",
                    S.value == practitioner_ref)))).all()
        return _memberships([content for (content,) in rows], at)


def _linked(session: Tx, login: str) -> str | None:
    found = session.execute(select(login_links.c.patient_id).where(
        login_links.c.login == login)).scalar()
    return f"Patient/{found}" if found else None


def representation(rid: str, patient_id: str | None, content: dict[str, Any],
                   at: datetime) -> Representation | None:
    """A RelatedPerson as a representation, or None when it is not a representative.
    Not in force once inactive or outside its period (a parent's ends at the child's
    18th birthday: the server writes that end, see dossier/core/people.py)."""
    relationship, mandate = relationship_of(content), mandate_of(content)
    if relationship is None or mandate is None or patient_id is None:
        return None
    in_force = _active(content) and _in_period(content.get("period"), at)
    return Representation(patient=f"Patient/{patient_id}", related_person=f"RelatedPerson/{rid}",
                          relationship=relationship, mandate=mandate, in_force=in_force)


class PreloadedDirectory:
    """The same answers as StoreDirectory for a known set of practitioners, read in two
    queries inside one transaction (subscriptions ask for many at every write). Lives
    no longer than that transaction."""

    def __init__(self, session: Tx, references: list[str]) -> None:
        ids = sorted({r.partition("/")[2] for r in references
                      if r.startswith("Practitioner/")})
        self.active: set[str] = set()
        self.roles: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            refs = [f"Practitioner/{i}" for i in chunk]
            for rid, content in session.execute(select(R.res_id, R.content).where(
                    R.res_type == "Practitioner", R.res_id.in_(chunk),
                    R.deleted == false())):
                if _active(content):
                    self.active.add(f"Practitioner/{rid}")
            for ref, content in session.execute(
                    select(S.value, R.content).select_from(resources).join(
                        search_index, (S.res_type == R.res_type) & (S.res_id == R.res_id)
                    ).where(R.res_type == "PractitionerRole", R.deleted == false(),
                            S.param == "practitioner", S.value.in_(refs))):
                self.roles.setdefault(ref, []).append(content)

    def practitioner_active(self, reference: str) -> bool:
        return reference in self.active

    def active_roles(self, practitioner_ref: str,
                     at: datetime) -> list[tuple[str | None, str | None]]:
        return _memberships(self.roles.get(practitioner_ref, []), at)


def _memberships(contents: list[dict[str, Any]],
                 at: datetime) -> list[tuple[str | None, str | None]]:
    """(organization, profession code) of each PractitionerRole active at `at`."""
    out: list[tuple[str | None, str | None]] = []
    for content in contents:
        if not _active(content) or not _in_period(content.get("period"), at):
            continue
        org = (content.get("organization") or {}).get("reference")
        codes = [c.get("code") for cc in content.get("code") or []
                 for c in cc.get("coding") or [] if c.get("system") == PROFESSION_SYSTEM]
        for code in codes or [None]:
            out.append((org, code))
    return out


PROFESSION_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-hcparty"
