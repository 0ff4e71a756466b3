from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dossier.app import create_app
from dossier.settings import load_settings

FHIR = "application/fhir+json"


class Api:
    """A thin FHIR client over the ASGI app (real HTTP semantics, no mocks)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers: dict[str, str] = {}

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


def make_settings(data_dir: Path, database_url: str | None, **extra: Any) -> Any:
    kw: dict[str, Any] = {"data_dir": data_dir, **extra}
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
def api(app: Any) -> Iterator[Api]:
    with TestClient(app) as client:
        yield Api(client)


@pytest.fixture
def auth_header(api: Api) -> dict[str, str]:
    """The Authorization header the api fixture uses (empty before authentication)."""
    return {k: v for k, v in api.headers.items() if k == "Authorization"}
