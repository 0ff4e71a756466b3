"""The application factory: settings → engine (migrated) → services → FastAPI app."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import NoOpTracer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from audit.store import AuditStore
from auth import AuthError, JWKSCache, TokenValidator, bearer_token, role_of
from dossier.auditlog.keys import audit_origin as audit_origin  # re-exported
from dossier.auditlog.keys import key_provider as key_provider
from dossier.auditlog.keys import record_authenticator
from dossier.auditlog.routes import router as audit_router
from dossier.auditlog.witness import witness_from
from dossier.background import Leadership, periodic
from dossier.coordination import discharge  # noqa: F401 - register operations
from dossier.core.access import ConsentPolicy
from dossier.core.auditing import record_token_event
from dossier.core.context import RequestContext
from dossier.core.directory import StoreDirectory
from dossier.core.runtime import Runtime
from dossier.db.engine import make_engine, make_loop_engine, refresh_statistics, upgrade
from dossier.db.models import audit_tables
from dossier.errors import DossierError
from dossier.exports import bulk as export
from dossier.fhir.ops import (  # noqa: F401 - register operations
    citizen,
    content,
    erase,
    patient,
    people,
)
from dossier.fhir.routes import CreateByType, ReadById
from dossier.fhir.routes import root_router as well_known_router
from dossier.fhir.routes import router as fhir_router
from dossier.fhir.wire import fhir_response
from dossier.guard import Guard
from dossier.hubs import locator, registration  # noqa: F401 - register operations
from dossier.portal import install_portal
from dossier.seed.accounts import ensure_accounts
from dossier.seed.groups import ensure_profession_groups
from dossier.seed.territory import ensure_territory
from dossier.settings import Settings, ensure_data_dir
from dossier.stores.issuer import DatabaseIssuerState
from dossier.stores.refusals import record_finished
from dossier.subscriptions.routes import router as subscription_router
from dossier.subscriptions.service import capture, run_deliveries
from dossier.telemetry import RequestMetrics, make_meter, make_tracer, request_span
from dossier.throttle import Throttle, ThrottleGate, client_address

log = logging.getLogger("dossier")

STATISTICS_SECONDS = 600.0  # planner statistics, both databases (db/engine.py refresh_statistics)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def outcome(status: int, code: str, message: str) -> Response:
    return fhir_response({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": message}]}, status)


def build_runtime(settings: Settings, exporter: SpanExporter | None = None) -> Runtime:
    ensure_data_dir(settings.data_dir)
    engine = make_engine(settings.sqlalchemy_url, prepared=settings.db_prepared_statements)
    if settings.prepared:
        pass  # a worker of `serve --workers N`: the parent migrated already
    elif settings.migration_database_url:
        # production: the owner role migrates; the application role cannot alter the log
        owner = make_engine(settings.migration_database_url)
        upgrade(owner)
        owner.dispose()
    else:
        upgrade(engine)
    provider, tracer = make_tracer(settings, exporter)
    keys = key_provider(settings)
    signer = keys.audit_signer()  # a file of the local provider, or a key on the HSM
    query_key = hmac.new(keys.blind_index_key(), b"audit-query-values",
                         hashlib.sha256).digest()
    runtime = Runtime(settings=settings, engine=engine, tracer_provider=provider,
                      tracer=tracer, key_provider=keys, signer=signer, query_key=query_key,
                      audit_store=AuditStore(audit_tables, audit_origin(settings),
                                             record_authenticator(keys)),
                      policy_factory=lambda session, ctx: ConsentPolicy(
                          session, ctx.principal, ctx.now))
    if engine.dialect.name == "postgresql" and settings.units_on_loop:
        runtime.loop_engine = make_loop_engine(settings.sqlalchemy_url,
                                               prepared=settings.db_prepared_statements)
    runtime.on_change = capture  # subscriptions: told of every write, in its transaction
    if settings.audit_witness:
        runtime.publish_head = witness_from(settings.audit_witness).publish
    runtime.after_commit["exports"] = lambda: runtime.spawn(
        "export", lambda: export.run_starting(runtime))
    runtime.after_commit["checkpoint-wal"] = lambda: checkpoint_wal(runtime.engine)
    with Session(engine) as session:
        runtime.audit_store.adopt_origin(session)
    if not settings.prepared:
        ensure_profession_groups(runtime)
        ensure_accounts(DatabaseIssuerState(engine), settings)
        ensure_territory(runtime)
        if settings.demo:
            from dossier.seed.demo import load_demo

            load_demo(runtime)
        runtime.integrate_audit()  # a signed head exists from the first start
    return runtime


def prepare(settings: Settings) -> None:
    """What `serve --workers N` does once, before starting its workers: migrations, the
    profession Groups, the demo people, a first signed tree head."""
    runtime = build_runtime(settings)
    runtime.engine.dispose()


def worker_app() -> FastAPI:
    """The app of one worker process of `serve --workers N` (settings from the
    environment the parent exported)."""
    from dossier.serving import settle_heap
    from dossier.settings import load_settings

    app = create_app(load_settings())
    settle_heap()
    return app


def checkpoint_wal(engine: Any) -> None:
    """SQLite: copy the write-ahead log into the database and empty it (after an erasure,
    so the erased pages are overwritten everywhere)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def start_workers(runtime: Runtime) -> list[Any]:
    """The audit sequencer, the notification and the subscription workers (each off when
    its period is 0)."""
    from dossier.notify.worker import run_pending

    s = runtime.settings
    workers = []
    if s.audit_sequencer_seconds > 0:
        workers.append(periodic("audit-sequencer", s.audit_sequencer_seconds,
                                runtime.integrate_audit, fixed_rate=True))
    if s.notify_worker_seconds > 0:
        workers.append(periodic("notifier", s.notify_worker_seconds,
                                lambda: run_pending(runtime)))
        workers.append(periodic("subscriptions", s.notify_worker_seconds,
                                lambda: run_deliveries(runtime)))
    if s.maintenance_seconds > 0:
        statistics_due = [0.0]  # monotonic time of the next planner statistics refresh

        def maintain() -> None:
            if time.monotonic() >= statistics_due[0]:
                refresh_statistics(runtime.engine)  # at start, then every 10 minutes
                statistics_due[0] = time.monotonic() + STATISTICS_SECONDS
            export.purge_expired(runtime)
            export.run_starting(runtime)
            record_finished(runtime.engine, runtime.audit_store, runtime.query_key,
                            datetime.now(UTC))  # one record per address and minute

        workers.append(periodic("maintenance", s.maintenance_seconds, maintain))
    return workers


def install_auth(app: FastAPI, runtime: Runtime) -> None:
    """Token validation for /fhir (all but metadata); the dev issuer on the embedded default."""
    settings = runtime.settings
    if settings.embedded:
        from auth.devissuer import DevIssuer

        base = settings.public_base
        issuer = DevIssuer(settings.data_dir, f"{base}/auth", f"{base}/fhir",
                           directory=StoreDirectory(runtime.engine),  # whom hubs act for
                           state=DatabaseIssuerState(runtime.engine))  # shared by workers
        issuer.on_token = lambda event: record_token_event(
            runtime.audit_store, runtime.engine, runtime.query_key, event)
        issuer.on_refusal = lambda address: app.state.throttle.refused(address)
        app.include_router(issuer.router(), prefix="/auth")
        issuer.niss_claim = settings.oidc_niss_claim
        app.state.dev_issuer = issuer
        runtime.extras["dev_issuer"] = issuer  # $register-hub
        validator = TokenValidator(issuer.issuer, issuer.audience, issuer.key_source(),
                                   niss_claim=settings.oidc_niss_claim)
        app.state.smart_configuration = issuer.smart_configuration()
    else:
        assert settings.oidc_issuer and settings.oidc_audience
        keys = JWKSCache(settings.oidc_issuer)
        runtime.extras["jwks_cache"] = keys  # closed with the app (lifespan)
        validator = TokenValidator(settings.oidc_issuer, settings.oidc_audience, keys,
                                   niss_claim=settings.oidc_niss_claim)

        def smart() -> dict[str, Any]:
            """The provider's metadata (cached with its keys) as SMART configuration."""
            from auth.smart import from_openid_metadata
            from dossier.errors import ServiceUnavailable

            try:
                return from_openid_metadata(keys.metadata())
            except AuthError:
                raise ServiceUnavailable("The identity provider's metadata cannot be read "
                                         "right now.") from None

        app.state.smart_configuration = smart

    def authenticate(header: str | None) -> RequestContext:
        """The token alone (signature, claims, one role); the principal is resolved in the
        unit's transaction (dossier/core/runtime.py)."""
        claims = validator.validate(bearer_token(header))
        role_of(claims)
        return RequestContext(claims=claims)

    async def resolve(request: Request) -> RequestContext:
        return await run_in_threadpool(authenticate, request.headers.get("authorization"))

    app.state.authenticate = authenticate  # sync: /fhir calls it in the unit's thread
    app.state.resolve_context = resolve


def create_app(settings: Settings, *, exporter: SpanExporter | None = None,
               metric_reader: MetricReader | None = None) -> FastAPI:
    runtime = build_runtime(settings, exporter)
    # no reader, no metrics: an SDK meter without readers still aggregated every request
    metrics = RequestMetrics(make_meter(settings, metric_reader)) if (
        metric_reader is not None or settings.otel_exporter != "none") else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        leadership = Leadership(runtime.engine, lambda: start_workers(runtime))
        s = runtime.settings
        if max(s.audit_sequencer_seconds, s.notify_worker_seconds, s.maintenance_seconds):
            leadership.start()  # the workers run in one process of the deployment
        try:
            yield
        finally:
            leadership.stop()
            await run_in_threadpool(runtime.settle)  # an export job under way
            if runtime.loop_engine is not None:  # its connections belong to this loop
                await runtime.loop_engine.dispose()
            if "jwks_cache" in runtime.extras:
                runtime.extras["jwks_cache"].close()

    app = FastAPI(title="Dossier", version="0.1.0", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.state.runtime = runtime
    throttle = Throttle(runtime.engine, settings.throttle_refusals_per_minute)
    app.state.throttle = throttle
    install_auth(app, runtime)
    install_error_handlers(app)

    app.add_middleware(TraceAndHarden, tracer=runtime.tracer, metrics=metrics)

    app.router.routes.insert(0, ReadById())  # GET /fhir/{type}/{id}: see fhir/routes.py
    app.router.routes.insert(1, CreateByType())  # POST /fhir/{type}: the same
    app.include_router(subscription_router)  # before the generic /fhir/{type} routes
    app.include_router(fhir_router)
    app.include_router(well_known_router)
    app.include_router(audit_router)
    app.include_router(export.router)  # bulk export status and files
    install_portal(app, runtime)
    if settings.cors_origin_list:  # outermost: refusals (401, 404) carry CORS headers too
        from dossier.cors import ApiCors

        app.add_middleware(ApiCors, origins=settings.cors_origin_list,
                           allow_credentials=settings.cors_allow_credentials)
    app.add_middleware(ThrottleGate, throttle=throttle)
    app.add_middleware(Guard)  # outermost of ours: no exception text or parameter in a log
    return app


_HEADERS = [(k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in SECURITY_HEADERS.items()]


class TraceAndHarden:
    """A span and the request metrics per HTTP request, and the security headers on every
    response that has not set its own. Plain ASGI: Starlette's BaseHTTPMiddleware spawned
    a task and two memory streams per request (a tenth of a read's CPU, measured)."""

    def __init__(self, app: Any, tracer: Any, metrics: RequestMetrics | None) -> None:
        self.app, self.tracer, self.metrics = app, tracer, metrics
        self.tracing = not isinstance(tracer, NoOpTracer)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, route = scope["method"], _route_template(scope["path"])
        status = 500
        started = time.perf_counter()

        async def harden(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        if self.tracing:
            with request_span(self.tracer, method, route) as span:
                await self.app(scope, receive, harden)
                span.set_attribute("http.response.status_code", status)
        else:  # no exporter: a no-op span still cost ~2 % of a read (measured)
            await self.app(scope, receive, harden)
        if self.metrics is not None:
            self.metrics.record(method, route, status, (time.perf_counter() - started) * 1000)


def _route_template(path: str) -> str:
    """A low-cardinality route name with no ids: '/fhir/{type}/{id}'."""
    parts = path.strip("/").split("/")
    if not parts or parts[0] != "fhir":
        return "/" + (parts[0] if parts else "")
    names = ["fhir"]
    for i, part in enumerate(parts[1:5]):
        if part.startswith("$") or part in ("_history", "_search", "metadata"):
            names.append(part[:32])
        elif i == 0:
            names.append("{type}" if part[:1].isupper() else part[:32])
        else:
            names.append("{id}")
    return "/" + "/".join(names)


def _allowed(request: Request) -> str:
    """The methods the app's routes accept on this path (the Allow header of a 405)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            match, _ = route.matches({**request.scope, "method": method})
            if match == Match.FULL:
                methods.add(method)
    return ", ".join(sorted(methods))


async def _count_refusal(request: Request) -> None:
    """A request refused before anybody is known counts against its address (throttle)."""
    throttle = getattr(request.app.state, "throttle", None)
    if throttle is not None:
        await run_in_threadpool(throttle.refused, client_address(request.scope))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DossierError)
    async def dossier_error(request: Request, exc: DossierError) -> Response:
        headers = dict(exc.headers)
        if exc.status == 401:
            await _count_refusal(request)
        if exc.status == 405 and "Allow" not in headers:
            headers["Allow"] = _allowed(request) or "GET"
        return fhir_response(exc.outcome(), exc.status, headers)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        if exc.status == 401:
            await _count_refusal(request)
        return fhir_response({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": exc.code, "diagnostics": exc.message}]},
            exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return outcome(404, "not-found", "Unknown URL.")
        if exc.status_code == 405:
            response = outcome(405, "not-supported", "This method is not allowed on this URL.")
            allow = (exc.headers or {}).get("Allow") or _allowed(request)
            if allow:
                response.headers["Allow"] = allow
            return response
        return outcome(exc.status_code, "processing", "The request could not be processed.")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return outcome(400, "invalid", "The request is malformed.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # never the message or trace: they may hold personal data
        log.error("unexpected error %s on %s %s", type(exc).__name__, request.method,
                  _route_template(request.url.path))
        return outcome(500, "exception", "An internal error occurred. Nothing was changed.")
