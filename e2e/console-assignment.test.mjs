// The agent console's inbox tabs and assignment (console/, docs/console.md) in a real
// browser: Debian's chromium driven by playwright-core, against a started chat-server.
// Two agents and a customer: the customer's new chat shows under Unassigned; agent 1 takes
// it (Mine, with the assignee shown), transfers it to agent 2 (agent 2's Mine, live), and
// unassigns it (back under Unassigned); the customer's widget says whether an agent handles
// its chat, never who. Search across chats finds a message of another chat and opens it
// there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer, gql, createApp } from './server.mjs';

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

/** A page signed in with `token`, whose errors (exceptions, console errors) are collected. */
async function signedIn(path, token, label, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const errors = [];
  page.on('pageerror', (error) => errors.push(`exception: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  await page.goto(`${server.url}${path}`);
  await page.getByLabel(label).fill(token);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#connection[data-state="live"]').waitFor();
  return { context, page, errors };
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

const tab = (page, name) => page.getByRole('tab', { name: new RegExp(`^${name}\\b`) });

/** Selects tab `name` and waits until the inbox lists exactly `numbers`, in that order. */
async function showsTab(page, name, numbers) {
  await tab(page, name).click();
  let seen;
  await until(async () => {
    seen = await page.locator('#chat-list a').evaluateAll((links) => links.map((a) => Number(a.dataset.chat)));
    return JSON.stringify(seen) === JSON.stringify(numbers);
  }, () => `${name} to list ${JSON.stringify(numbers)} (it lists ${JSON.stringify(seen)})`);
  assert.equal(await tab(page, name).getAttribute('aria-selected'), 'true');
}

/** The tabs' counts, e.g. { Mine: '1', Unassigned: '0', All: '2' }, once they are `expected`. */
async function waitForCounts(page, expected) {
  let seen;
  await until(async () => {
    seen = await page.locator('#inbox-tabs [role="tab"]').evaluateAll((tabs) => Object.fromEntries(tabs.map((t) => [
      t.firstChild.textContent.trim(), t.querySelector('.tab-count').textContent,
    ])));
    return JSON.stringify(seen) === JSON.stringify(expected);
  }, () => `the tab counts ${JSON.stringify(expected)} (they are ${JSON.stringify(seen)})`);
}

const assigneeOf = (page, number) => page.locator(`#chat-list a[data-chat="${number}"] .assignee`).innerText();
const waitForText = (page, selector, text) => page.locator(selector, { hasText: text }).first().waitFor();

test('inbox tabs follow take, transfer and unassign; search across chats opens the chat', { timeout: TEST_MS }, async () => {
  const app = await createApp(server.url, 'Assignment console test');
  // An older chat of another customer, with the message the search across chats finds.
  const erin = app.customer('erin');
  await gql(server.url, erin, 'mutation($a: ID!) { createChat(appToken: $a, subject: "Shipping") { number } }', { a: app.token });
  await gql(server.url, erin, 'mutation($a: ID!) { sendMessage(appToken: $a, chatNumber: 1, body: "My parcel ZX-4471 is lost") { number } }', { a: app.token });

  const agent1 = await signedIn('/', app.agent('agent-1'), 'Agent token');
  const agent2 = await signedIn('/', app.agent('agent-2'), 'Agent token');
  const a1 = agent1.page;
  const a2 = agent2.page;
  await waitForCounts(a1, { Mine: '0', Unassigned: '1', All: '1' });

  // The customer starts a conversation: a new chat, unassigned, for both agents.
  const customer = await signedIn('/customer.html', app.customer('carol'), 'Customer token', { width: 480, height: 760 });
  const c = customer.page;
  await c.getByLabel('Subject (optional)').fill('Late order <b>now</b>');
  await c.getByLabel('Your message').fill('Where is order 1234?');
  await c.getByRole('button', { name: 'Start the conversation' }).click();
  await waitForText(c, '#chat-title', '#2 Late order');
  await waitForText(c, '#chat-meta', 'waiting for an agent');

  await waitForCounts(a1, { Mine: '0', Unassigned: '2', All: '2' });
  await showsTab(a1, 'Unassigned', [2, 1]);
  assert.equal(await assigneeOf(a1, 2), 'Unassigned');
  await showsTab(a1, 'Mine', []);
  await waitForText(a1, '#inbox-empty', 'No chats assigned to you.');

  // Agent 1 takes it: it moves to agent 1's Mine, with the assignee shown.
  await showsTab(a1, 'All', [2, 1]);
  await a1.locator('#chat-list a[data-chat="2"]').click();
  await waitForText(a1, '#chat-title', '#2 Late order');
  await waitForText(a1, '#chat-assignee', 'Unassigned');
  assert.equal(await a1.locator('#unassign-chat').isHidden(), true, 'nothing to unassign');
  await a1.getByRole('button', { name: 'Assign to me' }).click();
  await waitForText(a1, '#chat-assignee', 'Assigned to you');
  assert.equal(await a1.getByRole('button', { name: 'Assign to me' }).isHidden(), true);
  await waitForCounts(a1, { Mine: '1', Unassigned: '1', All: '2' });
  await showsTab(a1, 'Mine', [2]);
  assert.equal(await assigneeOf(a1, 2), 'Assigned to you');
  await showsTab(a1, 'Unassigned', [1]);
  // Agent 2's inbox follows live (onChat): the chat is agent 1's.
  await waitForCounts(a2, { Mine: '0', Unassigned: '1', All: '2' });
  assert.equal(await assigneeOf(a2, 2), 'Assigned to agent-1');
  // The customer learns that an agent handles the chat, not who.
  await c.reload();
  await waitForText(c, '#chat-meta', 'an agent is handling it');
  assert.equal((await c.locator('body').innerText()).includes('agent-1'), false, 'no agent id in the widget');

  // A new customer message lights up agent 1's "my unread" on the Mine tab.
  await a1.locator('#chat-list a[data-chat="1"]').click(); // chat #2 closed, so it stays unread
  await waitForText(a1, '#chat-title', '#1 Shipping');
  await gql(server.url, app.customer('carol'), 'mutation($a: ID!) { sendMessage(appToken: $a, chatNumber: 2, body: "Hello?") { number } }', { a: app.token });
  await a1.locator('#tab-mine .badge').waitFor();
  assert.equal(await a1.locator('#tab-mine .badge').evaluate((b) => b.firstChild.textContent), '1');

  // Agent 1 transfers it to agent 2: agent 2's Mine, live.
  await showsTab(a1, 'All', [2, 1]);
  await a1.locator('#chat-list a[data-chat="2"]').click();
  await waitForText(a1, '#chat-title', '#2 Late order');
  await a1.locator('#tab-mine .badge').waitFor({ state: 'detached' }); // read on opening
  await a1.getByLabel('Agent to assign it to').fill('agent-2');
  await a1.locator('#transfer-chat').click();
  await waitForText(a1, '#chat-assignee', 'Assigned to agent-2');
  await waitForCounts(a1, { Mine: '0', Unassigned: '1', All: '2' });
  await waitForCounts(a2, { Mine: '1', Unassigned: '1', All: '2' });
  await showsTab(a2, 'Mine', [2]);
  assert.equal(await assigneeOf(a2, 2), 'Assigned to you');

  // Agent 2 opens it and unassigns it: back under Unassigned for both.
  await a2.locator('#chat-list a[data-chat="2"]').click();
  await waitForText(a2, '#chat-assignee', 'Assigned to you');
  await a2.getByRole('button', { name: 'Unassign' }).click();
  await waitForText(a2, '#chat-assignee', 'Unassigned');
  await waitForCounts(a2, { Mine: '0', Unassigned: '2', All: '2' });
  await showsTab(a2, 'Unassigned', [2, 1]);
  await waitForCounts(a1, { Mine: '0', Unassigned: '2', All: '2' });
  await waitForText(a1, '#chat-assignee', 'Unassigned'); // agent 1 still has it open
  const stored = await gql(server.url, app.agent('agent-3'), 'query($a: ID!) { chat(appToken: $a, number: 2) { assigneeId hasAgent } }', { a: app.token });
  assert.deepEqual(stored.chat, { assigneeId: null, hasAgent: false });

  // Search across chats (chat #2 open): finds erin's message in chat #1 and opens it there.
  const box = a2.getByRole('searchbox', { name: 'Search all chats' });
  await box.fill('parcel');
  await box.press('Enter');
  await a2.locator('#search-all-list .result').first().waitFor();
  assert.deepEqual(await a2.locator('#search-all-list .result-meta').evaluateAll((m) => m.map((e) => e.textContent.split(' · ')[0])), ['Chat #1']);
  assert.deepEqual(await a2.locator('#search-all-list mark').allInnerTexts(), ['parcel']);
  assert.equal(await a2.locator('#search-all-heading').innerText(), '1 message matches “parcel”');
  await a2.screenshot({ path: `${ARTIFACTS}agent-assignment.png` });
  await a2.locator('#search-all-list .result').first().click();
  await waitForText(a2, '#chat-title', '#1 Shipping');
  await a2.waitForFunction(() => location.hash === '#chat/1' && document.activeElement?.dataset?.number === '1');
  // A word in several chats: one result per message, each naming its chat.
  await box.fill('order');
  await box.press('Enter');
  await a2.locator('#search-all-list .result').first().waitFor();
  assert.deepEqual(await a2.locator('#search-all-list .result-meta').evaluateAll((m) => m.map((e) => e.textContent.split(' · ')[0])), ['Chat #2']);
  // Narrowed to the agent's own chats (none now), then to the unassigned ones.
  await a2.getByLabel('Search in').selectOption('ME');
  await box.press('Enter');
  await waitForText(a2, '#search-all-heading', 'No message in your chats matches “order”');
  assert.equal(await a2.locator('#search-all-list .result').count(), 0);
  await a2.getByLabel('Search in').selectOption('UNASSIGNED');
  await box.press('Enter');
  await waitForText(a2, '#search-all-heading', '1 message matches “order” in the unassigned chats');
  assert.deepEqual(await a2.locator('#search-all-list .result-meta').evaluateAll((m) => m.map((e) => e.textContent.split(' · ')[0])), ['Chat #2']);

  // Markup stays text: the subject in the inbox and the chat's title.
  assert.equal(await a2.locator('#chat-list b, #chat-title b, #search-all-list b').count(), 0);
  assert.deepEqual([...agent1.errors, ...agent2.errors, ...customer.errors], []);
  await Promise.all([agent1.context.close(), agent2.context.close(), customer.context.close()]);
});
