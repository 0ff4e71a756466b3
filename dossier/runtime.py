"""The wiring of one running service: engine, services, and the unit of work that builds
the per-request Repository (the choke point)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dossier.context import RequestContext
from dossier.crypto import KeyProvider
from dossier.repository import AccessPolicy, AuditSink, NullAudit, OpenPolicy, Repository, Sealer
from dossier.sealing import FieldSealer
from dossier.settings import Settings
from dossier.telemetry import span_factory


class PolicyFactory:
    def __call__(self, session: Session, ctx: RequestContext) -> AccessPolicy:
        return OpenPolicy()


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    tracer_provider: TracerProvider
    tracer: Tracer
    key_provider: KeyProvider
    policy_factory: Any = field(default_factory=PolicyFactory)
    audit: AuditSink = field(default_factory=NullAudit)
    extras: dict[str, Any] = field(default_factory=dict)

    def sealer(self) -> Sealer:
        """A fresh sealer per request: data keys never outlive the request."""
        return FieldSealer(self.key_provider)

    @contextmanager
    def unit(self, ctx: RequestContext) -> Iterator[Repository]:
        """One transaction, one Repository: commit on success, roll back on any error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield Repository(
                session, ctx,
                policy=self.policy_factory(session, ctx),
                sealer=self.sealer(),
                audit=self.audit,
                page_size=self.settings.page_size_default,
                max_page_size=self.settings.page_size_max,
                tracer=span_factory(self.tracer),
            )
