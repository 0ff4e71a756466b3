"""The inbox notice (SPEC §12) is built by `communication()` and stored without running
the FHIR model on every delivery: this property checks the builder always makes a valid
R4 Communication, whatever the consultations it lists."""

from __future__ import annotations

from datetime import UTC, datetime

from fhir.resources.R4B.communication import Communication
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.notify import Access, Message
from dossier.notify.content import communication

ids = st.text("abcdef0123456789-", min_size=1, max_size=64)
actors = st.one_of(st.none(), st.sampled_from(["Practitioner/p1", "Organization/o1",
                                               "Operator/admin", "Client/hub"]))


@given(patient=ids, records=st.lists(ids, min_size=1, max_size=60), actor=actors,
       text=st.text(min_size=1, max_size=400).filter(str.strip), urgent=st.booleans())
@settings(max_examples=60, deadline=None)
def test_every_notice_is_a_valid_communication(patient: str, records: list[str],
                                               actor: str | None, text: str,
                                               urgent: bool) -> None:
    now = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    accesses = [Access(r, now, actor, None, (), (("read", "Task"),)) for r in records]
    resource = communication(patient, accesses, Message("fr", "s", text, urgent,
                                                        tuple(records)), now)
    Communication.model_validate(resource)
    assert resource["subject"] == {"reference": f"Patient/{patient}"}
    assert [a["reference"] for a in resource["about"]] == [f"AuditEvent/{r}" for r in records]
