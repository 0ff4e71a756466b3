"""Access notifications, pure (SPEC §6): texts in fr/nl/en/es, grouping, retry schedule and
webhook signatures. No database and no network here; see audit/transport.py for sending.

A message names who consulted the dossier (name or reference, organisations), what
(the record's actions and resource types), when (Europe/Brussels) and links to each
audit record and, once the record is in a signed tree head, to its inclusion proof.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

BRUSSELS = ZoneInfo("Europe/Brussels")
LANGUAGES = ("fr", "nl", "en", "es")
DEFAULT_LANGUAGE = "fr"
SIGNATURE_HEADER = "X-Dossier-Signature"

T = TypeVar("T")

TEXTS: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "subject": "Votre dossier a été consulté",
        "subject_digest": "Votre dossier : les consultations du jour",
        "subject_notice": "Votre dossier : un professionnel a agi pour vous",
        "notice": "{who} a enregistré quelque chose pour vous avec votre accord (par exemple "
                  "une autorisation donnée à son guichet). Vous en êtes averti tout de suite ; "
                  "si vous n'étiez pas d'accord, annulez-le depuis votre portail.",
        "subject_urgent": "URGENT : accès d'urgence à votre dossier",
        "one": "{who} a consulté votre dossier.",
        "many": "{who} a consulté votre dossier {n} fois.",
        "urgent": "Accès d'urgence (bris de glace) : {who} a ouvert votre dossier sans votre "
                  "consentement en invoquant une urgence. Un auditeur examinera cet accès. "
                  "Si vous ne le reconnaissez pas, signalez-le depuis votre portail.",
        "for": "{who} pour {orgs}",
        "when": "%d/%m/%Y à %H:%M (heure de Bruxelles)",
        "log": "Journal d'accès",
        "proof": "Preuve d'inclusion",
        "operator": "un membre du personnel du service",
        "client": "l'application {client}",
        "unknown": "un service",
    },
    "nl": {
        "subject": "Uw dossier werd geraadpleegd",
        "subject_digest": "Uw dossier: de raadplegingen van de dag",
        "subject_notice": "Uw dossier: een professional handelde voor u",
        "notice": "{who} heeft iets voor u vastgelegd met uw akkoord (bijvoorbeeld een "
                  "toestemming gegeven aan het loket). U wordt meteen verwittigd; was u niet "
                  "akkoord, maak het dan ongedaan via uw portaal.",
        "subject_urgent": "DRINGEND: noodtoegang tot uw dossier",
        "one": "{who} heeft uw dossier geraadpleegd.",
        "many": "{who} heeft uw dossier {n} keer geraadpleegd.",
        "urgent": "Noodtoegang (break-the-glass): {who} heeft uw dossier zonder uw toestemming "
                  "geopend met een beroep op een noodgeval. Een auditor onderzoekt deze "
                  "toegang. Herkent u ze niet, meld het dan via uw portaal.",
        "for": "{who} voor {orgs}",
        "when": "%d/%m/%Y om %H:%M (Brusselse tijd)",
        "log": "Toegangslogboek",
        "proof": "Bewijs van opname",
        "operator": "een medewerker van de dienst",
        "client": "de toepassing {client}",
        "unknown": "een dienst",
    },
    "en": {
        "subject": "Your dossier was consulted",
        "subject_digest": "Your dossier: the day's consultations",
        "subject_notice": "Your dossier: a professional acted for you",
        "notice": "{who} recorded something for you with your agreement (for example a "
                  "permission given at their desk). You are told at once; if you did not "
                  "agree, undo it from your portal.",
        "subject_urgent": "URGENT: emergency access to your dossier",
        "one": "{who} consulted your dossier.",
        "many": "{who} consulted your dossier {n} times.",
        "urgent": "Emergency access (break-the-glass): {who} opened your dossier without your "
                  "consent, invoking an emergency. An auditor will review this access. If you "
                  "do not recognise it, report it from your portal.",
        "for": "{who} for {orgs}",
        "when": "%d/%m/%Y at %H:%M (Brussels time)",
        "log": "Access log",
        "proof": "Inclusion proof",
        "operator": "a member of the service's staff",
        "client": "the application {client}",
        "unknown": "a service",
    },
    "es": {
        "subject": "Su expediente ha sido consultado",
        "subject_digest": "Su expediente: las consultas del día",
        "subject_notice": "Su expediente: un profesional actuó por usted",
        "notice": "{who} registró algo por usted con su acuerdo (por ejemplo, un permiso "
                  "dado en su ventanilla). Se le avisa enseguida; si no estaba de acuerdo, "
                  "deshágalo desde su portal.",
        "subject_urgent": "URGENTE: acceso de urgencia a su expediente",
        "one": "{who} consultó su expediente.",
        "many": "{who} consultó su expediente {n} veces.",
        "urgent": "Acceso de urgencia (romper el cristal): {who} abrió su expediente sin su "
                  "consentimiento, alegando una urgencia. Un auditor revisará este acceso. Si "
                  "no lo reconoce, indíquelo desde su portal.",
        "for": "{who} para {orgs}",
        "when": "%d/%m/%Y a las %H:%M (hora de Bruselas)",
        "log": "Registro de accesos",
        "proof": "Prueba de inclusión",
        "operator": "un miembro del personal del servicio",
        "client": "la aplicación {client}",
        "unknown": "un servicio",
    },
}

ACTIONS: Mapping[str, Mapping[str, str]] = {
    "fr": {"read": "lecture", "vread": "lecture d'une version", "search": "recherche",
           "history": "historique", "operation": "opération", "create": "ajout",
           "update": "modification", "delete": "suppression"},
    "nl": {"read": "inzage", "vread": "inzage van een versie", "search": "opzoeking",
           "history": "geschiedenis", "operation": "bewerking", "create": "toevoeging",
           "update": "wijziging", "delete": "verwijdering"},
    "en": {"read": "read", "vread": "read of a version", "search": "search",
           "history": "history", "operation": "operation", "create": "addition",
           "update": "change", "delete": "deletion"},
    "es": {"read": "lectura", "vread": "lectura de una versión", "search": "búsqueda",
           "history": "historial", "operation": "operación", "create": "alta",
           "update": "modificación", "delete": "supresión"},
}

TYPES: Mapping[str, Mapping[str, str]] = {
    "fr": {"Patient": "identité", "Task": "démarches", "CareTeam": "réseau",
           "RelatedPerson": "proches", "Observation": "fragilité sociale",
           "Flag": "signal de fragilité", "Consent": "consentements",
           "Communication": "notifications", "Provenance": "provenance",
           "AuditEvent": "journal d'accès", "*": "dossier"},
    "nl": {"Patient": "identiteit", "Task": "stappen", "CareTeam": "netwerk",
           "RelatedPerson": "naasten", "Observation": "sociale kwetsbaarheid",
           "Flag": "kwetsbaarheidssignaal", "Consent": "toestemmingen",
           "Communication": "meldingen", "Provenance": "herkomst",
           "AuditEvent": "toegangslogboek", "*": "dossier"},
    "en": {"Patient": "identity", "Task": "procedures", "CareTeam": "care network",
           "RelatedPerson": "relatives", "Observation": "social fragility",
           "Flag": "fragility flag", "Consent": "consents", "Communication": "notifications",
           "Provenance": "provenance", "AuditEvent": "access log", "*": "dossier"},
    "es": {"Patient": "identidad", "Task": "trámites", "CareTeam": "red",
           "RelatedPerson": "allegados", "Observation": "fragilidad social",
           "Flag": "señal de fragilidad", "Consent": "consentimientos",
           "Communication": "notificaciones", "Provenance": "procedencia",
           "AuditEvent": "registro de accesos", "*": "expediente"},
}


@dataclass(frozen=True)
class Access:
    """One consultation as the citizen is told about it (from one audit record)."""

    record_id: str
    recorded: datetime
    actor: str | None  # reference: Practitioner/x, Organization/x, Operator/x, Client/x
    actor_name: str | None  # display name from the directory, when known
    organizations: tuple[str, ...]  # display names (or references)
    actions: tuple[tuple[str, str], ...]  # (action, resource type), in order, no repeats
    urgent: bool = False
    log_index: int | None = None
    tree_size: int | None = None  # size of the latest signed tree head
    emergency: bool = False  # break-the-glass (urgent too); urgent alone: e.g. assisted consent


@dataclass(frozen=True)
class Message:
    language: str
    subject: str
    text: str
    urgent: bool
    record_ids: tuple[str, ...]


def language_of(code: str | None) -> str:
    """fr, nl or en; anything else (or a region such as nl-BE) falls back sensibly."""
    base = (code or "").split("-", 1)[0].lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


def access_from_record(record: Mapping[str, Any], *, urgent: bool = False,
                       names: Mapping[str, str] | None = None, log_index: int | None = None,
                       tree_size: int | None = None) -> Access:
    """An Access from a pseudonymous audit record (audit.record.build_record)."""
    names = names or {}
    agent = record.get("agent") or {}
    actor = agent.get("who")
    if isinstance(actor, str) and actor.startswith("Client/") and agent.get("on_behalf_of"):
        actor = agent["on_behalf_of"]  # a hub acting for a practitioner
    orgs = tuple(names.get(o, o) for o in agent.get("organizations") or ())
    actions: list[tuple[str, str]] = []
    for event in record.get("events") or ():
        pair = (str(event.get("action", "")), str(event.get("type", "*")))
        if pair not in actions:
            actions.append(pair)
    recorded = datetime.fromisoformat(str(record["recorded"]).replace("Z", "+00:00"))
    emergency = record.get("purpose") == "BTG"
    return Access(str(record["id"]), recorded, actor, names.get(actor) if actor else None,
                  orgs, tuple(actions), urgent or emergency, log_index, tree_size, emergency)


def describe_actor(access: Access, language: str) -> str:
    texts = TEXTS[language_of(language)]
    actor = access.actor or ""
    if actor.startswith("Operator/"):
        who = texts["operator"]
    elif actor.startswith("Client/"):
        who = texts["client"].format(client=actor.split("/", 1)[1])
    elif actor:
        who = access.actor_name or actor
    else:
        who = texts["unknown"]
    if access.organizations:
        return texts["for"].format(who=who, orgs=", ".join(access.organizations))
    return who


def describe_actions(access: Access, language: str) -> str:
    lang = language_of(language)
    parts = [f"{ACTIONS[lang].get(action, action)} ({TYPES[lang].get(rtype, rtype)})"
             for action, rtype in access.actions]
    return "; ".join(parts)


def record_path(record_id: str) -> str:
    return f"/fhir/AuditEvent/{record_id}"


def proof_path(access: Access) -> str | None:
    """The inclusion proof, once the record is covered by a signed tree head."""
    if access.log_index is None or access.tree_size is None:
        return None
    if not 0 <= access.log_index < access.tree_size:
        return None
    return f"/audit/proof/inclusion?index={access.log_index}&tree_size={access.tree_size}"


def compose(accesses: Sequence[Access], language: str, base_url: str = "") -> Message:
    """One message for one actor's consultations (a group), each listed."""
    if not accesses:
        raise ValueError("a message needs at least one access")
    lang = language_of(language)
    texts = TEXTS[lang]
    ordered = sorted(accesses, key=lambda a: (a.recorded, a.record_id))
    urgent = any(a.urgent for a in ordered)
    emergency = any(a.emergency for a in ordered)
    who = describe_actor(ordered[0], lang)
    n = len(ordered)
    lines = [texts["one"].format(who=who) if n == 1 else texts["many"].format(who=who, n=n)]
    if emergency:
        lines += ["", texts["urgent"].format(who=who)]
    elif urgent:  # told at once, but not an emergency access (an assisted consent)
        lines += ["", texts["notice"].format(who=who)]
    for access in ordered:
        when = access.recorded.astimezone(BRUSSELS).strftime(texts["when"])
        lines += ["", f"- {when}: {describe_actions(access, lang)}",
                  f"  {texts['log']}: {base_url}{record_path(access.record_id)}"]
        proof = proof_path(access)
        if proof:
            lines.append(f"  {texts['proof']}: {base_url}{proof}")
    subject = texts["subject_urgent" if emergency else "subject_notice" if urgent
                    else "subject"]
    return Message(lang, subject, "\n".join(lines) + "\n", urgent,
                   tuple(a.record_id for a in ordered))


def compose_digest(accesses: Sequence[Access], language: str,
                   base_url: str = "") -> Message:
    """The daily digest: one section per actor (as `compose`), in order of first look."""
    if not accesses:
        raise ValueError("a digest needs at least one access")
    by_actor: dict[str | None, list[Access]] = {}
    for access in sorted(accesses, key=lambda a: (a.recorded, a.record_id)):
        by_actor.setdefault(access.actor, []).append(access)
    parts = [compose(group, language, base_url) for group in by_actor.values()]
    lang = language_of(language)
    return Message(lang, TEXTS[lang]["subject_digest"],
                   "\n\n".join(p.text.rstrip("\n") for p in parts) + "\n",
                   any(p.urgent for p in parts),
                   tuple(r for p in parts for r in p.record_ids))


def next_digest(now: datetime, hour: int = 7) -> datetime:
    """The next daily digest time (`hour`:00 Brussels time) after `now`."""
    local = now.astimezone(BRUSSELS)
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at <= local:
        at = (local + timedelta(days=1)).replace(hour=hour, minute=0, second=0,
                                                 microsecond=0)
    return at


def group_within(items: Sequence[T], key: Callable[[T], Hashable],
                 at: Callable[[T], datetime], window: timedelta) -> list[list[T]]:
    """Split items into groups of one key whose times lie within `window` of the group's
    first item; every item is in exactly one group, groups in order of their first item."""
    open_groups: dict[Hashable, tuple[datetime, list[T]]] = {}
    groups: list[list[T]] = []
    for item in sorted(items, key=at):
        k = key(item)
        current = open_groups.get(k)
        if current is None or at(item) - current[0] > window:
            current = (at(item), [])
            open_groups[k] = current
            groups.append(current[1])
        current[1].append(item)
    return groups


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with bounded jitter: the n-th failed attempt waits
    min(cap, base * 2**(n-1)) * (1 + jitter * r) for r in [0, 1); after max_attempts, dead."""

    max_attempts: int = 8
    base_seconds: float = 30.0
    cap_seconds: float = 6 * 3600.0
    jitter: float = 0.25

    def delay(self, attempts: int, rand: float) -> timedelta:
        if attempts < 1:
            raise ValueError("attempts counts the attempts made, from 1")
        rand = min(max(rand, 0.0), 1.0)
        exponent = min(attempts - 1, 62)
        base = min(self.cap_seconds, self.base_seconds * float(2 ** exponent))
        return timedelta(seconds=base * (1.0 + self.jitter * rand))

    def max_delay(self, attempts: int) -> timedelta:
        return self.delay(attempts, 1.0)

    def next_attempt(self, now: datetime, attempts: int, rand: float) -> datetime | None:
        """When to try again after `attempts` failed attempts; None: give up (dead)."""
        if attempts >= self.max_attempts:
            return None
        return now + self.delay(attempts, rand)


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def webhook_signature(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The header value `t=<unix>,v1=<hex HMAC-SHA256 over "<unix>." + body>`."""
    mac = hmac.new(_secret_bytes(secret), f"{timestamp}.".encode("ascii") + body,
                   hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_webhook_signature(secret: str | bytes, body: bytes, header: str | None, *,
                             now: float, tolerance: float = 300.0) -> bool:
    """For receivers: the header signs this body with this secret, within `tolerance`
    seconds of `now` (replay window). Several v1 values (key rotation) are accepted."""
    if not header:
        return False
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and (value.isascii() and value.isdigit()) and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1":
            macs.append(value)
    if timestamp is None or not macs or abs(now - timestamp) > tolerance:
        return False
    expected = webhook_signature(secret, body, timestamp).rsplit("=", 1)[1]
    return any(hmac.compare_digest(expected, mac) for mac in macs)


def delivery_key(outbox_ids: Sequence[str]) -> str:
    """Idempotency key of one delivery: the outbox id, or a digest of a group's ids
    (stable across retries of the same group)."""
    ids = sorted(outbox_ids)
    if len(ids) == 1:
        return ids[0]
    return "g-" + hashlib.sha256(",".join(ids).encode("ascii")).hexdigest()[:40]
