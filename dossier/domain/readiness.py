"""$discharge-readiness (§9): is it safe to discharge the person at a given time?

Not ready when fragility is high and nobody of the network is confirmed
available, or when a person at moderate or high fragility would leave when
services close: Friday afternoon, the weekend, a Belgian public holiday or the
afternoon before one. Times are Europe/Brussels. docs/fragility.md explains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

import holidays

from dossier.domain._time import BRUSSELS, period_covers, require_aware
from dossier.domain.codes import (
    AVAILABLE_AT_DISCHARGE_URL,
    NETWORK_ROLE_SYSTEM,
    READINESS_REASON_SYSTEM,
)
from dossier.domain.fragility import fragility_level

AFTERNOON = time(12, 0)  # "afternoon" starts at noon, Brussels time
FRIDAY, SATURDAY, SUNDAY = 4, 5, 6
_IGNORED_ASSESSMENTS = frozenset({"entered-in-error", "cancelled"})
_COUNTED_TEAM_STATUSES = frozenset({"active"})  # a CareTeam without status counts too

# Reasons in the order they are reported.
REASON_CODES = (
    "no-assessment",
    "high-fragility-no-support",
    "public-holiday",
    "weekend",
    "friday-afternoon",
    "holiday-eve",
)
TIMING_REASONS = frozenset({"public-holiday", "weekend", "friday-afternoon", "holiday-eve"})

REASON_TEXTS: dict[str, dict[str, str]] = {
    "no-assessment": {
        "en": "No fragility assessment is recorded: assess fragility before discharge.",
        "fr": "Aucune évaluation de la fragilité n'est enregistrée : évaluez la fragilité "
              "avant la sortie.",
        "nl": "Er is geen beoordeling van de kwetsbaarheid geregistreerd: beoordeel de "
              "kwetsbaarheid vóór het ontslag.",
    },
    "high-fragility-no-support": {
        "en": "Fragility is high and no member of the network is confirmed available "
              "at discharge.",
        "fr": "La fragilité est élevée et aucun membre du réseau n'est confirmé disponible "
              "à la sortie.",
        "nl": "De kwetsbaarheid is hoog en van niemand uit het netwerk is bevestigd dat die "
              "beschikbaar is bij het ontslag.",
    },
    "public-holiday": {
        "en": "Discharge on a Belgian public holiday: most services are closed.",
        "fr": "Sortie un jour férié légal en Belgique : la plupart des services sont fermés.",
        "nl": "Ontslag op een wettelijke feestdag in België: de meeste diensten zijn gesloten.",
    },
    "weekend": {
        "en": "Discharge on a Saturday or Sunday: most services are closed.",
        "fr": "Sortie un samedi ou un dimanche : la plupart des services sont fermés.",
        "nl": "Ontslag op een zaterdag of zondag: de meeste diensten zijn gesloten.",
    },
    "friday-afternoon": {
        "en": "Discharge on a Friday afternoon (from 12:00): services close for the weekend.",
        "fr": "Sortie un vendredi après-midi (à partir de 12 h) : les services ferment pour "
              "le week-end.",
        "nl": "Ontslag op vrijdagnamiddag (vanaf 12 uur): de diensten sluiten voor het weekend.",
    },
    "holiday-eve": {
        "en": "Discharge in the afternoon (from 12:00) before a Belgian public holiday: "
              "services close for the holiday.",
        "fr": "Sortie l'après-midi (à partir de 12 h) la veille d'un jour férié légal : "
              "les services ferment pour le jour férié.",
        "nl": "Ontslag in de namiddag (vanaf 12 uur) vóór een wettelijke feestdag: de "
              "diensten sluiten voor de feestdag.",
    },
}
LANGUAGES = ("en", "fr", "nl")

# Network roles to contact for each reason, beyond the members confirmed available.
_TIMING_ROLES = frozenset({"general-practitioner", "home-nurse", "case-manager"})
REASON_ROLES: dict[str, frozenset[str]] = {
    "no-assessment": frozenset({"social-worker", "case-manager"}),
    "high-fragility-no-support": frozenset({"case-manager", "social-worker", "informal-carer",
                                            "family", "neighbour", "volunteer"}),
    **dict.fromkeys(TIMING_REASONS, _TIMING_ROLES),
}


@dataclass(frozen=True)
class Reason:
    code: str  # from READINESS_REASON_SYSTEM
    text: str  # English; REASON_TEXTS holds fr and nl


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[Reason, ...]
    contacts: tuple[str, ...]  # references of network members to activate, sorted


@dataclass(frozen=True)
class NetworkMember:
    """One person or organisation of the network at a given time."""

    reference: str
    roles: frozenset[str]
    available: bool


def reason(code: str) -> Reason:
    """The Reason for a code, with its English text."""
    return Reason(code, REASON_TEXTS[code]["en"])


@lru_cache(maxsize=32)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("BE", years=year, language="en_US").keys())


def is_public_holiday(day: date) -> bool:
    """True on a Belgian public holiday (the `holidays` package's list for Belgium)."""
    return day in _public_holidays(day.year)


def timing_reasons(at: datetime) -> tuple[str, ...]:
    """Which closed-services reasons apply at `at` (read in Brussels time)."""
    require_aware(at, "at")
    local = at.astimezone(BRUSSELS)
    day, afternoon = local.date(), local.time() >= AFTERNOON
    found = {
        "public-holiday": is_public_holiday(day),
        "weekend": day.weekday() in (SATURDAY, SUNDAY),
        "friday-afternoon": day.weekday() == FRIDAY and afternoon,
        "holiday-eve": afternoon and is_public_holiday(day + timedelta(days=1)),
    }
    return tuple(code for code in REASON_CODES if found.get(code))


def _role_codes(participant: dict[str, Any]) -> frozenset[str]:
    codes = set()
    for concept in participant.get("role") or []:
        for coding in (concept or {}).get("coding") or []:
            if coding.get("system") == NETWORK_ROLE_SYSTEM and isinstance(coding.get("code"), str):
                codes.add(coding["code"])
    return frozenset(codes)


def _confirmed_available(participant: dict[str, Any]) -> bool:
    return any(ext.get("url") == AVAILABLE_AT_DISCHARGE_URL and ext.get("valueBoolean") is True
               for ext in participant.get("extension") or [])


def network_at(care_teams: list[dict[str, Any]], at: datetime) -> tuple[NetworkMember, ...]:
    """Members of the network at `at`: active CareTeams, participants whose period covers it.

    A member listed several times is merged: roles joined, available if any entry says so.
    """
    merged: dict[str, NetworkMember] = {}
    for team in care_teams:
        status = team.get("status")
        if status is not None and status not in _COUNTED_TEAM_STATUSES:
            continue
        if not period_covers(team.get("period"), at):
            continue
        for participant in team.get("participant") or []:
            reference = (participant.get("member") or {}).get("reference")
            if not isinstance(reference, str) or not period_covers(participant.get("period"), at):
                continue
            member = NetworkMember(reference, _role_codes(participant),
                                   _confirmed_available(participant))
            if reference in merged:
                known = merged[reference]
                member = NetworkMember(reference, known.roles | member.roles,
                                 known.available or member.available)
            merged[reference] = member
    return tuple(merged[ref] for ref in sorted(merged))


def discharge_readiness(at: datetime, fragility: dict[str, Any] | None,
                        care_teams: list[dict[str, Any]],
                        destination: str | None = None) -> Readiness:
    """Ready or not at `at`, with every reason that applies and the contacts to activate.

    `fragility` is the latest social-fragility Observation (None if there is none);
    `care_teams` the person's network; `destination` an optional reference to
    where the person goes — if that is a network member at `at`, it counts as
    confirmed to receive them.
    """
    require_aware(at, "at")
    if fragility is not None and fragility.get("status") in _IGNORED_ASSESSMENTS:
        fragility = None
    level = fragility_level(fragility) if fragility is not None else None
    members = network_at(care_teams, at)
    available = {m.reference for m in members if m.available or m.reference == destination}

    codes: list[str] = []
    if level is None:
        codes.append("no-assessment")
    if level == "high" and not available:
        codes.append("high-fragility-no-support")
    if level != "low":  # moderate, high, or not known
        codes.extend(timing_reasons(at))
    codes.sort(key=REASON_CODES.index)

    roles = frozenset().union(*(REASON_ROLES[code] for code in codes))
    contacts = available | {m.reference for m in members if m.roles & roles}
    return Readiness(ready=not codes, reasons=tuple(reason(code) for code in codes),
                     contacts=tuple(sorted(contacts)))


def _language(lang: str) -> str:
    primary = lang.replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else "en"


def readiness_parameters(r: Readiness, lang: str = "en") -> dict[str, Any]:
    """FHIR Parameters per §12: ready, reason (coding + text in `lang`), contact."""
    language = _language(lang)
    parameters: list[dict[str, Any]] = [{"name": "ready", "valueBoolean": r.ready}]
    for item in r.reasons:
        parameters.append({"name": "reason", "valueCodeableConcept": {
            "coding": [{"system": READINESS_REASON_SYSTEM, "code": item.code,
                        "display": item.text}],
            "text": REASON_TEXTS[item.code][language],
        }})
    parameters.extend({"name": "contact", "valueReference": {"reference": ref}}
                      for ref in r.contacts)
    return {"resourceType": "Parameters", "parameter": parameters}
