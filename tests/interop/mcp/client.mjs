// The official MCP TypeScript SDK (@modelcontextprotocol/sdk, pinned in
// package.json) as the client of examples/mcp_server.rs, with
// node-oidc-provider (../oidc) as the authorization server. Run by ../mcp.sh;
// exits non-zero on the first failed check. See ../README.md.
//
// Needs MCP_URL (the server's /mcp URL, as it printed it) and the OIDC_* env
// that ../oidc.sh prints.
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`client.mjs: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const MCP_URL = env('MCP_URL');
const ISSUER = env('OIDC_ISSUER');
const TOKEN_URL = env('OIDC_TOKEN_URL');
const METADATA_URL = MCP_URL.replace(/\/mcp$/, '/.well-known/oauth-protected-resource/mcp');

// Every response the SDK saw, so checks can look at the challenges.
function recordingFetch(log) {
  return async (url, init) => {
    const response = await fetch(url, init);
    // The headers only: a cloned, unread body would hold the stream back.
    log.push({ url: String(url), status: response.status, response: { headers: response.headers } });
    return response;
  };
}

async function tokenFor({ clientId, clientSecret, resource, scope }) {
  const body = new URLSearchParams({ grant_type: 'client_credentials', resource });
  if (scope) body.set('scope', scope);
  const response = await fetch(TOKEN_URL, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}` },
    body,
  });
  const json = await response.json();
  assert.equal(response.status, 200, `token request: ${JSON.stringify(json)}`);
  return json;
}

function client() {
  return new Client({ name: 'tower-introspection-interop', version: '1.0.0' });
}

function whoami(result) {
  assert.ok(!result.isError, `whoami failed: ${JSON.stringify(result)}`);
  return JSON.parse(result.content[0].text);
}

const checks = [];
function check(name, run) {
  checks.push({ name, run });
}

check('no token: 401 whose challenge points to the metadata, which names the resource and the AS', async () => {
  const response = await fetch(MCP_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(response.status, 401);
  const { resourceMetadataUrl, error } = extractWWWAuthenticateParams(response);
  assert.equal(error, undefined);
  assert.equal(resourceMetadataUrl?.href, METADATA_URL);
  const metadata = await (await fetch(resourceMetadataUrl)).json();
  assert.equal(metadata.resource, MCP_URL);
  assert.deepEqual(metadata.authorization_servers, [ISSUER]);
  assert.ok(metadata.scopes_supported.includes('notes:write'));
});

check('bearer token (notes:read): lists tools, calls whoami; add_note gets the 403 step-up challenge', async () => {
  const { access_token } = await tokenFor({
    clientId: env('OIDC_MCP_CLIENT_ID'),
    clientSecret: env('OIDC_MCP_CLIENT_SECRET'),
    resource: MCP_URL,
    scope: 'notes:read',
  });
  const log = [];
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
    requestInit: { headers: { authorization: `Bearer ${access_token}` } },
    fetch: recordingFetch(log),
  });
  const mcp = client();
  await mcp.connect(transport);
  const { tools } = await mcp.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['add_note', 'whoami']);
  const me = whoami(await mcp.callTool({ name: 'whoami', arguments: {} }));
  assert.equal(me.client_id, env('OIDC_MCP_CLIENT_ID'));
  assert.equal(me.scope, 'notes:read');
  await assert.rejects(mcp.callTool({ name: 'add_note', arguments: { text: 'x' } }), (e) => e.code === 403);
  const denied = log.find((entry) => entry.status === 403);
  assert.ok(denied, 'a 403 response');
  const params = extractWWWAuthenticateParams(denied.response);
  assert.equal(params.error, 'insufficient_scope');
  assert.equal(params.scope, 'notes:write');
  assert.equal(params.resourceMetadataUrl?.href, METADATA_URL);
  await mcp.close();
});

check('a token for another resource (RFC 8707 audience): 401 invalid_token', async () => {
  const { access_token } = await tokenFor({
    clientId: env('OIDC_CLIENT_ID'),
    clientSecret: env('OIDC_CLIENT_SECRET'),
    resource: env('OIDC_RESOURCE'),
    scope: 'read',
  });
  const log = [];
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
    requestInit: { headers: { authorization: `Bearer ${access_token}` } },
    fetch: recordingFetch(log),
  });
  await assert.rejects(client().connect(transport), (e) => e.code === 401);
  const params = extractWWWAuthenticateParams(log.find((entry) => entry.status === 401).response);
  assert.equal(params.error, 'invalid_token');
  assert.equal(params.resourceMetadataUrl?.href, METADATA_URL);
});

check('client credentials from nothing: 401 → metadata → AS → token for the resource → whoami, add_note', async () => {
  const provider = new ClientCredentialsProvider({
    clientId: env('OIDC_MCP_CLIENT_ID'),
    clientSecret: env('OIDC_MCP_CLIENT_SECRET'),
    expectedIssuer: ISSUER,
    scope: 'notes:read notes:write',
  });
  const log = [];
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
    authProvider: provider,
    fetch: recordingFetch(log),
  });
  const mcp = client();
  await mcp.connect(transport);
  assert.equal(log[0].status, 401, 'the first request went without a token');
  assert.ok(log.some((entry) => entry.url === METADATA_URL && entry.status === 200), 'read the metadata');
  assert.ok(log.some((entry) => entry.url === TOKEN_URL && entry.status === 200), 'got a token');
  const me = whoami(await mcp.callTool({ name: 'whoami', arguments: {} }));
  assert.equal(me.client_id, env('OIDC_MCP_CLIENT_ID'));
  assert.equal(me.scope, 'notes:read notes:write');
  const added = await mcp.callTool({ name: 'add_note', arguments: { text: 'hello' } });
  assert.ok(!added.isError, JSON.stringify(added));
  await mcp.close();
});

// The SDK's client-credentials provider asks the AS for its configured
// `scope` (not the challenge's): its step-up on 403 insufficient_scope gets a
// new token with that scope and retries once.
check('step-up: a notes:read token, add_note → 403 insufficient_scope → the SDK gets a new token → add_note succeeds', async () => {
  const provider = new ClientCredentialsProvider({
    clientId: env('OIDC_MCP_CLIENT_ID'),
    clientSecret: env('OIDC_MCP_CLIENT_SECRET'),
    expectedIssuer: ISSUER,
    scope: 'notes:read notes:write',
  });
  provider.saveTokens(
    await tokenFor({
      clientId: env('OIDC_MCP_CLIENT_ID'),
      clientSecret: env('OIDC_MCP_CLIENT_SECRET'),
      resource: MCP_URL,
      scope: 'notes:read',
    }),
  );
  const log = [];
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
    authProvider: provider,
    fetch: recordingFetch(log),
  });
  const mcp = client();
  await mcp.connect(transport);
  assert.ok(!log.some((entry) => entry.url === TOKEN_URL), 'the stored token was used first');
  const added = await mcp.callTool({ name: 'add_note', arguments: { text: 'stepped up' } });
  assert.ok(!added.isError, JSON.stringify(added));
  const denied = log.findIndex((entry) => entry.status === 403);
  assert.ok(denied >= 0, 'the first add_note was refused');
  assert.equal(extractWWWAuthenticateParams(log[denied].response).scope, 'notes:write');
  assert.ok(
    log.slice(denied).some((entry) => entry.url === TOKEN_URL && entry.status === 200),
    'the SDK fetched a new token after the 403',
  );
  assert.equal(provider.tokens().scope, 'notes:read notes:write');
  await mcp.close();
});

check('step-up that cannot help (the client may not have notes:write): the SDK gives up after one retry', async () => {
  const provider = new ClientCredentialsProvider({
    clientId: env('OIDC_MCP_READER_CLIENT_ID'),
    clientSecret: env('OIDC_MCP_READER_CLIENT_SECRET'),
    expectedIssuer: ISSUER,
    scope: 'notes:read',
  });
  const log = [];
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
    authProvider: provider,
    fetch: recordingFetch(log),
  });
  const mcp = client();
  await mcp.connect(transport);
  const me = whoami(await mcp.callTool({ name: 'whoami', arguments: {} }));
  assert.equal(me.scope, 'notes:read');
  await assert.rejects(
    mcp.callTool({ name: 'add_note', arguments: { text: 'no' } }),
    (e) => e.code === 403 && /upscoping/.test(e.message),
  );
  assert.equal(log.filter((entry) => entry.status === 403).length, 2, 'refused before and after the step-up');
  await mcp.close();
});

let failed = 0;
for (const { name, run } of checks) {
  try {
    await run();
    console.log(`ok   ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}\n     ${error?.stack ?? error}`);
  }
}
console.log(failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks failed`);
process.exit(failed === 0 ? 0 : 1);
