"""What coordination asks of storage (issue 18): an organisation's members, the messages
about a démarche, the current discharge plan. Reads of the current versions, on the
unit's transaction, one statement each."""

from __future__ import annotations

from sqlalchemy import and_, false, select
from sqlalchemy.orm import Session

from dossier.db.models import resources, search_index
from schemas import COMMUNICATION_CATEGORY_SYSTEM

R = resources.c
S = search_index.c


def _with(rtype: str, param: str, value: str, system: str | None = None) -> object:
    clause = and_(S.res_type == rtype, S.param == param, S.value == value)
    if system is not None:
        clause = and_(clause, S.system == system)
    return select(S.res_id).where(clause)


class Messages:
    def __init__(self, session: Session) -> None:
        self.session = session

    def members(self, organization: str) -> list[str]:
        """The Practitioners with an active role at the organisation ("Practitioner/x")."""
        roles = select(S.res_id).where(S.res_type == "PractitionerRole",
                                       S.param == "organization", S.value == organization)
        inactive = select(S.res_id).where(S.res_type == "PractitionerRole",
                                          S.param == "active", S.value == "false")
        live = select(R.res_id).where(R.res_type == "PractitionerRole", R.deleted == false())
        rows = self.session.execute(select(S.value).where(
            S.res_type == "PractitionerRole", S.param == "practitioner",
            S.res_id.in_(roles), S.res_id.not_in(inactive), S.res_id.in_(live))
            .distinct().order_by(S.value)).scalars()
        return list(rows)

    def about(self, patient_id: str, reference: str, category: str) -> list[tuple[str, str]]:
        """(id, addressee) of the messages of this category about `reference`, oldest
        first."""
        rows = self.session.execute(select(R.res_id, R.addressee).where(
            R.res_type == "Communication", R.patient_id == patient_id, R.deleted == false(),
            R.res_id.in_(_with("Communication", "about", reference)),  # type: ignore[arg-type]
            R.res_id.in_(_with("Communication", "category", category,  # type: ignore[arg-type]
                               COMMUNICATION_CATEGORY_SYSTEM)))
            .order_by(R.last_updated, R.res_id)).all()
        return [(r.res_id, r.addressee or "") for r in rows]

    def open_plan(self, patient_id: str, code_system: str, code: str) -> str | None:
        """The id of the person's open discharge plan (a Task), if any."""
        return self.session.execute(select(R.res_id).where(
            R.res_type == "Task", R.patient_id == patient_id, R.deleted == false(),
            R.res_id.in_(_with("Task", "code", code, code_system)),  # type: ignore[arg-type]
            R.res_id.in_(select(S.res_id).where(
                S.res_type == "Task", S.param == "status",
                S.value.in_(("requested", "accepted", "in-progress", "on-hold")))))
            .order_by(R.last_updated.desc())).scalars().first()
