"""PostgreSQL privileges for the application role (SPEC §6): it may read and write the
dossier, but only INSERT and SELECT on the audit log — no UPDATE, DELETE or TRUNCATE.
Run by the owner (migration) role: `dossier db grant --role dossier_app`."""

from __future__ import annotations

import re

from sqlalchemy import Engine, inspect, text

from audit.tables import APPEND_ONLY

ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_application_role(engine: Engine, role: str) -> list[str]:
    """Grant `role` exactly what the service needs; returns the statements run."""
    if not ROLE.match(role):
        raise ValueError("role names are lower-case letters, digits and _")
    if engine.dialect.name != "postgresql":
        raise ValueError("roles exist on PostgreSQL only")
    with engine.connect() as conn:  # partitions (`dossier db partition`): reached only
        # through their parent, whose grants apply; none of their own (an audit partition
        # must not become writable)
        parts = set(conn.execute(text(
            "SELECT relname FROM pg_class WHERE relispartition AND "
            "relnamespace = current_schema()::regnamespace")).scalars())
    tables = sorted(set(inspect(engine).get_table_names()) - parts)
    quoted = f'"{role}"'  # validated above: identifiers cannot be bound parameters
    statements = [f"GRANT USAGE ON SCHEMA public TO {quoted}",
                  f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}"]
    for table in tables:
        if table in APPEND_ONLY:
            statements.append(f'GRANT SELECT, INSERT ON "{table}" TO {quoted}')
        elif table == "alembic_version":
            statements.append(f'GRANT SELECT ON "{table}" TO {quoted}')
        else:
            statements.append(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}" TO {quoted}')
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))
    return statements
