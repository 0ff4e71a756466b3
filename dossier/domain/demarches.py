"""Démarches (FHIR Task): statuses, the changes allowed between them, the timeline.

docs/demarches.md draws the diagram. A closed démarche never changes status
again; it is reopened by a new Task whose partOf names the old one, so what
happened before stays on record as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dossier.domain._time import require_aware, start_of
from dossier.domain.codes import BUSINESS_STATUS_SYSTEM
from dossier.errors import Unprocessable

TASK_STATUSES = ("requested", "accepted", "rejected", "in-progress", "on-hold", "completed",
                 "cancelled", "failed")
OPEN_STATUSES = frozenset({"requested", "accepted", "in-progress", "on-hold"})
CLOSED_STATUSES = frozenset({"completed", "cancelled", "failed", "rejected"})

# A démarche may be recorded in any status: workers also record what was done
# before the dossier existed. Only later changes are constrained.
INITIAL_STATUSES = frozenset(TASK_STATUSES)

# Changes of status allowed on an existing démarche. Keeping the same status is
# not a change and is always allowed. Nothing goes back to "requested", and
# nothing leaves a closed status.
TRANSITIONS: dict[str, frozenset[str]] = {
    # a referral is accepted or rejected by the organisation that owns it (SPEC §14)
    "requested": frozenset({"accepted", "rejected", "in-progress", "on-hold", "completed",
                            "cancelled", "failed"}),
    "accepted": frozenset({"in-progress", "on-hold", "completed", "cancelled", "failed"}),
    "rejected": frozenset(),
    "in-progress": frozenset({"on-hold", "completed", "cancelled", "failed"}),
    "on-hold": frozenset({"in-progress", "completed", "cancelled", "failed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
    "failed": frozenset(),
}

_UNDATED = datetime.max.replace(tzinfo=UTC)

# Task.businessStatus value set (§4): where a démarche stands within its status.
# The same codes as schemas/definitions/CodeSystem-demarche-business-status.json.
BUSINESS_STATUSES = (
    "submitted",
    "awaiting-documents",
    "appointment-set",
    "in-review",
    "waiting-list",
    "decision-positive",
    "decision-negative",
    "appeal-lodged",
    "payment-started",
    "referred",
    "withdrawn",
)


class DemarcheError(Unprocessable):
    """A démarche that breaks the rules here. Messages name codes only, never values."""

    code = "business-rule"


class InvalidTransition(DemarcheError):
    """A status change the démarche rules forbid, or a reopening of an open démarche."""


class InvalidBusinessStatus(DemarcheError):
    """A Task.businessStatus outside the value set."""


def is_closed(status: str | None) -> bool:
    """True for completed, cancelled and failed."""
    return status in CLOSED_STATUSES


def check_transition(old_status: str | None, new_status: str) -> None:
    """Raise InvalidTransition unless `old_status` may become `new_status`.

    `old_status` None means the démarche is being created.
    """
    if new_status not in TASK_STATUSES:
        raise InvalidTransition(f"Task status '{new_status}' is not a démarche status; use one "
                                f"of {', '.join(TASK_STATUSES)}.", expression=["Task.status"])
    if old_status is None:
        if new_status not in INITIAL_STATUSES:
            raise InvalidTransition(f"A démarche cannot be created with status '{new_status}'.",
                                    expression=["Task.status"])
        return
    if old_status not in TASK_STATUSES:
        raise InvalidTransition(f"The stored status '{old_status}' is not a démarche status.",
                                expression=["Task.status"])
    if old_status == new_status or new_status in TRANSITIONS[old_status]:
        return
    if is_closed(old_status):
        raise InvalidTransition(
            f"A démarche with status '{old_status}' is closed and cannot become "
            f"'{new_status}'; reopen it as a new Task whose partOf names this one.",
            expression=["Task.status"])
    raise InvalidTransition(f"A démarche cannot go from '{old_status}' to '{new_status}'.",
                            expression=["Task.status"])


def check_business_status(task: dict[str, Any]) -> None:
    """Raise InvalidBusinessStatus unless Task.businessStatus, if any, is from the value set."""
    concept = task.get("businessStatus")
    if concept is None:
        return
    codings = concept.get("coding") if isinstance(concept, dict) else None
    ours = [c for c in codings or [] if isinstance(c, dict)
            and c.get("system") == BUSINESS_STATUS_SYSTEM]
    if len(ours) != 1 or ours[0].get("code") not in BUSINESS_STATUSES:
        raise InvalidBusinessStatus(
            f"Task.businessStatus needs one coding from {BUSINESS_STATUS_SYSTEM} "
            f"({', '.join(BUSINESS_STATUSES)}).", expression=["Task.businessStatus"])


def reopening(closed_task: dict[str, Any], authored_on: datetime) -> dict[str, Any]:
    """A new 'requested' Task that reopens a closed démarche and points back to it.

    Copies what the démarche is about (intent, code, for, owner, requester);
    business status and execution period start afresh.
    """
    require_aware(authored_on, "authored_on")
    status, task_id = closed_task.get("status"), closed_task.get("id")
    if not is_closed(status):
        raise InvalidTransition(f"Only a closed démarche can be reopened; this one is "
                                f"'{status}'.", expression=["Task.status"])
    if not task_id:
        raise InvalidTransition("The démarche to reopen has no id.", expression=["Task.id"])
    task: dict[str, Any] = {"resourceType": "Task", "status": "requested",
                            "intent": closed_task.get("intent", "order")}
    for key in ("code", "for", "owner", "requester"):
        if key in closed_task:
            task[key] = closed_task[key]
    task["partOf"] = [{"reference": f"Task/{task_id}"}]
    task["authoredOn"] = authored_on.isoformat()
    return task


def timeline_time(task: dict[str, Any]) -> str | None:
    """The time a démarche is placed at: executionPeriod.start, else authoredOn."""
    for value in ((task.get("executionPeriod") or {}).get("start"), task.get("authoredOn")):
        if isinstance(value, str):
            return value
    return None


def timeline(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Démarches oldest first, as $demarches returns them.

    Ordered by timeline_time (a partial date counts from its first instant,
    Brussels time), then by id; démarches with neither date come last, by id.
    A reopening is an ordinary entry that points to the one it reopens.
    """
    def key(task: dict[str, Any]) -> tuple[int, datetime, str]:
        when = timeline_time(task)
        return (0 if when else 1, start_of(when) if when else _UNDATED, str(task.get("id", "")))

    return sorted(tasks, key=key)
