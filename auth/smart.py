"""SMART App Launch discovery (`.well-known/smart-configuration`) for an external OpenID
provider: the provider's own metadata, with the capabilities this resource server
supports. (The embedded dev issuer builds its own: `DevIssuer.smart_configuration`.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What this resource server does with tokens, whoever issues them.
CAPABILITIES = ["launch-standalone", "client-public", "client-confidential-asymmetric",
                "context-standalone-patient", "permission-v1", "permission-v2",
                "permission-patient", "permission-user", "sso-openid-connect"]
COPIED = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint",
          "registration_endpoint", "revocation_endpoint", "introspection_endpoint",
          "management_endpoint", "grant_types_supported", "scopes_supported",
          "response_types_supported", "code_challenge_methods_supported",
          "token_endpoint_auth_methods_supported",
          "token_endpoint_auth_signing_alg_values_supported")


def from_openid_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A SMART configuration from an OpenID provider's discovery document."""
    config = {key: metadata[key] for key in COPIED if key in metadata}
    config.setdefault("grant_types_supported", ["authorization_code", "client_credentials"])
    config.setdefault("code_challenge_methods_supported", ["S256"])
    config["capabilities"] = list(CAPABILITIES)
    return config
