"""The embedded dev OIDC issuer (embedded default only; production uses an external issuer).

State lives in the data directory: the signing key in ``keys/dev-issuer.jwk.json``
(mode 0600), the registered clients and the issuer URL in ``auth/``.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from auth import _jose
from auth.accounts import IssuerState, MemoryState
from auth.actor import Directory
from auth.rules import ROLES, Role
from auth.scopes import parse_scopes
from auth.tokenevents import TokenEvent
from auth.tokens import NISS_CLAIM, StaticKeys, check_issuer_url

if TYPE_CHECKING:
    from fastapi import APIRouter

SIGNING_ALG = "ES256"
KEY_FILE = Path("keys") / "dev-issuer.jwk.json"
CLIENTS_FILE = Path("auth") / "clients.json"
ISSUER_FILE = Path("auth") / "issuer.json"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEV_CLI_CLIENT = "dev-cli"
RESERVED_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "jti"})
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN

# The scopes a role gets when it asks for none (each in the role's own context).
DEFAULT_SCOPES: dict[str, str] = {
    "citizen": "patient/*.cruds",
    "practitioner": "user/*.cruds",
    "auditor": "user/*.rs",
    "admin": "user/*.cruds",
    "hub": "system/*.rs",
}
PORTAL_CLIENT_SCOPE = "openid fhirUser launch/patient patient/*.cruds user/*.cruds"


@dataclass(frozen=True)
class DemoUser:
    """A person the dev issuer's sign-in page offers (ids match the demo data)."""

    id: str
    name: str
    fhir_user: str
    roles: tuple[Role, ...]
    description: str
    niss: str | None = None  # a citizen signs in with their national number (SPEC §8)


DEMO_USERS: list[DemoUser] = [
    DemoUser("martin", "Martin", "Patient/martin", ("citizen",), "citizen", "67031215144"),
    DemoUser("simone", "Simone", "Patient/simone", ("citizen",), "citizen", "43050208418"),
    DemoUser("piet", "Piet", "", ("citizen",), "Simone's son, her mandataire",
             "70030105548"),
    DemoUser("ricarda", "Ricarda", "Patient/ricarda", ("citizen",), "citizen"),
    DemoUser("dr-dupont", "Dr Dupont", "Practitioner/dr-dupont", ("practitioner",),
             "general practitioner"),
    DemoUser("sw-janssens", "Janssens", "Practitioner/sw-janssens", ("practitioner",),
             "social worker"),
    # the other practitioners of the demo dossiers (dossier/seed/demo.py PRACTITIONERS)
    DemoUser("sw-lambert", "Lambert", "Practitioner/sw-lambert", ("practitioner",),
             "prison social worker"),
    DemoUser("psy-claes", "Claes", "Practitioner/psy-claes", ("practitioner",),
             "psychologist"),
    DemoUser("dr-maes", "Dr Maes", "Practitioner/dr-maes", ("practitioner",),
             "hospital physician"),
    DemoUser("nurse-peeters", "Peeters", "Practitioner/nurse-peeters", ("practitioner",),
             "home nurse"),
    DemoUser("coord-haddad", "Haddad", "Practitioner/coord-haddad", ("practitioner",),
             "care coordinator"),
    DemoUser("sw-garcia", "Garcia", "Practitioner/sw-garcia", ("practitioner",),
             "debt-service social worker"),
    DemoUser("auditor", "Data protection officer", "Person/auditor", ("auditor",), "auditor"),
    DemoUser("admin", "Operator", "Person/admin", ("admin",), "administrator"),
]


def demo_user(user_id: str) -> DemoUser | None:
    return next((user for user in DEMO_USERS if user.id == user_id), None)


def default_scope(roles: Sequence[str]) -> str:
    """The scope a token gets when none is asked for: the first actor role's default."""
    role = next((r for r in roles if r in DEFAULT_SCOPES), None)
    return DEFAULT_SCOPES[role] if role else ""


@dataclass(frozen=True)
class Client:
    """A registered client: a backend service (private_key_jwt) or a public PKCE client."""

    client_id: str
    scope: str
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    fhir_user: str | None = None
    redirect_uris: tuple[str, ...] = field(default_factory=tuple)

    @property
    def backend(self) -> bool:
        return self.jwks is not None or self.jwks_uri is not None


class DevIssuer:
    """Signs access tokens for the embedded default and serves the OAuth endpoints."""

    def __init__(self, data_dir: Path, issuer_url: str, audience: str, *,
                 http: httpx.Client | None = None, directory: Directory | None = None,
                 state: IssuerState | None = None) -> None:
        check_issuer_url(issuer_url, allow_http=True)
        self.data_dir = Path(data_dir)
        self.issuer = issuer_url.rstrip("/")
        self.audience = audience
        self._http = http
        # the service's directory: which practitioners a hub may act for (token exchange);
        # without one, no hub may act for anybody
        self.directory = directory
        # told of every token-endpoint refusal and of every backend token issued (the
        # service writes them to its audit log); raising refuses the request (fail closed)
        self.on_token: Callable[[TokenEvent], None] | None = None
        # told the client address of each refused sign-in or token request (the service
        # throttles floods per address)
        self.on_refusal: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        # accounts, authorization codes and jti values seen: in the service's database
        # (shared by all its processes); in memory for a lone issuer
        self.state: IssuerState = state if state is not None else MemoryState()
        self.niss_claim = NISS_CLAIM  # the service's DOSSIER_OIDC_NISS_CLAIM
        self._keys = _load_or_create_keys(self.data_dir / KEY_FILE)
        _write_json(self.data_dir / ISSUER_FILE,
                    {"issuer": self.issuer, "audience": self.audience})

    @classmethod
    def from_data_dir(cls, data_dir: Path, base_url: str | None = None) -> DevIssuer:
        """The issuer a server on ``data_dir`` runs (its recorded URL), or one on ``base_url``."""
        if base_url is None:
            recorded = _read_json(Path(data_dir) / ISSUER_FILE)
            issuer, audience = recorded.get("issuer"), recorded.get("audience")
            if isinstance(issuer, str) and isinstance(audience, str):
                return cls(data_dir, issuer, audience)
            base_url = DEFAULT_BASE_URL
        base = base_url.rstrip("/")
        return cls(data_dir, f"{base}/auth", f"{base}/fhir")

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    # Keys -----------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The public keys, current signer first."""
        return {"keys": [key.as_dict(private=False) for key in self._keys]}

    def key_source(self) -> StaticKeys:
        """Keys for an in-process ``TokenValidator``; re-read from disk on an unknown kid."""
        def load() -> dict[str, Any]:
            with self._lock:
                self._keys = _load_or_create_keys(self.data_dir / KEY_FILE)
            return self.jwks()

        path = os.fspath(self.data_dir / KEY_FILE)  # made once: asked at every request

        def version() -> object:
            try:
                info = os.stat(path)
            except OSError:
                return None
            return (info.st_mtime_ns, info.st_size, info.st_ino)
        return StaticKeys(load, version)

    def rotate_key(self) -> str:
        """Sign with a new key from now on; the previous one still verifies. Returns the new kid."""
        with self._lock:
            new = _new_key()
            self._keys = [new, *self._keys[:1]]
            _write_json(self.data_dir / KEY_FILE,
                        {"keys": [k.as_dict(private=True) for k in self._keys]}, mode=0o600)
        return str(new.kid)

    def sign(self, claims: Mapping[str, Any], *, typ: str = "at+jwt") -> str:
        key = self._keys[0]
        header = {"alg": SIGNING_ALG, "kid": key.kid, "typ": typ}
        return jwt.encode(header, dict(claims), key, algorithms=[SIGNING_ALG],
                          registry=_jose.registry([SIGNING_ALG]))

    # Tokens -----------------------------------------------------------------

    def mint(self, fhir_user: str | None, roles: Sequence[str], scope: str | None, ttl: int,
             client_id: str = DEV_CLI_CLIENT, extra_claims: Mapping[str, Any] | None = None,
             *, subject: str | None = None, now: datetime | None = None,
             niss: str | None = None) -> str:
        """An access token; a negative ``ttl`` gives one that has already expired. A
        citizen's ``niss`` goes in the national-number claim (``egovNRN``)."""
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise ValueError(f"unknown roles: {', '.join(unknown)}")
        scope = scope if scope is not None else default_scope(roles)
        parse_scopes(scope)  # refuse to mint what no validator would accept
        if extra_claims and RESERVED_CLAIMS & set(extra_claims):
            raise ValueError("extra_claims may not replace registered JWT claims")
        moment = int((now or datetime.now(UTC)).timestamp())
        expires = moment + ttl
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject or fhir_user or _niss_subject(niss) or client_id,
            "aud": self.audience,
            "iat": min(moment, expires), "nbf": min(moment, expires), "exp": expires,
            "jti": secrets.token_urlsafe(16), "client_id": client_id, "scope": scope,
            "roles": list(roles),
        }
        if fhir_user:
            claims["fhirUser"] = fhir_user
        if niss:
            claims[self.niss_claim] = niss
        claims.update(extra_claims or {})
        return self.sign(claims)

    # Clients ----------------------------------------------------------------

    def register_client(self, client_id: str, jwks: dict[str, Any] | None = None,
                        jwks_uri: str | None = None, scope: str | None = None,
                        fhir_user: str | None = None,
                        redirect_uris: Sequence[str] = ()) -> None:
        """Register a backend service (``jwks``/``jwks_uri``) or a public client (redirect URIs)."""
        if jwks is None and jwks_uri is None and not redirect_uris:
            raise ValueError("a client needs a public JWKS, a jwks_uri or redirect URIs")
        if jwks is not None and not _jose.import_public_keys(jwks):
            raise ValueError("the client JWKS has no usable public signing key")
        if jwks is not None and any(_has_private_part(k) for k in jwks.get("keys", [])):
            raise ValueError("register the client's public keys only")
        if jwks_uri is not None:
            check_issuer_url(jwks_uri)  # https, or http on a loopback host
        backend = jwks is not None or jwks_uri is not None
        if scope is None:
            scope = DEFAULT_SCOPES["hub"] if backend else PORTAL_CLIENT_SCOPE
        parse_scopes(scope)
        client = Client(client_id, scope, jwks, jwks_uri, fhir_user, tuple(redirect_uris))
        with self._lock:
            path = self.data_dir / CLIENTS_FILE
            clients = _read_json(path)
            clients[client_id] = asdict(client)
            _write_json(path, clients)

    def client(self, client_id: str) -> Client | None:
        record = _read_json(self.data_dir / CLIENTS_FILE).get(client_id)
        if not isinstance(record, dict):
            return None
        return Client(record["client_id"], record["scope"], record.get("jwks"),
                      record.get("jwks_uri"), record.get("fhir_user"),
                      tuple(record.get("redirect_uris") or ()))

    def client_jwks(self, client: Client) -> dict[str, Any]:
        """The client's registered public keys (fetched when registered by URI)."""
        if client.jwks is not None:
            return client.jwks
        if client.jwks_uri is None:
            return {"keys": []}
        try:
            if self._http is not None:
                value = self._http.get(client.jwks_uri).raise_for_status().json()
            else:
                with httpx.Client(timeout=5.0, follow_redirects=False) as http:
                    value = http.get(client.jwks_uri).raise_for_status().json()
        except (httpx.HTTPError, ValueError):
            return {"keys": []}  # answered as invalid_client: no key matches
        return value if isinstance(value, dict) else {"keys": []}

    # Metadata ---------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        """OpenID Provider metadata (also valid as SMART configuration)."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": self.token_endpoint,
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "client_credentials",
                                      TOKEN_EXCHANGE],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported":
                ["RS256", "RS384", "ES256", "ES384", "EdDSA"],
            "id_token_signing_alg_values_supported": [SIGNING_ALG],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "fhirUser", "launch/patient",
                                 "patient/*.cruds", "user/*.cruds", "system/*.rs"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "roles"],
            "authorization_response_iss_parameter_supported": True,
            "capabilities": ["launch-standalone", "client-public",
                             "client-confidential-asymmetric", "context-standalone-patient",
                             "permission-v1", "permission-v2", "permission-patient",
                             "permission-user", "sso-openid-connect"],
        }

    def smart_configuration(self) -> dict[str, Any]:
        """The document to serve at ``/fhir/.well-known/smart-configuration``."""
        return self.discovery()

    def router(self) -> APIRouter:
        """The endpoints, to be mounted at ``/auth``."""
        from auth.devroutes import build_router
        return build_router(self)


def dev_token(data_dir: Path, fhir_user: str | None, roles: Sequence[str],
              scope: str | None = None, ttl: int = 3600, base_url: str | None = None,
              niss: str | None = None, niss_claim: str | None = None) -> str:
    """The token ``dossier dev-token`` prints: signed by the data dir's dev issuer."""
    if fhir_user is None and niss is None:
        raise ValueError("give --fhir-user or (for a citizen) --niss")
    issuer = DevIssuer.from_data_dir(data_dir, base_url)
    if niss_claim:
        issuer.niss_claim = niss_claim
    return issuer.mint(fhir_user, list(roles), scope, ttl, niss=niss)


def _niss_subject(niss: str | None) -> str | None:
    """A subject for a token named only by a national number, which never shows it."""
    if niss is None:
        return None
    import hashlib
    return "niss-" + hashlib.sha256(niss.encode()).hexdigest()[:24]


# Files ------------------------------------------------------------------------

def _new_key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"alg": SIGNING_ALG, "use": "sig"})
    key.ensure_kid()
    return key


def _has_private_part(jwk: object) -> bool:
    return isinstance(jwk, dict) and "d" in jwk


def _load_or_create_keys(path: Path) -> list[ECKey]:
    """The signing keys on file, creating the first one (0600) if there is none."""
    if not path.exists():
        key = _new_key()
        _create_exclusive(path, {"keys": [key.as_dict(private=True)]})
    keys = [ECKey.import_key(k) for k in _read_json(path).get("keys", [])]
    if not keys:
        raise ValueError("the dev issuer key file holds no key")
    return keys


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return value if isinstance(value, dict) else {}


def _temp_file(path: Path, value: Mapping[str, Any], mode: int) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # created 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, sort_keys=True)
    os.chmod(name, mode)
    return Path(name)


def _write_json(path: Path, value: Mapping[str, Any], *, mode: int = 0o600) -> None:
    """Replace ``path`` atomically."""
    os.replace(_temp_file(path, value, mode), path)


def _create_exclusive(path: Path, value: Mapping[str, Any]) -> None:
    """Create ``path`` whole (0600) unless another process already did."""
    temp = _temp_file(path, value, 0o600)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
