"""Issue 16, defects 2 and 3: SMART scopes hold on every path.

2. A row is shown only if the token's scopes let it read the row's own type: an
   `_include` without a target type, `_revinclude`, `$everything`, history.
3. Every operation declares per method whether it reads or writes; a read-only token
   can run none of the writes (`$erase`, notification settings, …), for every role."""

from __future__ import annotations

from typing import Any

import pytest

from dossier.fhir import operations
from tests import factories as f
from tests.integration.conftest import Api, World


def types_in(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["resourceType"] for e in bundle.get("entry", [])}


@pytest.fixture
def dossier(world: World) -> str:
    pid = world.consented()
    world.gp.create(f.task(f"Patient/{pid}"))
    return pid


def test_include_without_a_target_type_respects_the_scopes(world: World, dossier: str) -> None:
    tasks_only = world.as_("practitioner", world.gp_ref, "user/Task.rs")
    assert tasks_only.get(f"/fhir/Patient/{dossier}").status_code == 403
    for include in ("Task:patient", "Task:patient:Patient"):
        r = tasks_only.get("/fhir/Task", params={"patient": dossier, "_include": include})
        assert r.status_code == 200, r.text
        assert types_in(r.json()) == {"Task"}, include
    r = tasks_only.get("/fhir/Task", params={"patient": dossier,
                                             "_include": "Task:patient:Patient"})
    assert r.status_code == 200 and types_in(r.json()) == {"Task"}
    # the full token still gets the Patient through the same include
    r = world.gp.get("/fhir/Task", params={"patient": dossier, "_include": "Task:patient"})
    assert types_in(r.json()) == {"Task", "Patient"}


def test_revinclude_history_and_everything_respect_the_scopes(world: World,
                                                              dossier: str) -> None:
    patients_only = world.as_("practitioner", world.gp_ref, "user/Patient.rs")
    r = patients_only.get("/fhir/Patient", params={"_id": dossier, "_revinclude": "Task:patient"})
    assert r.status_code == 200 and types_in(r.json()) == {"Patient"}
    r = patients_only.get("/fhir/_history")
    assert r.status_code == 200 and types_in(r.json()) <= {"Patient"}
    assert r.json()["total"] == len(r.json().get("entry", []))  # nothing else counted
    r = patients_only.get(f"/fhir/Patient/{dossier}/$everything", params={"_count": "50"})
    assert r.status_code == 200 and types_in(r.json()) == {"Patient"}
    assert r.json().get("total", 1) == 1
    r = patients_only.get(f"/fhir/Patient/{dossier}/$everything")
    assert r.status_code == 200 and types_in(r.json()) == {"Patient"}
    citizen = world.as_("citizen", f"Patient/{dossier}", "patient/Task.rs")
    r = citizen.get(f"/fhir/Patient/{dossier}/$everything")
    assert r.status_code == 403  # $everything reads the Patient: not in these scopes
    r = citizen.get("/fhir/Task", params={"patient": dossier, "_include": "Task:patient"})
    assert r.status_code == 200 and types_in(r.json()) == {"Task"}


READ_ONLY = {"citizen": "patient/*.rs", "practitioner": "user/*.rs", "admin": "user/*.rs",
             "auditor": "user/*.rs", "hub": "system/*.rs"}


def operation_urls(world: World, pid: str) -> list[tuple[operations.Operation, str, str]]:
    out = []
    for op in operations.REGISTRY.values():
        rid = {"Patient": pid, "Organization": world.org["id"], "Group": "g-1"}.get(
            op.resource_type or "", "x")
        path = {"instance": f"/fhir/{op.resource_type}/{rid}/${op.name}",
                "type": f"/fhir/{op.resource_type}/${op.name}",
                "system": f"/fhir/${op.name}"}[op.level]
        out.extend((op, method, path) for method in sorted(op.methods))
    return out


def actor(world: World, role: str, pid: str) -> Api:
    who = {"citizen": f"Patient/{pid}", "practitioner": world.gp_ref,
           "admin": "Person/admin", "auditor": "Person/auditor",
           "hub": world.org_ref}[role]
    return world.as_(role, who, READ_ONLY[role])


@pytest.mark.parametrize("role", sorted(READ_ONLY))
def test_every_operation_against_a_read_only_token(world: World, dossier: str,
                                                   role: str) -> None:
    api = actor(world, role, dossier)
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "webhook", "valueUrl": "https://example.org/hook"},
        {"name": "reason", "valueString": "test"}]}
    urls = operation_urls(world, dossier)
    assert len(urls) >= 13
    for op, method, path in urls:
        r = api.get(path) if method == "GET" else api.post(path, body)
        assert r.status_code < 500, (method, path, r.status_code)
        if r.status_code >= 400:
            assert r.json()["resourceType"] == "OperationOutcome", (method, path)
        if op.access.get(method, "write") == "write":
            assert r.status_code == 403, (role, method, path, r.status_code, r.text[:200])
            assert "secret" not in r.text.lower()


def test_read_only_citizen_cannot_erase_or_set_a_webhook(world: World, dossier: str) -> None:
    reader = world.as_("citizen", f"Patient/{dossier}", "patient/*.rs")
    r = reader.post(f"/fhir/Patient/{dossier}/$erase", {"resourceType": "Parameters"})
    assert r.status_code == 403
    r = reader.post(f"/fhir/Patient/{dossier}/$notification-settings", {
        "resourceType": "Parameters", "parameter": [
            {"name": "webhook", "valueUrl": "https://example.org/hook"}]})
    assert r.status_code == 403 and "secret" not in r.text.lower()
    assert world.citizen(dossier).get(f"/fhir/Patient/{dossier}").status_code == 200
    settings = world.citizen(dossier).get(f"/fhir/Patient/{dossier}/$notification-settings")
    assert "example.org/hook" not in settings.text
