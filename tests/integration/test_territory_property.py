"""Containment search agrees with the territory's tree (hypothesis, on both databases):
for any tree of places and any services covering some of them, `coverage-area=x` finds
exactly the services covering x or a place inside it, and `serves=x` those covering x, a
place inside it or a place above it."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import World

TERRITORY = "https://dossier.brussels/fhir/CodeSystem/territory-level"
SERVICE_TYPE = "https://dossier.brussels/fhir/CodeSystem/service-type"

# parents[i] < i: place i is inside place parents[i] (place 0 is inside the region)
trees = st.integers(min_value=1, max_value=7).flatmap(lambda n: st.tuples(
    *[st.integers(min_value=0, max_value=max(i - 1, 0)) for i in range(n)]))


@settings(max_examples=12, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(parents=trees, data=st.data())
def test_containment_matches_the_tree(world: World, parents: tuple[int, ...],
                                      data: st.DataObject) -> None:
    n = len(parents)
    tag = uuid.uuid4().hex[:8]
    ids = [f"p{tag}-{i}" for i in range(n)]
    for i in range(n):
        parent = "bassin-sud" if i == 0 else ids[parents[i]]
        r = world.admin.put(f"/fhir/Location/{ids[i]}", {
            "resourceType": "Location", "id": ids[i], "name": ids[i],
            "type": [{"coding": [{"system": TERRITORY, "code": "quartier"}]}],
            "partOf": {"reference": f"Location/{parent}"}})
        assert r.status_code == 201, r.text
    org = world.admin.create({"resourceType": "Organization", "name": f"Org {tag}"})
    covers = data.draw(st.lists(st.lists(st.integers(0, n - 1), min_size=1, max_size=3,
                                         unique=True), min_size=1, max_size=5))
    services = []
    for areas in covers:
        made = world.admin.create({
            "resourceType": "HealthcareService", "name": "s",
            "providedBy": {"reference": f"Organization/{org['id']}"},
            "type": [{"coding": [{"system": SERVICE_TYPE, "code": "legal-aid"}]}],
            "coverageArea": [{"reference": f"Location/{ids[a]}"} for a in areas]})
        services.append((made["id"], set(areas)))

    def inside(i: int) -> set[int]:  # i and every place below it
        return {i} | {j for j in range(n) if j != i and i in above(j)}

    def above(j: int) -> set[int]:  # the places j lies in (not the bassin)
        out = set()
        while j != 0:
            j = parents[j]
            out.add(j)
        return out

    def found(**params: str) -> set[str]:
        r = world.sw.get("/fhir/HealthcareService", params={
            "organization": f"Organization/{org['id']}", "_count": "50", **params})
        assert r.status_code == 200, r.text
        return {e["resource"]["id"] for e in r.json().get("entry", ())}

    x = data.draw(st.integers(0, n - 1))
    assert found(**{"coverage-area": f"Location/{ids[x]}"}) == {
        sid for sid, areas in services if areas & inside(x)}
    assert found(serves=f"Location/{ids[x]}") == {
        sid for sid, areas in services if areas & (inside(x) | above(x))}
    assert found(**{"coverage-area": "Location/bassin-sud"}) == {sid for sid, _ in services}
    assert found(**{"coverage-area": "Location/bassin-nord"}) == set()
