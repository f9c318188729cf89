// Shared by every k6 script here: configuration, user tokens, GraphQL over HTTP, set-up of
// an application with chats and history, the customer-support operations, and subscribers
// over WebSocket. See docs/loadtest.md.
import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { Counter, Rate, Trend } from 'k6/metrics';
import { WebSocket } from 'k6/experimental/websockets';

export const int = (name, fallback) => parseInt(__ENV[name] || `${fallback}`, 10);

// The dev server by default; a deployed AppSync API with GRAPHQL_URL, APP_TOKEN, APP_SECRET
// (or ADMIN_KEY where createApplication is open to it), REALTIME=appsync and REALTIME_URL.
export const config = {
  url: __ENV.GRAPHQL_URL || 'http://127.0.0.1:4000/graphql',
  adminKey: __ENV.ADMIN_KEY || '',
  appToken: __ENV.APP_TOKEN || '',
  appSecret: __ENV.APP_SECRET || '',
  // `transport-ws` (graphql-transport-ws, the dev server's /graphql) or `appsync` (AppSync's
  // real-time protocol: AppSync itself, or the dev server's /graphql/realtime).
  realtime: __ENV.REALTIME || 'transport-ws',
  realtimeUrl: __ENV.REALTIME_URL || '',
  customers: int('CUSTOMERS', 50),
  seedMessages: int('SEED_MESSAGES', 60),
  p95: int('P95_MS', 25),
  p99: int('P99_MS', 50),
};

// k6 options every script here uses: set-up creates an application with its chats and
// history (minutes against a slow deployment), and the summary export carries the
// percentiles report.py reads.
export function loadOptions(scenarios, thresholds) {
  return {
    scenarios,
    thresholds,
    setupTimeout: '300s',
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
  };
}

export const gqlErrors = new Rate('gql_errors');
export const wsErrors = new Counter('ws_errors');
export const wsEvents = new Counter('ws_events');
export const wsDelivery = new Trend('ws_delivery', true);

const WORDS = [
  'order', 'refund', 'delivery', 'invoice', 'password', 'shipping', 'tracking', 'parcel',
  'warranty', 'subscription', 'payment', 'address', 'discount', 'cancel', 'receipt', 'account',
];

/// A JWT (HS256) with the claims the API expects, signed as an application's backend would.
export function mintToken(secret, app, sub, role, ttlSeconds = 6 * 3600) {
  const part = (value) => encoding.b64encode(JSON.stringify(value), 'rawurl');
  const head = part({ alg: 'HS256', typ: 'JWT' });
  const claims = part({ sub, app, role, exp: Math.floor(Date.now() / 1000) + ttlSeconds });
  const signature = crypto.hmac('sha256', secret, `${head}.${claims}`, 'base64rawurl');
  return `${head}.${claims}.${signature}`;
}

function request(token, op, query, variables) {
  return {
    method: 'POST',
    url: config.url,
    body: JSON.stringify({ query, variables }),
    params: {
      headers: { 'Content-Type': 'application/json', Authorization: token },
      tags: { op },
      timeout: '30s',
    },
  };
}

/// `data` of a response, or null; an HTTP error or a GraphQL error counts in gql_errors.
function dataOf(response, op) {
  let body = null;
  try {
    body = response.json();
  } catch (_) {
    body = null;
  }
  const failed = response.status !== 200 || !body || Boolean(body.errors && body.errors.length > 0);
  gqlErrors.add(failed, { op });
  if (failed && __ENV.LOG_ERRORS) {
    console.warn(`${op}: ${response.status} ${response.body && response.body.slice(0, 300)}`);
  }
  return failed ? null : body.data;
}

export function gql(token, op, query, variables) {
  const r = request(token, op, query, variables);
  return dataOf(http.post(r.url, r.body, r.params), op);
}

function gqlBatch(calls) {
  const responses = http.batch(calls.map((c) => request(c.token, c.op, c.query, c.variables)));
  return responses.map((response, i) => dataOf(response, calls[i].op));
}

const pick = (array) => array[Math.floor(Math.random() * array.length)];

/// A body with a few words and its send time (subscribers measure delivery from it).
function body() {
  return `${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} @${Date.now()}`;
}

export const Q = {
  createApplication: 'mutation($n: String!) { createApplication(name: $n) { application { token } secret } }',
  createChat: 'mutation($a: ID!, $s: String) { createChat(appToken: $a, subject: $s) { number } }',
  send: 'mutation($a: ID!, $c: Int!, $b: String!, $k: ID) { sendMessage(appToken: $a, chatNumber: $c, body: $b, clientMessageId: $k) { appToken chatNumber number body senderId createdAt } }',
  chats: 'query($a: ID!) { chats(appToken: $a, limit: 20) { items { number messagesCount unreadCount lastMessage { body } } nextToken } }',
  messages: 'query($a: ID!, $c: Int!, $before: Int) { messages(appToken: $a, chatNumber: $c, before: $before, limit: 20) { items { number body senderId } nextToken } }',
  markChatRead: 'mutation($a: ID!, $c: Int!) { markChatRead(appToken: $a, chatNumber: $c) { lastReadNumber unreadCount } }',
  unreadSummary: 'query($a: ID!) { unreadSummary(appToken: $a) { totalUnread unreadChats } }',
  search: 'query($a: ID!, $c: Int!, $q: String!) { searchMessages(appToken: $a, chatNumber: $c, query: $q, limit: 20) { items { number body } } }',
  onInbox: 'subscription($a: ID!) { onInboxMessage(appToken: $a) { number chatNumber body } }',
  onMessage: 'subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number body } }',
};

/// The application, its customers (one chat each, with history) and agents' tokens.
export function setUp() {
  let app = config.appToken;
  let secret = config.appSecret;
  if (!app) {
    if (!config.adminKey) throw new Error('set ADMIN_KEY, or APP_TOKEN and APP_SECRET');
    const created = gql(config.adminKey, 'setup', Q.createApplication, { n: `loadtest ${Date.now()}` });
    if (!created) throw new Error(`createApplication failed at ${config.url}`);
    app = created.createApplication.application.token;
    secret = created.createApplication.secret;
  }
  const run = `${Date.now()}`;
  const customers = [];
  for (let i = 0; i < config.customers; i++) {
    customers.push({ token: mintToken(secret, app, `customer-${run}-${i}`, 'CUSTOMER') });
  }
  const agents = [];
  for (let i = 0; i < 10; i++) agents.push(mintToken(secret, app, `agent-${i}`, 'AGENT'));
  const chunk = 25;
  for (let i = 0; i < customers.length; i += chunk) {
    const part = customers.slice(i, i + chunk);
    const opened = gqlBatch(part.map((c) => ({ token: c.token, op: 'setup', query: Q.createChat, variables: { a: app, s: 'Load test' } })));
    opened.forEach((data, j) => {
      if (!data) throw new Error('createChat failed in set-up');
      part[j].chat = data.createChat.number;
    });
  }
  // History to page through and search: customers and agents take turns.
  for (let m = 0; m < config.seedMessages; m++) {
    for (let i = 0; i < customers.length; i += chunk) {
      const part = customers.slice(i, i + chunk);
      const sent = gqlBatch(part.map((c) => ({
        token: m % 3 === 2 ? agents[0] : c.token, op: 'setup', query: Q.send,
        variables: { a: app, c: c.chat, b: body(), k: `seed-${c.chat}-${m}` },
      })));
      if (sent.some((d) => !d)) throw new Error('seeding messages failed in set-up');
    }
  }
  return { app, secret, customers, agents, seeded: config.seedMessages };
}

// The operations of the mix, each one request, tagged with its name.
let sequence = 0;
export const ops = {
  sendMessage(d) {
    const c = pick(d.customers);
    sequence += 1;
    return gql(c.token, 'sendMessage', Q.send, { a: d.app, c: c.chat, b: body(), k: `${__VU}-${__ITER}-${sequence}` });
  },
  chats(d) {
    return gql(pick(d.agents), 'chats', Q.chats, { a: d.app });
  },
  messages(d) {
    // A page of history above a random point, as scrolling up does.
    const before = 21 + Math.floor(Math.random() * Math.max(1, d.seeded - 20));
    return gql(pick(d.agents), 'messages', Q.messages, { a: d.app, c: pick(d.customers).chat, before });
  },
  markChatRead(d) {
    return gql(pick(d.agents), 'markChatRead', Q.markChatRead, { a: d.app, c: pick(d.customers).chat });
  },
  unreadSummary(d) {
    return gql(pick(d.agents), 'unreadSummary', Q.unreadSummary, { a: d.app });
  },
  searchMessages(d) {
    // A word's first letters, as typed: partial matches inside words.
    const word = pick(WORDS);
    const query = word.slice(0, Math.max(3, word.length - 2));
    return gql(pick(d.agents), 'searchMessages', Q.search, { a: d.app, c: pick(d.customers).chat, q: query });
  },
  // The ceiling: the same request shape against the bare endpoint (or `{ __typename }`).
  noop(d) {
    return gql(d.agents[0], 'noop', '{ __typename }', {});
  },
};

/// The customer-support mix, by weight: customers send, agents read and answer.
export const MIX = [
  ['sendMessage', 25], ['chats', 15], ['messages', 20],
  ['markChatRead', 15], ['unreadSummary', 15], ['searchMessages', 10],
];
const MIX_TOTAL = MIX.reduce((sum, [, w]) => sum + w, 0);

export function mixOnce(d) {
  let r = Math.random() * MIX_TOTAL;
  for (const [name, weight] of MIX) {
    r -= weight;
    if (r < 0) return ops[name](d);
  }
  return ops.sendMessage(d);
}

function b64(value) {
  return encoding.b64encode(JSON.stringify(value), 'std');
}

/// One subscriber for `seconds`: an agent on onInboxMessage (odd VUs) or a customer on its
/// chat's onMessage (even VUs), over graphql-transport-ws or AppSync's protocol. Each event
/// adds its delivery time (from the send time in the body) to ws_delivery.
export function subscribe(d, seconds) {
  const customer = d.customers[__VU % d.customers.length];
  const asAgent = __VU % 2 === 1;
  const token = asAgent ? d.agents[__VU % d.agents.length] : customer.token;
  const query = asAgent ? Q.onInbox : Q.onMessage;
  const variables = asAgent ? { a: d.app } : { a: d.app, c: customer.chat };
  const appsync = config.realtime === 'appsync';
  const host = config.url.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  let url;
  let params = {};
  if (appsync) {
    const base = config.realtimeUrl || config.url.replace(/^http/, 'ws').replace(/\/graphql$/, '/graphql/realtime');
    url = `${base}?header=${encodeURIComponent(b64({ host, Authorization: token }))}&payload=e30%3D`;
    params = { headers: { 'Sec-WebSocket-Protocol': 'graphql-ws' } };
  } else {
    url = config.realtimeUrl || config.url.replace(/^http/, 'ws');
    params = { headers: { 'Sec-WebSocket-Protocol': 'graphql-transport-ws' } };
  }
  const ws = new WebSocket(url, null, params);
  const onEvent = (data) => {
    const message = data && (data.onInboxMessage || data.onMessage);
    if (!message) return;
    wsEvents.add(1);
    const at = /@(\d{13})/.exec(message.body || '');
    if (at) wsDelivery.add(Date.now() - parseInt(at[1], 10));
  };
  ws.onopen = () => {
    ws.send(JSON.stringify(appsync ? { type: 'connection_init' } : { type: 'connection_init', payload: { Authorization: token } }));
  };
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (__ENV.LOG_WS) console.log(`ws <- ${event.data.slice(0, 200)}`);
    switch (m.type) {
      case 'connection_ack':
        if (appsync) {
          ws.send(JSON.stringify({
            id: '1', type: 'start',
            payload: { data: JSON.stringify({ query, variables }), extensions: { authorization: { host, Authorization: token } } },
          }));
        } else {
          ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
        }
        break;
      case 'next': // graphql-transport-ws
      case 'data': // AppSync
        if (m.payload && m.payload.errors) wsErrors.add(1);
        onEvent(m.payload && m.payload.data);
        break;
      case 'ping':
        ws.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'error':
      case 'connection_error':
        wsErrors.add(1);
        if (__ENV.LOG_ERRORS) console.warn(`subscription error: ${event.data}`);
        break;
      default: // pong, ka, start_ack, complete
    }
  };
  let closing = false;
  ws.onclose = () => {
    // Closed by the server before the end (it fell behind, or it went away): an error.
    if (!closing) wsErrors.add(1);
  };
  ws.onerror = (e) => {
    wsErrors.add(1);
    if (__ENV.LOG_ERRORS) console.warn(`websocket error: ${e.error}`);
  };
  setTimeout(() => {
    closing = true;
    ws.close();
  }, seconds * 1000);
}

/// "90s", "2m", "1h", "30" -> seconds.
export function seconds(text) {
  const m = /^(\d+)([smh]?)$/.exec(`${text}`.trim());
  if (!m) throw new Error(`not a duration: ${text}`);
  return parseInt(m[1], 10) * { '': 1, s: 1, m: 60, h: 3600 }[m[2]];
}
