"""The citizen's messages, built at display time in the reader's language (issue 19).

The inbox Communications (SPEC §6, §12) point at the audit records they tell about. The
page reads those records and says, in words: who, for which organisation, what, when, why,
with each record's proof. One actor's consultations of one day make one message listing
each consultation; urgent ones (break-the-glass, assisted consent) are never grouped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from dossier.core.repository import Repository
from dossier.portal import names as directory
from dossier.portal import views
from dossier.portal.i18n import BRUSSELS, N_, Translator

MAX_RECORDS = 500  # records read for one page of messages (100 per query)

WHAT = {
    "Patient": N_("your identity"), "Task": N_("your démarches"),
    "CareTeam": N_("your network"), "RelatedPerson": N_("your network"),
    "Observation": N_("your fragility"), "Flag": N_("your fragility"),
    "Consent": N_("your access choices"), "AuditEvent": N_("your access log"),
    "Communication": N_("your messages"),
}
WHY = {"TREAT": N_("for your care"), "BTG": N_("emergency access (break-the-glass)")}


def records_of(communications: Iterable[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for communication in communications:
        for about in communication.get("about") or []:
            reference = views.ref(about) or ""
            if reference.startswith("AuditEvent/"):
                out.append(reference.split("/", 1)[1])
    return list(dict.fromkeys(out))[:MAX_RECORDS]


def load_events(repo: Repository, store: Any, record_ids: list[str]) -> dict[str, Any]:
    """The AuditEvents the messages point at (the citizen reads their own log)."""
    from dossier.auditlog import events as auditevents

    found: dict[str, Any] = {}
    for start in range(0, len(record_ids), 100):
        chunk = record_ids[start:start + 100]
        events, _, _, _ = auditevents.search_events(repo, store, [
            ("_id", ",".join(chunk)), ("_count", "100")])
        found.update({str(e.get("id")): e for e in events})
    return found


def what_in_words(event: dict[str, Any], t: Translator) -> str:
    targets = views.audit_targets(event)
    words = [t(WHAT[x]) for x in targets if x in WHAT]
    return ", ".join(dict.fromkeys(words)) or t("your dossier")


def build(communications: list[dict[str, Any]], events: dict[str, Any],
          names: dict[str, str], organisations: dict[str, str],
          t: Translator) -> list[dict[str, Any]]:
    """Messages, newest first: one per actor and day (urgent ones alone)."""
    messages: dict[tuple[str, str, str], dict[str, Any]] = {}
    for communication in communications:
        urgent = communication.get("priority") == "urgent"
        sender = views.ref(communication.get("sender")) or ""
        for about in communication.get("about") or []:
            reference = views.ref(about) or ""
            if not reference.startswith("AuditEvent/"):
                continue
            record_id = reference.split("/", 1)[1]
            event = events.get(record_id)
            if event is None:
                continue
            who, _ = views.audit_agent(event)
            who = who or sender
            moment = _moment(event.get("recorded")) or _moment(communication.get("sent"))
            day = moment.astimezone(BRUSSELS).date().isoformat() if moment else ""
            key = (who, day, record_id if urgent else "")
            message = messages.get(key)
            if message is None:
                message = messages[key] = {
                    "who": names.get(who) or _role_name(event, t),
                    "organisation": organisations.get(who, ""),
                    "day": t.day(day) if day else "", "urgent": urgent,
                    "emergency": False, "latest": moment, "items": []}
            purpose = views.purpose(event) or ""
            message["items"].append({
                "id": record_id, "at": moment,
                "time": _time(moment, t), "what": what_in_words(event, t),
                "why": t(WHY[purpose]) if purpose in WHY else "",
                "emergency": purpose == views.BTG,
                "index": views.log_index(event)})
            if moment and (message["latest"] is None or moment > message["latest"]):
                message["latest"] = moment
            message["urgent"] = message["urgent"] or purpose == views.BTG
            message["emergency"] = message["emergency"] or purpose == views.BTG
    out = list(messages.values())
    for message in out:
        message["items"].sort(key=lambda i: (i["at"] is None, i["at"] or 0))
        message["count"] = len(message["items"])
        message["what"] = ", ".join(dict.fromkeys(
            w for i in message["items"] for w in i["what"].split(", ")))
    out.sort(key=lambda m: m["latest"] or datetime.min.replace(tzinfo=BRUSSELS),
             reverse=True)
    return out


def _role_name(event: dict[str, Any], t: Translator) -> str:
    _, role = views.audit_agent(event)
    return t(views.ROLE_LABELS.get(role, N_("A service"))) if role != "citizen" else \
        t("A service")


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=BRUSSELS)


def _time(moment: datetime | None, t: Translator) -> str:
    return moment.astimezone(BRUSSELS).strftime("%H:%M") if moment else ""


def load_names(repo: Repository, events: dict[str, Any],
               lang: str) -> tuple[dict[str, str], dict[str, str]]:
    agents = {views.audit_agent(e)[0] or "" for e in events.values()} - {""}
    return directory.names_for(repo, agents, lang), directory.organisations_of(repo, agents)
