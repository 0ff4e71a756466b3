"""Rules that span several elements, run after the walk.

- Fragility components: each component's value[x] type (and, for housing, its
  value set) is read from the `value-type` / `value-set` properties of the
  fragility-component code system; a component code appears at most once.
- Consent provisions (§12): a permit names an actor, actions and categories; a
  deny names an actor, or refuses break-the-glass (purpose BTG, no actor).
- NISS/INSZ identifiers carry a valid check number.
- An Endpoint's address is an absolute https URL (http only on a loopback host) of at most
  255 characters (the search index keeps 255), with no user, query or fragment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from schemas import terminology
from schemas.paths import codings
from schemas.urls import FRAGILITY_COMPONENT_SYSTEM, SSIN_SYSTEM, V3_ACT_REASON
from schemas.walker import Walker

Rule = Callable[[Mapping[str, Any], Walker], None]


def fragility_components(resource: Mapping[str, Any], walker: Walker) -> None:
    components = resource.get("component")
    seen: set[str] = set()
    for index, component in enumerate(components if isinstance(components, list) else ()):
        if not isinstance(component, dict):
            continue
        path = f"Observation.component[{index}]"
        given = [key for key in component if key.startswith("value")]
        if len(given) > 1:
            walker.add(path, f"{path} has more than one value[x]; send exactly one.", "structure")
        code = next((c for s, c in codings(component.get("code"))
                     if s == FRAGILITY_COMPONENT_SYSTEM), None)
        value_type = None if code is None else terminology.concept_property(
            FRAGILITY_COMPONENT_SYSTEM, code, "value-type")
        if code is None or value_type is None:
            continue  # no component code: the walk reported it
        if code in seen:
            walker.add(f"{path}.code", f"{path}.code repeats a component given earlier.",
                       "structure")
        seen.add(code)
        expected = "valueBoolean" if value_type == "boolean" else f"value{value_type}"
        if not given:
            walker.add(f"{path}.{expected}", f"{path}.{expected} is required for this "
                                             "component code.", "required")
        for key in given:
            if key != expected:
                walker.add(f"{path}.{key}", f"{path}.{key} has the wrong type: this "
                                            f"component takes {expected}.", "value")
        value_set = terminology.concept_property(FRAGILITY_COMPONENT_SYSTEM, code, "value-set")
        if isinstance(value_set, str) and expected in component:
            walker.codeable_concept_membership(component[expected], value_set,
                                               f"{path}.{expected}")


def consent_provision(resource: Mapping[str, Any], walker: Walker) -> None:
    provision = resource.get("provision")
    if not isinstance(provision, dict):
        return
    kind = provision.get("type")
    if kind == "permit":
        for name in ("actor", "action", "securityLabel"):
            if name not in provision:
                walker.add(f"Consent.provision.{name}",
                           f"Consent.provision.{name} is required in a permit.", "required")
    elif kind == "deny" and "actor" not in provision:
        purposes = {c for s, c in _each_coding(provision.get("purpose")) if s == V3_ACT_REASON}
        if "BTG" not in purposes:
            walker.add("Consent.provision.actor", "Consent.provision.actor is required in a "
                       "deny, unless provision.purpose is BTG (refusing break-the-glass).",
                       "required")


def _each_coding(value: Any) -> list[tuple[str, str]]:
    items = value if isinstance(value, list) else []
    return [pair for item in items for pair in codings(item)]


def valid_ssin(text: str) -> bool:
    """Belgian national number (NISS/INSZ, also BIS): 11 digits, mod-97 check number."""
    if len(text) != 11 or not text.isascii() or not text.isdigit():
        return False
    body, check = int(text[:9]), int(text[9:])
    return check in (97 - body % 97, 97 - (2_000_000_000 + body) % 97)


def ssin_identifiers(resource: Mapping[str, Any], walker: Walker) -> None:
    identifiers = resource.get("identifier")
    for index, identifier in enumerate(identifiers if isinstance(identifiers, list) else ()):
        if isinstance(identifier, dict) and identifier.get("system") == SSIN_SYSTEM:
            value = identifier.get("value")
            if isinstance(value, str) and not valid_ssin(value):
                path = f"{resource['resourceType']}.identifier[{index}].value"
                walker.add(path, f"{path} is not a valid Belgian national number (NISS/INSZ): "
                                 "11 digits ending in their check number.", "value")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_url(text: str) -> bool:
    """An absolute https URL of a server (http on a loopback host, for tests and dev);
    no user or password, query or fragment."""
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    if not parts.hostname or not port_ok or parts.username is not None or \
            parts.password is not None or any(c in text for c in "?# \t\r\n"):
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname))


def endpoint_address(resource: Mapping[str, Any], walker: Walker) -> None:
    address = resource.get("address")
    if isinstance(address, str) and address.strip() and (
            len(address) > 255 or not server_url(address)):
        walker.add("Endpoint.address", "Endpoint.address must be an absolute https URL (http "
                   "only on a loopback host) of at most 255 characters, without user, query "
                   "or fragment.", "value")


RULES: Mapping[str, tuple[Rule, ...]] = {
    "Observation": (fragility_components,),
    "Consent": (consent_provision,),
    "Patient": (ssin_identifiers,),
    "RelatedPerson": (ssin_identifiers,),
    "Practitioner": (ssin_identifiers,),
    "Endpoint": (endpoint_address,),
}
