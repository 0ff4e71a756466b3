"""The sequencer finds new records through audit_pending, not by scanning the log: a
record whose transaction commits after a later one (PostgreSQL: a lower seq committed
late) is still sequenced, and the log still verifies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from audit.checkpoint import public_jwk
from tests.integration.conftest import World

NOW = datetime(2027, 3, 1, tzinfo=UTC)


def _record() -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "recorded": "2027-03-01T00:00:00Z", "action": "read",
            "outcome": "success", "purpose": "TREAT", "patient": None,
            "agent": {"who": "Operator/test", "role": "auditor"}, "events": []}


@pytest.mark.postgres
def test_a_late_commit_is_sequenced_and_verifies(world: World, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time: commits come in seq order")
    rt = world.app.state.runtime
    store = rt.audit_store
    start = rt.integrate_audit()
    late, early = _record(), _record()
    with Session(rt.engine) as slow:
        slow.begin()
        store.append(slow, late, recorded_at=NOW, patient_id=None, agent="Operator/test")
        with Session(rt.engine) as fast, fast.begin():  # a lower seq is taken, not committed
            store.append(fast, early, recorded_at=NOW, patient_id=None, agent="Operator/test")
        assert rt.integrate_audit() == start + 1  # only the committed one
        slow.commit()
    assert rt.integrate_audit() == start + 2  # the late one is not skipped
    with Session(rt.engine) as s:
        where = store.index_of(s, [late["id"], early["id"]])
        assert where == {early["id"]: start, late["id"]: start + 1}
        result = store.verify(s, public_jwk(rt.signer.public_key()))
    assert result.ok, result.detail


def test_an_idle_sequencer_signs_nothing_new(world: World) -> None:
    rt = world.app.state.runtime
    size = rt.integrate_audit()
    with Session(rt.engine) as s:
        heads = len(s.execute(store_heads(rt)).all())
    assert rt.integrate_audit() == size
    with Session(rt.engine) as s:
        assert len(s.execute(store_heads(rt)).all()) == heads


def store_heads(rt: Any) -> Any:
    from sqlalchemy import select

    return select(rt.audit_store.t.tree_heads.c.tree_size)
