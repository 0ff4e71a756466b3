"""The audit log's tables, defined on the service's metadata (SPEC §6).

Append-only: the migration adds triggers that refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL), and on PostgreSQL the application role gets only INSERT and SELECT here.
Column types come from the caller so that audit/ depends on nothing of the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    DDL,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    event,
    false,
    text,
)

APPEND_ONLY = ("audit_records", "audit_leaves", "audit_nodes", "audit_tree_heads")


@dataclass(frozen=True)
class AuditTables:
    records: Table
    leaves: Table
    nodes: Table
    tree_heads: Table
    outbox: Table
    settings: Table
    pending: Table


def define_audit_tables(metadata: MetaData, *, json_type: Any, bytes_type: Any,
                        datetime_type: Any) -> AuditTables:
    # One record per request touching the dossier, written in the request's transaction;
    # `record` is the pseudonymous record whose RFC 8785 bytes are the Merkle leaf.
    records = Table(
        "audit_records", metadata,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("id", String(64), nullable=False, unique=True),
        Column("recorded_at", datetime_type, nullable=False),
        Column("patient_id", String(64), nullable=True),
        Column("agent", String(140), nullable=True),
        Column("action", String(32), nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("record", json_type, nullable=False),
        # the leaf bytes as written (RFC 8785 of `record`) and their HMAC under a key the
        # database does not hold; NULL for records written before migration 0015
        Column("leaf", bytes_type, nullable=True),
        Column("mac", bytes_type, nullable=True),
        Index("ix_audit_records_patient", "patient_id", "recorded_at"),
        Index("ix_audit_records_recorded", "recorded_at"),
        # what one professional did (AuditEvent?agent=, the auditor's log): newest first
        Index("ix_audit_records_agent", "agent", "seq"),
    )
    # The sequencer gives each record its leaf index, leaf hash and chain hash, in order.
    leaves = Table(
        "audit_leaves", metadata,
        Column("leaf_index", Integer, primary_key=True, autoincrement=False),
        Column("record_id", String(64), nullable=False, unique=True),
        Column("leaf_hash", bytes_type, nullable=False),
        Column("chain_hash", bytes_type, nullable=False),
    )
    # Perfect Merkle subtrees: (level, node_index) covers leaves
    # [node_index * 2**level, (node_index + 1) * 2**level); never changed once written.
    nodes = Table(
        "audit_nodes", metadata,
        Column("level", Integer, primary_key=True, autoincrement=False),
        Column("node_index", Integer, primary_key=True, autoincrement=False),
        Column("hash", bytes_type, nullable=False),
    )
    tree_heads = Table(
        "audit_tree_heads", metadata,
        Column("tree_size", Integer, primary_key=True, autoincrement=False),
        Column("root_hash", bytes_type, nullable=False),
        Column("signed_at", datetime_type, nullable=False),
        Column("checkpoint", String(512), nullable=False),
        Column("signature", bytes_type, nullable=False),
    )
    # Notifications: an outbox row per channel, written with the audit record.
    outbox = Table(
        "notification_outbox", metadata,
        Column("id", String(64), primary_key=True),
        Column("patient_id", String(64), nullable=False),
        Column("record_id", String(64), nullable=False),
        Column("agent", String(140), nullable=True),
        Column("urgent", Boolean, nullable=False, default=False),
        Column("created_at", datetime_type, nullable=False),
        Column("channel", String(16), nullable=False),  # inbox | email | webhook
        Column("status", String(16), nullable=False),  # pending | sent | dead
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", datetime_type, nullable=False),
        Column("last_error", String(200), nullable=True),
        Column("sent_at", datetime_type, nullable=True),
        # an e-mail row waiting for the day's digest (never an urgent one)
        Column("digest", Boolean, nullable=False, default=False, server_default=false()),
        # what the notifier claims, in its order: only pending rows, so a claim reads its
        # batch and stops, whatever the backlog and however many rows were sent
        Index("ix_notification_outbox_pending", "urgent", "next_attempt_at", "created_at",
              "id", postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
    )
    # The citizen's choices; the e-mail address and webhook URL/secret are sealed.
    settings = Table(
        "notification_settings", metadata,
        Column("patient_id", String(64), primary_key=True),
        Column("language", String(8), nullable=False, default="fr"),
        Column("sealed", json_type, nullable=True),
        Column("updated_at", datetime_type, nullable=False),
        # e-mail: one digest a day instead of one message per consultation
        Column("email_digest", Boolean, nullable=False, default=False,
               server_default=false()),
    )
    # Records not yet sequenced, filled by a trigger on audit_records (no statement of the
    # request's), emptied by the sequencer: it never scans the log to find new records,
    # and a PostgreSQL transaction committing late (a lower seq) is not skipped.
    pending = Table(
        "audit_pending", metadata,
        Column("seq", Integer, primary_key=True, autoincrement=False),
    )
    for dialect, statements in PENDING_TRIGGER.items():
        for sql in statements:
            event.listen(records, "after_create",
                         DDL(sql).execute_if(dialect=dialect))  # type: ignore[no-untyped-call]
    return AuditTables(records, leaves, nodes, tree_heads, outbox, settings, pending)


PENDING_TRIGGER = {
    "sqlite": ("CREATE TRIGGER audit_records_pending AFTER INSERT ON audit_records "
               "BEGIN INSERT INTO audit_pending (seq) VALUES (NEW.seq); END",),
    "postgresql": (
        "CREATE OR REPLACE FUNCTION dossier_audit_pending() RETURNS trigger AS $$ BEGIN "
        "INSERT INTO audit_pending (seq) VALUES (NEW.seq); RETURN NULL; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER audit_records_pending AFTER INSERT ON audit_records "
        "FOR EACH ROW EXECUTE FUNCTION dossier_audit_pending()"),
}
