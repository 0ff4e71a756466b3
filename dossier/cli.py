"""The `dossier` command: serve, db, and (as they land) dev-token, audit, keys."""

from __future__ import annotations

import argparse
import ipaddress
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    COMMANDS.update({"serve": cmd_serve, "db": cmd_db})
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
