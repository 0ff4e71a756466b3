"""Dossier: the consent-managed shared dossier (FHIR R4) for Brussels' social-health sector."""

__version__ = "0.1.0"
