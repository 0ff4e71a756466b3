"""Hypothesis over HTTP: any valid resource is stored and read back unchanged; any
invalid one is refused with an OperationOutcome that does not echo it, and nothing is
stored."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dossier.domain.demarches import INITIAL_STATUSES
from dossier.domain.fragility import is_fragility_assessment, with_computed_level
from dossier.domain.people import relationship_of
from tests import factories as f
from tests.integration.conftest import World
from tests.unit.schemas.strategies import invalid_resource, mutations, valid_resource

DIRECTORY = ("Organization", "Practitioner", "PractitionerRole", "Group", "Endpoint")
DOSSIER = ("Patient", "RelatedPerson", "CareTeam", "Task", "Observation")
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


class Targets:
    """Existing resources that generated references are pointed at."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.pid = world.consented()
        gp = world.gp
        self.refs = {
            "Patient": f"Patient/{self.pid}",
            "Practitioner": world.gp_ref,
            "Organization": world.org_ref,
            "PractitionerRole": "PractitionerRole/" + world.admin.get(
                "/fhir/PractitionerRole", params={"practitioner": world.gp_ref}
            ).json()["entry"][0]["resource"]["id"],
            "RelatedPerson": "RelatedPerson/" + gp.create(f.related_person(self.pid))["id"],
            "Task": "Task/" + gp.create(f.task(f"Patient/{self.pid}"))["id"],
            "Group": "Group/profession-persphysician",
            "Observation": "Observation/" + gp.create(f.fragility(f"Patient/{self.pid}"))["id"],
        }

    def point(self, node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and "/" in ref:
                node["reference"] = self.refs[ref.split("/", 1)[0]]
            for value in node.values():
                self.point(value)
        elif isinstance(node, list):
            for value in node:
                self.point(value)
        return node

    def writer(self, rtype: str) -> Any:
        return self.world.admin if rtype in DIRECTORY else self.world.gp


def _as_network_member(resource: dict[str, Any]) -> None:
    """A representative's codes become an ordinary network role (a neighbour)."""
    if relationship_of(resource) is not None:
        resource["relationship"] = f.related_person("x")["relationship"]


def _strip(resource: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    out.pop("id", None)
    out.pop("meta", None)
    return out


@SETTINGS
@given(data=st.data())
def test_valid_resources_round_trip(world: World, data: st.DataObject) -> None:
    targets = getattr(world, "_targets", None) or Targets(world)
    world._targets = targets  # type: ignore[attr-defined]
    rtype = data.draw(st.sampled_from(DIRECTORY + DOSSIER))
    resource = targets.point(copy.deepcopy(data.draw(valid_resource(rtype))))
    resource.pop("meta", None)
    resource.pop("id", None)
    if rtype == "RelatedPerson":  # a network member: representatives have their own rules
        _as_network_member(resource)
    if rtype == "Task":  # a démarche starts in one of its initial statuses (demarches.py)
        resource["status"] = data.draw(st.sampled_from(sorted(INITIAL_STATUSES)))
    api = targets.writer(rtype)
    created = api.post(f"/fhir/{rtype}", resource)
    assert created.status_code == 201, created.text
    if is_fragility_assessment(resource):  # the service computes the level (fragility.py)
        resource = with_computed_level(resource)
    body = created.json()
    reader = world.citizen(body["id"]) if rtype == "Patient" else api  # nobody else yet
    read = reader.get(f"/fhir/{rtype}/{body['id']}")
    assert read.status_code == 200, read.text
    assert _strip(read.json()) == _strip(resource)
    assert read.json() == body


@SETTINGS
@given(data=st.data())
def test_invalid_resources_are_refused_and_nothing_is_stored(world: World,
                                                             data: st.DataObject) -> None:
    targets = getattr(world, "_targets", None) or Targets(world)
    world._targets = targets  # type: ignore[attr-defined]
    rtype = data.draw(st.sampled_from(DIRECTORY + DOSSIER))
    kind = data.draw(st.sampled_from(mutations(rtype)))
    resource, secret, _ = data.draw(invalid_resource(rtype, kind))
    if kind != "reference-type":
        resource = targets.point(resource)
    resource.pop("id", None)
    api = targets.writer(rtype)
    count = _count(world, rtype)
    r = api.post(f"/fhir/{rtype}", resource)
    assert r.status_code in (400, 422), (kind, r.text)
    assert r.json()["resourceType"] == "OperationOutcome"
    if secret:
        assert secret not in r.text
    assert _count(world, rtype) == count


def _count(world: World, rtype: str) -> int:
    with world.app.state.runtime.engine.connect() as conn:
        from sqlalchemy import text

        return int(conn.execute(text("SELECT count(*) FROM resource_versions WHERE "
                                     "res_type = :t"), {"t": rtype}).scalar_one())


def test_secret_not_in_outcome_dump(world: World) -> None:
    r = world.gp.post("/fhir/Task", dict(f.task("Patient/x"), note=[{"text": "QXSECRET"}]))
    assert "QXSECRET" not in json.dumps(r.json())
