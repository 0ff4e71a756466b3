"""Issue 16, defect 7: `dossier keys rotate` re-wraps every wrapped key (patients',
subscriptions' and export jobs'); after retiring the old KEK everything still reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert, select

from dossier.cli import main
from dossier.crypto import envelope
from dossier.crypto.rewrap import WRAPPED_KEYS
from dossier.db.models import export_jobs, metadata, subscriptions
from dossier.subscriptions.service import seal, unseal
from tests import factories as f
from tests.integration.conftest import World


def test_every_table_with_a_wrapped_key_is_rotated() -> None:
    with_kek = {t.name for t in metadata.tables.values() if "kek_id" in t.c}
    assert with_kek == {table.name for table, *_ in WRAPPED_KEYS}


def test_rotate_retire_read_everything(world: World, settings: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rt = world.app.state.runtime
    pid = world.consented(f.patient(family="Quagmire"))
    now = datetime.now(UTC)
    sealed = seal(rt, "sub-1", SimpleNamespace(headers=["Authorization: Bearer s3cret"],
                                                reason="continuity"))
    job_key, kek, wrapped = envelope.new_data_key(rt.key_provider)
    with rt.engine.begin() as conn:
        conn.execute(insert(subscriptions), {
            "id": "sub-1", "owner": world.gp_ref, "subscriber": {}, "status": "off",
            "topic": "t", "filters": {}, "endpoint": "https://hub.example/x",
            "content": "id-only", "resource": {}, "events_sent": 0, "failures": 0,
            "created_at": now, "end_at": now + timedelta(days=1), **sealed})
        conn.execute(insert(export_jobs), {
            "id": "job-1", "owner": world.gp_ref, "status": "completed", "request": {},
            "progress": None, "output": [], "created_at": now, "updated_at": now,
            "expires_at": now + timedelta(days=1), "kek_id": kek, "wrapped_key": wrapped})
    old = rt.key_provider.current_kek_id()
    if settings.database_url:
        monkeypatch.setenv("DOSSIER_DATABASE_URL", settings.database_url)
    dd = ["--data-dir", str(settings.data_dir)]
    assert main(["keys", "rotate", *dd]) == 0
    assert main(["keys", "retire", "--kek", old, *dd]) == 0
    assert old not in rt.key_provider.kek_ids()
    # everything still reads, with the old KEK gone
    assert world.gp.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Quagmire"
    with rt.engine.connect() as conn:
        sub = conn.execute(select(subscriptions).where(subscriptions.c.id == "sub-1")).one()
        job = conn.execute(select(export_jobs).where(export_jobs.c.id == "job-1")).one()
    assert sub.kek_id != old and job.kek_id != old
    assert unseal(rt, sub)["headers"] == ["Authorization: Bearer s3cret"]
    assert rt.key_provider.unwrap(job.kek_id, job.wrapped_key) == job_key
    assert json.dumps(unseal(rt, sub))  # whole


def test_retire_refuses_while_keys_depend_on_the_kek(world: World, settings: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    world.consented()
    old = world.app.state.runtime.key_provider.current_kek_id()
    if settings.database_url:
        monkeypatch.setenv("DOSSIER_DATABASE_URL", settings.database_url)
    world.app.state.runtime.key_provider.rotate()  # a new KEK, nothing re-wrapped
    assert main(["keys", "retire", "--kek", old, "--data-dir", str(settings.data_dir)]) == 2
    assert old in world.app.state.runtime.key_provider.kek_ids()
