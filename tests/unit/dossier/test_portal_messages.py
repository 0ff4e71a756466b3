"""Messages built at display time (issue 19): one per actor and day, each look listed,
urgent ones alone; emergency access is told as such, an urgent assisted consent is not."""

from __future__ import annotations

from typing import Any

from dossier.portal.i18n import Translator
from dossier.portal.messages import build

DB = "https://dossier.brussels/fhir"


def event(rid: str, who: str, recorded: str, target: str = "Task",
          purpose: str = "TREAT") -> dict[str, Any]:
    return {"resourceType": "AuditEvent", "id": rid, "recorded": recorded, "action": "R",
            "agent": [{"requestor": True, "who": {"reference": who},
                       "role": [{"coding": [{"system": f"{DB}/CodeSystem/actor-role",
                                             "code": "practitioner"}]}]}],
            "purposeOfEvent": [{"coding": [{"code": purpose}]}],
            "entity": [{"what": {"reference": f"{target}/x"}, "type": {"code": "2"}}]}


def note(ids: list[str], urgent: bool = False) -> dict[str, Any]:
    return {"resourceType": "Communication", "priority": "urgent" if urgent else "routine",
            "sent": "2026-12-05T10:00:00Z",
            "about": [{"reference": f"AuditEvent/{i}"} for i in ids]}


def test_one_actor_one_day_is_one_message_listing_each_look() -> None:
    events = {"a": event("a", "Practitioner/p", "2026-12-05T08:00:00Z"),
              "b": event("b", "Practitioner/p", "2026-12-05T15:00:00Z", "CareTeam"),
              "c": event("c", "Practitioner/p", "2026-12-06T08:00:00Z"),
              "d": event("d", "Practitioner/q", "2026-12-05T09:00:00Z")}
    out = build([note(["a"]), note(["b"]), note(["c"]), note(["d"])], events,
                {"Practitioner/p": "Els Peeters"}, {"Practitioner/p": "CPAS"},
                Translator("en"))
    assert [(m["who"], m["count"]) for m in out] == [
        ("Els Peeters", 1), ("Els Peeters", 2), ("Professional", 1)]
    assert out[1]["what"] == "your démarches, your network"
    assert out[1]["items"][0]["why"] == "for your care"
    assert Translator("nl")("your network") == "uw netwerk"


def test_urgent_messages_stand_alone_and_only_break_the_glass_is_an_emergency() -> None:
    events = {"a": event("a", "Practitioner/p", "2026-12-05T08:00:00Z", purpose="BTG"),
              "b": event("b", "Practitioner/p", "2026-12-05T08:05:00Z", "Consent"),
              "c": event("c", "Practitioner/p", "2026-12-05T08:10:00Z")}
    out = build([note(["a"], urgent=True), note(["b"], urgent=True), note(["c"])], events,
                {}, {}, Translator("fr"))
    assert len(out) == 3
    flags = {m["items"][0]["id"]: (m["urgent"], m["emergency"]) for m in out}
    assert flags == {"a": (True, True), "b": (True, False), "c": (False, False)}
