"""Spans per request and per repository call, with no personal data in any attribute."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dossier.app import create_app
from tests import factories as f
from tests.integration.conftest import Api, make_settings


def test_spans_carry_no_personal_data(data_dir: Path, database_url: str | None,
                                      ) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(make_settings(data_dir, database_url), exporter=exporter)
    with TestClient(app) as client:
        api = Api(client)
        api.headers.update(getattr(app.state, "test_headers", {}))
        pat = api.create(f.patient(ssin=f.niss("710202", 999), family="Verhaegen", given="Ricarda"))
        api.get(f"/fhir/Patient/{pat['id']}")
        api.get("/fhir/Patient", params={"identifier": f"{f.SSIN}|{f.niss('710202', 999)}"})
    app.state.runtime.engine.dispose()
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert "POST /fhir/{type}" in names
    assert "GET /fhir/{type}/{id}" in names
    assert {"repository.create", "repository.read", "repository.search"} <= names
    dump = json.dumps([{"name": s.name, "attrs": dict(s.attributes or {})} for s in spans])
    for secret in ("Verhaegen", "Ricarda", f.niss("710202", 999), pat["id"]):
        assert secret not in dump
