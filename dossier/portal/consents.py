"""The citizen's permissions: grant, change (narrow), withdraw, exclude, refuse
break-the-glass. Each is a Consent in the §12 encoding, written through the Repository
(only the person may write them; every change is versioned and audited)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from starlette.datastructures import FormData

from dossier.core.repository import Repository
from dossier.domain.consents import CONSENT_ACTION, consent_body
from dossier.portal import codes
from dossier.portal.i18n import N_, Translator
from dossier.portal.views import BTG

ACTOR_RE = re.compile(r"^(Practitioner|Organization|Group)/[A-Za-z0-9\-.]{1,64}$")


class FormProblem(Exception):
    """A form field to correct; `message` is a msgid, `field` the input's name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# ------------------------------------------------------------------ reading the form
def actor_of(form: FormData, allowed: set[str] | None = None) -> str:
    actor = str(form.get("actor") or "")
    if not ACTOR_RE.match(actor) or (allowed is not None and actor not in allowed):
        raise FormProblem("actor", N_("Choose who this is about."))
    return actor


def choices(form: FormData, name: str, allowed: tuple[str, ...], message: str) -> list[str]:
    chosen = [str(v) for v in form.getlist(name)]
    if not chosen or any(v not in allowed for v in chosen):
        raise FormProblem(name, message)
    return [v for v in allowed if v in chosen]


def period(form: FormData) -> tuple[str | None, str | None]:
    values: list[str | None] = []
    for name in ("start", "end"):
        text = str(form.get(name) or "").strip()
        if text:
            try:
                date.fromisoformat(text)
            except ValueError:
                raise FormProblem(name, N_("Write the date as year-month-day, for example "
                                           "2027-01-31.")) from None
        values.append(text or None)
    start, end = values
    if start and end and end < start:
        raise FormProblem("end", N_("The end date cannot be before the start date."))
    return start, end


def grant_from_form(form: FormData, patient_id: str, now: str,
                    allowed: set[str] | None = None) -> dict[str, Any]:
    actor = actor_of(form, allowed)
    categories = choices(form, "category", codes.CATEGORIES,
                         N_("Choose at least one kind of information."))
    actions = choices(form, "action", codes.ACTIONS,
                      N_("Choose whether they may see, add information, or both."))
    start, end = period(form)
    return consent_body(patient_id, "permit", actor=actor, categories=categories,
                        actions=actions, start=start, end=end, now=now)


def changed(consent: dict[str, Any], form: FormData) -> dict[str, Any]:
    """The same grant with the categories, actions and period of the form."""
    body = {k: v for k, v in consent.items() if k != "meta"}
    provision = dict(body.get("provision") or {})
    categories = choices(form, "category", codes.CATEGORIES,
                         N_("Choose at least one kind of information."))
    actions = choices(form, "action", codes.ACTIONS,
                      N_("Choose whether they may see, add information, or both."))
    start, end = period(form)
    provision["securityLabel"] = [{"system": codes.CATEGORY_SYSTEM, "code": c}
                                  for c in categories]
    provision["action"] = [{"coding": [{"system": CONSENT_ACTION, "code": a}]} for a in actions]
    provision.pop("period", None)
    if start or end:
        provision["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    body["provision"] = provision
    return body


# ------------------------------------------------------------------ through the Repository
def patient_consents(repo: Repository, patient_id: str) -> list[dict[str, Any]]:
    result = repo.search("Consent", [("patient", f"Patient/{patient_id}"), ("_count", "200")])
    return [s.resource for s in result.matches if s.resource is not None]


def withdraw(repo: Repository, consent_id: str) -> None:
    current = repo.read("Consent", consent_id).resource or {}
    body = {k: v for k, v in current.items() if k != "meta"}
    body["status"] = "inactive"
    repo.update("Consent", consent_id, body)


def refuse_break_glass(repo: Repository, patient_id: str, refuse: bool, now: str) -> None:
    from dossier.portal.views import is_btg_refusal

    existing = [c for c in patient_consents(repo, patient_id)
                if c.get("status") == "active" and is_btg_refusal(c)]
    if refuse and not existing:
        repo.create(consent_body(patient_id, "deny", purpose=BTG, now=now))
    if not refuse:
        for consent in existing:
            withdraw(repo, str(consent["id"]))


# ------------------------------------------------------------------ the summary in words
WHAT = {"identity": N_("your identity"), "demarches": N_("your démarches"),
        "network": N_("your network"), "fragility": N_("your fragility"),
        "psy": N_("the mental-health part of your dossier")}
SENTENCES = {
    ("access",): N_("{who} will see {what}"),
    ("collect",): N_("{who} will be able to add to {what}"),
    ("access", "collect"): N_("{who} will see {what} and be able to add to it"),
}


def in_words(items: list[str], t: Translator) -> str:
    """'a', 'a and b', 'a, b and c' in the reader's language."""
    if len(items) <= 1:
        return "".join(items)
    return t("{first} and {last}").format(first=", ".join(items[:-1]), last=items[-1])


def summary(who: str, consent: dict[str, Any], t: Translator) -> str:
    """What a permission does, as one sentence: 'Els Peeters will see your network and
    your fragility until 1 March 2027.'"""
    provision = consent.get("provision") or {}
    categories = [c.get("code") for c in provision.get("securityLabel") or []
                  if c.get("code") in WHAT]
    actions = tuple(a for a in codes.ACTIONS if any(
        c.get("code") == a for x in provision.get("action") or []
        for c in x.get("coding") or []))
    sentence = t(SENTENCES.get(actions, SENTENCES[("access",)])).format(
        who=who, what=in_words([t(WHAT[c]) for c in categories], t))
    window = provision.get("period") or {}
    if window.get("start"):
        sentence += " " + t("from {day}").format(day=t.day(window["start"]))
    if window.get("end"):
        sentence += " " + t("until {day}").format(day=t.day(window["end"]))
    return sentence + "."
