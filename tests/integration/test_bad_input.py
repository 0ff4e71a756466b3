"""Bad input gets a clear OperationOutcome with the right status, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from tests import factories as f
from tests.integration.conftest import FHIR, Api, World


def _outcome(r: object, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    assert "Traceback" not in r.text  # type: ignore[attr-defined]
    return body  # type: ignore[no-any-return]


def _count(api: Api, rtype: str) -> int:
    return int(api.get(f"/fhir/{rtype}").json()["total"])


def raw_post(api: Api, path: str, data: bytes, ctype: str = FHIR) -> object:
    return api.client.post(path, content=data, headers={**api.headers, "Content-Type": ctype})


@pytest.mark.parametrize(("data", "status"), [
    (b"{not json", 400),
    (b"[]", 400),
    (b"", 400),
    (b'{"resourceType": "Patient", "resourceType": "Patient"}', 400),
    (b'{"resourceType": "Patient", "birthDate": NaN}', 400),
    (b"\xff\xfe", 400),
    (b'{"name": []}', 400),
])
def test_malformed_bodies(api: Api, data: bytes, status: int) -> None:
    _outcome(raw_post(api, "/fhir/Patient", data), status)
    assert _count(api, "Patient") == 0


def test_wrong_resource_type_and_media_type(api: Api) -> None:
    _outcome(api.post("/fhir/Patient", f.organization()), 400)
    _outcome(raw_post(api, "/fhir/Patient", json.dumps(f.patient()).encode(), "text/plain"), 415)
    _outcome(api.get("/fhir/Spaceship"), 404)
    _outcome(api.post("/fhir/AuditEvent", {"resourceType": "AuditEvent"}), 405)
    assert _count(api, "Patient") == 0


def test_oversize_body(api: Api) -> None:
    big = json.dumps(dict(f.patient(), id="x" * 2_000_000)).encode()
    _outcome(raw_post(api, "/fhir/Patient", big), 413)


def test_deeply_nested_body(api: Api) -> None:
    nested = "[" * 100 + "]" * 100
    data = ('{"resourceType": "Patient", "extension": ' + nested + "}").encode()
    _outcome(raw_post(api, "/fhir/Patient", data), 400)


@pytest.mark.parametrize(("mutate", "element"), [
    (lambda t: t.update(note=[{"text": "sleeps at his sister's"}]), "note"),
    (lambda t: t.update(description="free text"), "description"),
    (lambda t: t.update(text={"status": "generated",
                              "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}),
     "text"),
    (lambda t: t.update(colour="red"), "colour"),
    (lambda t: t["code"]["coding"][0].update(code="space-travel"), "code"),
    (lambda t: t.update(status="bogus"), "status"),
])
def test_objective_only_rejections(api: Api, mutate: object, element: str) -> None:
    pat = api.create(f.patient())
    body = f.task(f"Patient/{pat['id']}")
    mutate(body)  # type: ignore[operator]
    out = _outcome(api.post("/fhir/Task", body), 422)
    where = " ".join(" ".join(i.get("expression", [])) + i["diagnostics"]
                     for i in out["issue"])  # type: ignore[union-attr]
    assert element in where
    assert "sleeps at his sister" not in json.dumps(out)
    assert _count(api, "Task") == 0


def test_dangling_and_wrong_type_references(world: World) -> None:
    api = world.gp
    pid = world.consented()
    # a person without a dossier answers exactly like a dossier one may not see
    _outcome(api.post("/fhir/Task", f.task("Patient/nobody")), 404)
    _outcome(api.post("/fhir/Task", f.task(f"Patient/{pid}", owner="Organization/nobody")), 422)
    _outcome(api.post("/fhir/Task", f.task(world.org_ref)), 422)
    _outcome(api.post("/fhir/Task", f.task("https://elsewhere.example/Patient/1")), 422)
    assert _count(api, "Task") == 0


def test_bad_ids_and_versions(api: Api) -> None:
    _outcome(api.get("/fhir/Patient/" + "a" * 65), 400)
    _outcome(api.get("/fhir/Patient/unknown"), 404)
    pat = api.create(f.patient())
    _outcome(api.get(f"/fhir/Patient/{pat['id']}/_history/9"), 404)
    _outcome(api.get(f"/fhir/Patient/{pat['id']}/_history/x"), 404)
    _outcome(api.put(f"/fhir/Patient/{pat['id']}", dict(pat),
                     headers={"If-Match": "garbage"}), 412)


def test_unknown_url_and_method(api: Api) -> None:
    _outcome(api.get("/nowhere"), 404)
    _outcome(api.client.patch("/fhir", headers=api.headers), 405)  # PATCH of the base
    # PATCH of a resource exists (JSON Patch); without a patch body's media type: 415
    _outcome(api.client.patch("/fhir/Patient/x", headers=api.headers), 415)


def test_not_found_is_same_shape(api: Api) -> None:
    a = api.get("/fhir/Patient/does-not-exist")
    b = api.get("/fhir/Patient/also-missing")
    assert a.status_code == b.status_code == 404
    assert a.content == b.content
