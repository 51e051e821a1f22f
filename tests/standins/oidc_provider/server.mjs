// panva's oidc-provider (OpenID Certified) with its default settings, for the auth plugin's tests.
//
// Only what a deployment must say is configured: the clients, the accounts (findAccount) and which
// claims the `email` and `profile` scopes release. Everything else is the library's default: the code
// flow puts email and name in the userinfo response only (conformIdTokenClaims), the authorization
// response carries `iss` (RFC 9207), RP-initiated logout is on, and sign-in is the dev login and consent
// forms. Signing keys are generated per run: RSA (RS256, the default) and Ed25519.
//
// Usage: node server.mjs  — prints one JSON line {"issuer": "http://127.0.0.1:<port>"} when ready.
// Environment: OIDC_CLIENT_SECRET (the clients' secret), OIDC_ACCOUNTS (JSON: {sub: {claims}}; an
// unknown sub signs in as <sub>@example.com, verified).
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const secret = process.env.OIDC_CLIENT_SECRET ?? 'standin-secret';
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS ?? '{}');

function privateJwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: `${alg}-${Date.now()}` };
}

// Native clients: the provider then accepts any port on a loopback redirect URI (RFC 8252), so one
// provider serves every test's proxy.
const client = (clientId, extra = {}) => ({
  client_id: clientId,
  client_secret: secret,
  application_type: 'native',
  redirect_uris: ['http://127.0.0.1/auth/callback'],
  post_logout_redirect_uris: ['http://127.0.0.1/auth/sign-in'],
  ...extra,
});

const configuration = {
  clients: [
    client('shmastra'),
    client('shmastra-ed25519', { id_token_signed_response_alg: 'Ed25519' }),
    client('shmastra-eddsa', { id_token_signed_response_alg: 'EdDSA' }),
  ],
  jwks: {
    keys: [
      privateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
      privateJwk('ed25519', {}, 'Ed25519'),
      privateJwk('ed25519', {}, 'EdDSA'),
    ],
  },
  claims: { email: ['email', 'email_verified'], profile: ['name'] },
  async findAccount(ctx, sub) {
    const claims = accounts[sub] ?? { email: `${sub}@example.com`, email_verified: true };
    return { accountId: sub, async claims() { return { sub, ...claims }; } };
  },
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
