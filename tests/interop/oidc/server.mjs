// node-oidc-provider as a JWT-issuing authorization server for the
// tower-introspection interop tests. Started by ../oidc.sh; see ../README.md.
//
//   node server.mjs genkey FILE   write a fresh RS256 private JWKS (new kid) to FILE
//   node server.mjs               serve; needs OIDC_PORT and OIDC_JWKS_FILE
//
// Mostly client credentials. For back-channel logout: open dynamic
// registration (a test registers a client whose backchannel_logout_uri is
// a resource server it started), the development interactions (any login
// name, no password: a test scripts a login and an end-session), and `sid`
// in access tokens. The in-memory adapter keeps opaque tokens until the
// process stops (a restart forgets them).
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

const HOST = '127.0.0.1';

// Fixed test identities (also in ../README.md and ../oidc.sh).
const CLIENT_ID = 'oidc-cc-client';
const CLIENT_SECRET = 'oidc-cc-secret';
const RS_CLIENT_ID = 'oidc-rs-client';
const RS_CLIENT_SECRET = 'oidc-rs-secret';
// The resource server again, authenticating with private_key_jwt (RFC 7523)
// and asking for signed introspection answers (RFC 9701). Its key is the
// crate's committed test RSA key 3 (public test material; the tests sign
// with its private half).
const RS_KEY_CLIENT_ID = 'oidc-rs-key-client';
const RS_KEY_FILE = new URL('../../../src/test_util/keys/test-only-rsa-3.spki.pem', import.meta.url);

// The MCP interop (../mcp): a client allowed both notes scopes, and one
// allowed only notes:read (a step-up to notes:write is refused).
const MCP_CLIENT_ID = 'mcp-cc-client';
const MCP_CLIENT_SECRET = 'mcp-cc-secret';
const MCP_READER_CLIENT_ID = 'mcp-reader-client';
const MCP_READER_CLIENT_SECRET = 'mcp-reader-secret';
const MCP_SCOPE = 'notes:read notes:write';
// examples/mcp_server.rs on any loopback port: its resource identifier.
const MCP_RESOURCE = /^http:\/\/127\.0\.0\.1:[0-9]+\/mcp$/;

const SCOPE = 'read write admin';
const TTL = 3600;
// Resource indicators (RFC 8707) → what oidc-provider issues for them.
const RESOURCES = new Map([
  // RFC 9068 JWT, the resource server under test.
  ['https://api.example/', 'jwt'],
  // RFC 9068 JWT for another API: the wrong audience for the tests.
  ['https://other.example/', 'jwt'],
  // Opaque (random string, kept in memory): only introspection can tell.
  ['https://opaque.example/', 'opaque'],
]);
const DEFAULT_RESOURCE = 'https://api.example/';

function base64url(buffer) {
  return Buffer.from(buffer).toString('base64url');
}

// A new RSA key as a private JWKS. kid = RFC 7638 thumbprint: new key, new kid.
function genkey(file) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const thumbprint = createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest();
  const key = { ...jwk, kid: base64url(thumbprint), alg: 'RS256', use: 'sig' };
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ keys: [key] })}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  process.stdout.write(`${key.kid}\n`);
}

function env(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`server.mjs: ${name} is required\n`);
    process.exit(2);
  }
  return value;
}

// Imported here: `genkey` needs none of it.
async function serve() {
  const { default: Provider, errors } = await import('oidc-provider');
  const port = Number(env('OIDC_PORT'));
  const jwks = JSON.parse(readFileSync(env('OIDC_JWKS_FILE'), 'utf8'));
  const issuer = `http://${HOST}:${port}`;

  const client = (clientId, clientSecret, grantTypes, scope = SCOPE) => ({
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: grantTypes,
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
  });

  const rsPublicJwk = createPublicKey(readFileSync(RS_KEY_FILE)).export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: RS_KEY_CLIENT_ID,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'private_key_jwt',
        introspection_signed_response_alg: 'RS256',
        jwks: { keys: [{ ...rsPublicJwk, alg: 'RS256', use: 'sig' }] },
        scope: SCOPE,
      },
      // Mints tokens.
      client(CLIENT_ID, CLIENT_SECRET, ['client_credentials']),
      // The resource server: introspects, gets no tokens.
      client(RS_CLIENT_ID, RS_CLIENT_SECRET, []),
      // MCP clients (the TypeScript SDK's client-credentials provider).
      client(MCP_CLIENT_ID, MCP_CLIENT_SECRET, ['client_credentials'], MCP_SCOPE),
      client(MCP_READER_CLIENT_ID, MCP_READER_CLIENT_SECRET, ['client_credentials'], 'notes:read'),
    ],
    jwks,
    scopes: [...SCOPE.split(' '), ...MCP_SCOPE.split(' ')],
    // Set so that no development default is.
    cookies: { keys: [base64url(randomBytes(32))] },
    ttl: {
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? TTL,
    },
    // The session of a login (its `sid`, as the logout token names it) in
    // the access tokens of that login.
    extraTokenClaims: (_ctx, token) => (token.sid ? { sid: token.sid } : undefined),
    // Logout tokens go to resource servers on loopback, which oidc-provider's
    // SSRF guard (a dispatcher refusing special-use addresses) would stop:
    // dropped here, in a test AS on loopback only.
    fetch: (url, { dispatcher: _ssrfGuard, ...options }) => globalThis.fetch(url, options),
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      clientCredentials: { enabled: true },
      // RFC 9449: a token request with a `DPoP` proof gets a token bound to
      // its key (`cnf.jkt` in the JWT or the introspection answer,
      // token_type `DPoP`); without one, a bearer token as before. No AS
      // nonce (`requireNonce` stays false): the resource server does not
      // implement `use_dpop_nonce` either. (9.x enables it by default; set
      // here so the tests do not depend on that.)
      dPoP: { enabled: true, allowReplay: false },
      introspection: {
        enabled: true,
        // The resource server's client may introspect every token; any other
        // client only its own. (oidc-provider cannot introspect JWT access
        // tokens at all: it answers 400 unsupported_token_type.)
        allowedPolicy: (_ctx, caller, token) =>
          caller.clientId === RS_CLIENT_ID
          || caller.clientId === RS_KEY_CLIENT_ID
          || caller.clientId === token.clientId,
      },
      // RFC 9701: signed answers for clients registered for them.
      jwtIntrospection: { enabled: true },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // No `resource` parameter → the API under test.
        defaultResource: () => DEFAULT_RESOURCE,
        getResourceServerInfo: (_ctx, resource) => {
          if (MCP_RESOURCE.test(resource)) {
            return {
              scope: MCP_SCOPE,
              audience: resource,
              accessTokenTTL: TTL,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          }
          const format = RESOURCES.get(resource);
          if (!format) throw new errors.InvalidTarget();
          if (format === 'opaque') {
            return { scope: SCOPE, audience: resource, accessTokenTTL: TTL, accessTokenFormat: 'opaque' };
          }
          return {
            scope: SCOPE,
            audience: resource,
            accessTokenTTL: TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });

  provider.on('server_error', (_ctx, error) => {
    process.stderr.write(`server_error: ${error?.stack ?? error}\n`);
  });
  provider.on('backchannel.error', (_ctx, error, client) => {
    process.stderr.write(`backchannel.error (${client?.clientId}): ${error?.message ?? error}\n`);
  });

  const server = createServer(provider.callback());
  server.listen(port, HOST, () => {
    const kids = jwks.keys.map((k) => k.kid).join(',');
    process.stdout.write(`listening on ${issuer} (kid ${kids})\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const [command, arg] = process.argv.slice(2);
if (command === 'genkey' && arg) {
  genkey(arg);
} else if (command === undefined) {
  await serve();
} else {
  process.stderr.write('usage: node server.mjs [genkey FILE]\n');
  process.exit(2);
}
