"""The `dossier` command: serve, db, and (as they land) dev-token, audit, keys."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

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

    from dossier.app import create_app, prepare
    from dossier.serving import (
        NoDelayProtocol,
        background_process,
        run_workers,
        settle_heap,
    )

    sqlite = settings.sqlalchemy_url.startswith("sqlite")
    workers = args.workers if args.workers is not None else (1 if sqlite else
                                                              os.cpu_count() or 1)
    if workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if sqlite and workers > 1:
        print("note: the embedded SQLite default serves from one process; --workers "
              "needs DATABASE_URL=postgresql+psycopg://…", file=sys.stderr)
        workers = 1
    where = (f"Dossier on http://{settings.host}:{settings.port}/portal "
             f"(FHIR at /fhir/metadata; data in {settings.data_dir}; {workers} "
             f"worker{'s' if workers > 1 else ''})")
    options = {"host": settings.host, "port": settings.port, "log_level": "warning",
               "access_log": False, "server_header": False,
               "http": NoDelayProtocol}
    env = {"DOSSIER_PREPARED": "1", "DOSSIER_DATA_DIR": str(settings.data_dir),
           "DOSSIER_HOST": settings.host, "DOSSIER_PORT": str(settings.port)}
    if settings.demo:
        env["DOSSIER_DEMO"] = "1"
    with ExitStack() as stack:
        if workers == 1:
            app = create_app(settings)  # migrations, seed, demo
        else:
            prepare(settings)  # migrations, seed, demo: once, here
        if not sqlite and settings.background_process:
            stack.enter_context(background_process(env))
        print(where, file=sys.stderr)
        if workers == 1:
            settle_heap()
            uvicorn.run(app, **options)  # type: ignore[arg-type]
            return 0
        os.environ.update(env)
        run_workers(uvicorn.Config("dossier.app:worker_app", factory=True,
                                   workers=workers, **options))  # type: ignore[arg-type]
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """The background workers (audit sequencer, notifier, subscription deliveries,
    maintenance) without serving requests, until SIGTERM or Ctrl-C. PostgreSQL only: they
    run in whichever process holds the leader lock, once per deployment."""
    import signal
    import threading

    from dossier.app import build_runtime, start_workers
    from dossier.background import Leadership
    from dossier.serving import READY_SECONDS, settle_heap

    if settings.sqlalchemy_url.startswith("sqlite"):
        print("error: the embedded SQLite default runs its background workers inside "
              "`dossier serve`; `dossier worker` needs DATABASE_URL=postgresql+psycopg://…",
              file=sys.stderr)
        return 2
    ready_fd = os.environ.pop("DOSSIER_READY_FD", None)  # set by `serve`, its parent
    parent = os.getppid()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime = build_runtime(settings)
    settle_heap()  # as a serving process: what it loaded, out of the collector's sight
    leadership = Leadership(runtime.engine, lambda: start_workers(runtime))
    leadership.start()
    try:
        waited = 0.0
        while not (leadership.tried.wait(0.2) or stop.is_set()) and waited < READY_SECONDS:
            waited += 0.2
        if ready_fd is not None:
            try:
                os.write(int(ready_fd), b"1")
                os.close(int(ready_fd))
            except OSError:  # `serve` stopped waiting, or is gone: the parent check ends us
                pass
        while not stop.wait(1.0):
            if ready_fd is not None and os.getppid() != parent:
                break  # `serve` was killed without telling us
    finally:
        leadership.stop()
        runtime.engine.dispose()
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from dossier.db.engine import check, make_engine, upgrade
    from dossier.settings import ensure_data_dir

    if not settings.database_url:
        ensure_data_dir(settings.data_dir)
    engine = make_engine(settings.migration_database_url or settings.sqlalchemy_url)
    try:
        if args.action == "upgrade":
            upgrade(engine)
            print("database is at the latest revision")
        elif args.action == "grant":
            from dossier.db.roles import grant_application_role

            if not args.role:
                print("error: db grant needs --role", file=sys.stderr)
                return 2
            try:
                grant_application_role(engine, args.role)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"role {args.role}: dossier read/write, audit log insert/select only")
        elif args.action == "partition":
            return _partition(engine, args)
        elif _partitioned(engine):
            print("error: the dossier tables are partitioned (`db partition`), on purpose "
                  "unlike the models; check a database migrated to the same revision and "
                  "not partitioned", file=sys.stderr)
            return 2
        else:
            from alembic.util import CommandError

            try:
                check(engine)
            except CommandError as exc:  # behind the models, or unlike them: say which
                print(f"error: {exc} Run `dossier db upgrade` first if the database is "
                      "behind.", file=sys.stderr)
                return 1
            print("models and migrations agree")
    finally:
        engine.dispose()
    return 0


def _partitioned(engine: Any) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    from dossier.db.partition import is_partitioned

    with engine.connect() as conn:
        return is_partitioned(conn)


def _partition(engine: Any, args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from dossier.db.partition import PartitionError, partition

    try:
        report = partition(engine, args.partitions, audit_months=args.audit_months)
    except PartitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:  # one transaction: nothing was changed
        diag = getattr(exc.orig, "diag", None)
        why = getattr(diag, "message_primary", None) or type(exc.orig).__name__
        print(f"error: PostgreSQL refused the step, nothing was changed: {why}",
              file=sys.stderr)
        return 1
    for table, rows in report.tables.items():
        print(f"{table}: {rows} rows copied")
    print(f"dossier tables: {report.partitions} hash partitions by patient_id; audit_records: "
          f"{len(report.audit_partitions)} partitions by month (the last is DEFAULT); "
          f"{report.seconds:.1f} s")
    return 0


def cmd_dev_token(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.embedded:
        print("error: dev-token works only with the embedded dev issuer", file=sys.stderr)
        return 2
    from auth.devissuer import KEY_FILE, dev_token

    if not (settings.data_dir / KEY_FILE).is_file():  # never a new folder and a new key
        print(f"error: {settings.data_dir} holds no dev issuer key; give the --data-dir of "
              "a server that has started once (dossier serve)", file=sys.stderr)
        return 2

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    try:
        token = dev_token(settings.data_dir, args.fhir_user, roles, args.scope, args.ttl,
                          base_url=settings.base_url, niss=args.niss,
                          niss_claim=settings.oidc_niss_claim)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """Sign-in accounts of the embedded issuer (operators, and people when there is no
    external issuer)."""
    if not settings.embedded:
        print("error: accounts belong to the embedded issuer; this service uses "
              f"{settings.oidc_issuer}", file=sys.stderr)
        return 2
    from auth.accounts import new_password
    from dossier.db.engine import make_engine, upgrade
    from dossier.settings import ensure_data_dir
    from dossier.stores.issuer import DatabaseIssuerState

    if not settings.database_url:
        ensure_data_dir(settings.data_dir)
    owner = make_engine(settings.migration_database_url or settings.sqlalchemy_url)
    upgrade(owner)
    owner.dispose()
    engine = make_engine(settings.sqlalchemy_url)
    state = DatabaseIssuerState(engine)
    try:
        if args.action == "list":
            for row in state.accounts():
                demo = " (demo)" if row["demo"] else ""
                print(f"{row['username']}\t{','.join(row['roles'])}\t{row['fhir_user']}{demo}")
            return 0
        if not args.username:
            print(f"error: users {args.action} needs a username", file=sys.stderr)
            return 2
        if args.action == "remove":
            if not state.remove_account(args.username):
                print(f"error: no account named {args.username}", file=sys.stderr)
                return 1
            print(f"account {args.username} removed")
            return 0
        roles = [r.strip() for r in (args.role or "").split(",") if r.strip()]
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else new_password()
        try:
            state.add_account(args.username, password, roles, fhir_user=args.fhir_user,
                              name=args.name, replace=args.replace)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"account {args.username} ({','.join(roles)}) saved")
        if not args.password_stdin:
            print(f"password (shown once): {password}")
        return 0
    finally:
        engine.dispose()


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from dossier.app import key_provider
    from dossier.crypto.rewrap import retire, rotate

    provider = key_provider(settings)
    try:
        if args.action == "retire":
            if not args.kek:
                print("error: keys retire needs --kek KEK_ID", file=sys.stderr)
                return 2
            try:
                retire(settings, provider, args.kek)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"key-encryption key {args.kek} destroyed")
            return 0
        kek_id, count = rotate(settings, provider)
    finally:
        provider.close()
    print(f"new key-encryption key {kek_id}; {count} data keys re-wrapped")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from sqlalchemy.orm import Session

    from audit.checkpoint import public_jwk, verify_tree_head
    from audit.errors import AuditError
    from audit.store import AuditStore
    from dossier.auditlog.keys import audit_origin, key_provider, record_authenticator
    from dossier.auditlog.witness import WitnessError, load_head
    from dossier.crypto import KeyUnavailable
    from dossier.db.engine import make_engine
    from dossier.db.models import audit_tables

    key_file = settings.data_dir / "keys" / "audit-signing.pem"
    if settings.key_provider == "local" and not key_file.exists():
        print("error: no audit signing key in the data directory", file=sys.stderr)
        return 2
    try:
        keys = key_provider(settings)
        authenticator = record_authenticator(keys)
        jwk = public_jwk(keys.audit_signer().public_key())
    except (KeyUnavailable, ValueError) as exc:
        print(f"error: the key provider is unavailable ({exc})", file=sys.stderr)
        return 2
    trusted = None
    if args.action == "verify" and args.since:
        try:
            trusted = verify_tree_head(load_head(args.since), jwk)
        except WitnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except AuditError as exc:
            print(f"audit log damaged: the published head is not one this log signed ({exc})")
            return 1
    engine = make_engine(settings.sqlalchemy_url)
    store = AuditStore(audit_tables, audit_origin(settings), authenticator)
    try:
        # a read snapshot (SQLite: a deferred BEGIN, so requests keep writing meanwhile)
        with Session(engine.execution_options(dossier_read=True)) as session:
            store.adopt_origin(session)
            if args.action == "verify":
                result = store.verify(session, jwk, trusted=trusted,
                                      jobs=max(1, args.jobs))
                if result.ok:
                    print(f"audit log intact: {result.detail}")
                    return 0
                print(f"audit log damaged at index {result.first_bad_index}: {result.detail}")
                return 1
            size = store.signed_size(session)
            first = args.start or 0
            last = min(args.end if args.end is not None else size, size)
            out = (open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - or stdout
                   if args.output else sys.stdout)
            try:
                from audit.proof import inclusion_proof_json

                for index in range(first, last):
                    leaf = store.leaf_bytes(session, index)
                    assert leaf is not None
                    proof = inclusion_proof_json(index, size, leaf,
                                                 store.inclusion(session, index, size))
                    out.write(json.dumps(proof, separators=(",", ":")) + "\n")
                head = store.tree_head(session)
                print(json.dumps({"tree_head": head}, separators=(",", ":")),
                      file=sys.stderr if out is sys.stdout else out)
            finally:
                if out is not sys.stdout:
                    out.close()
            return 0
    finally:
        engine.dispose()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dossier", description="Consent-managed shared dossier")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the service (embedded default: SQLite, local keys)")
    s.add_argument("--data-dir")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--demo", action="store_true", help="load the demo people (Martin, Simone, "
                   "Ricarda) on start")
    s.add_argument("--workers", type=int, help="server processes (PostgreSQL; default: the "
                   "number of cores); the embedded SQLite default uses one")
    d = sub.add_parser("db", help="database migrations")
    d.add_argument("action", choices=["upgrade", "check", "grant", "partition"])
    d.add_argument("--data-dir")
    d.add_argument("--role", help="grant: the application role (PostgreSQL)")
    d.add_argument("--partitions", type=int, default=8, help="partition (PostgreSQL, "
                   "opt-in, one transaction): hash partitions of the dossier tables by patient")
    d.add_argument("--audit-months", type=int, default=12, help="partition: monthly audit "
                   "partitions made ahead of now (later records go to a DEFAULT partition)")
    t = sub.add_parser("dev-token", help="print an access token from the embedded dev issuer")
    t.add_argument("--data-dir")
    t.add_argument("--fhir-user", help="Patient/x, Practitioner/y, … (or --niss)")
    t.add_argument("--niss", help="citizen: the national number, in the egovNRN claim")
    t.add_argument("--roles", required=True, help="citizen, practitioner, auditor, admin, hub")
    t.add_argument("--scope")
    t.add_argument("--ttl", type=int, default=3600, help="seconds; negative = already expired")
    u = sub.add_parser("users", help="sign-in accounts of the embedded issuer")
    u.add_argument("action", choices=["add", "remove", "list"])
    u.add_argument("username", nargs="?")
    u.add_argument("--data-dir")
    u.add_argument("--role", help="add: admin, auditor, practitioner or citizen (R[,R])")
    u.add_argument("--fhir-user", help="add: Patient/… or Practitioner/… (operators: "
                   "Person/<username>)")
    u.add_argument("--name", help="add: the name shown after sign-in")
    u.add_argument("--password-stdin", action="store_true",
                   help="add: read the password from stdin (default: make one and print it)")
    u.add_argument("--replace", action="store_true", help="add: replace an existing account")
    k = sub.add_parser("keys", help="key management")
    k.add_argument("action", choices=["rotate", "retire"])
    k.add_argument("--kek", help="retire: the KEK id to destroy (after a rotate)")
    k.add_argument("--data-dir")
    a = sub.add_parser("audit", help="verify or export the audit log")
    a.add_argument("action", choices=["verify", "export"])
    a.add_argument("--data-dir")
    a.add_argument("--start", type=int, help="export: first index (default 0)")
    a.add_argument("--end", type=int, help="export: index after the last (default: signed size)")
    a.add_argument("--output", help="export: NDJSON file (default stdout)")
    a.add_argument("--since", metavar="CHECKPOINT", help="verify: a tree head published "
                   "earlier (a witness URL or directory, or a tree-head JSON file); the log "
                   "must extend it (catches truncation and forks)")
    a.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="verify: processes checking the log side by side (default: 2, or "
                   "1 on one CPU); logs under 262,144 records use one")
    sub.add_parser("worker", help="the background workers alone (PostgreSQL; `serve` "
                   "starts one)").add_argument("--data-dir")
    COMMANDS.update({"serve": cmd_serve, "worker": cmd_worker, "db": cmd_db,
                     "dev-token": cmd_dev_token, "keys": cmd_keys, "audit": cmd_audit,
                     "users": cmd_users})
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
    try:
        return COMMANDS[args.command](args, settings)
    except OperationalError as exc:
        if not cannot_connect(exc):
            raise  # a lock, a timeout, a full disk…: not about reaching the database
        print(f"error: {unreachable(exc)}", file=sys.stderr)
        return 3


# PostgreSQL refusing a connection: server gone (class 08), no such database, wrong
# credentials, starting or shutting down
_CONNECT_STATES = frozenset({"3D000", "28000", "28P01", "57P03"})


def cannot_connect(exc: OperationalError) -> bool:
    """The error is the database not being reachable or refusing the connection."""
    state = getattr(exc.orig, "sqlstate", None)
    if state is not None:
        return bool(state.startswith("08") or state in _CONNECT_STATES)
    text = str(exc.orig)
    return "connection" in text or "unable to open database file" in text


def unreachable(exc: OperationalError) -> str:
    """One line a person can act on, from the driver's own first line (it names the host,
    port and database, never the password)."""
    first = (str(exc.orig).strip().splitlines() or [""])[0] if exc.orig else ""
    return ("the database cannot be reached or refused the connection"
            + (f" ({first[:300]})" if first else "")
            + ". Check DATABASE_URL and that the database server is running.")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
