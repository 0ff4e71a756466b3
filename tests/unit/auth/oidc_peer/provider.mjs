// A real, independent OpenID provider for the auth tests (npm oidc-provider).
//
// Configured by environment variables:
//   PEER_PORT      port to listen on (127.0.0.1)
//   PEER_JWKS      path of a JSON file {"keys": [private JWK, ...]} used to sign
//   PEER_AUDIENCE  the resource server (our FHIR base) tokens are issued for
// Prints "ready <issuer>" on stdout once it listens.
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT);
const audience = process.env.PEER_AUDIENCE;
const jwks = JSON.parse(readFileSync(process.env.PEER_JWKS, 'utf8'));
const issuer = `http://127.0.0.1:${port}`;
const scope = 'system/*.rs system/Patient.rs';

const provider = new Provider(issuer, {
  jwks,
  clients: [{
    client_id: 'peer-hub',
    client_secret: 'peer-hub-secret-for-tests-only',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        audience,
        scope,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: () => ({ roles: ['hub'], fhirUser: 'Organization/peer-org' }),
  cookies: { keys: ['test-cookie-key-not-secret'] },
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

function stop() {
  server.close(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop); // the test closed our stdin: stop with it
process.stdin.resume();
