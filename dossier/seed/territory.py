"""The Brussels territory as Location resources (SPEC §14): the region, its five bassins
d'aide et de soins, the communes (Bruxelles-Ville in parts, one per bassin) and the
quartiers with a Contrat local social-santé. Shipped in `territory.json` (sources and
assumptions: docs/coordination.md); created on start when missing, never overwritten,
so an administrator keeps them through the API."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from dossier.core.runtime import Runtime
from dossier.seed.groups import server_repository


@cache
def _data() -> tuple[dict[str, Any], ...]:
    text = (resources.files("dossier.seed") / "territory.json").read_text(encoding="utf-8")
    return tuple(json.loads(text)["locations"])


def territory() -> list[dict[str, Any]]:
    """The shipped Locations, parents before children (copies)."""
    return [json.loads(json.dumps(loc)) for loc in _data()]


def ensure_territory(runtime: Runtime) -> None:
    from sqlalchemy.orm import Session

    with Session(runtime.engine) as session, session.begin():
        repo = server_repository(runtime, session)
        for location in territory():
            if repo.current_row("Location", location["id"]) is None:
                repo.update("Location", location["id"], location)
