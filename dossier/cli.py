"""The `dossier` command: serve, db, and (as they land) dev-token, audit, keys."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dossier.settings import Settings, SettingsError, load_settings

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    for name in ("host", "port"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if getattr(args, "demo", False):
        overrides["demo"] = True
    return load_settings(**overrides)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from dossier.app import create_app

    app = create_app(settings)
    print(f"Dossier on http://{settings.host}:{settings.port}/fhir/metadata "
          f"(data in {settings.data_dir})", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                access_log=False, server_header=False)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from dossier.db.engine import check, make_engine, upgrade
    from dossier.settings import ensure_data_dir

    if not settings.database_url:
        ensure_data_dir(settings.data_dir)
    engine = make_engine(settings.migration_database_url or settings.sqlalchemy_url)
    if args.action == "upgrade":
        upgrade(engine)
        print("database is at the latest revision")
    else:
        check(engine)
        print("models and migrations agree")
    return 0


def cmd_dev_token(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.embedded:
        print("error: dev-token works only with the embedded dev issuer", file=sys.stderr)
        return 2
    from auth.devissuer import dev_token

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    try:
        token = dev_token(settings.data_dir, args.fhir_user, roles, args.scope, args.ttl,
                          base_url=settings.base_url)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from dossier.app import key_provider
    from dossier.keyring import rotate

    provider = key_provider(settings)
    try:
        kek_id, count = rotate(settings, provider)
    finally:
        provider.close()
    print(f"new key-encryption key {kek_id}; {count} data keys re-wrapped")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dossier", description="Consent-managed shared dossier")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the service (embedded default: SQLite, local keys)")
    s.add_argument("--data-dir")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--demo", action="store_true", help="load the demo people (Martin, Simone, "
                   "Ricarda) on start")
    d = sub.add_parser("db", help="database migrations")
    d.add_argument("action", choices=["upgrade", "check"])
    d.add_argument("--data-dir")
    t = sub.add_parser("dev-token", help="print an access token from the embedded dev issuer")
    t.add_argument("--data-dir")
    t.add_argument("--fhir-user", required=True)
    t.add_argument("--roles", required=True, help="citizen, practitioner, auditor, admin, hub")
    t.add_argument("--scope")
    t.add_argument("--ttl", type=int, default=3600, help="seconds; negative = already expired")
    k = sub.add_parser("keys", help="key management")
    k.add_argument("action", choices=["rotate"])
    k.add_argument("--data-dir")
    COMMANDS.update({"serve": cmd_serve, "db": cmd_db, "dev-token": cmd_dev_token,
                     "keys": cmd_keys})
    for extend in EXTENSIONS:
        extend(sub)
    return p


# later issues add sub-commands: each callable adds its parser and registers in COMMANDS
EXTENSIONS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](args, settings)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
