"""What coordination asks of storage (issue 18): an organisation's members, the messages
about a démarche, the current discharge plan. Reads of the current versions, on the
unit's transaction, one statement each."""

from __future__ import annotations

from sqlalchemy import and_, exists, false, select

from dossier.db.models import resources, search_index
from dossier.db.tx import Tx
from schemas import COMMUNICATION_CATEGORY_SYSTEM

R = resources.c
S = search_index.c


def _with(rtype: str, param: str, value: str, system: str | None = None) -> object:
    clause = and_(S.res_type == rtype, S.param == param, S.value == value)
    if system is not None:
        clause = and_(clause, S.system == system)
    return select(S.res_id).where(clause)


class Messages:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def members(self, organization: str) -> list[str]:
        """The Practitioners with an active role at the organisation ("Practitioner/x")."""
        # from the organisation's roles (by value), each joined to its own index rows and
        # its row by key: `IN` / `NOT IN` lists of every live, every inactive
        # PractitionerRole and every role's practitioner read the region's roles whole for
        # each referral (a hashed subplan on PostgreSQL, materialised lists on SQLite)
        role, who, flag = (search_index.alias(n) for n in ("role", "who", "flag"))
        inactive = exists(select(1).where(
            flag.c.res_type == "PractitionerRole", flag.c.res_id == role.c.res_id,
            flag.c.param == "active", flag.c.value == "false"))
        rows = self.session.execute(
            select(who.c.value).select_from(role.join(who, and_(
                who.c.res_type == "PractitionerRole", who.c.res_id == role.c.res_id,
                who.c.param == "practitioner")).join(resources, and_(
                    R.res_type == "PractitionerRole", R.res_id == role.c.res_id)))
            .where(role.c.res_type == "PractitionerRole", role.c.param == "organization",
                   role.c.value == organization, R.deleted == false(), ~inactive)
            .distinct().order_by(who.c.value)).scalars()
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
