// The console's GraphQL client: requests over HTTP, and live updates through a pluggable
// transport ('graphql-transport-ws' for the dev server, 'appsync' for AppSync's real-time
// endpoint, 'poll' for anything else). No dependencies: fetch and WebSocket are enough.

/** An AppSync API's own host name: `<id>.appsync-api.<region>.amazonaws.com[.cn]`. */
const APPSYNC_API_HOST = /^[a-z0-9]+\.appsync-api\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/i;

/**
 * Where to send requests, from the config and the page's URL (?endpoint=, ?realtime=, ?ws=).
 * The real-time protocol defaults to 'appsync' for an AppSync host, else to the dev
 * server's 'graphql-transport-ws'. `foreign` lists the origins other than the page's own
 * that the token would go to (the sign-in form names them).
 */
export function resolveEndpoints(config, location) {
  const params = new URLSearchParams(location.search);
  const page = new URL(location.href);
  const http = new URL(params.get('endpoint') || config.endpoint || '/graphql', page);
  if (http.protocol !== 'http:' && http.protocol !== 'https:') {
    throw new Error(`the endpoint must be an http(s) URL, not ${http.protocol}`);
  }
  const protocol = params.get('realtime') || config.realtime?.protocol
    || (APPSYNC_API_HOST.test(http.hostname) ? 'appsync' : 'graphql-transport-ws');
  if (!TRANSPORTS[protocol]) throw new Error(`unknown real-time protocol: ${protocol}`);
  const wsGiven = params.get('ws') || config.realtime?.url;
  const ws = wsGiven ? new URL(wsGiven, page) : realtimeUrl(http, protocol);
  if (ws.protocol !== 'ws:' && ws.protocol !== 'wss:') {
    throw new Error(`the WebSocket URL must be a ws(s) URL, not ${ws.protocol}`);
  }
  const foreign = [];
  if (http.origin !== page.origin) foreign.push(http.origin);
  if (protocol !== 'poll' && ws.host !== page.host) foreign.push(`${ws.protocol}//${ws.host}`);
  return {
    http: http.href,
    sameOrigin: foreign.length === 0,
    foreign,
    realtime: { protocol, url: ws.href, host: http.host, intervalMs: Number(config.realtime?.intervalMs) || 5000 },
  };
}

/**
 * The WebSocket URL of a GraphQL endpoint. AppSync's: its real-time host for an AppSync
 * host (`https://X.appsync-api.R.amazonaws.com/graphql` ->
 * `wss://X.appsync-realtime-api.R.amazonaws.com/graphql`), else the endpoint plus
 * `/realtime` (a custom domain's `https://D/graphql` -> `wss://D/graphql/realtime`, which
 * the dev server serves too). Any other protocol: the endpoint itself over ws(s).
 */
function realtimeUrl(http, protocol) {
  const ws = new URL(http.href);
  ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
  if (protocol === 'appsync') {
    if (APPSYNC_API_HOST.test(http.hostname)) {
      ws.protocol = 'wss:';
      ws.hostname = http.hostname.replace('.appsync-api.', '.appsync-realtime-api.');
    } else {
      ws.pathname = `${ws.pathname.replace(/\/$/, '')}/realtime`;
    }
  }
  return ws;
}

/**
 * The name of a document's operation (`query Chats(...)` -> 'Chats'), sent as operationName:
 * the console's documents hold one named operation each.
 */
export function operationName(document) {
  return document.match(/^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/)?.[1] ?? null;
}

/** A GraphQL error with the API's code (extensions.code, or AppSync's errorType). */
export class GraphQLError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'GraphQLError';
    this.code = code;
  }
}

const REQUEST_TIMEOUT_MS = 15_000;

export class GraphQLClient {
  constructor(endpoint, token) {
    this.endpoint = endpoint;
    this.token = token;
    /** Called once when the server refuses the token (HTTP 401). */
    this.onUnauthorized = () => {};
  }

  /**
   * Runs one operation; resolves to `data`, rejects with a GraphQLError. `keepalive`: the
   * request outlives the page (a last word sent while the page is being hidden or unloaded).
   */
  async request(query, variables = {}, { keepalive = false } = {}) {
    let response;
    try {
      response = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: this.token },
        body: JSON.stringify({ query, variables, operationName: operationName(query) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        keepalive,
      });
    } catch (error) {
      throw new GraphQLError(`cannot reach the server: ${error.message}`, 'Network');
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new GraphQLError(`the server answered HTTP ${response.status} without JSON`, 'Network');
    }
    const first = body.errors?.[0];
    if (response.status === 401) {
      this.onUnauthorized(first?.message ?? 'the token was refused');
    }
    if (first) {
      throw new GraphQLError(first.message, first.extensions?.code ?? first.errorType ?? 'Internal');
    }
    return body.data;
  }
}

/** The events every transport has: 'status', 'resync' and 'unauthorized'. */
class TransportEvents {
  constructor(status) {
    this.listeners = { status: new Set(), resync: new Set(), unauthorized: new Set() };
    this.status = status;
  }

  on(event, listener) {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  emit(event, value) {
    for (const listener of this.listeners[event]) listener(value);
  }

  setStatus(status) {
    this.status = status;
    this.emit('status', status);
  }
}

const OPEN = 1; // WebSocket.OPEN
const CLOSED = 3; // WebSocket.CLOSED
/** Close codes with which a server refuses the token: no use reconnecting with it. */
const REFUSED_CODES = new Set([4401, 4403]);

/**
 * The life of a WebSocket transport's connection, whatever its protocol: connect, and when
 * the connection is lost, connect again with backoff (0.5 s, 1 s, 2 s ... up to 15 s, with
 * jitter so that a restarted server is not hit by every console at once); stop when the
 * server refuses the token. A protocol subclass implements openSocket(), opened(socket),
 * receive(socket, message) and stopTimers(). `operations` maps an id to a subscription.
 */
class SocketTransport extends TransportEvents {
  constructor(token, WebSocketImpl) {
    super('connecting');
    this.token = token;
    this.WebSocket = WebSocketImpl ?? globalThis.WebSocket;
    this.operations = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.socket = null;
    this.acked = false;
    this.closed = false;
  }

  connect() {
    const socket = this.openSocket();
    this.socket = socket;
    socket.onopen = () => this.opened(socket);
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // not the protocol's: nothing to act on
      }
      this.receive(socket, message);
    };
    socket.onclose = (event) => this.lost(socket, event.code, event.reason);
    // Chromium ends a connection that the page's Content-Security-Policy blocks with an
    // error and no close event: a socket still closed a moment after its error is lost.
    socket.onerror = () => {
      setTimeout(() => {
        if (socket.readyState === CLOSED) this.lost(socket, 1006, 'connection failed');
      }, 1_000);
    };
  }

  /** The connection ended (closed by the server or the network, or dropped here). */
  lost(socket, code, reason) {
    if (this.socket !== socket) return;
    this.socket = null;
    this.acked = false;
    this.stopTimers();
    if (this.closed) return;
    if (REFUSED_CODES.has(code)) {
      this.refused(reason || 'the token was refused');
      return;
    }
    const delay = Math.min(15_000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.setStatus('reconnecting');
    this.retry = setTimeout(() => this.connect(), delay);
  }

  /** Gives a silent connection up at once (its closing handshake could take a minute). */
  drop(socket, reason) {
    socket.onclose = null;
    socket.onerror = null;
    socket.onmessage = null;
    try {
      socket.close(1000, reason);
    } catch {
      // Already closed.
    }
    this.lost(socket, 1006, reason);
  }

  /** The server refused the token: no reconnection; the session ends. */
  refused(reason) {
    const { socket } = this;
    this.closed = true;
    this.socket = null;
    this.acked = false;
    this.stopTimers();
    socket?.close(1000, 'token refused');
    this.setStatus('unauthorized');
    this.emit('unauthorized', reason);
  }

  /** The page's Content-Security-Policy refuses the URL: retrying cannot help. */
  blocked() {
    const { socket } = this;
    this.closed = true;
    this.socket = null;
    this.acked = false;
    clearTimeout(this.retry);
    this.stopTimers();
    if (socket) socket.onerror = null;
    socket?.close();
    this.setStatus('blocked');
  }

  send(message) {
    if (this.acked && this.socket?.readyState === OPEN) this.socket.send(JSON.stringify(message));
  }

  close() {
    this.closed = true;
    clearTimeout(this.retry);
    this.stopTimers();
    this.socket?.close(1000, 'signed out');
  }
}

/**
 * graphql-transport-ws (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md):
 * connection_init with the token, then subscribe/next/error/complete per operation id.
 * Reconnects and subscribes again; after every (re)connection, once the server has
 * registered the subscriptions, `resync` listeners run so the page can fetch what it
 * missed (messages(after: lastSeen)).
 */
export class TransportWs extends SocketTransport {
  constructor({ url }, token, WebSocketImpl) {
    super(token, WebSocketImpl);
    this.url = url;
    this.connect();
  }

  openSocket() {
    return new this.WebSocket(this.url, 'graphql-transport-ws');
  }

  opened(socket) {
    socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: this.token } }));
  }

  stopTimers() {}

  receive(socket, message) {
    const op = this.operations.get(message.id);
    switch (message.type) {
      case 'connection_ack': {
        this.acked = true;
        this.attempt = 0;
        const pending = [...this.operations.entries()];
        for (const [id, { payload }] of pending) this.send({ id, type: 'subscribe', payload });
        // Operations on one connection run in order, so a query's completion means every
        // subscription sent before it is registered: only then is a fetch gap-free.
        this.fence().then(() => {
          for (const [, entry] of pending) entry.ready.resolve();
          this.setStatus('live');
          this.emit('resync');
        });
        break;
      }
      case 'ping':
        socket.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'next':
        op?.sink.next?.(message.payload);
        break;
      case 'error':
        this.operations.delete(message.id);
        op?.sink.error?.(new GraphQLError(message.payload?.[0]?.message ?? 'refused', message.payload?.[0]?.extensions?.code));
        break;
      case 'complete':
        this.operations.delete(message.id);
        op?.sink.complete?.();
        break;
      default:
        break;
    }
  }

  /** Resolves when a `{ __typename }` sent now has completed on this connection. */
  fence() {
    return new Promise((resolve) => {
      const id = `fence-${this.nextId++}`;
      this.operations.set(id, { payload: { query: '{ __typename }' }, sink: { complete: resolve, error: resolve }, ready: deferred() });
      this.send({ id, type: 'subscribe', payload: { query: '{ __typename }' } });
    });
  }

  /**
   * Subscribes; `sink` gets next(payload), error(GraphQLError), complete(). Returns
   * { unsubscribe, ready }: `ready` resolves once the server has registered it.
   */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    const payload = { query, variables, operationName: operationName(query) };
    const entry = { payload, sink, ready: deferred() };
    this.operations.set(id, entry);
    if (this.acked) {
      this.send({ id, type: 'subscribe', payload });
      this.fence().then(() => entry.ready.resolve());
    }
    return {
      ready: entry.ready.promise,
      unsubscribe: () => {
        if (this.operations.delete(id)) this.send({ id, type: 'complete' });
      },
    };
  }
}

/** How long AppSync may take to acknowledge connection_init, and each start (Amplify's). */
const APPSYNC_ACK_TIMEOUT_MS = 15_000;
/** The keep-alive timeout until connection_ack says otherwise (AppSync's: 5 minutes). */
const APPSYNC_DEFAULT_CONNECTION_TIMEOUT_MS = 300_000;

/**
 * AppSync's real-time protocol, as "Building a real-time WebSocket client in AWS AppSync"
 * (https://docs.aws.amazon.com/appsync/latest/devguide/real-time-websocket-client.html)
 * describes it, with the Lambda authorizer's headers `{Authorization, host}`:
 * - the handshake: subprotocol `graphql-ws`, and the headers as base64url JSON in a second
 *   subprotocol `header-...`, as Amplify JS 6 sends them (the guide's `?header=...&
 *   payload=e30=` query parameters would put the token in URLs, which logs keep);
 * - connection_init -> connection_ack {connectionTimeoutMs}; AppSync then sends `ka` now
 *   and then: without one for connectionTimeoutMs the connection is dropped and made again;
 * - start {id, payload: {data: the JSON text of {query, variables}, extensions:
 *   {authorization: the headers}}} -> start_ack, then `data` per event; or `error`;
 *   stop -> complete.
 * Nothing but subscriptions runs on this channel: start_ack, not a query sent after the
 * subscription, says it is registered. After every (re)connection, once every subscription
 * has its start_ack, `resync` listeners run, as with graphql-transport-ws.
 */
export class TransportAppSync extends SocketTransport {
  constructor({ url, host }, token, WebSocketImpl) {
    super(token, WebSocketImpl);
    this.url = url;
    this.headers = { Authorization: token, host };
    this.connectionTimeoutMs = APPSYNC_DEFAULT_CONNECTION_TIMEOUT_MS;
    this.connect();
  }

  openSocket() {
    const header = base64url(JSON.stringify(this.headers));
    return new this.WebSocket(this.url, ['graphql-ws', `header-${header}`]);
  }

  opened(socket) {
    socket.send(JSON.stringify({ type: 'connection_init' }));
    this.ackTimer = setTimeout(() => this.drop(socket, 'no connection_ack'), APPSYNC_ACK_TIMEOUT_MS);
  }

  stopTimers() {
    clearTimeout(this.ackTimer);
    clearTimeout(this.keepAlive);
    for (const entry of this.operations.values()) clearTimeout(entry.startTimer);
  }

  /** A `ka` (or the ack) came: the connection is alive for connectionTimeoutMs more. */
  heard(socket) {
    clearTimeout(this.keepAlive);
    this.keepAlive = setTimeout(() => this.drop(socket, 'no keep-alive'), this.connectionTimeoutMs);
  }

  receive(socket, message) {
    const op = this.operations.get(message.id);
    switch (message.type) {
      case 'connection_ack': {
        clearTimeout(this.ackTimer);
        this.acked = true;
        this.attempt = 0;
        this.connectionTimeoutMs = Number(message.payload?.connectionTimeoutMs) || APPSYNC_DEFAULT_CONNECTION_TIMEOUT_MS;
        this.heard(socket);
        const pending = [...this.operations.entries()];
        Promise.all(pending.map(([id, entry]) => this.start(socket, id, entry))).then(() => {
          if (this.socket !== socket) return;
          for (const [, entry] of pending) entry.ready.resolve();
          this.setStatus('live');
          this.emit('resync');
        });
        break;
      }
      case 'ka':
        this.heard(socket);
        break;
      case 'start_ack':
        op?.started?.();
        break;
      case 'data':
        op?.sink.next?.(message.payload);
        break;
      case 'error': {
        if (!op) break;
        // A refused subscription: it is over, and no longer holds up the others.
        this.operations.delete(message.id);
        op.started?.();
        const first = message.payload?.errors?.[0];
        op.sink.error?.(new GraphQLError(first?.message ?? 'refused', first?.errorType));
        break;
      }
      case 'complete':
        this.operations.delete(message.id);
        op?.sink.complete?.();
        break;
      case 'connection_error': {
        const first = message.payload?.errors?.[0];
        const status = Number(first?.errorCode);
        if (status === 401 || status === 403 || /Unauthorized/i.test(first?.errorType ?? '')) {
          this.refused(first?.message || 'the token was refused');
        } else {
          this.drop(socket, 'connection_error');
        }
        break;
      }
      default:
        break;
    }
  }

  /** Sends a start; resolves at its start_ack or its error (drops the connection without). */
  start(socket, id, entry) {
    return new Promise((resolve) => {
      entry.started = () => {
        clearTimeout(entry.startTimer);
        entry.started = null;
        resolve();
      };
      entry.startTimer = setTimeout(() => this.drop(socket, 'no start_ack'), APPSYNC_ACK_TIMEOUT_MS);
      const data = JSON.stringify({ query: entry.query, variables: entry.variables });
      this.send({ id, type: 'start', payload: { data, extensions: { authorization: this.headers } } });
    });
  }

  /**
   * Subscribes; `sink` gets next(payload), error(GraphQLError), complete(). Returns
   * { unsubscribe, ready }: `ready` resolves once AppSync has acknowledged it.
   */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    const entry = { query, variables, sink, ready: deferred(), started: null, startTimer: null };
    this.operations.set(id, entry);
    if (this.acked) this.start(this.socket, id, entry).then(() => entry.ready.resolve());
    return {
      ready: entry.ready.promise,
      unsubscribe: () => {
        const gone = this.operations.get(id);
        if (!gone) return;
        clearTimeout(gone.startTimer);
        this.operations.delete(id);
        this.send({ id, type: 'stop' });
      },
    };
  }
}

/**
 * No WebSocket: every intervalMs, `onResync` listeners re-read what they show. Works
 * against any GraphQL endpoint, at the cost of a delay.
 */
export class TransportPoll extends TransportEvents {
  constructor({ intervalMs }) {
    super('polling');
    this.timer = setInterval(() => this.emit('resync'), intervalMs);
  }

  subscribe() {
    return { ready: Promise.resolve(), unsubscribe() {} };
  }

  close() {
    clearInterval(this.timer);
  }
}

const TRANSPORTS = { 'graphql-transport-ws': TransportWs, appsync: TransportAppSync, poll: TransportPoll };

export function createTransport(realtime, token) {
  return new TRANSPORTS[realtime.protocol](realtime, token);
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

/** Base64url without padding of a text's UTF-8 bytes (subprotocols allow no '+', '/', '='). */
function base64url(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
