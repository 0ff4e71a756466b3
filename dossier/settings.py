"""Typed settings, validated once at start-up (environment prefix DOSSIER_, plus DATABASE_URL)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A bad setting; the message says which one and why, never a secret value."""


def default_data_dir() -> Path:
    return Path(os.environ.get("DOSSIER_DATA_DIR", "./dossier-data"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOSSIER_", extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "DOSSIER_DATABASE_URL")
    )
    # the application role on PostgreSQL; migrations may use a different (owner) URL
    migration_database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    base_url: str | None = None  # public base URL, e.g. https://dossier.example.be
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    page_size_default: int = Field(default=20, ge=1, le=1000)
    page_size_max: int = Field(default=200, ge=1, le=1000)
    # searches run at once in one process; others wait their turn without a thread.
    # None: 2 on SQLite (one process serves everyone), no limit on PostgreSQL; 0: no limit
    search_concurrency: int | None = Field(default=None, ge=0, le=1000)
    # reads and writes run at once in one process (worker threads); the others wait their
    # turn on the event loop. More threads than this only fight over the interpreter lock
    unit_threads: int = Field(default=8, ge=1, le=1000)
    units_on_loop: bool = True  # PostgreSQL: request units on the event loop
    # PostgreSQL: `serve` runs the background workers in a process of their own (`dossier
    # worker`); the serving processes stand by to take over if it dies
    background_process: bool = True
    # PostgreSQL: psycopg prepares a statement on the server after five runs. Off behind a
    # pooler that cannot carry prepared statements across its connections (pgbouncer
    # before 1.21 in transaction mode: Debian 12 ships 1.18)
    db_prepared_statements: bool = True
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = None
    # identity (issue 3): an external issuer switches the embedded dev issuer off
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    # the claim carrying a citizen's national number (Belgian federal login, SPEC §8)
    oidc_niss_claim: str = Field(default="egovNRN", min_length=1, max_length=64,
                                 pattern=r"^[A-Za-z0-9_.:\-]+$")
    key_provider: Literal["local", "pkcs11"] = "local"
    pkcs11_library: str | None = None
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = Field(default=None, repr=False)
    demo: bool = False
    # the sign-in password of the demo people (with --demo); unset: a new one is made and
    # printed at each start (issue 16: nobody signs in without a password)
    demo_password: str | None = Field(default=None, repr=False, min_length=12)
    # set by `serve --workers N` for its worker processes: the parent has already
    # migrated, seeded and loaded the demo, so a worker only builds its app
    prepared: bool = False
    # the audit sequencer signs a new tree head this often (0: only when asked, for tests)
    audit_sequencer_seconds: float = Field(default=0.5, ge=0, le=3600)
    # a witness the sequencer publishes each new signed tree head to: a directory (on
    # another disk or host) or an http(s) URL that accepts a POSTed head (off when unset)
    audit_witness: str | None = None
    # portal: its OAuth client at the issuer (registered automatically on the dev issuer)
    portal_client_id: str = "dossier-portal"
    portal_client_secret: str | None = Field(default=None, repr=False)
    portal_scope: str = "openid fhirUser launch/patient patient/*.cruds user/*.cruds"
    # notifications: the worker runs this often (0: off); e-mail only with an SMTP host
    notify_worker_seconds: float = Field(default=5.0, ge=0, le=3600)
    # expired export jobs and files, export jobs nobody took (0 = off)
    maintenance_seconds: float = Field(default=5.0, ge=0, le=3600)
    # refused unauthenticated requests per client address and minute before 429 (0: off)
    throttle_refusals_per_minute: int = Field(default=30, ge=0, le=1_000_000)
    notify_smtp_host: str | None = None
    notify_smtp_port: int = Field(default=25, ge=1, le=65535)
    notify_smtp_from: str = "dossier@localhost"
    notify_smtp_starttls: bool = False
    notify_smtp_username: str | None = None
    notify_smtp_password: str | None = Field(default=None, repr=False)
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    notify_backoff_base_seconds: float = Field(default=30.0, gt=0)
    notify_backoff_cap_seconds: float = Field(default=21600.0, gt=0)
    notify_group_window_seconds: float = Field(default=600.0, ge=0)
    notify_allow_local_webhooks: bool = False
    # CORS for browser apps on other origins (SMART apps): comma-separated origins such as
    # https://app.example.be, or * (never with credentials). Empty: no CORS at all.
    cors_origins: str = ""
    cors_allow_credentials: bool = False  # cookies or HTTP auth cross-origin; Bearer needs none

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _check_db_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not (v.startswith("sqlite") or v.startswith("postgresql+psycopg://")):
            raise ValueError(
                "DATABASE_URL must start with 'postgresql+psycopg://' (PostgreSQL with psycopg 3) "
                "or 'sqlite' (the embedded default)"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _check_base(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, v: str) -> str:
        origins = [o.strip().rstrip("/") for o in v.split(",") if o.strip()]
        for origin in origins:
            if origin == "*":
                continue
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest \
                    or "@" in rest or "?" in rest or "#" in rest:
                raise ValueError("each CORS origin must look like https://host[:port] "
                                 "(scheme and host only), or be *")
        if "*" in origins and len(origins) > 1:
            raise ValueError("* stands alone: it already allows every origin")
        return ",".join(origins)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o for o in self.cors_origins.split(",") if o]

    @model_validator(mode="after")
    def _check_pages(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_origin_list:
            raise ValueError("DOSSIER_CORS_ALLOW_CREDENTIALS needs explicit origins: "
                             "credentials are never allowed for every origin (*)")
        if self.page_size_default > self.page_size_max:
            raise ValueError("page_size_default must not exceed page_size_max")
        if self.otel_exporter == "otlp" and not self.otel_endpoint:
            raise ValueError("otel_exporter 'otlp' needs DOSSIER_OTEL_ENDPOINT")
        if self.key_provider == "pkcs11" and not (
                self.pkcs11_library and self.pkcs11_token_label and self.pkcs11_pin):
            raise ValueError("key_provider 'pkcs11' needs DOSSIER_PKCS11_LIBRARY, "
                             "DOSSIER_PKCS11_TOKEN_LABEL and DOSSIER_PKCS11_PIN")
        if (self.oidc_issuer is None) != (self.oidc_audience is None):
            raise ValueError("DOSSIER_OIDC_ISSUER and DOSSIER_OIDC_AUDIENCE go together")
        return self

    @property
    def embedded(self) -> bool:
        """True on the embedded default (no external issuer)."""
        return self.oidc_issuer is None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dossier.sqlite3').resolve()}"

    @property
    def public_base(self) -> str:
        return self.base_url or f"http://{self.host}:{self.port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and overrides, or raise SettingsError with plain text."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"{where}: {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def ensure_data_dir(path: Path) -> Path:
    """Create the data directory 0700 on first start; refuse one others can read."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
