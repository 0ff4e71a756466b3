"""Issue 16, unauthenticated floods: 300 forged tokens gave 300 × 401, no record, no
throttle. Now: 429 with Retry-After per client address once it passes the limit (counted
in the database, so across processes), and one audit record per address and minute."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dossier.app import create_app
from dossier.db.models import audit_records, refusal_windows
from dossier.stores.refusals import record_finished
from tests.integration.conftest import make_settings

FORGED = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def fresh_minute(need: float = 30.0) -> None:
    """Start with at least ``need`` seconds left in the minute: counts are per minute."""
    left = 60 - time.time() % 60
    if left < need:
        time.sleep(left + 0.2)


def make(data_dir: Path, database_url: str | None, limit: int = 30) -> Any:
    return create_app(make_settings(data_dir, database_url,
                                    throttle_refusals_per_minute=limit))


def refusal_records(app: Any) -> list[dict[str, Any]]:
    with app.state.runtime.engine.connect() as conn:
        rows = conn.execute(select(audit_records)).mappings().all()
    found = []
    for row in rows:
        text = json.dumps(dict(row), default=str)
        if "unauthenticated request(s) refused" in text:
            found.append(dict(row))
    return found


def test_300_forged_tokens(data_dir: Path, database_url: str | None) -> None:
    app = make(data_dir, database_url)
    try:
        with TestClient(app) as client:
            fresh_minute(40)
            statuses = [client.get("/fhir/Patient", headers={
                "Authorization": f"Bearer {FORGED}"}).status_code for _ in range(300)]
            assert statuses.count(401) == 30
            assert statuses.count(429) == 270
            r = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {FORGED}"})
            assert r.status_code == 429
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.json()["resourceType"] == "OperationOutcome"
            # the same address is throttled at the issuer too
            assert client.post("/auth/token", data={"grant_type": "x"}).status_code == 429
        engine = app.state.runtime.engine
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(
                refusal_windows)).scalar_one() <= 2  # this minute (and maybe the next)
        later = datetime.now(UTC) + timedelta(minutes=2)
        written = record_finished(engine, app.state.runtime.audit_store,
                                  app.state.runtime.query_key, later)
        assert 1 <= written <= 2
        records = refusal_records(app)
        assert len(records) == written  # one per address and minute, not 300
        assert any("30 unauthenticated request(s) refused from testclient" in
                   json.dumps(r, default=str) or "unauthenticated request(s) refused from "
                   "testclient" in json.dumps(r, default=str) for r in records)
        with engine.connect() as conn:  # bounded: recorded windows are gone
            assert conn.execute(select(func.count()).select_from(
                refusal_windows)).scalar_one() == 0
        assert record_finished(engine, app.state.runtime.audit_store,
                               app.state.runtime.query_key, later) == 0
    finally:
        app.state.runtime.engine.dispose()


def test_refusals_count_across_processes_and_wrong_passwords_count(
        data_dir: Path, database_url: str | None) -> None:
    first, second = make(data_dir, database_url, 10), make(data_dir, database_url, 10)
    try:
        with TestClient(first) as a, TestClient(second) as b:
            fresh_minute()
            for _ in range(6):
                assert a.get("/fhir/Task", headers={
                    "Authorization": "Bearer nope"}).status_code == 401
            for _ in range(3):
                r = b.post("/auth/authorize", data={
                    "username": "admin", "password": "guessing password",
                    "response_type": "code", "client_id": "dossier-portal",
                    "redirect_uri": "http://testserver/portal/callback",
                    "code_challenge": "x" * 43, "code_challenge_method": "S256"})
                assert r.status_code == 401
            assert b.get("/fhir/Task").status_code == 401  # the 10th refusal, counted by both
            assert b.get("/fhir/Task").status_code == 429  # …blocks the address
            assert a.get("/fhir/metadata").status_code in (200, 429)
    finally:
        first.state.runtime.engine.dispose()
        second.state.runtime.engine.dispose()
