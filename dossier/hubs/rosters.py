"""Rosters: a hub's or practitioner's own list of the people it follows, as a FHIR Group
(`type` person, `actual` true, members `Patient/{id}`). A roster is the input of a
Group-level Bulk Data export (`Group/{id}/$export`).

A roster is private to whoever made it (same role, client and user): anyone else gets
the 404 of a Group that does not exist, and the directory never lists it (a Group of
people readable by every user would tell everyone who has a dossier). Members are not
checked against the store when the roster is written — a check would tell a hidden
dossier from a missing one; the export reads each member through the consent engine,
so a member without a grant simply yields nothing. Rosters hold pseudonymous ids only.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from sqlalchemy import delete, insert, select, update

from auth import Principal
from auth.rules import SCOPE_CONTEXT
from auth.scopes import allows
from dossier.core.context import owner_of
from dossier.core.repository import Repository, RowMeta, Stored
from dossier.db.models import rosters
from dossier.errors import Forbidden, Unprocessable
from dossier.fhir.bundles import instant

ROLES = frozenset({"hub", "practitioner"})
MAX_MEMBERS = 10_000
ID = re.compile(r"roster-[0-9a-f]{32}")
MEMBER = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})")
# no `name`: free text could name a person, and a roster holds pseudonymous ids only
FIELDS = frozenset({"resourceType", "id", "meta", "type", "actual", "member"})
T = rosters.c


def handles(principal: Principal) -> bool:
    """Hubs and practitioners keep rosters; for them, Group writes are roster writes."""
    return principal.role in ROLES


def is_roster_id(group_id: str) -> bool:
    return ID.fullmatch(group_id) is not None


def _gate(repo: Repository, action: str, interaction: str) -> None:
    repo.begin(action, "Group", None)
    p = repo.ctx.principal
    usable = [s for s in p.scopes if s.context == SCOPE_CONTEXT[p.role]]
    if not handles(p) or not allows(usable, "Group", interaction):
        raise Forbidden("Your role or the scopes of your token do not allow this "
                        "interaction on a roster Group.")


def _bad(message: str, where: str) -> Unprocessable:
    return Unprocessable(message, expression=[f"Group.{where}"])


def parse(body: dict[str, Any]) -> list[str]:
    """The member patient ids of a roster; 422 naming the element otherwise."""
    for key in body:
        if key not in FIELDS:
            raise _bad(f"A roster Group does not take the element {key[:64]}.", key[:64])
    if body.get("type") != "person" or body.get("actual") is not True:
        raise _bad("A roster is a Group with type 'person' and actual true.", "type")
    raw = body.get("member", [])
    if not isinstance(raw, list) or len(raw) > MAX_MEMBERS:
        raise _bad(f"member is a list of at most {MAX_MEMBERS} people.", "member")
    members: list[str] = []
    for item in raw:
        ref = item.get("entity", {}).get("reference") if isinstance(item, dict) and \
            set(item) == {"entity"} and isinstance(item.get("entity"), dict) and \
            set(item["entity"]) == {"reference"} else None
        match = MEMBER.fullmatch(ref) if isinstance(ref, str) else None
        if match is None:
            raise _bad("Each member is {\"entity\": {\"reference\": \"Patient/id\"}}.",
                       "member.entity")
        if match[1] not in members:
            members.append(match[1])
    return members


def _resource(group_id: str, members: list[str], version: int,
              at: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Group", "id": group_id,
        "meta": {"versionId": str(version), "lastUpdated": instant(at)},
        "type": "person", "actual": True, "quantity": len(members)}
    if members:
        out["member"] = [{"entity": {"reference": f"Patient/{m}"}} for m in members]
    try:
        get_fhir_model_class("Group").model_validate(out)
    except ValidationError:
        raise _bad("This roster is not a valid FHIR Group.", "member") from None
    return out


def _stored(resource: dict[str, Any], version: int, at: datetime, method: str) -> Stored:
    meta = RowMeta("Group", resource["id"], None, frozenset())
    return Stored("Group", resource["id"], version, at, False, resource, meta, method)


def create(repo: Repository, body: dict[str, Any]) -> Stored:
    _gate(repo, "create", "c")
    members = parse(body)
    group_id = f"roster-{uuid.uuid4().hex}"
    now = repo.ctx.now
    resource = _resource(group_id, members, 1, now)
    repo.session.execute(insert(rosters).values(
        id=group_id, owner=owner_of(repo.ctx.principal), members=members,
        version_id=1, updated_at=now))
    repo.note_access("create", "Group", group_id, None)
    return _stored(resource, 1, now, "POST")


def _owned(repo: Repository, group_id: str) -> Any:
    row = repo.session.execute(select(rosters).where(T.id == group_id)).first()
    if row is None or row.owner != owner_of(repo.ctx.principal):
        return None
    return row


def read(repo: Repository, group_id: str) -> Stored | None:
    """The caller's roster, or None (then the directory answers, with its 404)."""
    _gate(repo, "read", "r")
    row = _owned(repo, group_id)
    if row is None:
        return None
    repo.note_access("read", "Group", group_id, None)
    return _stored(_resource(row.id, list(row.members), row.version_id,
                             row.updated_at), row.version_id, row.updated_at, "GET")


def replace(repo: Repository, group_id: str, body: dict[str, Any]) -> Stored | None:
    _gate(repo, "update", "u")
    row = _owned(repo, group_id)
    if row is None:
        return None
    if body.get("id") != group_id:
        raise _bad("The id in the body must be the id in the URL.", "id")
    members = parse(body)
    version, now = row.version_id + 1, repo.ctx.now
    resource = _resource(group_id, members, version, now)
    repo.session.execute(update(rosters).where(T.id == group_id).values(
        members=members, version_id=version, updated_at=now))
    repo.note_access("update", "Group", group_id, None)
    return _stored(resource, version, now, "PUT")


def remove(repo: Repository, group_id: str) -> bool:
    _gate(repo, "delete", "d")
    if _owned(repo, group_id) is None:
        return False
    repo.session.execute(delete(rosters).where(T.id == group_id))
    repo.note_access("delete", "Group", group_id, None)
    return True


def members_of(repo: Repository, group_id: str) -> list[str] | None:
    """The member ids of the caller's roster (None when it is not theirs or not one)."""
    if not is_roster_id(group_id):
        return None
    row = _owned(repo, group_id)
    return None if row is None else list(row.members)
