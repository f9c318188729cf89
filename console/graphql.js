// The console's GraphQL client: requests over HTTP, and live updates through a pluggable
// transport ('graphql-transport-ws' for the dev server, 'poll' for anything else).
// No dependencies: fetch and WebSocket are enough.

/** Where to send requests, from the config and the page's URL (?endpoint=, ?realtime=, ?ws=). */
export function resolveEndpoints(config, location) {
  const params = new URLSearchParams(location.search);
  const http = new URL(params.get('endpoint') || config.endpoint || '/graphql', location.href);
  if (http.protocol !== 'http:' && http.protocol !== 'https:') {
    throw new Error(`the endpoint must be an http(s) URL, not ${http.protocol}`);
  }
  const protocol = params.get('realtime') || config.realtime?.protocol || 'graphql-transport-ws';
  if (!TRANSPORTS[protocol]) throw new Error(`unknown real-time protocol: ${protocol}`);
  const wsGiven = params.get('ws') || config.realtime?.url;
  const ws = new URL(wsGiven || http.href, location.href);
  if (!wsGiven) ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    http: http.href,
    sameOrigin: http.origin === new URL(location.href).origin,
    realtime: { protocol, url: ws.href, intervalMs: Number(config.realtime?.intervalMs) || 5000 },
  };
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

/**
 * graphql-transport-ws (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md):
 * connection_init with the token, then subscribe/next/error/complete per operation id.
 * Reconnects with backoff and subscribes again; after every (re)connection, once the server
 * has registered the subscriptions, `onResync` listeners run so the page can fetch what it
 * missed (messages(after: lastSeen)).
 */
export class TransportWs {
  constructor({ url }, token) {
    this.url = url;
    this.token = token;
    this.operations = new Map(); // id -> { payload, sink, ready }
    this.nextId = 1;
    this.attempt = 0;
    this.socket = null;
    this.acked = false;
    this.closed = false;
    this.listeners = { status: new Set(), resync: new Set(), unauthorized: new Set() };
    this.status = 'connecting';
    this.connect();
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

  connect() {
    const socket = new WebSocket(this.url, 'graphql-transport-ws');
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: this.token } }));
    };
    socket.onmessage = (event) => this.receive(socket, JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.acked = false;
      if (this.closed) return;
      if (event.code === 4401 || event.code === 4403) {
        this.setStatus('unauthorized');
        this.emit('unauthorized', event.reason || 'the token was refused');
        return;
      }
      // Backoff: 0.5 s, 1 s, 2 s ... up to 15 s, with jitter so that a restarted server is
      // not hit by every console at once.
      const delay = Math.min(15_000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt += 1;
      this.setStatus('reconnecting');
      this.retry = setTimeout(() => this.connect(), delay);
    };
  }

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

  send(message) {
    if (this.acked && this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
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

  close() {
    this.closed = true;
    clearTimeout(this.retry);
    this.socket?.close(1000, 'signed out');
  }
}

/**
 * No WebSocket: every intervalMs, `onResync` listeners re-read what they show. Works
 * against any GraphQL endpoint (AppSync included), at the cost of a delay.
 */
export class TransportPoll {
  constructor({ intervalMs }) {
    this.listeners = { status: new Set(), resync: new Set(), unauthorized: new Set() };
    this.status = 'polling';
    this.timer = setInterval(() => this.emit('resync'), intervalMs);
  }

  on(event, listener) {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  emit(event, value) {
    for (const listener of this.listeners[event]) listener(value);
  }

  subscribe() {
    return { ready: Promise.resolve(), unsubscribe() {} };
  }

  close() {
    clearInterval(this.timer);
  }
}

const TRANSPORTS = { 'graphql-transport-ws': TransportWs, poll: TransportPoll };

export function createTransport(realtime, token) {
  return new TRANSPORTS[realtime.protocol](realtime, token);
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}
