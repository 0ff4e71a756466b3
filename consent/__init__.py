"""Consent: the citizen's policies and the pure decision point that applies them.

No I/O, no web, no database, nothing of ours: the caller hands in the actor,
the patient's Consent resources (parsed here), the data categories, the
action, the purpose and the time, and gets a Decision with reasons.
"""

from __future__ import annotations

from consent.engine import (
    break_glass_provision,
    break_glass_refused,
    decide,
    granted_categories,
)
from consent.model import (
    ACTIONS,
    BREAK_GLASS_CATEGORIES,
    BREAK_GLASS_PURPOSE,
    CATEGORIES,
    CATEGORY_SYSTEM,
    Actor,
    Decision,
    Provision,
    profession_group,
)
from consent.parse import (
    ConsentFormatError,
    parse_consent,
    render_consent,
    validate_consent,
)

__all__ = [
    "ACTIONS",
    "BREAK_GLASS_CATEGORIES",
    "BREAK_GLASS_PURPOSE",
    "CATEGORIES",
    "CATEGORY_SYSTEM",
    "Actor",
    "ConsentFormatError",
    "Decision",
    "Provision",
    "break_glass_provision",
    "break_glass_refused",
    "decide",
    "granted_categories",
    "parse_consent",
    "profession_group",
    "render_consent",
    "validate_consent",
]
