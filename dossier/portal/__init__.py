"""The web portal (SPEC §10): server-rendered pages under /portal for citizens,
professionals and auditors, in French, Dutch and English.

Every page works through the same code paths as a FHIR client (see `gateway.py`), so
consent and audit apply identically. `install_portal(app, runtime)` mounts it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from dossier.core.runtime import Runtime
from dossier.portal.gateway import Gateway
from dossier.portal.oidc import OidcClient, embedded_client, external_client
from dossier.portal.session import SessionCodec, load_or_create_key
from dossier.portal.web import Portal, PortalHeaders, origin_of
from dossier.stores.portal_sessions import PortalSessions

STATIC = Path(__file__).parent / "static"


def install_portal(app: FastAPI, runtime: Runtime) -> None:
    """Mount /portal on the app (after the API routers): pages, static files, headers."""
    from dossier.portal import auditor, citizen, coordination, people, professional, routes

    settings = runtime.settings
    base = settings.public_base
    issuer = getattr(app.state, "dev_issuer", None)

    def oidc() -> OidcClient:
        return embedded_client(issuer, base) if issuer is not None \
            else external_client(settings, base)

    portal = Portal(gateway=Gateway(app, runtime),
                    codec=SessionCodec(load_or_create_key(settings.data_dir)),
                    origin=origin_of(base), oidc_factory=oidc,
                    sessions=PortalSessions(runtime.engine))
    if issuer is not None:
        _ = portal.oidc  # register the portal as a public client of the dev issuer now
    app.state.portal = portal
    app.mount("/portal/static", StaticFiles(directory=str(STATIC)), name="portal-static")
    for router in (routes.front, routes.router, people.router, citizen.router,
                   professional.router, auditor.router, coordination.router):
        app.include_router(router)
    for exc_class, handler in routes.HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    app.add_middleware(PortalHeaders)


__all__ = ["install_portal"]
