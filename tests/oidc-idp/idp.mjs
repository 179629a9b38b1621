// The test identity provider: oidc-provider (OpenID Certified) with real
// RSA and EC signing keys, discovery, JWKS, authorization code + PKCE,
// the device authorization grant (RFC 8628) and JWT access tokens for the
// bridge's audience. Accounts are a fixed list with passwords; the login
// page is a plain form (POST /interaction/<uid>/login) and consent is given
// at once, so a test can sign in over HTTP or in a browser.
//
//   node idp.mjs --port 9400 --keys keys.json [--new-key] [--no-device]
//
// --keys holds the private JWKS; it is created when absent. --new-key
// rotates: a new RSA key is generated and put first (it signs from now
// on); the older keys stay published. --no-device turns the device grant
// off (clients then sign in through a browser redirect). --drop-old-keys
// with --new-key withdraws the older keys (a compromised key, say). The public parts are also written
// as PEM next to it (<keys>.<kid>.pem) for tests that forge tokens.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    keys: { type: 'string' },
    'new-key': { type: 'boolean', default: false },
    audience: { type: 'string', default: 'urn:cloud-odyssey:api' },
    'no-device': { type: 'boolean', default: false },
    'drop-old-keys': { type: 'boolean', default: false },
  },
});
if (!args.port || !args.keys) {
  console.error('usage: node idp.mjs --port PORT --keys FILE [--new-key] [--no-device] [--audience URI]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${args.port}`;

// Accounts: login name -> claims. The Unix account comes from `uid`, the
// roles from `groups`; the bridge is configured with those claim names.
const ACCOUNTS = {
  ada: { sub: 'idp-ada-0001', groups: ['hpc-users'], uid: 'alice' },
  grace: { sub: 'idp-grace-0002', groups: ['hpc-admins', 'hpc-users'], uid: 'carol' },
  linus: { sub: 'idp-linus-0003', groups: ['visitors'], uid: 'bob' },
  eve: { sub: 'idp-eve-0004', groups: ['hpc-users'], uid: 'root' },
  mallory: { sub: 'idp-mallory-0005', groups: ['hpc-users'], uid: 'bob', preferred_username: 'alice' },
  who: { sub: 'idp-who-0006', groups: ['hpc-users'], uid: 'bob', preferred_username: 'Dr. Who <who@example.org>' },
};
const password = (login) => `idp-pw-${login}`;
const bySub = Object.fromEntries(Object.entries(ACCOUNTS).map(([login, a]) => [a.sub, { login, ...a }]));

function newKey(kind) {
  const kid = `${kind}-${crypto.randomBytes(6).toString('hex')}`;
  const { privateKey } = kind === 'rsa'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: kind === 'rsa' ? 'RS256' : 'ES256' };
}

let keys = fs.existsSync(args.keys) ? JSON.parse(fs.readFileSync(args.keys, 'utf8')).keys : [newKey('rsa'), newKey('ec')];
if (args['new-key']) keys = [newKey('rsa'), ...(args['drop-old-keys'] ? [] : keys)];
fs.writeFileSync(args.keys, JSON.stringify({ keys }, null, 1), { mode: 0o600 });
for (const jwk of keys) {
  const pem = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  fs.writeFileSync(`${args.keys}.${jwk.kid}.key.pem`, pem.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  fs.writeFileSync(`${args.keys}.${jwk.kid}.pub.pem`, crypto.createPublicKey(pem).export({ format: 'pem', type: 'spki' }));
}

const claimsOf = (account) => ({
  sub: account.sub,
  preferred_username: account.preferred_username ?? account.login,
  groups: account.groups,
  uid: account.uid,
});

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [{
    client_id: 'odyssey',
    client_name: 'Cloud Odyssey',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token', ...(args['no-device'] ? [] : ['urn:ietf:params:oauth:grant-type:device_code'])],
    response_types: ['code'],
    // Loopback: any port (RFC 8252, 7.3), so the bridge's dashboard and the
    // CLI's redirect listener can use whatever port they got.
    redirect_uris: ['http://127.0.0.1/ui/', 'http://127.0.0.1/callback'],
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'groups', 'offline_access'],
  claims: { openid: ['sub'], profile: ['preferred_username', 'uid'], groups: ['groups'] },
  clientBasedCORS: () => true,
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: !args['no-device'] },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => args.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== args.audience) throw new Error(`unknown resource ${resource}`);
        return { scope: 'jobs', audience: args.audience, accessTokenFormat: 'jwt', accessTokenTTL: 600, jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  // JWT access tokens carry the claims the bridge maps.
  extraTokenClaims: (ctx, token) => (token.kind === 'AccessToken' ? claimsOf(bySub[token.accountId]) : undefined),
  findAccount: (ctx, sub) => (bySub[sub] ? { accountId: sub, claims: () => claimsOf(bySub[sub]) } : undefined),
  ttl: { AccessToken: 600, DeviceCode: 600, Grant: 3600, Interaction: 600, Session: 3600, IdToken: 600, RefreshToken: 3600 },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, message) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1><p id="message">${escape(message)}</p>
<form id="login" method="post" action="/interaction/${escape(uid)}/login">
<input name="login" id="idp-login" placeholder="login" autofocus>
<input name="password" id="idp-password" type="password" placeholder="password">
<button type="submit" id="idp-submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

// Consent is given at once for whatever the client asked.
async function grantAll(req, res, details) {
  const { prompt, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = (await import('node:http')).createServer(async (req, res) => {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(req.url.split('?')[0]);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (match[2] && req.method === 'POST') {
      const form = await readForm(req);
      const account = ACCOUNTS[form.login];
      if (!account || form.password !== password(form.login)) {
        res.writeHead(401, { 'content-type': 'text/html' });
        return res.end(loginPage(details.uid, 'wrong login or password'));
      }
      return await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
    }
    if (details.prompt.name === 'login') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(loginPage(details.uid, 'Sign in to continue'));
    }
    return await grantAll(req, res, details);
  } catch (err) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${err.message}`);
  }
});
server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`test IdP ${issuer} (signing key ${keys[0].kid})`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
