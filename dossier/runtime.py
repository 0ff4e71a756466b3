"""The wiring of one running service: engine, keys, audit log, and the unit of work that
builds the per-request Repository (the choke point)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from audit.checkpoint import Signer
from audit.store import AuditStore
from dossier.auditing import RequestAudit
from dossier.context import RequestContext
from dossier.crypto import KeyProvider
from dossier.errors import DossierError, ServiceUnavailable
from dossier.repository import Repository, Sealer
from dossier.sealing import FieldSealer
from dossier.settings import Settings
from dossier.telemetry import span_factory

log = logging.getLogger("dossier")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    tracer_provider: TracerProvider
    tracer: Tracer
    key_provider: KeyProvider
    audit_store: AuditStore
    signer: Signer
    query_key: bytes
    policy_factory: Any
    extras: dict[str, Any] = field(default_factory=dict)
    on_change: Any = None  # (Repository, Stored) -> None, for every write (subscriptions)

    def sealer(self) -> Sealer:
        """A fresh sealer per request: data keys never outlive the request."""
        return FieldSealer(self.key_provider)

    @contextmanager
    def unit(self, ctx: RequestContext) -> Iterator[Repository]:
        """One transaction, one Repository, its audit records in the same transaction.

        On a refusal or an error the work is rolled back and the audit records of the
        failure are written in a fresh transaction. If no audit record can be written the
        request fails and returns nothing (fail closed)."""
        audit = RequestAudit(self.audit_store, ctx, self.query_key)
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                policy = self.policy_factory(session, ctx)
                yield Repository(
                    session, ctx,
                    policy=policy,
                    sealer=self.sealer(),
                    audit=audit,
                    page_size=self.settings.page_size_default,
                    max_page_size=self.settings.page_size_max,
                    tracer=span_factory(self.tracer),
                    on_change=self.on_change,
                )
                # reads made under a break-the-glass grant: purpose BTG, urgent notice
                for patient_id in getattr(policy, "break_glass_used", ()):
                    audit.urgent(patient_id)
                audit.flush(session)
        except DossierError as exc:
            audit.fail(exc.status)
            self._write_failure(audit)
            raise
        except Exception:
            audit.fail(500)
            self._write_failure(audit)
            raise

    def _write_failure(self, audit: RequestAudit) -> None:
        try:
            with Session(self.engine) as session, session.begin():
                audit.flush(session)
        except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
            log.error("audit record could not be written (%s): request refused",
                      type(exc).__name__)
            raise ServiceUnavailable("The access log cannot be written, so the request was "
                                     "refused. Nothing was changed or returned.") from None

    def integrate_audit(self) -> int:
        """Run the sequencer once: sequence pending records and sign a tree head."""
        with Session(self.engine) as session, session.begin():
            return self.audit_store.integrate(session, self.signer, datetime.now(UTC))
