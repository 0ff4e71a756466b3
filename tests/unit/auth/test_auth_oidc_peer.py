"""Against a real OpenID provider that is not ours: npm ``oidc-provider`` on Node.js.

Proves discovery, JWKS fetch and key rotation: the provider restarted with a
new key issues tokens with an unknown kid, the cache refreshes, and they are
accepted, while tokens of the retired key are refused. Runs whenever ``node``
is installed (and fails in CI if it is not); installs the provider with
``npm ci`` when ``oidc_peer/node_modules`` is missing.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import RSAKey

from auth import _jose
from auth.actor import check_interaction, resolve_principal
from auth.errors import InvalidToken
from auth.scopes import Scope
from auth.tokens import JWKSCache, TokenValidator

pytestmark = pytest.mark.oidc_peer

PEER_DIR = Path(__file__).parent / "oidc_peer"
AUDIENCE = "https://dossier.test/fhir"
CLIENT = ("peer-hub", "peer-hub-secret-for-tests-only")


class EmptyDirectory:
    def practitioner_active(self, reference: str) -> bool:
        return False

    def active_roles(self, practitioner_ref: str,
                     at: datetime) -> list[tuple[str | None, str | None]]:
        return []


@dataclass
class Peer:
    process: subprocess.Popen[bytes]
    issuer: str

    def token(self, http: httpx.Client, scope: str = "system/*.rs") -> str:
        response = http.post(f"{self.issuer}/token", auth=CLIENT,
                             data={"grant_type": "client_credentials", "scope": scope})
        response.raise_for_status()
        return str(response.json()["access_token"])

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()  # provider.mjs exits when its stdin ends
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is required for the external OIDC provider test in CI")
        pytest.skip("node is not installed")
    return node


def _install() -> None:
    if (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed to install oidc-provider"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=True,
                   stdout=subprocess.DEVNULL, timeout=240)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_peer(tmp_path: Path) -> Iterator[Callable[[RSAKey], Peer]]:
    node = _node()
    _install()
    port = _free_port()
    running: list[Peer] = []

    def start(key: RSAKey) -> Peer:
        jwks_file = tmp_path / f"peer-{key.kid}.json"
        jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
        env = {**os.environ, "PEER_PORT": str(port), "PEER_JWKS": str(jwks_file),
               "PEER_AUDIENCE": AUDIENCE}
        process = subprocess.Popen([node, "provider.mjs"], cwd=PEER_DIR, env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
        assert process.stdout is not None
        peer = Peer(process, f"http://127.0.0.1:{port}")
        running.append(peer)
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline().decode() if ready else ""
        assert line.strip() == f"ready {peer.issuer}", "oidc-provider did not start"
        return peer

    yield start
    for peer in running:
        if peer.process.returncode is None:
            peer.stop()


def _rsa(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def _kid(token: str) -> object:
    return _jose.unverified_part(token.split(".")[0]).get("kid")


def test_external_provider_discovery_jwks_and_key_rotation(
        start_peer: Callable[[RSAKey], Peer]) -> None:
    peer = start_peer(_rsa("peer-1"))
    with httpx.Client(timeout=10) as http:
        cache = JWKSCache(peer.issuer, http=http, min_refresh_seconds=0)
        validator = TokenValidator(peer.issuer, AUDIENCE, cache)

        first = peer.token(http)
        claims = validator.validate(first)
        assert claims.issuer == peer.issuer
        assert claims.client_id == "peer-hub"
        assert claims.roles == frozenset({"hub"})
        assert claims.fhir_user == "Organization/peer-org"
        assert claims.scopes == (Scope("system", "*", frozenset("rs")),)
        assert cache.refresh_count == 1

        principal = resolve_principal(claims, EmptyDirectory(), datetime.now(UTC))
        assert principal.organizations == frozenset({"Organization/peer-org"})
        check_interaction(principal, "Task", "r", compartment_patient="Patient/martin")

        peer.stop()
        peer = start_peer(_rsa("peer-2"))  # same issuer URL, new signing key
        second = peer.token(http)
        assert _kid(second) == "peer-2"
        assert validator.validate(second).client_id == "peer-hub"  # unknown kid → refresh
        assert cache.refresh_count == 2

        with pytest.raises(InvalidToken) as caught:  # the retired key is gone
            validator.validate(first)
        assert caught.value.reason == "unknown kid"


def test_external_provider_tokens_for_another_audience_are_refused(
        start_peer: Callable[[RSAKey], Peer]) -> None:
    peer = start_peer(_rsa("peer-3"))
    with httpx.Client(timeout=10) as http:
        other = TokenValidator(peer.issuer, "https://elsewhere.test/fhir",
                               JWKSCache(peer.issuer, http=http))
        with pytest.raises(InvalidToken) as caught:
            other.validate(peer.token(http))
        assert caught.value.reason == "wrong audience"
