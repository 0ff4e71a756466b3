"""Tables. Every change to a resource keeps the previous version in resource_versions."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from audit.tables import define_audit_tables
from dossier.db.types import Bytes, JSONType, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The current version of each resource. `content` holds the resource without its
# encrypted elements; `sealed` holds those elements' ciphertexts (see dossier/crypto).
resources = Table(
    "resources",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", UTCDateTime(), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("patient_id", String(64), nullable=True),  # compartment: the Patient it belongs to
    Column("categories", String(128), nullable=False, default=""),  # sorted, comma-joined
    # the same categories as bits (core/access_index.py), for consent narrowing in SQL
    Column("cat_mask", Integer, nullable=False, default=0, server_default="0"),
    Column("content", JSONType, nullable=False),
    Column("sealed", JSONType, nullable=True),
    # a server-written message only this practitioner reads ("Practitioner/x"; issue 18)
    Column("addressee", String(80), nullable=True),
    Index("ix_resources_type_updated", "res_type", "last_updated", "res_id"),  # page order
    Index("ix_resources_patient", "patient_id", "res_type"),
    Index("ix_resources_addressee", "addressee", "res_type"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("last_updated", UTCDateTime(), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),  # POST, PUT, DELETE
    Column("patient_id", String(64), nullable=True),
    Column("categories", String(128), nullable=False, default=""),
    Column("cat_mask", Integer, nullable=False, default=0, server_default="0"),
    Column("content", JSONType, nullable=False),
    Column("sealed", JSONType, nullable=True),
    Index("ix_resource_versions_type_updated", "res_type", "last_updated"),
    Index("ix_resource_versions_patient", "patient_id", "res_type"),
)

# The access index: one row per (Consent, actor) of the current active Consents, derived
# from them in the same transaction as every Consent write (core/access_index.py). A
# search joins it to narrow to what the actor may read; the decision point (consent/)
# still decides every returned row. Derived state, like a search index: never a cache.
access_grants = Table(
    "access_grants",
    metadata,
    Column("row_id", Integer, primary_key=True, autoincrement=True),
    Column("consent_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("grantee", String(128), nullable=False),  # Practitioner/x, Organization/y,
    # Group/profession-z, or "*" (a deny naming no actor)
    Column("permit", Boolean, nullable=False),
    Column("act_access", Boolean, nullable=False),
    Column("act_collect", Boolean, nullable=False),
    Column("cat_mask", Integer, nullable=False),  # a deny naming no category: all bits
    Column("period_start", UTCDateTime(), nullable=True),
    Column("period_end", UTCDateTime(), nullable=True),
    Column("purposed", Boolean, nullable=False),  # names purposes (e.g. BTG): not ordinary
    Column("btg", Boolean, nullable=False),  # names break-the-glass (a refusal, a BTG grant)
    Index("ix_access_grants_grantee", "grantee", "patient_id"),
    Index("ix_access_grants_consent", "consent_id"),
    Index("ix_access_grants_patient", "patient_id"),
)

# Search index of the current versions: token, reference and date parameters.
# Identifier values are stored as keyed blind indexes, never in clear.
# the string search parameters of schemas/search.py (tests/unit/dossier/test_models.py)
STRING_PARAMS = ("address-postalcode", "name")
STRING_ROWS = "param IN ('address-postalcode', 'name')"
NISS_ROWS = ("res_type = 'Patient' AND param = 'identifier' AND "
             "system = 'https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin'")
search_index = Table(
    "search_index",
    metadata,
    Column("row_id", Integer, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(255), nullable=True),
    Column("value", String(255), nullable=False),
    # no foreign key to `resources`: derived rows written with their resource, never read
    # without it; PostgreSQL's per-row check cost more than the rest of the insert (0023)
    Index("ix_search_index_lookup", "res_type", "param", "value"),
    # PostgreSQL: string searches (starts-with) bounded by index whatever the database's
    # collation (search/sql.py StartsWith; migration 0024). SQLite is given a range. Only
    # the string parameters' rows (the directory's names and postal codes): a dossier's
    # rows (ten per Task) never pay for it.
    Index("ix_search_index_prefix", "res_type", "param", "value",
          postgresql_ops={"value": "varchar_pattern_ops"},
          postgresql_where=text(STRING_ROWS),
          info={"only_dialect": "postgresql"}).ddl_if(dialect="postgresql"),
    # covers a per-row probe of a bounded search (search/sql.py), and deletes by owner
    Index("ix_search_index_owner", "res_type", "res_id", "param", "value", "system"),
    # one dossier per national number (SPEC §13): the NISS blind index of Patients is unique
    Index("ux_search_index_patient_niss", "value", unique=True,
          sqlite_where=text(NISS_ROWS), postgresql_where=text(NISS_ROWS)),
)

# Break-the-glass grants (SPEC §5): short, for one practitioner, reviewed by an auditor.
# The reason is sealed with the patient's data key (it may describe the person).
break_glass = Table(
    "break_glass",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("practitioner", String(140), nullable=False),
    Column("granted_at", UTCDateTime(), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("reason", JSONType, nullable=True),
    Index("ix_break_glass_patient", "patient_id", "expires_at"),
    Index("ix_break_glass_practitioner", "practitioner", "expires_at"),
)

# One data key per patient, wrapped by the key provider's KEK (SPEC §7). Erasure sets
# `wrapped` to NULL and `erased_at`: the key is gone, the tombstone answers 410.
patient_keys = Table(
    "patient_keys",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("kek_id", String(128), nullable=True),
    Column("wrapped", Bytes, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("erased_at", UTCDateTime(), nullable=True),
)

# The audit log and the notification outbox are defined by audit/ on this metadata.
audit_tables = define_audit_tables(metadata, json_type=JSONType, bytes_type=Bytes,
                                   datetime_type=UTCDateTime())
audit_records = audit_tables.records
audit_leaves = audit_tables.leaves
audit_nodes = audit_tables.nodes
audit_tree_heads = audit_tables.tree_heads
notification_outbox = audit_tables.outbox
notification_settings = audit_tables.settings

# A person's request to erase their dossier (GDPR art. 17), confirmed by an administrator.
erasure_requests = Table(
    "erasure_requests",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("confirmed_at", UTCDateTime(), nullable=True),
    Column("confirmed_by", String(140), nullable=True),
)

# Bulk Data $export jobs (issue 9). The NDJSON files under data_dir/exports/<id>/ are
# AES-256-GCM encrypted with a per-job key, kept only here, wrapped by the KEK: deleting
# the row (expiry, cancel) leaves the files unreadable even before they are removed.
export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),  # who asked; only they poll and download
    Column("status", String(16), nullable=False),  # in-progress | completed | failed
    Column("request", JSONType, nullable=False),  # level, group, types, since, kick-off URL
    Column("progress", String(64), nullable=True),
    Column("output", JSONType, nullable=True),  # [{"type", "file", "count"}]
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("kek_id", String(128), nullable=False),
    Column("wrapped_key", Bytes, nullable=False),
    Index("ix_export_jobs_expires", "expires_at"),
)

# Topic-based subscriptions (R5 Backport IG, issue 9). `subscriber` holds the claims the
# subscriber's consent is decided on at every event (role, client, user, scopes); the
# channel headers (often a secret) and the free-text reason are sealed with a per-row
# key wrapped by the KEK.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),  # who created it; only they read it
    Column("subscriber", JSONType, nullable=False),
    Column("status", String(16), nullable=False),  # active | error | off
    Column("topic", String(255), nullable=False),
    Column("filters", JSONType, nullable=False),  # {"types": [...], "patient": id | None}
    Column("endpoint", String(2000), nullable=False),
    Column("content", String(16), nullable=False),  # empty | id-only
    Column("resource", JSONType, nullable=False),  # the Subscription, no headers, no reason
    Column("kek_id", String(128), nullable=False),
    Column("wrapped_key", Bytes, nullable=False),
    Column("sealed", Bytes, nullable=False),  # {"headers", "reason"}, AES-256-GCM
    Column("events_sent", Integer, nullable=False),  # events-since-subscription-start
    Column("failures", Integer, nullable=False),  # consecutive failed deliveries
    Column("created_at", UTCDateTime(), nullable=False),
    Column("end_at", UTCDateTime(), nullable=False),
    Index("ix_subscriptions_status", "status", "topic"),
)

# Events waiting for delivery: written in the transaction of the change, only for
# subscribers whose consent covered the entry at that moment; checked again at delivery.
subscription_events = Table(
    "subscription_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("event_number", Integer, nullable=True),  # given at the first attempt
    ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"], ondelete="CASCADE"),
    Index("ix_subscription_events_due", "subscription_id", "next_attempt_at"),
)

# Rosters (issue 9): a hub's or practitioner's own Group of people it follows, the input of
# a Group-level export. Private to its owner; members are pseudonymous patient ids.
rosters = Table(
    "rosters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("members", JSONType, nullable=False),  # ["patient id", ...]
    Column("version_id", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_rosters_owner", "owner"),
)

# People reach their dossier (SPEC §13) ----------------------------------------------

# A person who refused, in advance, that a professional record a consent for them.
assisted_refusals = Table(
    "assisted_refusals",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("refused_at", UTCDateTime(), nullable=False),
)

# A professional's request for access. `patient_id` is the id they asked about, kept
# whether or not such a dossier exists (their list of open requests must not tell);
# `communication_id` is the person's access-request Communication (when there is one).
access_requests = Table(
    "access_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("practitioner", String(140), nullable=False),
    Column("categories", String(255), nullable=False),
    Column("period_end", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False),  # open | accepted | declined
    Column("created_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("communication_id", String(64), nullable=True),
    Column("consent_id", String(64), nullable=True),
    Index("ix_access_requests_practitioner", "practitioner", "status"),
    Index("ix_access_requests_patient", "patient_id", "status"),
)

# One-time enrolment codes for pseudonymous dossiers: only a keyed hash is kept.
enrolment_codes = Table(
    "enrolment_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("created_by", String(140), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    Index("ix_enrolment_codes_patient", "patient_id"),
)

# Wrong enrolment codes per login (issuer + subject, hashed), for the hourly limit.
enrolment_attempts = Table(
    "enrolment_attempts",
    metadata,
    Column("row_id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_enrolment_attempts_login", "login", "at"),
)

# A login linked to a pseudonymous dossier by an enrolment code (issuer + subject hashed).
login_links = Table(
    "login_links",
    metadata,
    Column("login", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("linked_at", UTCDateTime(), nullable=False),
)

# The embedded issuer's state (issue 16): sign-in accounts (scrypt hashes), authorization
# codes (by their SHA-256, single use: taken with one DELETE) and the jti values of client
# assertions already seen. In the database so every process of the service shares them.
issuer_accounts = Table(
    "issuer_accounts",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("fhir_user", String(255), nullable=False),
    Column("roles", JSONType, nullable=False),
    Column("name", String(255), nullable=False),
    Column("demo", Boolean, nullable=False),  # made by --demo
    Column("created_at", UTCDateTime(), nullable=False),
)

issuer_codes = Table(
    "issuer_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("entry", JSONType, nullable=False),
    Column("expires_at", Integer, nullable=False),  # seconds since the epoch
    Index("ix_issuer_codes_expires", "expires_at"),
)

issuer_jti = Table(
    "issuer_jti",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", Integer, nullable=False),
    Index("ix_issuer_jti_expires", "expires_at"),
)

# Portal sessions (issue 16): the cookie names one of these rows by a random id (stored
# hashed); logout deletes the row, so a captured cookie no longer works anywhere.
portal_sessions = Table(
    "portal_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("expires_at", Integer, nullable=False),
    Index("ix_portal_sessions_expires", "expires_at"),
)

# Requests refused before anybody is known (bad tokens, wrong passwords), counted per
# client address and minute: the throttle reads it; old windows are deleted.
refusal_windows = Table(
    "refusal_windows",
    metadata,
    Column("address", String(64), primary_key=True),
    Column("minute", Integer, primary_key=True),  # minutes since the epoch
    Column("refusals", Integer, nullable=False),
    Column("recorded", Boolean, nullable=False),  # its audit record is written
)

# Where a professional wants notices of new inbox messages (issue 18): one e-mail address
# per Practitioner, with the portal language it was set in. Cleared = row deleted.
practitioner_email = Table(
    "practitioner_email",
    metadata,
    Column("practitioner", String(140), primary_key=True),  # "Practitioner/x"
    Column("email", String(254), nullable=False),
    Column("language", String(8), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# The notifier's runs that put notices in the inbox without leasing them (one transaction
# takes, writes and marks them: dossier/notify/worker.py `_inbox_at_once`): a row written
# before the transaction and deleted in it. A row left behind is a run that died
# mid-batch; the next run then leases what it takes, so a notice that kills the worker
# has its attempts counted and dies after `max_attempts`, as with any lease.
notify_runs = Table(
    "notify_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", UTCDateTime(), nullable=False),
)
