"""Spans per request and per repository call, with no personal data in any attribute."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dossier.app import create_app
from tests import factories as f
from tests.integration.conftest import World, make_settings


def test_spans_carry_no_personal_data(data_dir: Path, database_url: str | None) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(make_settings(data_dir, database_url), exporter=exporter)
    niss = f.niss("710202", 999)
    with TestClient(app) as client:
        world = World(app, client)
        pid = world.consented(f.patient(ssin=niss, family="Verhaegen", given="Ricarda"))
        world.gp.get(f"/fhir/Patient/{pid}")
        world.gp.get("/fhir/Patient", params={"identifier": f"{f.SSIN}|{niss}"})
    app.state.runtime.engine.dispose()
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert "POST /fhir/{type}" in names
    assert "GET /fhir/{type}/{id}" in names
    assert {"repository.create", "repository.read", "repository.search"} <= names
    dump = json.dumps([{"name": s.name, "attrs": dict(s.attributes or {})} for s in spans])
    for secret in ("Verhaegen", "Ricarda", niss, pid):
        assert secret not in dump


def test_metrics_count_requests_without_personal_data(data_dir: Path,
                                                      database_url: str | None) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    app = create_app(make_settings(data_dir, database_url), metric_reader=reader)
    with TestClient(app) as client:
        world = World(app, client)
        pid = world.consented()
        world.gp.get(f"/fhir/Patient/{pid}")
        world.sw.get(f"/fhir/Patient/{pid}")
    app.state.runtime.engine.dispose()
    data = reader.get_metrics_data()
    assert data is not None
    points = [(m.name, dict(p.attributes or {})) for rm in data.resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics for p in m.data.data_points]
    reads = [a for n, a in points if n == "dossier.http.requests"
             and a["http.route"] == "/fhir/{type}/{id}"]
    assert {a["http.response.status_code"] for a in reads} == {200, 404}
    assert pid not in json.dumps(points)
