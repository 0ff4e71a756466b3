"""The server's Provenance is valid FHIR R4 for every kind of author (it is not validated
again when written, to keep Bundles of 500 entries fast)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.provenance import Provenance

from auth import Principal, parse_scopes
from dossier.core.context import RequestContext
from dossier.core.repository import RowMeta, Stored, provenance


def principal(role: str, fhir_user: str | None, client: str | None = None,
              on_behalf_of: str | None = None) -> Principal:
    return Principal(role=role, roles=frozenset({role}),  # type: ignore[arg-type]
                     fhir_user=fhir_user,
                     patient=None, practitioner=on_behalf_of, organizations=frozenset(),
                     professions=frozenset(), client_id=client,
                     scopes=parse_scopes("user/*.cruds"), on_behalf_of=on_behalf_of,
                     subject="sub-1")


@pytest.mark.parametrize("who", [
    principal("practitioner", "Practitioner/p1"),
    principal("hub", "Practitioner/p1", client="hub-a", on_behalf_of="Practitioner/p1"),
    principal("hub", "Organization/o1", client="hub-a"),
    principal("admin", "Operator/admin"),
    principal("citizen", "Patient/x"),
])
@pytest.mark.parametrize("created", [True, False])
def test_provenance_validates(who: Principal, created: bool) -> None:
    now = datetime(2027, 1, 5, 9, 30, tzinfo=UTC)
    stored = Stored("Task", "t1", 1, now, False, {"resourceType": "Task"},
                    RowMeta("Task", "t1", "x", frozenset({"demarches"})))
    resource = provenance(RequestContext(principal=who, now=now), stored, created)
    Provenance.model_validate(resource)
    assert resource["target"] == [{"reference": "Task/t1"}]
