// What the agent console (app.js) and the customer widget (customer.js) share around their
// own views: the screen-reader announcer, the endpoints, sign-in and the life of a session
// with its connection label, the user's presence, the open chat kept in step with the chat
// list, the #chat/N address and the parts of a chat's link.
// Both pages' markup has the ids used here (announcer, signin-error, session-bar, whoami,
// connection, sign-out, chat-list).

import { Conversation } from './conversation.js';
import { createTransport, resolveEndpoints } from './graphql.js';
import * as q from './queries.js';
import { setupSignIn } from './signin.js';

const $ = (id) => document.getElementById(id);

/** Says `text` to screen readers through the page's live region. */
export function announce(text) {
  const announcer = $('announcer');
  announcer.textContent = '';
  // A new text node after clearing makes screen readers announce repeated texts too.
  setTimeout(() => { announcer.textContent = text; }, 50);
}

/**
 * The endpoints from config.js and the URL. A mistake there is shown on the sign-in form,
 * the only thing on screen yet, and thrown: without endpoints nothing else can start.
 */
export function resolveEndpointsOrReport(config, location) {
  try {
    return resolveEndpoints(config, location);
  } catch (error) {
    $('signin-error').textContent = `Configuration error: ${error.message}`;
    throw error;
  }
}

/** The connection label of each transport status but 'polling', which each view words itself. */
const CONNECTION_LABELS = {
  live: 'Live',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  unauthorized: 'Signed out',
  blocked: 'Not live: blocked by this page\'s security policy',
};

/** Shows the transport's status in the session bar; returns the function that stops it. */
function bindConnectionStatus(transport, pollingLabel) {
  const labels = { ...CONNECTION_LABELS, polling: pollingLabel };
  const show = (status) => {
    $('connection').textContent = labels[status] ?? status;
    // The style sheet colours the label by state.
    $('connection').dataset.state = status;
  };
  show(transport.status);
  return transport.on('status', show);
}

function sameHost(a, b) {
  try {
    return new URL(a).host === new URL(b).host;
  } catch {
    return false;
  }
}

/**
 * Sign-in, then one session at a time until Sign out, a refused token or its expiry.
 * role, store, endpoints, config: as setupSignIn's; view: the element shown during a session;
 * pollingLabel: the connection label while polling; expiredMessage: shown when the token expires;
 * begin({ me, api, transport, signal }) sets the view up for a session; what it starts ends
 * with `signal` (listeners added with it, 'abort' handlers), before the transport closes.
 */
export function runSessions({ role, store, endpoints, config, view, pollingLabel, expiredMessage, begin }) {
  let session = null;
  const signIn = setupSignIn({ role, store, endpoints, config, onSession: start });

  function start({ token, claims, api }) {
    const me = { app: claims.app, sub: claims.sub, role: claims.role };
    const transport = createTransport(endpoints.realtime, token);
    const ending = new AbortController();

    view.hidden = false;
    $('session-bar').hidden = false;
    const stops = [bindConnectionStatus(transport, pollingLabel)];
    // A WebSocket URL the page's Content-Security-Policy refuses stays refused.
    document.addEventListener('securitypolicyviolation', (event) => {
      if (event.effectiveDirective === 'connect-src' && sameHost(event.blockedURI, endpoints.realtime.url)) {
        transport.blocked?.();
      }
    }, { signal: ending.signal });
    begin({ me, api, transport, signal: ending.signal });

    // setTimeout takes at most 2^31 - 1 ms (about 24 days): a longer token ends then.
    const expiresIn = Math.min(claims.exp * 1000 - Date.now(), 2 ** 31 - 1);
    const expiry = setTimeout(() => end(expiredMessage), expiresIn);
    const refused = (message) => end(`The server refused the token (${message}): sign in again.`);
    api.onUnauthorized = refused;
    stops.push(transport.on('unauthorized', refused));

    // Every way out comes here, perhaps several at once (a refusal seen by HTTP and the
    // WebSocket): only the first ends the session, and never a newer one.
    function end(message) {
      if (session !== current) return;
      session = null;
      clearTimeout(expiry);
      for (const stop of stops) stop();
      ending.abort();
      transport.close();
      view.hidden = true;
      $('session-bar').hidden = true;
      signIn.signOut(message);
    }

    const current = { end };
    session = current;
  }

  $('sign-out').addEventListener('click', () => session?.end('Signed out.'));
}

/**
 * The open chat (a Conversation in `root`) and the refresher of the chat list (`loadList`),
 * kept in step: reading or changing the chat refreshes the list, and after a (re)connection
 * or a poll the list is re-read and the chat catches up on what it missed. Ends with `signal`.
 */
export function openChatWithList({ root, api, transport, me, loadList, signal, onShowChat }) {
  const list = createRefresher(loadList);
  const conversation = new Conversation({
    root,
    api,
    transport,
    session: me,
    announce,
    onRead: list.schedule,
    onChange: list.schedule,
    onShow: onShowChat,
  });
  const stopResync = transport.on('resync', () => {
    list.schedule();
    conversation.catchUp();
    conversation.refreshViewers();
  });
  signal.addEventListener('abort', () => {
    list.cancel();
    stopResync();
    conversation.dispose();
    $('chat-list').replaceChildren();
  });
  return { conversation, list };
}

// The server's HEARTBEAT_INTERVAL_SECS: a lease runs 90 s, so two beats may be lost.
const HEARTBEAT_MS = 30_000;

/**
 * Holds the signed-in user's presence (docs/presence.md): a heartbeat now, every 30 s, and
 * at once when the status or the chat on screen changes; OFFLINE when the session ends or
 * the page is hidden for good (best effort: a lost one ends with the lease), and a beat
 * again when the page comes back from the back/forward cache. Beats never overlap, so the
 * server sees the changes in order. Returns { setChat(number | null), setStatus(status) }.
 */
export function holdPresence({ api, me, signal }) {
  const wanted = { status: 'ONLINE', chat: null };
  let timer = null;
  let running = null;
  let again = false;

  function schedule(ms) {
    clearTimeout(timer);
    if (!signal.aborted) timer = setTimeout(beat, ms);
  }

  async function beat() {
    if (signal.aborted) return;
    if (running) {
      again = true;
      return;
    }
    clearTimeout(timer);
    const { status, chat } = wanted;
    running = api.request(q.HEARTBEAT, { a: me.app, status, c: chat }).catch((error) => {
      // A chat the user may not see (a stale #chat/N address): be present without it.
      if (error.code === 'NotFound' && chat !== null && wanted.chat === chat) {
        wanted.chat = null;
        again = true;
      }
      // Anything else: the next beat tries again, well within the lease.
    });
    await running;
    running = null;
    if (again) {
      again = false;
      beat();
    } else {
      schedule(HEARTBEAT_MS);
    }
  }

  const offline = (options) => api.request(q.HEARTBEAT, { a: me.app, status: 'OFFLINE' }, options).catch(() => {});
  const on = (type, listener) => window.addEventListener(type, listener, { signal });
  on('pagehide', () => {
    clearTimeout(timer);
    offline({ keepalive: true });
  });
  on('pageshow', (event) => {
    if (event.persisted) beat();
  });
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    // After the beat in flight, so that it cannot bring the presence back.
    Promise.resolve(running).then(() => offline());
  });
  // The first beat waits for the view to say which chat is open, in this same task.
  schedule(0);

  return {
    setChat(number) {
      if (number === wanted.chat) return;
      wanted.chat = number;
      beat();
    },
    setStatus(status) {
      if (status === wanted.status) return;
      wanted.status = status;
      beat();
    },
  };
}

/**
 * Reloads with `load`, never two at once: a refresh asked for during one runs again after
 * it, so the last data shown is never older than the last request. schedule() waits for
 * a burst of events (a busy application) to end and refreshes once for all of it.
 */
export function createRefresher(load) {
  let running = false;
  let again = false;
  let timer = null;

  async function refresh() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await load();
    } finally {
      running = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  return {
    refresh,
    schedule() {
      clearTimeout(timer);
      timer = setTimeout(refresh, 100);
    },
    cancel: () => clearTimeout(timer),
  };
}

/**
 * Opens the chat of the page's #chat/N address in `conversation` (closes it without one)
 * and marks its link in the chat list as current. Returns N, or null.
 */
export function followChatAddress(conversation) {
  const match = location.hash.match(/^#chat\/(\d+)$/);
  const number = match ? Number(match[1]) : null;
  if (number !== conversation.number) {
    if (number) conversation.open(number);
    else conversation.close();
  }
  for (const link of document.querySelectorAll('#chat-list a')) {
    if (Number(link.dataset.chat) === number) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  return number;
}

/** The link to `chat` in the chat list, marked current when it is the open chat. */
export function chatLink(chat, openNumber) {
  const link = document.createElement('a');
  link.href = `#chat/${chat.number}`;
  link.className = 'chat-link';
  link.dataset.chat = chat.number;
  if (chat.number === openNumber) link.setAttribute('aria-current', 'page');
  return link;
}

/** A chat's unread count, read out as "3 unread". */
export function unreadBadge(count) {
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.textContent = String(count);
  const hidden = document.createElement('span');
  hidden.className = 'visually-hidden';
  hidden.textContent = ' unread';
  badge.append(hidden);
  return badge;
}
