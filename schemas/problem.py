"""What `validate` reports: one Problem per faulty element, never quoting the resource's values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IssueCode = Literal["invalid", "code-invalid", "required", "structure", "value", "not-supported"]


@dataclass(frozen=True)
class Problem:
    """One issue for an OperationOutcome.

    path: FHIRPath-like location, e.g. "Observation.component[1].valueBoolean".
    message: plain English naming the element; holds no value taken from the resource.
    code: the OperationOutcome issue type.
    """

    path: str
    message: str
    code: IssueCode
