"""One dossier per national number (SPEC §13): the keyed blind index of Patient NISS.

The clear number is never stored or compared: a Patient's `identifier` (ssin system) is
indexed as an HMAC (dossier/core/sealing.py), and a unique index on those rows makes a
second dossier for the same number impossible, even from two concurrent requests."""

from __future__ import annotations

from sqlalchemy import false, func, select

from dossier.db.models import resources, search_index
from dossier.db.tx import Tx

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
S = search_index.c
R = resources.c


class NissIndex:
    def __init__(self, session: Tx) -> None:
        self.session = session

    def lock(self, blind: str) -> None:
        """Serialise the opening of one person's dossier until this transaction ends.
        PostgreSQL: a transaction-level advisory lock on the number's blind index (the
        unique index is the backstop). SQLite: a write unit already holds the write lock."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(
                func.hashtextextended(f"niss:{blind}", 0))))

    def find(self, blind: str) -> str | None:
        """The id of the live dossier holding this number, or None."""
        return self.session.execute(select(S.res_id).join(
            resources, (R.res_type == S.res_type) & (R.res_id == S.res_id)).where(
            S.res_type == "Patient", S.param == "identifier", S.system == SSIN,
            S.value == blind, R.deleted == false()).limit(1)).scalar()
