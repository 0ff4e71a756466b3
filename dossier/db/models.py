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
)

from dossier.db.types import JSONType, UTCDateTime

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
    Column("content", JSONType, nullable=False),
    Column("sealed", JSONType, nullable=True),
    Index("ix_resources_type_updated", "res_type", "last_updated"),
    Index("ix_resources_patient", "patient_id", "res_type"),
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
    Column("content", JSONType, nullable=False),
    Column("sealed", JSONType, nullable=True),
    Index("ix_resource_versions_type_updated", "res_type", "last_updated"),
)

# Search index of the current versions: token, reference and date parameters.
# Identifier values are stored as keyed blind indexes, never in clear.
search_index = Table(
    "search_index",
    metadata,
    Column("row_id", Integer, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(255), nullable=True),
    Column("value", String(255), nullable=False),
    ForeignKeyConstraint(
        ["res_type", "res_id"], ["resources.res_type", "resources.res_id"], ondelete="CASCADE"
    ),
    Index("ix_search_index_lookup", "res_type", "param", "value"),
    Index("ix_search_index_owner", "res_type", "res_id"),
)
