// The console's browser-free modules, run in Node: search highlighting (the server's
// matching rules), endpoint configuration, the AppSync transport against a fake real-time
// endpoint (handshake, start, keep-alive timeout, refusal), the development token
// helper (WebCrypto) against the reference minter of server.mjs, and the attachments'
// helpers (thumbnail sizes, file sizes, signed URLs' expiry, the storage's refusals).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchRanges } from '../console/highlight.js';
import { formatSize, isExpiredUrl, refusalMessage, thumbnailSize, uploadFile, urlExpiresAt } from '../console/attachments.js';
import WebSocket, { WebSocketServer } from 'ws';
import { operationName, resolveEndpoints, TransportAppSync } from '../console/graphql.js';
import { decodeToken, devHelperEnabled, isExpired, mintDevToken } from '../console/session.js';
import { mintToken } from './server.mjs';

const page = (href) => ({ href, search: new URL(href).search });

async function until(predicate, ms) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const marked = (text, query) => matchRanges(text, query).map(([start, end]) => text.slice(start, end));

test('highlighting: 3+ characters match inside words, shorter ones whole words', () => {
  assert.deepEqual(marked('Where is my refund? Refunded yesterday', 'fund'), ['fund', 'fund']);
  assert.deepEqual(marked('no, I know', 'no'), ['no']);
  assert.deepEqual(marked('a bc abc', 'bc'), ['bc']);
  assert.deepEqual(marked('nothing here', 'fund'), []);
});

test('highlighting ignores case and accents, and maps folded matches back to the text', () => {
  assert.deepEqual(marked('Le CAFÉ est là', 'cafe'), ['CAFÉ']);
  assert.deepEqual(marked('Straße', 'strasse'), ['Straße']);
  // A combining accent is not a letter: words end before it, as on the server.
  assert.deepEqual(marked('Cafe\u0301 noir', 'cafe'), ['Cafe']);
  assert.deepEqual(marked('emoji 😀 fundraiser', 'raiser fund'), ['fundraiser']);
});

test('highlighting: CJK words match anywhere, one and two characters too', () => {
  assert.deepEqual(marked('注文番号4471の返金をお願いします', '返金'), ['返金']);
  assert.deepEqual(marked('我要退款', '退'), ['退']);
  assert.deepEqual(marked('환불을 원합니다', '환불'), ['환불']);
  // Mixed queries: the CJK word inside CJK text, the number as a whole word.
  assert.deepEqual(marked('注文番号4471の返金', '注文 4471'), ['注文', '4471']);
  // Half-width katakana is the full-width word (NFKC), and kana keep their voicing marks.
  assert.deepEqual(marked('ｶｰﾄﾞが使えません', 'カード'), ['ｶｰﾄﾞ']);
  assert.deepEqual(marked('かいが', 'が'), ['が']);
  // A CJK query never marks Latin text, nor a short Latin word inside CJK text.
  assert.deepEqual(marked('refund 返金', 'fu'), []);
});

test('highlighting merges overlapping matches of several query words', () => {
  assert.deepEqual(matchRanges('refunded', 'fund unde'), [[2, 7]]);
  assert.deepEqual(marked('order 1234 and 12345', '1234'), ['1234', '1234']);
});

test('endpoints: same origin by default, overridable by config and by the URL', () => {
  const config = { endpoint: null, realtime: { protocol: null, url: null, intervalMs: 5000 } };

  const local = resolveEndpoints(config, page('http://127.0.0.1:4000/'));
  assert.deepEqual(local, {
    http: 'http://127.0.0.1:4000/graphql',
    sameOrigin: true,
    foreign: [],
    realtime: { protocol: 'graphql-transport-ws', url: 'ws://127.0.0.1:4000/graphql', host: '127.0.0.1:4000', intervalMs: 5000 },
  });

  const appsync = 'https://abc.appsync-api.eu-west-1.amazonaws.com/graphql';
  const deployed = resolveEndpoints({ ...config, endpoint: appsync, realtime: { protocol: 'poll', intervalMs: 3000 } }, page('https://console.example.com/'));
  assert.equal(deployed.http, appsync);
  assert.equal(deployed.sameOrigin, false);
  assert.deepEqual(deployed.foreign, ['https://abc.appsync-api.eu-west-1.amazonaws.com']);
  assert.equal(deployed.realtime.protocol, 'poll');
  assert.equal(deployed.realtime.intervalMs, 3000);

  const overridden = resolveEndpoints(config, page(`http://localhost:4000/?endpoint=${encodeURIComponent('http://localhost:5000/graphql')}&realtime=poll`));
  assert.equal(overridden.http, 'http://localhost:5000/graphql');
  assert.equal(overridden.realtime.protocol, 'poll');
  assert.equal(overridden.sameOrigin, false);
  assert.deepEqual(overridden.foreign, ['http://localhost:5000'], 'polling opens no WebSocket');

  assert.throws(() => resolveEndpoints(config, page('http://localhost/?endpoint=javascript:alert(1)')), /http\(s\)/);
  assert.throws(() => resolveEndpoints(config, page('http://localhost/?realtime=carrier-pigeon')), /unknown real-time protocol/);
  assert.throws(() => resolveEndpoints(config, page('http://localhost/?ws=https://a.example/graphql')), /ws\(s\) URL/);
});

test('endpoints: AppSync hosts speak AppSync real time, at the real-time host or /realtime', () => {
  const config = { endpoint: null, realtime: { protocol: null, url: null, intervalMs: 5000 } };
  const on = (endpoint, query = '') => resolveEndpoints({ ...config, endpoint }, page(`https://console.example.com/${query}`));

  // AppSync's own domain: chosen by itself, and the API's appsync-realtime-api host.
  const api = on('https://abc123xyz.appsync-api.eu-west-1.amazonaws.com/graphql');
  assert.deepEqual(api.realtime, {
    protocol: 'appsync',
    url: 'wss://abc123xyz.appsync-realtime-api.eu-west-1.amazonaws.com/graphql',
    host: 'abc123xyz.appsync-api.eu-west-1.amazonaws.com',
    intervalMs: 5000,
  });
  assert.deepEqual(api.foreign, ['https://abc123xyz.appsync-api.eu-west-1.amazonaws.com', 'wss://abc123xyz.appsync-realtime-api.eu-west-1.amazonaws.com']);
  assert.equal(on('https://abc.appsync-api.cn-north-1.amazonaws.com.cn/graphql').realtime.url, 'wss://abc.appsync-realtime-api.cn-north-1.amazonaws.com.cn/graphql');

  // A custom domain is not recognisable: asked for explicitly, it is the endpoint + /realtime.
  assert.equal(on('https://api.example.com/graphql').realtime.protocol, 'graphql-transport-ws');
  const custom = on('https://api.example.com/graphql', '?realtime=appsync');
  assert.equal(custom.realtime.url, 'wss://api.example.com/graphql/realtime');
  assert.equal(custom.realtime.host, 'api.example.com');
  assert.equal(resolveEndpoints({ ...config, realtime: { protocol: 'appsync' } }, page('http://127.0.0.1:4000/')).realtime.url, 'ws://127.0.0.1:4000/graphql/realtime');
  // A look-alike is not AppSync's.
  assert.equal(on('https://abc.appsync-api.eu-west-1.amazonaws.com.evil.example/graphql').realtime.protocol, 'graphql-transport-ws');

  // ?ws= still decides, and a WebSocket elsewhere than the page counts as foreign.
  const ws = resolveEndpoints(config, page('http://127.0.0.1:4000/?realtime=appsync&ws=ws://127.0.0.1:9/graphql/realtime'));
  assert.equal(ws.realtime.url, 'ws://127.0.0.1:9/graphql/realtime');
  assert.equal(ws.sameOrigin, false);
  assert.deepEqual(ws.foreign, ['ws://127.0.0.1:9']);
});

test("the AppSync transport speaks AppSync's protocol and reconnects when the keep-alives stop", async () => {
  // A fake AppSync real-time endpoint: it acknowledges with a 300 ms keep-alive timeout and
  // then sends one `ka` on the first connection only.
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: (protocols) => (protocols.has('graphql-ws') ? 'graphql-ws' : false) });
  const connections = [];
  server.on('connection', (socket, request) => {
    const connection = { protocols: request.headers['sec-websocket-protocol'], url: request.url, received: [] };
    connections.push(connection);
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString());
      connection.received.push(message);
      if (message.type === 'connection_init') {
        socket.send(JSON.stringify({ type: 'connection_ack', payload: { connectionTimeoutMs: 300 } }));
        if (connections.length === 1) socket.send(JSON.stringify({ type: 'ka' }));
      }
      if (message.type === 'start') {
        socket.send(JSON.stringify({ type: 'start_ack', id: message.id }));
        socket.send(JSON.stringify({ type: 'data', id: message.id, payload: { data: { onMessage: { number: connections.length } } } }));
      }
    });
  });
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `ws://127.0.0.1:${server.address().port}/graphql/realtime`;

  const transport = new TransportAppSync({ url, host: 'api.example.com' }, 'tok.en', WebSocket);
  const statuses = [];
  let resyncs = 0;
  transport.on('status', (status) => statuses.push(status));
  transport.on('resync', () => { resyncs += 1; });
  const events = [];
  const subscription = transport.subscribe('subscription OnMessage($c: Int!) { onMessage(c: $c) { number } }', { c: 7 }, { next: (payload) => events.push(payload) });
  try {
    await subscription.ready;
    assert.equal(transport.status, 'live');

    // The handshake: graphql-ws, and the headers as base64url JSON in a header- subprotocol.
    const [first] = connections;
    assert.equal(first.url, '/graphql/realtime');
    const [name, header] = first.protocols.split(',').map((p) => p.trim());
    assert.equal(name, 'graphql-ws');
    assert.match(header, /^header-[A-Za-z0-9_-]+$/);
    assert.deepEqual(JSON.parse(Buffer.from(header.slice('header-'.length), 'base64url')), { Authorization: 'tok.en', host: 'api.example.com' });
    // connection_init, then a start with the JSON text of {query, variables} and the headers.
    assert.deepEqual(first.received[0], { type: 'connection_init' });
    const start = first.received[1];
    assert.equal(start.type, 'start');
    assert.deepEqual(JSON.parse(start.payload.data), { query: 'subscription OnMessage($c: Int!) { onMessage(c: $c) { number } }', variables: { c: 7 } });
    assert.deepEqual(start.payload.extensions, { authorization: { Authorization: 'tok.en', host: 'api.example.com' } });
    assert.deepEqual(events, [{ data: { onMessage: { number: 1 } } }]);

    // No `ka` within connectionTimeoutMs: the transport drops the connection, makes a new
    // one and starts the subscription again there; the page is told to catch up.
    await until(() => connections.length >= 2 && transport.status === 'live' && resyncs >= 2, 5_000);
    assert.ok(statuses.includes('reconnecting'), statuses.join());
    assert.equal(connections[1].received.filter((m) => m.type === 'start').length, 1);
    assert.deepEqual(events[1], { data: { onMessage: { number: 2 } } });

    // Unsubscribing sends stop with the subscription's id.
    const live = connections.at(-1);
    subscription.unsubscribe();
    await until(() => live.received.some((m) => m.type === 'stop'), 2_000);
    assert.deepEqual(live.received.at(-1), { type: 'stop', id: start.id });
  } finally {
    transport.close();
    server.close();
  }
});

test('the AppSync transport ends the session when the connection is refused', async () => {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'graphql-ws' });
  let connections = 0;
  server.on('connection', (socket) => {
    connections += 1;
    socket.on('message', () => {
      socket.send(JSON.stringify({ type: 'connection_error', payload: { errors: [{ errorType: 'UnauthorizedException', message: 'token expired', errorCode: 401 }] } }));
      socket.close(4401, 'UnauthorizedException');
    });
  });
  await new Promise((resolve) => server.once('listening', resolve));
  const transport = new TransportAppSync({ url: `ws://127.0.0.1:${server.address().port}/graphql`, host: 'h' }, 'tok', WebSocket);
  try {
    const reason = await new Promise((resolve) => transport.on('unauthorized', resolve));
    assert.equal(reason, 'token expired');
    assert.equal(transport.status, 'unauthorized');
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // longer than the first backoff
    assert.equal(connections, 1, 'a refused token is not tried again');
  } finally {
    transport.close();
    server.close();
  }
});

test('operation names are read from the documents', () => {
  assert.equal(operationName('subscription OnMessage($a: ID!) { x }'), 'OnMessage');
  assert.equal(operationName('\n  query Chats { x }'), 'Chats');
  assert.equal(operationName('{ __typename }'), null);
});

test('the development helper mints exactly the token an application backend would', async () => {
  const claims = { secret: 'sk_test-secret', app: 'app_test', sub: 'alice', role: 'AGENT' };
  // Both sign {sub, app, role, exp} with HS256; retry if a second boundary splits them.
  for (let attempt = 0; ; attempt++) {
    const minted = await mintDevToken({ ...claims, ttlSeconds: 600 });
    const reference = mintToken(claims.secret, claims.app, claims.sub, claims.role, 600);
    if (minted !== reference && attempt < 3) continue;
    assert.equal(minted, reference);
    break;
  }
  const token = await mintDevToken({ ...claims, ttlSeconds: 60 });
  const decoded = decodeToken(token);
  assert.deepEqual({ ...decoded, exp: undefined }, { sub: 'alice', app: 'app_test', role: 'AGENT', exp: undefined });
  assert.equal(isExpired(decoded), false);
  assert.equal(isExpired(decoded, (decoded.exp + 1) * 1000), true);
  assert.throws(() => decodeToken('not-a-jwt'), /three dot-separated parts/);
});

test('the development helper shows itself only on loopback hosts unless configured', () => {
  assert.equal(devHelperEnabled('auto', '127.0.0.1'), true);
  assert.equal(devHelperEnabled('auto', 'localhost'), true);
  assert.equal(devHelperEnabled('auto', 'console.example.com'), false);
  assert.equal(devHelperEnabled(false, 'localhost'), false);
  assert.equal(devHelperEnabled(true, 'console.example.com'), true);
});

test('attachments: thumbnails keep the aspect ratio within 240x180 and never grow', () => {
  assert.deepEqual(thumbnailSize(400, 200), { width: 240, height: 120 });
  assert.deepEqual(thumbnailSize(300, 600), { width: 90, height: 180 });
  assert.deepEqual(thumbnailSize(64, 64), { width: 64, height: 64 });
  assert.deepEqual(thumbnailSize(10000, 1), { width: 240, height: 1 });
  assert.equal(thumbnailSize(null, null), null);
  assert.equal(thumbnailSize(0, 10), null);
});

test('attachments: sizes in B, KB and MB', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(1023), '1023 B');
  assert.equal(formatSize(1536), '1.5 KB');
  assert.equal(formatSize(25 * 1024 * 1024), '25.0 MB');
});

test("attachments: a signed URL's expiry, the dev server's and S3's", () => {
  assert.equal(urlExpiresAt('http://127.0.0.1:4000/files/up_x?expires=1765022400000&signature=abc'), 1765022400000);
  // S3 presigned: X-Amz-Date + X-Amz-Expires seconds.
  const s3 = 'https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261206T120000Z&X-Amz-Expires=600&X-Amz-Signature=f';
  assert.equal(urlExpiresAt(s3), Date.UTC(2026, 11, 6, 12, 10, 0));
  assert.equal(urlExpiresAt('https://example.com/file.png'), null);
  assert.equal(urlExpiresAt('not a url'), null);
  const now = Date.now();
  assert.equal(isExpiredUrl(`http://h/files/up_x?expires=${now - 1}`, now), true);
  assert.equal(isExpiredUrl(`http://h/files/up_x?expires=${now + 5_000}`, now), true, 'within the margin');
  assert.equal(isExpiredUrl(`http://h/files/up_x?expires=${now + 60_000}`, now), false);
  assert.equal(isExpiredUrl('https://example.com/file.png', now), false, 'a URL that does not say never expires');
});

test("attachments: the storage's reason for refusing an upload", () => {
  assert.equal(refusalMessage(413, '{"errorType":"BadInput","message":"the upload was declared as 5 bytes; more were sent"}'),
    'the upload was declared as 5 bytes; more were sent');
  assert.equal(refusalMessage(403, '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>'),
    'Request has expired');
  assert.equal(refusalMessage(502, ''), 'the storage answered HTTP 502');
});

/** An XMLHttpRequest stand-in answering each send() with the next of `answers`. */
function fakeXhr(answers, sent) {
  return class {
    constructor() {
      this.listeners = {};
      this.headers = {};
      this.upload = { addEventListener: (type, fn) => { this.uploadProgress = fn; } };
    }
    open(method, url) { this.method = method; this.url = url; }
    setRequestHeader(name, value) { this.headers[name] = value; }
    addEventListener(type, fn) { this.listeners[type] = fn; }
    getResponseHeader(name) { return this.answer.headers?.[name] ?? null; }
    abort() { this.listeners.abort?.(); }
    send(body) {
      sent.push({ method: this.method, url: this.url, headers: this.headers, body });
      this.answer = answers.shift();
      this.status = this.answer.status;
      this.responseText = this.answer.body ?? '';
      setTimeout(() => {
        this.uploadProgress?.({ lengthComputable: true, loaded: 5, total: 10 });
        this.listeners.load();
      }, 0);
    }
  };
}

test('attachments: createUpload, then the bytes with the signed headers; a busy storage is tried again', async () => {
  const requests = [];
  const api = {
    async request(query, variables) {
      requests.push(variables);
      return { createUpload: { id: 'up_1', url: 'http://h/files/up_1?expires=1&signature=s', method: 'PUT',
        headers: [{ name: 'Content-Type', value: 'image/png' }, { name: 'Content-Length', value: '10' }] } };
    },
  };
  const sent = [];
  const progress = [];
  globalThis.XMLHttpRequest = fakeXhr([
    { status: 503, headers: { 'Retry-After': '1' }, body: '{"errorType":"Throttled","message":"too many uploads in flight; retry shortly"}' },
    { status: 200 },
  ], sent);
  try {
    const file = { name: 'a.png', type: 'image/png', size: 10 };
    const id = await uploadFile({ api, app: 'app_x', chatNumber: 3, file, onProgress: (f) => progress.push(f) });
    assert.equal(id, 'up_1');
    assert.deepEqual(requests, [{ a: 'app_x', c: 3, name: 'a.png', type: 'image/png', size: 10 }]);
    assert.equal(sent.length, 2, 'tried again after the 503');
    // Content-Length is the browser's to set: skipped, not an error.
    assert.deepEqual(sent[1].headers, { 'Content-Type': 'image/png' });
    assert.equal(sent[1].body, file);
    assert.equal(progress.at(-1), 1);

    // Any other refusal is the storage's reason, at once.
    globalThis.XMLHttpRequest = fakeXhr([{ status: 413, body: '{"message":"the upload was declared as 10 bytes; more were sent"}' }], sent);
    await assert.rejects(uploadFile({ api, app: 'app_x', chatNumber: 3, file }), /declared as 10 bytes; more were sent/);
  } finally {
    delete globalThis.XMLHttpRequest;
  }
});
