// The console's browser-free modules, run in Node: search highlighting (the server's
// matching rules), endpoint configuration, and the development token helper (WebCrypto)
// against the reference minter of server.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchRanges } from '../console/highlight.js';
import { operationName, resolveEndpoints } from '../console/graphql.js';
import { decodeToken, devHelperEnabled, isExpired, mintDevToken } from '../console/session.js';
import { mintToken } from './server.mjs';

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

test('highlighting merges overlapping matches of several query words', () => {
  assert.deepEqual(matchRanges('refunded', 'fund unde'), [[2, 7]]);
  assert.deepEqual(marked('order 1234 and 12345', '1234'), ['1234', '1234']);
});

test('endpoints: same origin by default, overridable by config and by the URL', () => {
  const page = (href) => ({ href, search: new URL(href).search });
  const config = { endpoint: null, realtime: { protocol: 'graphql-transport-ws', url: null, intervalMs: 5000 } };

  const local = resolveEndpoints(config, page('http://127.0.0.1:4000/'));
  assert.deepEqual(local, {
    http: 'http://127.0.0.1:4000/graphql',
    sameOrigin: true,
    realtime: { protocol: 'graphql-transport-ws', url: 'ws://127.0.0.1:4000/graphql', intervalMs: 5000 },
  });

  const appsync = 'https://abc.appsync-api.eu-west-1.amazonaws.com/graphql';
  const deployed = resolveEndpoints({ ...config, endpoint: appsync, realtime: { protocol: 'poll', intervalMs: 3000 } }, page('https://console.example.com/'));
  assert.equal(deployed.http, appsync);
  assert.equal(deployed.sameOrigin, false);
  assert.deepEqual(deployed.realtime, { protocol: 'poll', url: 'wss://abc.appsync-api.eu-west-1.amazonaws.com/graphql', intervalMs: 3000 });

  const overridden = resolveEndpoints(config, page(`http://localhost:4000/?endpoint=${encodeURIComponent('http://localhost:5000/graphql')}&realtime=poll`));
  assert.equal(overridden.http, 'http://localhost:5000/graphql');
  assert.equal(overridden.realtime.protocol, 'poll');
  assert.equal(overridden.sameOrigin, false);

  assert.throws(() => resolveEndpoints(config, page('http://localhost/?endpoint=javascript:alert(1)')), /http\(s\)/);
  assert.throws(() => resolveEndpoints(config, page('http://localhost/?realtime=carrier-pigeon')), /unknown real-time protocol/);
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
