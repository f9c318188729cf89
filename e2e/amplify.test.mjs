// The real Amplify JS client (aws-amplify 6.22.1), configured as an app would be for AppSync
// with the `lambda` (custom token) auth mode, pointed at the dev server by changing only the
// endpoint and the token: queries, mutations, and subscriptions over AppSync's real-time
// protocol.
//
// Amplify derives its real-time URL from the GraphQL endpoint and always uses wss://
// (http://127.0.0.1:PORT/graphql -> wss://127.0.0.1:PORT/graphql/realtime), so the server
// runs with a certificate (CHAT_TLS_CERT / CHAT_TLS_KEY) on its one port, and the client
// trusts the certificate's CA, as a browser trusts mkcert's. Node 20 has no global
// WebSocket: it comes from `ws`, given that CA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startServer, gql, createApp } from './server.mjs';

// A CA and a certificate for localhost and 127.0.0.1 that it signed (what mkcert makes).
const certs = mkdtempSync(path.join(tmpdir(), 'chat-amplify-'));
const openssl = (...args) => execFileSync('openssl', args, { cwd: certs, stdio: ['ignore', 'ignore', 'pipe'] });
writeFileSync(path.join(certs, 'leaf.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=chat test CA');
openssl('req', ...ec, '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', '/CN=localhost');
openssl('x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'tls.crt', '-days', '2', '-extfile', 'leaf.ext');
process.env.CHAT_TLS_CERT = path.join(certs, 'tls.crt');
process.env.CHAT_TLS_KEY = path.join(certs, 'tls.key');

const ca = readFileSync(path.join(certs, 'ca.crt'));
globalThis.WebSocket = class extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { ca });
  }
};

const ON_MESSAGE = /* GraphQL */ `subscription OnMessage($a: ID!, $c: Int!) {
  onMessage(appToken: $a, chatNumber: $c) { appToken chatNumber number body senderId }
}`;
const OPEN = 'mutation Open($a: ID!, $s: String) { createChat(appToken: $a, subject: $s) { appToken number subject } }';
const SEND = 'mutation Send($a: ID!, $c: Int!, $b: String!, $k: ID) { sendMessage(appToken: $a, chatNumber: $c, body: $b, clientMessageId: $k) { appToken chatNumber number body senderId } }';
const MESSAGES = 'query Messages($a: ID!, $c: Int!) { messages(appToken: $a, chatNumber: $c, limit: 100) { items { number body senderId } nextToken } }';

let server;
let Amplify;
let generateClient;
let Hub;
before(async () => {
  server = await startServer();
  // Loaded after the global WebSocket is in place.
  ({ Amplify } = await import('aws-amplify'));
  ({ generateClient } = await import('aws-amplify/api'));
  ({ Hub } = await import('aws-amplify/utils'));
  // What an app has for AppSync, with the dev server's endpoint.
  Amplify.configure({
    API: {
      GraphQL: {
        endpoint: `${server.url}/graphql`,
        region: 'us-east-1',
        defaultAuthMode: 'lambda',
      },
    },
  });
});
after(() => {
  server?.stop();
  rmSync(certs, { recursive: true, force: true });
});

// One client per signed-in user, as an app makes it with the user's token.
const clientFor = (token, options = {}) => generateClient({ authMode: 'lambda', authToken: token, ...options });

const until = async (predicate, what, ms = 15_000) => {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

// Subscribes; `live` resolves once the server acknowledged the start (start_ack), so that
// what is sent afterwards is delivered, and rejects if the subscription fails first.
function subscribe(client, query, variables, { next, error }) {
  let stopListening;
  let failed;
  const acknowledged = new Promise((resolve, reject) => {
    failed = reject;
    stopListening = Hub.listen('api', ({ payload }) => {
      if (payload.event === 'Subscription ack' && JSON.stringify(payload.data?.variables) === JSON.stringify(variables)) {
        resolve();
      }
    });
  });
  const subscription = client.graphql({ query, variables }).subscribe({
    next,
    error: (e) => {
      failed(new Error(`the subscription failed: ${JSON.stringify(e)}`));
      error(e);
    },
  });
  return { subscription, live: acknowledged.finally(() => stopListening()) };
}

test('queries and mutations go over HTTP with the lambda auth mode, errors in AppSync shape', async () => {
  const app = await createApp(server.url, 'Amplify queries');
  const customer = clientFor(app.customer('c1'));
  const agent = clientFor(app.agent('a1'));

  const opened = await customer.graphql({ query: OPEN, variables: { a: app.token, s: 'Late order' } });
  assert.deepEqual(opened.data.createChat, { appToken: app.token, number: 1, subject: 'Late order' });
  await customer.graphql({ query: SEND, variables: { a: app.token, c: 1, b: 'Where is order 1234?', k: 'c1-1' } });
  await agent.graphql({ query: SEND, variables: { a: app.token, c: 1, b: 'Checking now' } });
  const page = await customer.graphql({ query: MESSAGES, variables: { a: app.token, c: 1 } });
  assert.deepEqual(page.data.messages.items.map((m) => [m.number, m.body, m.senderId]), [
    [1, 'Where is order 1234?', 'c1'],
    [2, 'Checking now', 'a1'],
  ]);

  // Another customer's chat: Amplify throws the response, whose errors carry AppSync's
  // errorType.
  const stranger = clientFor(app.customer('stranger'));
  await assert.rejects(
    stranger.graphql({ query: MESSAGES, variables: { a: app.token, c: 1 } }),
    (response) => {
      assert.equal(response.errors?.[0]?.errorType, 'NotFound', JSON.stringify(response));
      assert.equal(response.errors[0].extensions?.code, 'NotFound');
      return true;
    },
  );
});

test("a subscription receives another client's messages, in order, exactly once", async () => {
  const app = await createApp(server.url, 'Amplify subscriptions');
  const [customerToken, agentToken] = [app.customer('c1'), app.agent('a1')];
  const customer = clientFor(customerToken);
  const agent = clientFor(agentToken);
  const chat = (await customer.graphql({ query: OPEN, variables: { a: app.token } })).data.createChat.number;

  const got = [];
  const errors = [];
  const { subscription, live } = subscribe(customer, ON_MESSAGE, { a: app.token, c: chat }, {
    next: ({ data }) => got.push(data.onMessage),
    error: (e) => errors.push(e),
  });
  await live;

  const total = 20;
  for (let i = 1; i <= total; i++) {
    // The agent answers from its own client; a plain HTTP client sends too.
    if (i % 5 === 0) {
      await gql(server.url, agentToken, SEND, { a: app.token, c: chat, b: `plain ${i}` });
    } else {
      await agent.graphql({ query: SEND, variables: { a: app.token, c: chat, b: `agent ${i}` } });
    }
  }
  await until(() => got.length >= total, `${total} messages (got ${got.length})`);
  await new Promise((r) => setTimeout(r, 200)); // anything extra would show up now

  assert.deepEqual(errors, []);
  assert.deepEqual(got.map((m) => m.number), Array.from({ length: total }, (_, i) => i + 1));
  assert.ok(got.every((m) => m.appToken === app.token && m.chatNumber === chat && m.senderId === 'a1'));
  assert.equal(got[4].body, 'plain 5');
  assert.equal(got[5].body, 'agent 6');
  subscription.unsubscribe();
});

test('a refused subscription surfaces as an error in the client', async () => {
  const app = await createApp(server.url, 'Amplify refusals');
  const owner = clientFor(app.customer('owner'));
  const chat = (await owner.graphql({ query: OPEN, variables: { a: app.token } })).data.createChat.number;

  const stranger = clientFor(app.customer('stranger'));
  const outcome = await new Promise((resolve) => {
    stranger.graphql({ query: ON_MESSAGE, variables: { a: app.token, c: chat } }).subscribe({
      next: (value) => resolve({ next: value }),
      error: (error) => resolve({ error }),
    });
  });
  assert.ok(outcome.error, JSON.stringify(outcome));
  const message = outcome.error.errors?.[0]?.message ?? '';
  assert.match(message, /^Connection failed: /, JSON.stringify(outcome.error));
  assert.match(message, /"errorType":"NotFound"/, message);
});

test('a token the server does not accept fails the connection without retrying', async () => {
  const app = await createApp(server.url, 'Amplify bad token');
  const owner = app.customer('owner');
  const chat = (await gql(server.url, owner, OPEN, { a: app.token })).createChat.number;
  // Another endpoint spelling, so that Amplify opens a connection of its own for it.
  const endpoint = `${server.url.replace('127.0.0.1', 'localhost')}/graphql`;
  const forged = clientFor(`${owner.slice(0, -4)}AAAA`, { endpoint });
  const started = Date.now();
  const outcome = await new Promise((resolve) => {
    forged.graphql({ query: ON_MESSAGE, variables: { a: app.token, c: chat } }).subscribe({
      next: (value) => resolve({ next: value }),
      error: (error) => resolve({ error }),
    });
  });
  assert.ok(outcome.error, JSON.stringify(outcome));
  assert.match(outcome.error.errors?.[0]?.message ?? '', /UnauthorizedException/, JSON.stringify(outcome.error));
  // connection_error with errorCode 401 is not retried (Amplify would back off for seconds).
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
});
