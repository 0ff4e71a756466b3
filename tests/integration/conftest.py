from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from dossier.app import create_app
from dossier.settings import load_settings
from tests import factories as f

FHIR = "application/fhir+json"
ALL_CATEGORIES = ("identity", "demarches", "network", "fragility", "psy")


class Api:
    """A thin FHIR client over the ASGI app for one actor (real HTTP semantics, no mocks)."""

    def __init__(self, client: TestClient, token: str | None = None) -> None:
        self.client = client
        self.headers: dict[str, str] = {"Authorization": f"Bearer {token}"} if token else {}

    def _h(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.headers, **(extra or {})}

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=self._h(headers), **kw)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(path, json=body,
                                headers=self._h({"Content-Type": FHIR, **(headers or {})}))

    def put(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.put(path, json=body,
                               headers=self._h({"Content-Type": FHIR, **(headers or {})}))

    def delete(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.delete(path, headers=self._h(headers))

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        r = self.post(f"/fhir/{resource['resourceType']}", resource)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def total(self, path: str, **params: str) -> int:
        r = self.get(path, params=params)
        assert r.status_code == 200, r.text
        return int(r.json()["total"])


class World:
    """A running dossier with a directory: an organisation, a GP and a social worker."""

    def __init__(self, app: Any, client: TestClient) -> None:
        self.app = app
        self.client = client
        self.issuer = app.state.dev_issuer
        self.admin = self.as_("admin", "Operator/admin")
        self.auditor = self.as_("auditor", "Operator/auditor")
        self.anonymous = Api(client)
        self.org = self.admin.create(f.organization())
        self.org_ref = f"Organization/{self.org['id']}"
        self.gp_ref = self.add_practitioner("Dupont", "persphysician")
        self.sw_ref = self.add_practitioner("Janssens", "perssocialworker")
        self.gp = self.as_("practitioner", self.gp_ref)
        self.sw = self.as_("practitioner", self.sw_ref)

    def token(self, role: str, fhir_user: str, scope: str | None = None,
              ttl: int = 3600, **extra: Any) -> str:
        return str(self.issuer.mint(fhir_user, [role], scope, ttl,
                                    extra_claims=extra or None))

    def as_(self, role: str, fhir_user: str, scope: str | None = None) -> Api:
        return Api(self.client, self.token(role, fhir_user, scope))

    def add_practitioner(self, family: str, profession: str,
                         org_ref: str | None = None) -> str:
        pract = self.admin.create(f.practitioner(family))
        ref = f"Practitioner/{pract['id']}"
        self.admin.create(f.practitioner_role(ref, org_ref or self.org_ref, profession))
        return ref

    def citizen(self, patient_id: str) -> Api:
        return self.as_("citizen", f"Patient/{patient_id}")

    def open_dossier(self, patient: dict[str, Any] | None = None) -> str:
        """The GP opens a dossier; the person has consented to nothing yet."""
        created = self.gp.create(patient or f.patient())
        return str(created["id"])

    def grant(self, patient_id: str, actor: str, categories: tuple[str, ...] = ALL_CATEGORIES,
              actions: tuple[str, ...] = ("access", "collect"), **kw: Any) -> dict[str, Any]:
        return self.citizen(patient_id).create(
            f.consent(patient_id, actor, categories=categories, actions=actions, **kw))

    def consented(self, patient: dict[str, Any] | None = None,
                  actor: str | None = None) -> str:
        pid = self.open_dossier(patient)
        self.grant(pid, actor or self.gp_ref)
        return pid


def make_settings(data_dir: Path, database_url: str | None, **extra: Any) -> Any:
    kw: dict[str, Any] = {"data_dir": data_dir, "base_url": "http://testserver",
                          "audit_sequencer_seconds": 0, "notify_worker_seconds": 0,
                          "maintenance_seconds": 0, **extra}
    if database_url:
        kw["database_url"] = database_url
    return load_settings(**kw)


@pytest.fixture
def settings(data_dir: Path, database_url: str | None) -> Any:
    return make_settings(data_dir, database_url)


@pytest.fixture
def app(settings: Any) -> Any:
    application = create_app(settings)
    yield application
    application.state.runtime.engine.dispose()


@pytest.fixture
def world(app: Any) -> Iterator[World]:
    with TestClient(app) as client:
        yield World(app, client)


@pytest.fixture
def api(world: World) -> Api:
    """The GP, with a consented dossier ready (world.patient_id)."""
    return world.gp


class Meter:
    """How many calls of a wrapped method (0.3 s each) run at once, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def wrap(self, real: Any, *, in_database: bool = False) -> Any:
        """`in_database`: the 0.3 s are spent waiting for PostgreSQL (`pg_sleep` in the
        unit's transaction), as a unit on the event loop waits for a statement; a
        `time.sleep` there would stop the loop and every other unit with it."""
        def slow(repo: Any, *a: Any, **kw: Any) -> Any:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                if in_database:
                    repo.session.execute(text("SELECT pg_sleep(0.3)"))
                else:
                    time.sleep(0.3)  # a costly search (or read)
                return real(repo, *a, **kw)
            finally:
                with self.lock:
                    self.now -= 1
        return slow


@contextmanager
def listening(world: World, name: str, fn: Callable[..., None]) -> Iterator[None]:
    """`fn` listens to the engine event `name` on every engine a request unit may run on
    (the threads' and, on PostgreSQL, the event loop's: core/runtime.py `engines`)."""
    engines = world.app.state.runtime.engines
    for engine in engines:
        event.listen(engine, name, fn)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, name, fn)
