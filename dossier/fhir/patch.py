"""PATCH bodies: JSON Patch (RFC 6902, `application/json-patch+json`) and JSON Merge Patch
(RFC 7386, `application/merge-patch+json`).

`application/json` and `application/fhir+json` are accepted too and read by shape: an
array is a JSON Patch, an object a merge patch (what fhirpy's `patch()` sends). FHIRPath
Patch (a Parameters body) is not supported (415 names the types that are).

The result goes back through the Repository like any update: profile validation, consent
(`collect`), sealing, versions, Provenance and audit. A patch may not change
`resourceType` or `id`; `meta` is the server's (its `psy` label may be added, as in a
PUT)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer

from dossier.errors import BadRequest, Unprocessable

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, "application/json", "application/fhir+json",
               "application/json+fhir")
MAX_OPERATIONS = 1000

Patcher = Callable[[dict[str, Any]], dict[str, Any]]


def patcher(media_type: str, document: Any) -> Patcher:
    """The function that applies the patch `document` to a resource (400 when it is not
    a patch of that kind)."""
    if media_type == JSON_PATCH or (media_type != MERGE_PATCH and isinstance(document, list)):
        return _json_patch(document)
    if isinstance(document, dict):
        return lambda resource: _checked(resource, merge(resource, document))
    raise BadRequest("A merge patch is a JSON object.")


def _json_patch(document: Any) -> Patcher:
    if not isinstance(document, list) or not document:
        raise BadRequest("A JSON Patch is a non-empty array of operations.")
    if len(document) > MAX_OPERATIONS:
        raise BadRequest(f"A JSON Patch may hold at most {MAX_OPERATIONS} operations.")
    for i, op in enumerate(document):
        if not isinstance(op, dict) or op.get("op") not in (
                "add", "remove", "replace", "move", "copy", "test") or \
                not isinstance(op.get("path"), str):
            raise BadRequest(f"JSON Patch operation {i} needs an 'op' (add, remove, replace, "
                             "move, copy or test) and a 'path'.")
    try:
        patch = jsonpatch.JsonPatch(document)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
        raise BadRequest("The JSON Patch is malformed.") from None

    def apply(resource: dict[str, Any]) -> dict[str, Any]:
        try:
            result = patch.apply(copy.deepcopy(resource))
        except jsonpatch.JsonPatchTestFailed:
            raise Unprocessable("A 'test' operation of the JSON Patch failed; nothing was "
                                "changed.") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
            raise Unprocessable("The JSON Patch does not apply to this resource (a path "
                                "does not exist); nothing was changed.") from None
        return _checked(resource, result)

    return apply


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: objects merge, `null` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _checked(before: dict[str, Any], after: Any) -> dict[str, Any]:
    if not isinstance(after, dict):
        raise Unprocessable("The patch must leave a resource (a JSON object).")
    for key in ("resourceType", "id"):
        if after.get(key) != before.get(key):
            raise Unprocessable(f"A patch may not change '{key}'.",
                                expression=[f"{before.get('resourceType')}.{key}"])
    return after
