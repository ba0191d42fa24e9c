// Databunker's published Node.js clients, used exactly as their READMEs show, against a
// vaultd at VAULT_URL with token VAULT_TOKEN. Run by vaultd/tests/databunker_clients.rs,
// which creates the legal basis `privacy-accept` (module signup-page, type consent) first.
// Exits non-zero at the first call that does not behave as it does against Databunker.
'use strict';

const assert = require('node:assert/strict');
const http = require('node:http');
const axios = require('axios');
const session = require('express-session');
const { v4: uuidv4 } = require('uuid');
const DatabunkerStore = require('@databunker/store');
const DataBunkerSessionStore = require('@databunker/session-store')(session);

const url = process.env.VAULT_URL;
const token = process.env.VAULT_TOKEN;
const run = uuidv4().slice(0, 8); // fresh identifiers, so the script can run twice
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function storeClient() {
  const databunker = new DatabunkerStore({ url, token });
  const email = `ann-${run}@example.com`;
  const phone = String(parseInt(run, 16) % 10000000).padStart(7, '4');

  // Users: create, get by every identifier, set (a merge), and the errors a client sees.
  const created = await databunker.users.create({ first: 'Ann', login: `ann-${run}`, email, phone });
  assert.equal(created.status, 'ok', JSON.stringify(created));
  assert.match(created.token, UUID);
  for (const [mode, id] of [['login', `ann-${run}`], ['email', email.toUpperCase()], ['token', created.token]]) {
    const user = await databunker.users.get(mode, id);
    assert.equal(user.status, 'ok', `${mode}: ${JSON.stringify(user)}`);
    assert.equal(user.token, created.token);
    assert.equal(user.data.first, 'Ann');
  }
  const changed = await databunker.users.set('token', created.token, { lastLoginAt: 1700000000 });
  assert.equal(changed.status, 'ok', JSON.stringify(changed));
  const read = await databunker.users.get('login', `ann-${run}`);
  assert.deepEqual(read.data, { first: 'Ann', login: `ann-${run}`, email, phone, lastLoginAt: 1700000000 });
  const missing = await databunker.users.get('login', `nobody-${run}`);
  assert.equal(missing.status, 'error');
  assert.equal(typeof missing.message, 'string');
  const duplicate = await databunker.users.create({ login: `ann-${run}` });
  assert.equal(duplicate.status, 'error', JSON.stringify(duplicate));

  // Legal bases for the sign-up page, as the README's loadSignupAgreements does it.
  const all = await databunker.agreements.rawlist();
  assert.equal(all.status, 'ok', JSON.stringify(all));
  const signup = all.rows.filter((r) => r.module === 'signup-page' && r.basistype === 'consent');
  assert.deepEqual(signup.map((r) => r.brief), ['privacy-accept']);

  // Accept (with a body, and with none), then withdraw; the vault shows each state.
  const agreement = async () =>
    (await axios.get(`${url}/v1/agreement/privacy-accept/email/${email}`, { headers: { 'X-Bunker-Token': token } }))
      .data;
  assert.equal((await databunker.agreements.accept('email', email, 'privacy-accept', {})).status, 'ok');
  assert.equal((await agreement()).data.status, 'yes');
  assert.equal((await databunker.agreements.withdraw('email', email, 'privacy-accept')).status, 'ok');
  assert.equal((await agreement()).data.status, 'no');
  assert.equal((await databunker.agreements.accept('token', created.token, 'privacy-accept')).status, 'ok');
  assert.equal((await agreement()).data.status, 'yes');
  const unknownBasis = await databunker.agreements.accept('email', email, `nothing-${run}`, {});
  assert.equal(unknownBasis.status, 'error', JSON.stringify(unknownBasis));

  // App collections: set creates, set again replaces, get reads; another app has nothing.
  const collection = databunker.collection('data');
  assert.equal((await collection.set('token', created.token, { country: 'EU' })).status, 'ok');
  assert.equal((await collection.set('token', created.token, { country: 'US', tier: 2 })).status, 'ok');
  const appData = await collection.get('email', email);
  assert.equal(appData.status, 'ok', JSON.stringify(appData));
  assert.deepEqual(appData.data, { country: 'US', tier: 2 });
  assert.equal((await databunker.collection('other').get('token', created.token)).status, 'error');
  return email;
}

// The session store's callbacks as promises.
function call(store, method, ...args) {
  return new Promise((resolve) => store[method](...args, (error, value) => resolve({ error, value })));
}

async function sessionStore(subjectEmail) {
  const store = new DataBunkerSessionStore({ url: `${url}/`, token });
  const sid = uuidv4();
  assert.deepEqual(await call(store, 'get', sid), { error: null, value: null }, 'a session not saved yet');
  const saved = { cookie: { originalMaxAge: 60000, expires: new Date(Date.now() + 60000).toISOString(), httpOnly: true, path: '/' }, count: 1 };
  assert.deepEqual(await call(store, 'set', sid, saved), { error: null, value: null });
  assert.deepEqual(await call(store, 'get', sid), { error: null, value: saved });
  assert.deepEqual(await call(store, 'touch', sid, { ...saved, count: 2 }), { error: null, value: null });
  assert.equal((await call(store, 'get', sid)).value.count, 2);
  assert.equal((await call(store, 'destroy', sid)).error, undefined);
  assert.deepEqual(await call(store, 'get', sid), { error: null, value: null }, 'a destroyed session');
  assert.equal((await call(store, 'destroy', uuidv4())).error, undefined, 'destroying a session never saved');
  // An application's own `expiration` field (a Date here) is kept, not refused: a refusal
  // would crash the application inside the store's error handler.
  const dated = { ...saved, expiration: new Date().toISOString() };
  const datedSid = uuidv4();
  assert.deepEqual(await call(store, 'set', datedSid, dated), { error: null, value: null });
  assert.deepEqual(await call(store, 'get', datedSid), { error: null, value: dated });

  // express-session as an application mounts it: a visit counter kept across requests.
  const middleware = session({
    genid: () => uuidv4(),
    secret: 'JustASecret',
    resave: false,
    saveUninitialized: true,
    store,
  });
  let app;
  const server = http.createServer((req, res) => {
    middleware(req, res, () => {
      const email = new URL(req.url, app).searchParams.get('email');
      if (email) req.session.email = email;
      req.session.count = (req.session.count || 0) + 1;
      res.end(String(req.session.count));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  app = `http://127.0.0.1:${server.address().port}/`;
  try {
    const first = await axios.get(app);
    assert.equal(first.data, 1);
    const cookie = first.headers['set-cookie'][0].split(';')[0];
    assert.equal((await axios.get(app, { headers: { Cookie: cookie } })).data, 2);
    assert.equal((await axios.get(app, { headers: { Cookie: cookie } })).data, 3);
    assert.equal((await axios.get(app)).data, 1, 'a visitor without the cookie starts afresh');

    // An application keeps a visitor's email in the session before sign-up: the session
    // is kept (unlinked). A subject's email links the session to that subject.
    const visitorEmail = `visitor-${run}@example.com`;
    for (const email of [visitorEmail, subjectEmail]) {
      const visit = await axios.get(`${app}?email=${encodeURIComponent(email)}`);
      assert.equal(visit.data, 1, email);
      const visitCookie = visit.headers['set-cookie'][0].split(';')[0];
      assert.equal((await axios.get(app, { headers: { Cookie: visitCookie } })).data, 2, email);
    }
    const headers = { 'X-Bunker-Token': token };
    const listed = (await axios.get(`${url}/v1/sessions/email/${subjectEmail}`, { headers })).data;
    assert.equal(listed.total, 1, JSON.stringify(listed));
    assert.equal(listed.rows[0].data.email, subjectEmail);
    assert.equal(listed.rows[0].data.count, 2);
    const visitor = await axios.get(`${url}/v1/sessions/email/${visitorEmail}`, { headers, validateStatus: null });
    assert.equal(visitor.status, 404, 'a visitor who is not a subject has no sessions listed');
  } finally {
    server.close();
  }
}

(async () => {
  const subjectEmail = await storeClient();
  console.log('@databunker/store: ok');
  await sessionStore(subjectEmail);
  console.log('@databunker/session-store: ok');
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
