"""Names from the directory (Practitioner, Organization, Group, PractitionerRole), read
through the Repository like any FHIR client does (every authenticated user may)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dossier.core.repository import Repository
from dossier.portal import codes
from dossier.portal.views import contact_lines, person_name, ref

MAX = "200"


@dataclass(frozen=True)
class Entry:
    reference: str
    name: str
    detail: str = ""  # profession and organisation, for a person


def _search(repo: Repository, resource_type: str,
            params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    result = repo.search(resource_type, [*params, ("_count", MAX)])
    return [s.resource for s in result.matches if s.resource is not None]


def _ids(refs: set[str], resource_type: str) -> list[str]:
    return sorted(r.split("/", 1)[1] for r in refs if r.startswith(resource_type + "/"))


def names_for(repo: Repository, refs: set[str], lang: str) -> dict[str, str]:
    """Display names of the practitioners, organisations and profession groups named."""
    names: dict[str, str] = {}
    for resource_type in ("Practitioner", "Organization", "Group"):
        ids = _ids(refs, resource_type)
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            for resource in _search(repo, resource_type, [("_id", ",".join(chunk))]):
                reference = f"{resource_type}/{resource.get('id')}"
                names[reference] = _display(resource, lang)
    return names


def contacts_for(repo: Repository, refs: set[str]) -> dict[str, list[str]]:
    """The directory's contact data (telecom, address) of practitioners and organisations;
    a practitioner without their own gets those of their active roles."""
    out: dict[str, list[str]] = {}
    for resource_type in ("Practitioner", "Organization"):
        ids = _ids(refs, resource_type)
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            for resource in _search(repo, resource_type, [("_id", ",".join(chunk))]):
                lines = contact_lines(resource)
                if lines:
                    out[f"{resource_type}/{resource.get('id')}"] = lines
    missing = [r for r in refs if r.startswith("Practitioner/") and r not in out]
    if missing:
        for role in _search(repo, "PractitionerRole", [("practitioner", ",".join(
                sorted(missing)[:100])), ("active", "true")]):
            who = ref(role.get("practitioner")) or ""
            lines = contact_lines(role)
            if who and lines:
                out.setdefault(who, []).extend(x for x in lines if x not in out.get(who, []))
    return out


def _display(resource: dict[str, Any], lang: str) -> str:
    if resource.get("resourceType") == "Group":
        code = codes.code_of(resource.get("code"), codes.PROFESSION_SYSTEM)
        return codes.label(codes.PROFESSION_SYSTEM, code, lang) if code else \
            str(resource.get("name") or "")
    return person_name(resource) or str(resource.get("id"))


def organisations_of(repo: Repository, practitioners: set[str]) -> dict[str, str]:
    """Practitioner → the names of the organisations where they hold a role today."""
    ids = sorted(p for p in practitioners if p.startswith("Practitioner/"))
    if not ids:
        return {}
    roles = _search(repo, "PractitionerRole", [("practitioner", ",".join(ids)),
                                               ("active", "true")])
    org_refs = {ref(r.get("organization")) or "" for r in roles} - {""}
    org_names = names_for(repo, org_refs, "en")
    out: dict[str, list[str]] = {}
    for role in roles:
        who, org = ref(role.get("practitioner")), ref(role.get("organization"))
        if who and org and org in org_names and org_names[org] not in out.get(who, []):
            out.setdefault(who, []).append(org_names[org])
    return {who: ", ".join(sorted(names)) for who, names in out.items()}


def listing(repo: Repository, lang: str) -> dict[str, list[Entry]]:
    """Everyone a citizen may grant: people (with profession and organisation),
    organisations and professions."""
    organisations = {f"Organization/{o.get('id')}": str(o.get("name") or o.get("id"))
                     for o in _search(repo, "Organization", [("active", "true")])}
    roles = _search(repo, "PractitionerRole", [("active", "true")])
    details: dict[str, list[str]] = {}
    for role in roles:
        who = ref(role.get("practitioner")) or ""
        profession = codes.code_of(role.get("code"), codes.PROFESSION_SYSTEM)
        parts = [codes.label(codes.PROFESSION_SYSTEM, profession, lang) if profession else "",
                 organisations.get(ref(role.get("organization")) or "", "")]
        details.setdefault(who, []).append(", ".join(p for p in parts if p))
    people = [Entry(f"Practitioner/{p.get('id')}", person_name(p) or str(p.get("id")),
                    "; ".join(details.get(f"Practitioner/{p.get('id')}", [])))
              for p in _search(repo, "Practitioner", [("active", "true")])]
    groups = [Entry(f"Group/{g.get('id')}", _display(g, lang))
              for g in _search(repo, "Group", [("type", "practitioner")])]
    return {
        "people": sorted(people, key=lambda e: e.name.lower()),
        "organisations": sorted((Entry(r, n) for r, n in organisations.items()),
                                key=lambda e: e.name.lower()),
        "professions": sorted(groups, key=lambda e: e.name.lower()),
    }
