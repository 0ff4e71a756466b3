"""validate(): FHIR R4 structure (fhir.resources R4B) plus the dossier's objective-only profile.

Two passes over a client's resource:
1. the fhir.resources model: element names, required FHIR elements, value
   formats (dates, ids, uris), choice types. Its errors are mapped to Problems
   by error type only, so the resource's values never reach a message.
2. the profile walk (`schemas.walker`) and the cross-element rules
   (`schemas.rules`): allowed elements, free text, exact JSON types, bindings,
   reference types, extensions.
A problem the model reports inside an element the walk already reported is
dropped, so each faulty element is named once. Reference existence is not
checked here (it needs I/O).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from schemas.problem import IssueCode, Problem
from schemas.profiles import PROFILES
from schemas.rules import RULES
from schemas.walker import Walker, element_name


def validate(resource: Any) -> list[Problem]:
    """Problems with a client-written resource; [] when the dossier accepts it."""
    if not isinstance(resource, dict):
        return [Problem("Resource", "The body must be a JSON object holding a FHIR resource.",
                        "structure")]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [Problem("resourceType", "resourceType is required.", "required")]
    profile = PROFILES.get(resource_type)
    if profile is None:
        return [Problem("resourceType", "resourceType names a type the dossier does not hold.",
                        "not-supported")]
    if profile.root is None:
        return [Problem(resource_type, f"{resource_type} resources are written by the server "
                                       "only.", "not-supported")]
    model_problems, unknown = _model_check(resource_type, resource)
    walker = Walker(unknown)
    walker.object(resource, profile.root, resource_type, root=True)
    for rule in RULES.get(resource_type, ()):
        rule(resource, walker)
    return _merge(walker.problems, model_problems)


def _model_check(resource_type: str, resource: dict[str, Any]
                 ) -> tuple[list[Problem], frozenset[str]]:
    """Problems from the fhir.resources model, and the paths it found are not FHIR elements."""
    try:
        get_fhir_model_class(resource_type).model_validate(resource)
    except ValidationError as error:
        problems: list[Problem] = []
        unknown: set[str] = set()
        for detail in error.errors(include_url=False, include_context=False,
                                   include_input=False):
            path = _path(resource_type, detail["loc"])
            kind = detail["type"]
            if kind == "extra_forbidden":
                unknown.add(path)
            else:
                problems.append(Problem(path, *_describe(path, kind)))
        return problems, frozenset(unknown)
    except (ValueError, TypeError):
        return [Problem(resource_type, "The resource is not valid FHIR R4.", "structure")], \
            frozenset()
    return [], frozenset()


def _describe(path: str, kind: str) -> tuple[str, IssueCode]:
    if kind.endswith("missing"):
        return f"{path} is required.", "required"
    if kind.endswith(("_type", "_parsing")):
        return f"{path} has the wrong JSON type.", "structure"
    if kind == "value_error":
        return f"{path} is not a valid value for its FHIR type.", "value"
    return f"{path} is not valid FHIR R4.", "invalid"


def _path(resource_type: str, loc: Sequence[int | str]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{element_name(part)}"
    return path


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith((f"{outer}.", f"{outer}["))


def _merge(walked: list[Problem], modelled: list[Problem]) -> list[Problem]:
    result: list[Problem] = []
    for problem in walked:
        if all(p.path != problem.path for p in result):
            result.append(problem)
    for problem in modelled:
        if not any(_within(problem.path, p.path) or _within(p.path, problem.path)
                   for p in result):
            result.append(problem)
    return result
