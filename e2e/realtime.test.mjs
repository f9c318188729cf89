// Subscriptions with the real `graphql-ws` client (what Apollo and urql use), against a
// started dev server: delivery to the right subscribers in order, refusals, and the
// gap-free recipe across a dropped connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { startServer, gql, createApp } from './server.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server?.stop());

const ON_MESSAGE = 'subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { chatNumber number body } }';
const ON_INBOX = 'subscription($a: ID!) { onInboxMessage(appToken: $a) { chatNumber number } }';
const SEND = 'mutation($a: ID!, $c: Int!, $b: String!) { sendMessage(appToken: $a, chatNumber: $c, body: $b) { appToken chatNumber number body } }';
const OPEN = 'mutation($a: ID!) { createChat(appToken: $a) { number } }';

function client(token, options = {}) {
  return createClient({ url: server.wsUrl, webSocketImpl: WebSocket, connectionParams: { Authorization: token }, lazy: false, retryAttempts: 0, ...options });
}

// Subscribes and resolves once the server acknowledged the subscription is live: the
// protocol has no subscribe-ack, so a query sent after it on the same socket is the fence.
async function subscribe(c, query, variables, sink) {
  const dispose = c.subscribe({ query, variables }, sink);
  await new Promise((resolve, reject) => c.subscribe({ query: '{ __typename }' }, { next: () => {}, error: reject, complete: resolve }));
  return dispose;
}

const until = async (predicate, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('messages sent over HTTP reach the right subscribers, in order, exactly once', async () => {
  const app = await createApp(server.url, 'Realtime');
  const [c1, c2, agent] = [app.customer('c1'), app.customer('c2'), app.agent('a1')];
  const chat1 = (await gql(server.url, c1, OPEN, { a: app.token })).createChat.number;
  const chat2 = (await gql(server.url, c2, OPEN, { a: app.token })).createChat.number;
  const got = { c1: [], c2: [], inbox: [] };
  const clients = [client(c1), client(c2), client(agent)];
  // Errors are collected and asserted before teardown (closing a client reports a close
  // event to its sinks, which is not a failure of the test).
  const errors = [];
  const fail = (e) => errors.push(e);
  const unsubscribe = [
    await subscribe(clients[0], ON_MESSAGE, { a: app.token, c: chat1 }, { next: (r) => got.c1.push(r.data.onMessage), error: fail }),
    await subscribe(clients[1], ON_MESSAGE, { a: app.token, c: chat2 }, { next: (r) => got.c2.push(r.data.onMessage), error: fail }),
    await subscribe(clients[2], ON_INBOX, { a: app.token }, { next: (r) => got.inbox.push(r.data.onInboxMessage), error: fail }),
  ];

  for (let i = 1; i <= 20; i++) {
    await gql(server.url, c1, SEND, { a: app.token, c: chat1, b: `one ${i}` });
    if (i % 4 === 0) await gql(server.url, agent, SEND, { a: app.token, c: chat2, b: `two ${i}` });
  }
  await until(() => got.c1.length >= 20 && got.c2.length >= 5 && got.inbox.length >= 25);
  await new Promise((r) => setTimeout(r, 200)); // anything extra would show up now

  assert.deepEqual(errors, []);
  assert.deepEqual(got.c1.map((m) => m.number), Array.from({ length: 20 }, (_, i) => i + 1));
  assert.ok(got.c1.every((m) => m.chatNumber === chat1));
  assert.deepEqual(got.c2.map((m) => m.body), ['two 4', 'two 8', 'two 12', 'two 16', 'two 20']);
  assert.equal(got.inbox.length, 25);
  assert.equal(new Set(got.inbox.map((m) => `${m.chatNumber}/${m.number}`)).size, 25);
  unsubscribe.forEach((stop) => stop());
  await Promise.all(clients.map((c) => c.dispose()));
});

test("a customer cannot subscribe to another customer's chat or to the inbox", async () => {
  const app = await createApp(server.url, 'Refusals');
  const owner = app.customer('owner');
  const chat = (await gql(server.url, owner, OPEN, { a: app.token })).createChat.number;
  const stranger = client(app.customer('stranger'));
  const refusal = (query, variables) => new Promise((resolve) => {
    stranger.subscribe({ query, variables }, {
      next: (r) => resolve({ next: r }),
      error: (errors) => resolve({ errors }),
      complete: () => resolve({ complete: true }),
    });
  });
  const toChat = await refusal(ON_MESSAGE, { a: app.token, c: chat });
  assert.equal(toChat.errors?.[0]?.extensions?.code, 'NotFound', JSON.stringify(toChat));
  const toInbox = await refusal(ON_INBOX, { a: app.token });
  assert.equal(toInbox.errors?.[0]?.extensions?.code, 'Forbidden', JSON.stringify(toInbox));
  await stranger.dispose();
});

test('after a dropped connection, resubscribing and fetching messages(after: lastSeen) loses nothing', async () => {
  const app = await createApp(server.url, 'Gaps');
  const [customer, agent] = [app.customer('c1'), app.agent('a1')];
  const chat = (await gql(server.url, customer, OPEN, { a: app.token })).createChat.number;
  const seen = new Map(); // number -> body: duplicates collapse
  let lastSeen = 0;
  const keep = (m) => {
    seen.set(m.number, m.body);
    while (seen.has(lastSeen + 1)) lastSeen++;
  };
  const catchUp = async () => {
    for (;;) {
      const page = (await gql(server.url, customer, 'query($a: ID!, $c: Int!, $after: Int) { messages(appToken: $a, chatNumber: $c, after: $after, limit: 100) { items { number body } } }', { a: app.token, c: chat, after: lastSeen })).messages.items;
      if (page.length === 0) return;
      page.forEach(keep);
    }
  };
  // The recipe: on every (re)connection, catch up after the subscription is live.
  let connections = 0;
  const c = client(customer, {
    retryAttempts: 5,
    retryWait: () => new Promise((r) => setTimeout(r, 50)),
    shouldRetry: () => true,
    on: { connected: () => { connections++; } },
  });
  const errors = [];
  const unsubscribe = await subscribe(c, ON_MESSAGE, { a: app.token, c: chat }, { next: (r) => keep(r.data.onMessage), error: (e) => errors.push(e) });
  await catchUp();

  const total = 60;
  const sending = (async () => {
    for (let i = 1; i <= total; i++) {
      await gql(server.url, agent, SEND, { a: app.token, c: chat, b: `m${i}` });
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  await until(() => seen.size >= 10);
  c.terminate(); // the socket drops mid-stream, no goodbye; the client reconnects
  await until(() => connections >= 2);
  await catchUp();
  await sending;
  await until(() => lastSeen >= total);
  assert.deepEqual([...seen.keys()].sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i + 1));
  assert.ok(connections >= 2, 'the client really reconnected');
  assert.deepEqual(errors, [], 'the subscription survived the drop (the client retried)');
  unsubscribe();
  await c.dispose();
});
