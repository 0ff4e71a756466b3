"""Server-provided resources: one Group per profession (`Group/profession-{code}`), so a
citizen can grant "every physician" (SPEC §12). Created on start, idempotently, through
the Repository as the server itself."""

from __future__ import annotations

from typing import Any

import schemas
from auth import Principal
from dossier.core.context import RequestContext
from dossier.core.repository import NullAudit, OpenPolicy, Repository
from dossier.core.runtime import Runtime

SERVER = Principal(role="admin", roles=frozenset({"admin"}), fhir_user="Device/dossier",
                   patient=None, practitioner=None, organizations=frozenset(),
                   professions=frozenset(), client_id=None, scopes=(), on_behalf_of=None)


def profession_codes() -> list[tuple[str, str]]:
    for cs in schemas.code_systems():
        if cs.get("url") == schemas.PROFESSION_SYSTEM:
            return [(c["code"], c.get("display", c["code"])) for c in cs.get("concept", [])]
    return []


def profession_group(code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Group", "id": f"profession-{code}", "active": True,
            "type": "practitioner", "actual": False, "name": display,
            "code": {"coding": [{"system": schemas.PROFESSION_SYSTEM, "code": code}]}}


def server_repository(runtime: Runtime, session: Any) -> Repository:
    return Repository(session, RequestContext(principal=SERVER), policy=OpenPolicy(),
                      sealer=runtime.sealer(), audit=NullAudit())


def ensure_profession_groups(runtime: Runtime) -> None:
    from sqlalchemy.orm import Session

    with Session(runtime.engine) as session, session.begin():
        repo = server_repository(runtime, session)
        for code, display in profession_codes():
            group = profession_group(code, display)
            row = repo.current_row("Group", group["id"])
            if row is None:
                repo.update("Group", group["id"], group)
