"""The access index and the decision point agree (issue 14): on generated worlds of
grants, exclusions, periods, organisations, professions, psy and break-the-glass, the
rows a search's SQL narrowing admits are exactly the rows the pure decision point
(consent/) permits one by one — on SQLite and PostgreSQL. If they ever differed, totals
and paging would lie (or hide), so this is the invariant behind a search whose cost does
not grow with the caseload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from auth import Principal
from auth.scopes import parse_scopes
from dossier.core import access_index
from dossier.core.access import ConsentPolicy
from dossier.core.repository import row_meta
from dossier.db.models import resources
from dossier.stores.break_glass import BreakGlassGrants
from tests import factories as f

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
PATIENTS = ("p1", "p2")
ORGS = ("Organization/o1", "Organization/o2")
PROFESSIONS = ("persphysician", "persnurse")
ACTORS = ("Practitioner/me", "Practitioner/other", *ORGS,
          *(f"Group/profession-{p}" for p in PROFESSIONS))
CATEGORIES = ("identity", "demarches", "network", "fragility", "psy")
MOMENTS = [NOW - timedelta(days=30), NOW - timedelta(hours=1), NOW,
           NOW + timedelta(hours=1), NOW + timedelta(days=30)]


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@st.composite
def consents(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["permit", "permit", "deny"]))
    mine = ("Practitioner/me", "Organization/o1", "Group/profession-persnurse")
    actor = draw(st.sampled_from(ACTORS + mine) if kind == "permit" else
                 st.sampled_from((None, *ACTORS, *mine)))
    cats = tuple(draw(st.sets(st.sampled_from(CATEGORIES), min_size=1 if kind == "permit"
                              else 0)))
    actions = tuple(draw(st.sets(st.sampled_from(["access", "collect"]),
                                 min_size=1 if kind == "permit" else 0)))
    start = draw(st.sampled_from([None, None, *MOMENTS]))
    end = draw(st.sampled_from([None, None, *MOMENTS]))
    if start and end and start > end:
        start, end = end, start
    purpose = draw(st.sampled_from([None, None, None, "BTG"])) if kind == "deny" else None
    resource = f.consent(draw(st.sampled_from(PATIENTS)), actor, categories=cats,
                         actions=actions, kind=kind,
                         start=_instant(start) if start else None,
                         end=_instant(end) if end else None, purpose=purpose)
    if draw(st.integers(0, 9)) == 0:
        resource["status"] = "inactive"
    return resource


rows_strategy = st.lists(st.tuples(st.sampled_from(PATIENTS),
                                   st.sets(st.sampled_from(CATEGORIES), max_size=3)),
                         min_size=3, max_size=12)


def _world(session: Session, grants: list[dict[str, Any]],
           rows: list[tuple[str, set[str]]],
           glass: list[tuple[str, datetime]] = ()) -> None:  # type: ignore[assignment]
    for pid, moment in glass:  # break-the-glass grants to Practitioner/me
        BreakGlassGrants(session).grant(uuid.uuid4().hex, pid, "Practitioner/me", moment, 60,
                                        {})
    for consent_resource in grants:
        cid = uuid.uuid4().hex
        resource = {**consent_resource, "id": cid}
        pid = resource["patient"]["reference"].split("/")[1]
        session.execute(insert(resources).values(
            res_type="Consent", res_id=cid, version_id=1, last_updated=NOW, deleted=False,
            patient_id=pid, categories="", cat_mask=0, content=resource, sealed=None))
        access_index.refresh(session, cid, pid, resource)
    for pid, cats in rows:
        session.execute(insert(resources).values(
            res_type="Task", res_id=uuid.uuid4().hex, version_id=1, last_updated=NOW,
            deleted=False, patient_id=pid, categories=",".join(sorted(cats)),
            cat_mask=access_index.mask_of(cats), content={"resourceType": "Task"},
            sealed=None))


def _me(orgs: set[str], professions: set[str]) -> Principal:
    return Principal(role="practitioner", roles=frozenset({"practitioner"}),
                     fhir_user="Practitioner/me", patient=None, practitioner="Practitioner/me",
                     organizations=frozenset(orgs), professions=frozenset(professions),
                     client_id=None, scopes=parse_scopes("user/*.rs"),  # what a token carries
                     on_behalf_of=None)


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(grants=st.lists(consents(), min_size=1, max_size=10), rows=rows_strategy,
       glass=st.lists(st.tuples(st.sampled_from(PATIENTS),
                                st.sampled_from([m - timedelta(minutes=30) for m in MOMENTS])),
                      max_size=2),
       orgs=st.sets(st.sampled_from(ORGS)), professions=st.sets(st.sampled_from(PROFESSIONS)),
       at=st.sampled_from([*MOMENTS, NOW + timedelta(minutes=1)]))
def test_sql_narrowing_and_the_decision_point_agree(app: Any, grants: list[dict[str, Any]],
                                                     rows: list[tuple[str, set[str]]],
                                                     glass: list[tuple[str, datetime]],
                                                     orgs: set[str], professions: set[str],
                                                     at: datetime) -> None:
    engine = app.state.runtime.engine
    with Session(engine) as session:
        session.begin()
        try:
            _world(session, grants, rows, glass)
            policy = ConsentPolicy(session, _me(orgs, professions), at)
            stmt = select(resources).where(resources.c.res_type == "Task")
            admitted = {r.res_id for r in session.execute(policy.narrow(stmt))}
            typed = {r.res_id for r in session.execute(policy.narrow(stmt, resources, "Task"))}
            everything = session.execute(stmt).all()
            policy.prepare(r.patient_id for r in everything)
            permitted = {r.res_id for r in everything if policy.can_read(row_meta(r))}
            assert admitted == permitted
            assert typed == permitted  # the one-type join, as a search runs it
        finally:
            session.rollback()


def test_an_exclusion_empties_the_index_answer_at_once(app: Any) -> None:
    """Named cases the property also covers: a later deny of one category removes just
    those rows; a deny of everyone removes all; a revocation (inactive) removes the grant."""
    engine = app.state.runtime.engine
    me = _me({"Organization/o1"}, set())
    grant = f.consent("p1", "Organization/o1", categories=("demarches", "network"))
    with Session(engine) as session:
        session.begin()
        _world(session, [grant], [("p1", {"demarches"}), ("p1", {"network"}),
                                  ("p1", {"demarches", "psy"})])
        stmt = select(resources.c.categories).where(resources.c.res_type == "Task")

        def seen() -> set[str]:
            policy = ConsentPolicy(session, me, NOW)
            return {c for (c,) in session.execute(policy.narrow(stmt))}

        assert seen() == {"demarches", "network"}  # psy is never granted unless named
        _world(session, [f.consent("p1", "Organization/o1", kind="deny",
                                   categories=("network",), actions=())], [])
        assert seen() == {"demarches"}
        _world(session, [f.consent("p1", None, kind="deny", categories=(), actions=())], [])
        assert seen() == set()
        session.rollback()
