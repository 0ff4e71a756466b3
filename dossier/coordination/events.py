"""What a write tells professionals (SPEC §14), called by `core.content.after_write`:

- a démarche owned by another organisation with status `requested` (a referral) → each
  member of that organisation, when the person granted it the démarche;
- its answer (`accepted`, `in-progress` or `rejected` with a coded reason) → the
  professional who referred it;
- a Consent that permits a Practitioner → that practitioner ("access-granted"); one that
  stops doing so → "access-withdrawn".
"""

from __future__ import annotations

from typing import Any

from auth import Principal
from dossier.coordination.messages import message, send
from dossier.core.access import ConsentPolicy
from dossier.core.repository import Repository, Stored
from dossier.stores.messages import Messages

ANSWERS = frozenset({"accepted", "in-progress", "rejected"})


def after_write(repo: Repository, stored: Stored) -> None:
    resource = stored.resource
    if resource is None or stored.meta.patient_id is None:
        return
    if stored.resource_type == "Task":
        _referral(repo, stored, resource, stored.meta.patient_id)
    elif stored.resource_type == "Consent":
        _access(repo, stored, resource, stored.meta.patient_id)


def _ref(value: Any) -> str | None:
    found = value.get("reference") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def _previous(repo: Repository, stored: Stored) -> dict[str, Any] | None:
    if stored.version_id <= 1:
        return None
    return repo.server_version(stored.resource_type, stored.id, stored.version_id - 1)


def organisation_granted(repo: Repository, patient_id: str, organization: str,
                         categories: frozenset[str]) -> bool:
    """Whether the person's Consents let this organisation's members see these categories."""
    who = Principal(role="hub", roles=frozenset({"hub"}), fhir_user=organization,
                    patient=None, practitioner=None, organizations=frozenset({organization}),
                    professions=frozenset(), client_id=None, scopes=(), on_behalf_of=None)
    judge = ConsentPolicy(repo.session, who, repo.ctx.now)
    judge.break_glass_allowed = False
    return judge.decide(patient_id, categories, "access")


def _referral(repo: Repository, stored: Stored, task: dict[str, Any], pid: str) -> None:
    owner = _ref(task.get("owner"))
    requester = _ref(task.get("requester"))
    me = repo.ctx.principal.practitioner
    if owner is None or not owner.startswith("Organization/"):
        return
    status = task.get("status")
    before = _previous(repo, stored)
    was = before.get("status") if before else None
    about = f"Task/{stored.id}"
    if status == "requested" and was != "requested":
        if me is not None and owner in repo.ctx.principal.organizations:
            return  # a démarche of one's own organisation is no referral
        if not organisation_granted(repo, pid, owner, stored.meta.categories):
            return  # the person has not granted that organisation: nobody there is told
        for member in repo.store(Messages).members(owner):
            if member != me:
                send(repo, message(pid, member, "referral", [about], repo.ctx.now,
                                   sender=requester))
    elif was == "requested" and status in ANSWERS and requester and \
            requester.startswith("Practitioner/") and requester != me:
        reason = task.get("statusReason") if status == "rejected" else None
        send(repo, message(pid, requester, "referral-answer", [about], repo.ctx.now,
                           sender=me, reason=reason))


def _permitted_practitioners(resource: dict[str, Any] | None) -> set[str]:
    if not resource or resource.get("status") != "active":
        return set()
    provision = resource.get("provision") or {}
    if provision.get("type") != "permit":
        return set()
    return {ref for actor in provision.get("actor") or []
            if (ref := _ref(actor.get("reference"))) and ref.startswith("Practitioner/")}


def _access(repo: Repository, stored: Stored, resource: dict[str, Any], pid: str) -> None:
    now_granted = _permitted_practitioners(resource)
    before = _permitted_practitioners(_previous(repo, stored))
    about = [f"Patient/{pid}"]
    for who in sorted(now_granted - before):
        send(repo, message(pid, who, "access-granted", about, repo.ctx.now))
    for who in sorted(before - now_granted):
        send(repo, message(pid, who, "access-withdrawn", about, repo.ctx.now))


