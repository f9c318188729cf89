// The web console (console/, served by chat-server at /) in a real browser: Debian's
// chromium driven by playwright-core. An agent and a customer, in two browser contexts,
// exchange messages live; the agent's badges and the page title follow; "Mark all read"
// clears them; search highlights a partial word; scrolling up loads the whole history.
// Presence: the widget says whether an agent is online and viewing the chat, the inbox
// marks the chats their customer is viewing, each side sees the other typing.
// AppSync's real-time protocol (?realtime=appsync): live messages, viewers and typing, and a
// connection dropped under the agent recovers without losing a message (graphql-transport-ws
// too). A foreign
// ?endpoint= or ?ws= is blocked by the page's Content-Security-Policy: no token leaves.
// Screenshots of the agent view go to e2e/artifacts/ (git-ignored).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer, gql, mintToken, ADMIN_KEY } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const STEP_MS = 15_000; // any single wait in the browser
const TEST_MS = 180_000; // a whole test, browser start included

let server;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_BIN`);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer();
  // launch() gives the browser a fresh temporary user-data-dir of its own (deleted on
  // close); each newContext() below is a separate, empty profile within it.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}, { timeout: 90_000 });

after(async () => {
  try {
    await browser?.close();
  } finally {
    server?.stop();
  }
}, { timeout: 30_000 });

async function createApplication(name) {
  const data = await gql(server.url, ADMIN_KEY, 'mutation($n: String!) { createApplication(name: $n) { application { token } secret } }', { n: name });
  return { token: data.createApplication.application.token, secret: data.createApplication.secret };
}

const SEND = 'mutation($a: ID!, $c: Int!, $b: String!) { sendMessage(appToken: $a, chatNumber: $c, body: $b) { appToken chatNumber number body senderId senderRole createdAt deleted } }';

/** A page whose errors (exceptions, console errors such as CSP violations) are collected. */
async function openPage(path, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const errors = [];
  page.on('pageerror', (error) => errors.push(`exception: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  await page.goto(path.startsWith('http') ? path : `${server.url}${path}`);
  return { context, page, errors };
}

const text = (page, selector) => page.locator(selector).innerText();
const waitForTitle = (page, title) => page.waitForFunction((t) => document.title === t, title);
const chatLink = (page, number) => page.locator(`#chat-list a[data-chat="${number}"]`);
const messageTexts = (page) => page.locator('#message-list .message-body').allInnerTexts();

/** The unread badge of chat `number` in the agent's inbox ('' when it has none). */
function badge(page, number) {
  // One read in the page: the inbox re-renders while we look.
  return page.evaluate((n) => {
    const badge = document.querySelector(`#chat-list a[data-chat="${n}"] .badge`);
    return badge ? badge.firstChild.textContent : '';
  }, number);
}

/** Polls `probe` until it returns something truthy (returned), failing after STEP_MS. */
async function until(probe, what) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function waitForBadge(page, number, expected) {
  let seen;
  await until(async () => (seen = await badge(page, number)) === expected,
    () => `chat #${number}'s badge to be ${JSON.stringify(expected)} (it is ${JSON.stringify(seen)})`);
}

/** Waits for an element matching `selector` that contains `text`. */
const waitForText = (page, selector, text) => page.locator(selector, { hasText: text }).first().waitFor();

/** Waits until the open chat's subscription is registered with the server. */
const waitLive = (page) => page.locator('#chat-live[data-state="live"]').waitFor();

test('an agent and a customer chat live; badges, title, mark all read, search and history follow', { timeout: TEST_MS }, async () => {
  const app = await createApplication('Console test');
  const dave = mintToken(app.secret, app.token, 'dave', 'CUSTOMER');
  const carol = mintToken(app.secret, app.token, 'carol', 'CUSTOMER');
  const seedAgent = mintToken(app.secret, app.token, 'seed-agent', 'AGENT');

  // Given chat #1, dave's, with 75 messages the agents have read.
  await gql(server.url, dave, 'mutation($a: ID!) { createChat(appToken: $a, subject: "Billing question") { number } }', { a: app.token });
  for (let i = 1; i <= 75; i++) {
    await gql(server.url, dave, SEND, { a: app.token, c: 1, b: `History line ${i}` });
  }
  await gql(server.url, seedAgent, 'mutation($a: ID!) { markChatRead(appToken: $a, chatNumber: 1) { lastReadNumber } }', { a: app.token });

  // The agent signs in with the development helper (a token minted by WebCrypto).
  const agent = await openPage('/');
  const a = agent.page;
  await a.locator('#dev-helper summary').click();
  await a.getByLabel('Application token').fill(app.token);
  await a.getByLabel('Application secret').fill(app.secret);
  await a.getByLabel('Agent id').fill('alice');
  await a.getByRole('button', { name: 'Mint a token and sign in' }).click();
  await waitForText(a, '#whoami', 'alice');
  await a.locator('#connection[data-state="live"]').waitFor();
  assert.equal(await a.locator('#mint-secret').inputValue(), '', 'the secret is not kept in the form');
  await chatLink(a, 1).waitFor();
  assert.equal(await badge(a, 1), '');
  assert.equal(await a.title(), 'Inbox — Chat console');

  // The customer signs in with a token from "its backend" and starts a chat.
  const customer = await openPage('/customer.html', { width: 480, height: 760 });
  const c = customer.page;
  await c.getByLabel('Customer token').fill(carol);
  await c.getByRole('button', { name: 'Sign in', exact: true }).click();
  await c.getByLabel('Subject (optional)').fill('Late order');
  await c.getByLabel('Your message').fill('Where is my refund?');
  await c.getByRole('button', { name: 'Start the conversation' }).click();
  await waitForText(c, '#chat-title', '#2 Late order');
  await waitLive(c);
  // Enter sends from the keyboard.
  await c.getByLabel('Message', { exact: true }).fill('Order 1234, still nothing');
  await c.getByLabel('Message', { exact: true }).press('Enter');
  await waitForText(c, '#message-list .message-body', 'Order 1234, still nothing');

  // The agent's inbox follows live: chat #2 on top with 2 unread, the total in the title.
  await waitForBadge(a, 2, '2');
  await waitForTitle(a, '(2) Inbox — Chat console');
  assert.equal(await a.locator('#chat-list a').first().getAttribute('data-chat'), '2', 'latest activity first');
  assert.equal(await text(a, '#total-unread'), '2');

  // Opening the chat shows its history and marks it read.
  await chatLink(a, 2).click();
  await waitForText(a, '#chat-title', '#2 Late order');
  await waitLive(a);
  await waitForBadge(a, 2, '');
  await waitForTitle(a, 'Inbox — Chat console');
  assert.deepEqual(await messageTexts(a), ['Where is my refund?', 'Order 1234, still nothing']);

  // The agent answers; the customer sees it arrive, announced to screen readers.
  await a.getByLabel('Reply').fill('Refunded yesterday: it shows in 3 days.');
  await a.getByRole('button', { name: 'Send', exact: true }).click();
  await waitForText(c, '#message-list .message-body', 'Refunded yesterday: it shows in 3 days.');
  await c.waitForFunction(() => document.getElementById('announcer').textContent.startsWith('New message from alice'));

  // The customer replies; the agent has the chat open and in view, so it is read at once.
  const thanks = 'Thanks, that is fundamentally good news.';
  await c.getByLabel('Message', { exact: true }).fill(thanks);
  await c.getByRole('button', { name: 'Send', exact: true }).click();
  await waitForText(a, '#message-list .message-body', thanks);
  await waitForText(a, '#chat-meta', '4 messages');
  await waitForBadge(a, 2, '');

  // Messages to another chat raise its badge and the title while chat #2 stays open.
  await gql(server.url, dave, SEND, { a: app.token, c: 1, b: 'Any update on my invoice?' });
  await gql(server.url, dave, SEND, { a: app.token, c: 1, b: 'Hello?' });
  await waitForBadge(a, 1, '2');
  await waitForTitle(a, '(2) Inbox — Chat console');
  assert.equal(await a.locator('#chat-list a').first().getAttribute('data-chat'), '1');
  assert.equal(await badge(a, 2), '');
  assert.equal(await text(a, '#total-unread'), '2');
  await a.screenshot({ path: `${ARTIFACTS}agent-inbox.png` });

  // Search finds a partial word ("fund" in refund, Refunded, fundamentally) and marks it.
  // Indexing lags a send by about 0.1 s: search again until all three are found.
  const searchBox = a.getByRole('searchbox', { name: 'Search this chat' });
  const search = async (query, count) => {
    await searchBox.fill(query);
    await until(async () => {
      await searchBox.press('Enter');
      await a.waitForFunction(() => !document.getElementById('search-heading').textContent.startsWith('Searching'));
      return (await a.locator('#search-list li').count()) >= count;
    }, () => `${count} results for ${query}`);
  };
  await search('fund', 3);
  const results = await a.locator('#search-list .result-body').allInnerTexts();
  assert.deepEqual(results.toSorted(), ['Refunded yesterday: it shows in 3 days.', thanks, 'Where is my refund?'].toSorted());
  const marks = await a.locator('#search-list mark').allInnerTexts();
  assert.deepEqual(marks.map((m) => m.toLowerCase()), ['fund', 'fund', 'fund']);
  assert.equal(await text(a, '#search-heading'), '3 messages match “fund”');
  // The picture for the README: badges, the title's total, a live chat, highlighted matches.
  await a.screenshot({ path: `${ARTIFACTS}agent-console.png` });
  // A result takes the keyboard to its message.
  await a.locator('#search-list .result', { hasText: 'Where is my refund?' }).click();
  await a.waitForFunction(() => document.activeElement?.dataset?.number === '1');

  // Mark all read clears every badge and the title; the server agrees.
  await a.getByRole('button', { name: 'Mark all read' }).click();
  await waitForTitle(a, 'Inbox — Chat console');
  await waitForBadge(a, 1, '');
  assert.equal(await a.locator('#chat-list .badge').count(), 0);
  assert.equal(await a.locator('#total-unread').isHidden(), true);
  const summary = await gql(server.url, seedAgent, 'query($a: ID!) { unreadSummary(appToken: $a) { totalUnread unreadChats } }', { a: app.token });
  assert.deepEqual(summary.unreadSummary, { totalUnread: 0, unreadChats: 0 });

  // Markup in a message is shown as text, never as HTML: in the chat, the inbox and search.
  const markup = '<b>Bold</b> & <img src=x onerror="window.hacked=1"> pwned?';
  await c.getByLabel('Message', { exact: true }).fill(markup);
  await c.getByRole('button', { name: 'Send', exact: true }).click();
  await waitForText(a, '#message-list .message-body', markup);
  await waitForText(a, `#chat-list a[data-chat="2"] .preview`, markup);
  await search('pwned', 1);
  assert.deepEqual(await a.locator('#search-list .result-body').allInnerTexts(), [markup]);
  assert.deepEqual(await a.locator('#search-list mark').allInnerTexts(), ['pwned']);
  assert.equal(await a.locator('#message-list b, #message-list img, #chat-list b, #chat-list img, #search-list b, #search-list img').count(), 0);
  assert.equal(await a.evaluate(() => window.hacked), undefined);
  await a.keyboard.press('Escape'); // the search box still has the focus: Escape closes the results
  await a.locator('#search-results').waitFor({ state: 'hidden' });

  // Chat #1: the newest page first; scrolling up loads the rest, in order, once each.
  await chatLink(a, 1).click();
  await waitForText(a, '#chat-title', '#1 Billing question');
  await waitForText(a, '#message-list .message-body', 'Hello?');
  assert.ok((await a.locator('#message-list li').count()) < 77, 'not everything at once');
  const box = await a.locator('#history').evaluate((h) => ({ scroll: h.scrollHeight, client: h.clientHeight, top: h.scrollTop }));
  assert.ok(box.client < 800 && box.scroll > box.client, `the history scrolls within the page: ${JSON.stringify(box)}`);
  assert.ok(box.top >= box.scroll - box.client - 1, 'it opens at the newest message');
  await until(async () => {
    await a.locator('#history').evaluate((history) => { history.scrollTop = 0; });
    return (await a.locator('#message-list li').count()) === 77;
  }, () => 'scrolling up to load the whole history');
  await waitForText(a, '#history-start', 'Start of the conversation');
  const numbers = await a.locator('#message-list li').evaluateAll((items) => items.map((li) => Number(li.dataset.number)));
  assert.deepEqual(numbers, Array.from({ length: 77 }, (_, i) => i + 1));
  assert.equal((await messageTexts(a))[0], 'History line 1');

  // Resolving the chat shows in the inbox and in the store.
  await a.getByLabel('Status', { exact: true }).selectOption('RESOLVED');
  await chatLink(a, 1).locator('.status-resolved').waitFor();
  const chat = await gql(server.url, seedAgent, 'query($a: ID!) { chat(appToken: $a, number: 1) { status } }', { a: app.token });
  assert.equal(chat.chat.status, 'RESOLVED');

  // The customer's view: its one chat, all four messages in order.
  assert.deepEqual(await messageTexts(c), ['Where is my refund?', 'Order 1234, still nothing', 'Refunded yesterday: it shows in 3 days.', thanks, markup]);

  await c.screenshot({ path: `${ARTIFACTS}customer.png` });

  // The session lasts as long as the tab: a reload signs in again; Sign out forgets it.
  await a.reload();
  await waitForText(a, '#whoami', 'alice');
  await waitForText(a, '#chat-title', '#1 Billing question');
  await a.getByRole('button', { name: 'Sign out' }).click();
  await a.locator('#sign-in-view').waitFor();
  assert.equal(await a.locator('#console-view').isHidden(), true);
  assert.equal(await a.evaluate(() => sessionStorage.getItem('chat-console.agent')), null);
  assert.equal(await a.title(), 'Inbox — Chat console');

  assert.deepEqual(agent.errors, []);
  assert.deepEqual(customer.errors, []);
  await agent.context.close();
  await customer.context.close();
});

test('the customer widget without WebSockets (?realtime=poll), signed in with the development helper', { timeout: TEST_MS }, async () => {
  const app = await createApplication('Console poll test');
  const agentToken = mintToken(app.secret, app.token, 'bob', 'AGENT');

  const customer = await openPage('/customer.html?realtime=poll');
  const c = customer.page;
  // A token of the wrong role is refused with a pointer to the right view.
  await c.getByLabel('Customer token').fill(agentToken);
  await c.getByRole('button', { name: 'Sign in', exact: true }).click();
  await waitForText(c, '#signin-error', "the token's role is AGENT");

  await c.locator('#dev-helper summary').click();
  await c.getByLabel('Application token').fill(app.token);
  await c.getByLabel('Application secret').fill(app.secret);
  await c.getByLabel('Customer id').fill('erin');
  await c.getByRole('button', { name: 'Mint a token and sign in' }).click();
  await c.locator('#connection[data-state="polling"]').waitFor();
  await c.getByLabel('Your message').fill('Is anyone there?');
  await c.getByRole('button', { name: 'Start the conversation' }).click();
  await waitForText(c, '#message-list .message-body', 'Is anyone there?');

  // An agent answers over HTTP: the widget shows it at its next poll (every 5 s).
  await gql(server.url, agentToken, SEND, { a: app.token, c: 1, b: 'Yes, Bob here.' });
  await waitForText(c, '#message-list .message-body', 'Yes, Bob here.');
  assert.deepEqual(await messageTexts(c), ['Is anyone there?', 'Yes, Bob here.']);
  // The widget marked it read: the customer's watermark moved.
  const erin = mintToken(app.secret, app.token, 'erin', 'CUSTOMER');
  const chat = await until(async () => {
    const { chat: seen } = await gql(server.url, erin, 'query($a: ID!) { chat(appToken: $a, number: 1) { customerLastRead unreadCount } }', { a: app.token });
    return seen.customerLastRead === 2 && seen;
  }, () => "the customer's watermark to reach 2");
  assert.deepEqual(chat, { customerLastRead: 2, unreadCount: 0 });

  assert.deepEqual(customer.errors, []);
  await customer.context.close();
});

const HEARTBEAT = 'mutation($a: ID!, $s: PresenceStatus, $c: Int) { heartbeat(appToken: $a, status: $s, chatNumber: $c) { status } }';
const TYPING = 'mutation($a: ID!, $c: Int!) { typing(appToken: $a, chatNumber: $c) { userId } }';
const PRESENCES = 'query($a: ID!, $r: Role) { presences(appToken: $a, role: $r) { items { userId status chatNumber } } }';

async function signIn(page, label, token) {
  await page.getByLabel(label).fill(token);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

const isEmpty = (page, selector) => page.waitForFunction((s) => document.querySelector(s).textContent === '', selector);

test('presence: the widget sees an agent online, viewing and typing; the inbox sees the customer', { timeout: TEST_MS }, async () => {
  const app = await createApplication('Console presence test');
  const observer = mintToken(app.secret, app.token, 'observer', 'AGENT'); // reads, never heartbeats

  // Given a customer in the widget with a conversation open, and no agent signed in.
  const customer = await openPage('/customer.html', { width: 480, height: 760 });
  const c = customer.page;
  await signIn(c, 'Customer token', mintToken(app.secret, app.token, 'carol', 'CUSTOMER'));
  await waitForText(c, '#availability', "We're away — we'll reply by email");
  await c.getByLabel('Subject (optional)').fill('Parcel');
  await c.getByLabel('Your message').fill('Where is my parcel?');
  await c.getByRole('button', { name: 'Start the conversation' }).click();
  await waitForText(c, '#chat-title', '#1 Parcel');
  await waitLive(c);

  // When an agent signs in, the widget says an agent is online, and the agent's inbox marks
  // the chat its customer is viewing.
  const agent = await openPage('/');
  const a = agent.page;
  await signIn(a, 'Agent token', mintToken(app.secret, app.token, 'alice', 'AGENT'));
  await waitForText(c, '#availability', 'An agent is online');
  await chatLink(a, 1).locator('.viewing').waitFor();
  await waitForText(a, '#agent-list .presence-online', 'alice (you)');
  await waitForText(a, '#team-summary', '1 online, 0 away');

  // The agent opens the chat: each side sees the other there.
  await chatLink(a, 1).click();
  await waitLive(a);
  await waitForText(c, '#chat-viewers', 'An agent is viewing this chat');
  await waitForText(a, '#chat-viewers', 'Viewing now: carol (customer)');

  // The customer types: the agent sees it (the customer does not see itself), until the
  // message arrives.
  await c.getByLabel('Message', { exact: true }).fill('It was due Monday');
  await waitForText(a, '#typing', 'carol is typing…');
  await a.screenshot({ path: `${ARTIFACTS}agent-presence.png` });
  assert.equal(await text(c, '#typing'), '');
  await c.getByLabel('Message', { exact: true }).press('Enter');
  await waitForText(a, '#message-list .message-body', 'It was due Monday');
  await isEmpty(a, '#typing');

  // The agent types: the customer sees it, and it goes away by itself when the typing stops.
  await a.getByLabel('Reply').fill('Let me check');
  await waitForText(c, '#typing', 'alice is typing…');
  await c.screenshot({ path: `${ARTIFACTS}customer-presence.png` });
  await isEmpty(c, '#typing');

  // The agent steps away: the widget turns to "away"; back online, it turns back.
  await a.getByLabel('Your status').selectOption('AWAY');
  await waitForText(c, '#availability', "We're away — we'll reply by email");
  await waitForText(a, '#agent-list .presence-away', 'alice (you)');
  await waitForText(a, '#team-summary', '0 online, 1 away');
  await a.getByLabel('Your status').selectOption('ONLINE');
  await waitForText(c, '#availability', 'An agent is online');

  // An agent id that is markup shows as text: in the team list, among the viewers, typing.
  const markup = '<img/src/onerror=window.hacked=1>';
  const intruder = mintToken(app.secret, app.token, markup, 'AGENT');
  await gql(server.url, intruder, HEARTBEAT, { a: app.token, c: 1 });
  await waitForText(a, '#agent-list .agent-name', markup);
  await waitForText(a, '#chat-viewers', `${markup} (agent)`);
  await waitForText(c, '#chat-viewers', '2 agents are viewing this chat');
  await gql(server.url, intruder, TYPING, { a: app.token, c: 1 });
  await waitForText(c, '#typing', `${markup} is typing…`);
  for (const page of [a, c]) {
    assert.equal(await page.locator('#agent-list img, #chat-viewers img, #typing img').count(), 0);
    assert.equal(await page.evaluate(() => window.hacked), undefined);
  }
  await gql(server.url, intruder, HEARTBEAT, { a: app.token, s: 'OFFLINE' });
  await waitForText(c, '#chat-viewers', 'An agent is viewing this chat');
  await a.locator('#agent-list .agent').filter({ hasText: markup }).waitFor({ state: 'detached' });

  // Signing out gives the presence up at once: the widget sees no agent there any more.
  await a.getByRole('button', { name: 'Sign out' }).click();
  await waitForText(c, '#availability', "We're away — we'll reply by email");
  await isEmpty(c, '#chat-viewers');
  // So does leaving the page (OFFLINE sent as it goes), long before the lease would end.
  await c.goto('about:blank');
  await until(async () => {
    const { presences } = await gql(server.url, observer, PRESENCES, { a: app.token });
    return presences.items.length === 0;
  }, () => 'every presence to end');

  assert.deepEqual(agent.errors, []);
  assert.deepEqual(customer.errors, []);
  await agent.context.close();
  await customer.context.close();
});

/**
 * A TCP relay in front of the dev server, so that a test can cut the WebSockets that pass
 * through it (the page sees the connection drop, as when a server or a network goes away).
 */
async function startRelay(target) {
  const { hostname, port } = new URL(target);
  const pairs = new Set();
  const relay = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    const pair = { client, upstream, websocket: false };
    pairs.add(pair);
    client.once('data', (chunk) => { pair.websocket = /^upgrade:\s*websocket/im.test(chunk.toString('latin1')); });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  });
  await new Promise((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${relay.address().port}`,
    /** Cuts every WebSocket going through; returns how many there were. */
    dropWebSockets() {
      const websockets = [...pairs].filter((pair) => pair.websocket);
      for (const { client, upstream } of websockets) {
        client.destroy();
        upstream.destroy();
      }
      return websockets.length;
    },
    close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      relay.close();
    },
  };
}

test("the agent console over AppSync's real-time protocol: live messages, viewers, typing, a dropped connection", { timeout: TEST_MS }, async () => {
  const app = await createApplication('Console AppSync test');
  const carol = mintToken(app.secret, app.token, 'carol', 'CUSTOMER');
  const relay = await startRelay(server.url);
  try {
    // Given the agent console through the relay and the customer widget, both on AppSync's
    // protocol.
    const agent = await openPage(`${relay.url}/?realtime=appsync`);
    const a = agent.page;
    const sockets = [];
    a.on('websocket', (socket) => {
      const seen = { url: socket.url(), types: new Set() };
      sockets.push(seen);
      socket.on('framereceived', ({ payload }) => {
        try {
          seen.types.add(JSON.parse(payload).type);
        } catch {
          // Not JSON: not counted.
        }
      });
    });
    await signIn(a, 'Agent token', mintToken(app.secret, app.token, 'alice', 'AGENT'));
    await waitForText(a, '#whoami', 'alice');
    await a.locator('#connection[data-state="live"]').waitFor();

    const customer = await openPage('/customer.html?realtime=appsync', { width: 480, height: 760 });
    const c = customer.page;
    await signIn(c, 'Customer token', carol);
    await waitForText(c, '#availability', 'An agent is online');
    await c.getByLabel('Subject (optional)').fill('Parcel');
    await c.getByLabel('Your message').fill('Where is my parcel?');
    await c.getByRole('button', { name: 'Start the conversation' }).click();
    await waitForText(c, '#chat-title', '#1 Parcel');
    await waitLive(c);

    // The inbox follows live; the agent opens the chat, and each side sees the other there.
    await waitForBadge(a, 1, '1');
    await chatLink(a, 1).click();
    await waitLive(a);
    await waitForText(a, '#chat-viewers', 'Viewing now: carol (customer)');
    await waitForText(c, '#chat-viewers', 'An agent is viewing this chat');

    // The customer types, then sends: the agent sees both at once.
    await c.getByLabel('Message', { exact: true }).fill('It was due Monday');
    await waitForText(a, '#typing', 'carol is typing…');
    await c.getByLabel('Message', { exact: true }).press('Enter');
    await waitForText(a, '#message-list .message-body', 'It was due Monday');
    await isEmpty(a, '#typing');

    // The agent's page spoke AppSync's protocol at the dev server's /graphql/realtime.
    assert.equal(sockets.length, 1);
    assert.equal(new URL(sockets[0].url).pathname, '/graphql/realtime');
    for (const type of ['connection_ack', 'ka', 'start_ack', 'data']) {
      assert.ok(sockets[0].types.has(type), `${type} in ${[...sockets[0].types]}`);
    }

    // When the connection drops, the console reconnects; what was sent meanwhile arrives
    // (fetched after the subscriptions are registered again), and so does what follows.
    assert.equal(relay.dropWebSockets(), 1);
    await a.locator('#connection[data-state="reconnecting"]').waitFor();
    await gql(server.url, carol, SEND, { a: app.token, c: 1, b: 'Sent while you were away' });
    await a.locator('#connection[data-state="live"]').waitFor();
    await waitForText(a, '#message-list .message-body', 'Sent while you were away');
    await c.getByLabel('Message', { exact: true }).fill('And one after');
    await c.getByLabel('Message', { exact: true }).press('Enter');
    await waitForText(a, '#message-list .message-body', 'And one after');
    assert.deepEqual(await messageTexts(a), ['Where is my parcel?', 'It was due Monday', 'Sent while you were away', 'And one after']);
    assert.equal(sockets.length, 2, 'one new connection');
    assert.ok(sockets[1].types.has('start_ack'));

    assert.deepEqual(agent.errors, []);
    assert.deepEqual(customer.errors, []);
    await agent.context.close();
    await customer.context.close();
  } finally {
    relay.close();
  }
});

test('the agent console over graphql-transport-ws recovers a dropped connection too', { timeout: TEST_MS }, async () => {
  const app = await createApplication('Console drop test');
  const dave = mintToken(app.secret, app.token, 'dave', 'CUSTOMER');
  await gql(server.url, dave, 'mutation($a: ID!) { createChat(appToken: $a, subject: "Drop") { number } }', { a: app.token });
  await gql(server.url, dave, SEND, { a: app.token, c: 1, b: 'Before the drop' });
  const relay = await startRelay(server.url);
  try {
    const agent = await openPage(`${relay.url}/#chat/1`);
    const a = agent.page;
    const urls = [];
    a.on('websocket', (socket) => urls.push(socket.url()));
    await signIn(a, 'Agent token', mintToken(app.secret, app.token, 'alice', 'AGENT'));
    await waitForText(a, '#message-list .message-body', 'Before the drop');
    await waitLive(a);

    assert.equal(relay.dropWebSockets(), 1);
    await a.locator('#connection[data-state="reconnecting"]').waitFor();
    await gql(server.url, dave, SEND, { a: app.token, c: 1, b: 'During the drop' });
    await a.locator('#connection[data-state="live"]').waitFor();
    await waitForText(a, '#message-list .message-body', 'During the drop');
    await gql(server.url, dave, SEND, { a: app.token, c: 1, b: 'After the drop' });
    await waitForText(a, '#message-list .message-body', 'After the drop');
    assert.deepEqual(await messageTexts(a), ['Before the drop', 'During the drop', 'After the drop']);
    assert.deepEqual(urls.map((url) => new URL(url).pathname), ['/graphql', '/graphql']);

    assert.deepEqual(agent.errors, []);
    await agent.context.close();
  } finally {
    relay.close();
  }
});

/** An HTTP server on another origin that records every request and WebSocket upgrade. */
async function startRecorder() {
  const requests = [];
  const recorder = createHttpServer((request, response) => {
    requests.push({ method: request.method, url: request.url, authorization: request.headers.authorization });
    // Let the page's requests through CORS, so that the token would arrive if it were sent.
    response.writeHead(200, {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Headers': 'authorization, content-type',
      'Content-Type': 'application/json',
    });
    response.end('{"data":{"unreadSummary":{"totalUnread":0,"unreadChats":0}}}');
  });
  recorder.on('upgrade', (request, socket) => {
    requests.push({ method: 'UPGRADE', url: request.url, protocols: request.headers['sec-websocket-protocol'] });
    socket.destroy();
  });
  await new Promise((resolve) => recorder.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${recorder.address().port}`, requests, close: () => recorder.close() };
}

test('a foreign ?endpoint= or ?ws= is blocked by the console\'s policy: no token leaves', { timeout: TEST_MS }, async () => {
  const app = await createApplication('Console foreign endpoint test');
  const token = mintToken(app.secret, app.token, 'alice', 'AGENT');
  const recorder = await startRecorder();
  // The same dev server under another name, allowed as an endpoint by its URL alone.
  const elsewhere = `http://localhost:${new URL(server.url).port}/graphql`;
  const permissive = await startServer({ args: ['--console-connect-src', `${recorder.url},${elsewhere}`] });
  try {
    const cspErrors = (errors) => errors.filter((e) => !/Content Security Policy/.test(e));

    // Someone else's endpoint in the link: the sign-in form warns, the browser refuses the
    // request, and the form says why.
    const foreign = await openPage(`/?endpoint=${encodeURIComponent(`${recorder.url}/graphql`)}`);
    const f = foreign.page;
    await waitForText(f, '#endpoint-warning', `Signing in sends your token to ${recorder.url}`);
    await signIn(f, 'Agent token', token);
    await waitForText(f, '#signin-error', "Blocked: this page's Content-Security-Policy does not allow connecting to");
    assert.equal(await f.locator('#session-bar').isHidden(), true);

    // The same with the real-time URL alone (AppSync's protocol at someone else's host):
    // the session starts over HTTP at the page's own server, but the WebSocket is refused.
    const ws = `ws://127.0.0.1:${new URL(recorder.url).port}/graphql/realtime`;
    const foreignWs = await openPage(`/?realtime=appsync&ws=${encodeURIComponent(ws)}`);
    const w = foreignWs.page;
    await waitForText(w, '#endpoint-warning', `Signing in sends your token to ${ws.replace('/graphql/realtime', '')}`);
    await signIn(w, 'Agent token', token);
    await waitForText(w, '#whoami', 'alice');
    await waitForText(w, '#connection[data-state="blocked"]', "Not live: blocked by this page's security policy");
    await w.waitForTimeout(2_000); // longer than a retry would wait
    assert.equal(foreignWs.errors.length, 1, `tried once: ${foreignWs.errors.join('; ')}`);

    assert.deepEqual(recorder.requests, [], 'nothing reached the other origin');
    assert.ok(foreign.errors.length > 0 && foreignWs.errors.length > 0, 'the browser reported the blocked connections');
    assert.deepEqual(cspErrors(foreign.errors), []);
    assert.deepEqual(cspErrors(foreignWs.errors), []);
    await foreign.context.close();
    await foreignWs.context.close();

    // The control: a server whose operator allowed that origin (--console-connect-src) lets
    // the same link through, and the recorder sees the token arrive.
    const allowed = await browser.newContext();
    const p = await allowed.newPage();
    p.setDefaultTimeout(STEP_MS);
    await p.goto(`${permissive.url}/?endpoint=${encodeURIComponent(`${recorder.url}/graphql`)}`);
    await signIn(p, 'Agent token', token);
    await until(() => recorder.requests.some((r) => r.method === 'POST' && r.authorization === token), () => 'the token at the allowed origin');
    await allowed.close();

    // An allowed endpoint on another origin brings its real-time URL with it
    // (endpoint + /realtime, AppSync's protocol): the console there is live.
    const other = await openPage(`${permissive.url}/?endpoint=${encodeURIComponent(elsewhere)}&realtime=appsync`);
    await signIn(other.page, 'Agent token', token);
    await waitForText(other.page, '#whoami', 'alice');
    await other.page.locator('#connection[data-state="live"]').waitFor();
    assert.deepEqual(other.errors, []);
    await other.context.close();
  } finally {
    permissive.stop();
    recorder.close();
  }
});
