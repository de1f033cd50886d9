// An independent OAuth2 server for interoperability tests: oidc-provider, the
// OpenID-certified implementation from the npm registry, pinned in package.json
// to 8.8.1 (the newest release that supports Node.js 20; 9.x wants Node.js 22+).
// It holds one confidential client that may use the client_credentials grant
// and sends its secret in the request body (client_secret_post), which is how
// Cellosign's msgraph convention sends it. oidc-provider has no password grant,
// so Cellosign's general (username/password) convention cannot be tried here.
//
//   node oidc_server.mjs [port] [--exit-on-stdin-close]
//
// port: argv[2], else $OIDC_PORT, else 0 (an ephemeral port chosen by the OS).
// Binds 127.0.0.1 only. When listening, prints exactly one line to stdout:
//
//   READY port=<port> token_endpoint=http://127.0.0.1:<port>/token oidc_provider=<version>
//
// The client comes from the environment (defaults in brackets):
//   OIDC_CLIENT_ID [8e17edb9-0f05-46cc-8741-a937e351e631], OIDC_CLIENT_SECRET (required),
//   OIDC_SCOPE [api:read] (one scope the client may ask for), OIDC_TOKEN_TTL [300] seconds.
//
// Exits 0 on SIGTERM / SIGINT, and when --exit-on-stdin-close is given and stdin
// closes (so a test runner that dies never leaves the server behind). Token
// endpoint errors are logged to stderr by error code only, never with a secret.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';

function fail(message) {
  process.stderr.write(`oidc_server: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const exitOnStdinClose = args.includes('--exit-on-stdin-close');
const positional = args.filter((a) => !a.startsWith('--'));
const portText = positional[0] ?? process.env.OIDC_PORT ?? '0';
if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
  fail(`invalid port ${JSON.stringify(portText)}: give 0..65535 as argv[2] or OIDC_PORT`);
}
const clientId = process.env.OIDC_CLIENT_ID || '8e17edb9-0f05-46cc-8741-a937e351e631';
const clientSecret = process.env.OIDC_CLIENT_SECRET;
if (!clientSecret) {
  fail('OIDC_CLIENT_SECRET is required');
}
const scope = process.env.OIDC_SCOPE || 'api:read';
const ttl = Number(process.env.OIDC_TOKEN_TTL || '300');
if (!Number.isInteger(ttl) || ttl <= 0) {
  fail('OIDC_TOKEN_TTL must be a positive whole number of seconds');
}
const version = JSON.parse(
  readFileSync(new URL('./node_modules/oidc-provider/package.json', import.meta.url), 'utf8'),
).version;

// The issuer must carry the real port, so listen first and attach the provider after.
let handler = (req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const server = http.createServer((req, res) => handler(req, res));

server.on('error', (err) => fail(`cannot listen on ${HOST}:${portText}: ${err.message}`));
server.listen(Number(portText), HOST, () => {
  const { port } = server.address();
  const issuer = `http://${HOST}:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
        scope,
      },
    ],
    scopes: [scope],
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
    },
    ttl: { ClientCredentials: ttl },
  });
  // Only what helps to read a failed test; error codes and descriptions carry no secret.
  provider.on('grant.error', (ctx, err) => {
    process.stderr.write(`oidc_server: token endpoint error ${err.error ?? err.name}: ${err.error_description ?? ''}\n`);
  });
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`oidc_server: server_error ${err.name}: ${err.message}\n`);
  });
  handler = provider.callback();
  process.stdout.write(`READY port=${port} token_endpoint=${issuer}/token oidc_provider=${version}\n`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (exitOnStdinClose) {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}
