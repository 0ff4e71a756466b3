"""audit_nodes keeps only the stored Merkle levels (issue 14 item 4)

From this revision the sequencer stores the perfect subtrees of levels 4, 8, 12, …
(`audit.merkle.STRIDE`); level 0 is `audit_leaves.leaf_hash`, and a node at any other
level is folded from at most 8 stored ones. The rows it wrote before at the other levels
(level 0 and the levels between) are derived data nothing reads any more and `verify`
would not check: removed here, with the append-only trigger lifted for this one
statement. About 2n rows become n/15.

Downgrade recomputes the removed levels from the leaf hashes.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

STRIDE = 4  # audit.merkle.STRIDE when this revision was written
NODES = sa.table("audit_nodes", sa.column("level", sa.Integer),
                 sa.column("node_index", sa.Integer), sa.column("hash", sa.LargeBinary))
LEAVES = sa.table("audit_leaves", sa.column("leaf_index", sa.Integer),
                  sa.column("leaf_hash", sa.LargeBinary))
SQLITE_NO_DELETE = ("CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes "
                    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE audit_nodes DISABLE TRIGGER audit_nodes_no_change")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_nodes_no_delete")
    op.execute(NODES.delete().where(sa.or_(NODES.c.level == 0,
                                           NODES.c.level % STRIDE != 0)))
    if postgres:
        op.execute("ALTER TABLE audit_nodes ENABLE TRIGGER audit_nodes_no_change")
    else:
        op.execute(SQLITE_NO_DELETE)


def downgrade() -> None:
    from audit.merkle import CompactRange

    bind = op.get_bind()
    frontier = CompactRange()
    rows: list[dict[str, object]] = []
    result = bind.execute(sa.select(LEAVES.c.leaf_hash).order_by(LEAVES.c.leaf_index)
                          .execution_options(yield_per=20_000))
    for (value,) in result:
        rows += [{"level": level, "node_index": index, "hash": node}
                 for level, index, node in frontier.append(bytes(value))
                 if level == 0 or level % STRIDE]
        if len(rows) >= 20_000:
            bind.execute(NODES.insert(), rows)
            rows = []
    if rows:
        bind.execute(NODES.insert(), rows)
