"""Loading one person's dossier for a page, through the API: `$everything` (consent-
filtered and audited as one consultation), then the directory names it mentions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dossier.core.context import RequestContext
from dossier.portal import names as directory
from dossier.portal import views
from dossier.portal.gateway import Gateway
from dossier.portal.i18n import Translator
from dossier.portal.netmap import NARROW, WIDE, Canvas, Node, layout


@dataclass
class Dossier:
    patient_id: str
    name: str | None
    demarches: list[dict[str, Any]]
    members: list[views.Member]
    nodes: list[Node]
    fragility: dict[str, Any] | None
    resources: dict[str, list[dict[str, Any]]]
    names: dict[str, str]
    phone_nodes: list[Node] = field(default_factory=list)  # the narrow map
    canvases: tuple[Canvas, Canvas] = (WIDE, NARROW)
    # the categories this viewer may see (their own permission, not the person's data)
    may_see: frozenset[str] = frozenset({"identity", "demarches", "network", "fragility"})


def resources_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def mentioned(groups: dict[str, list[dict[str, Any]]]) -> set[str]:
    refs: set[str] = set()
    for task in groups.get("Task", []):
        refs.update(r for r in (views.ref(task.get("owner")), views.ref(task.get("requester")))
                    if r)
    for team in groups.get("CareTeam", []):
        for participant in team.get("participant") or []:
            reference = views.ref(participant.get("member"))
            if reference:
                refs.add(reference)
    return refs


def build(patient_id: str, resources: list[dict[str, Any]], names: dict[str, str],
          t: Translator, contacts: dict[str, list[str]] | None = None) -> Dossier:
    groups = views.by_type(resources)
    members = views.network_members(groups.get("CareTeam", []),
                                    groups.get("RelatedPerson", []), names, t, contacts)
    patient = next(iter(groups.get("Patient", [])), None)
    return Dossier(patient_id, views.person_name(patient),
                   views.demarche_rows(groups.get("Task", []), names, t), members,
                   layout(members, WIDE),
                   views.fragility_view(groups.get("Observation", []), t),
                   groups, names, layout(members, NARROW))


def load(gw: Gateway, ctx: RequestContext, patient_id: str, t: Translator) -> Dossier:
    """The dossier as this user may see it (404 ApiError when they may see nothing)."""
    resources = resources_of(gw.operation(ctx, "everything", patient_id))
    groups = views.by_type(resources)
    refs = mentioned(groups)
    names: dict[str, str] = {}
    contacts: dict[str, list[str]] = {}
    may_see: frozenset[str] | None = None
    with gw.unit(ctx) as repo:
        if refs:
            names = directory.names_for(repo, refs, t.lang)
            contacts = directory.contacts_for(repo, refs)
        granted = getattr(repo.policy, "granted", None)  # ConsentPolicy: their own grants
        if ctx.principal.role == "practitioner" and callable(granted):
            may_see = frozenset(granted(patient_id))
    dossier = build(patient_id, resources, names, t, contacts)
    if may_see is not None:
        dossier.may_see = frozenset(may_see)
    return dossier
