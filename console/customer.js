// The customer widget: one customer's chats, a new conversation, the open chat live.

import config from './config.js';
import { Conversation, formatTime } from './conversation.js';
import { createTransport, resolveEndpoints } from './graphql.js';
import * as q from './queries.js';
import { randomId, TokenStore } from './session.js';
import { setupSignIn } from './signin.js';

const $ = (id) => document.getElementById(id);
const TITLE = 'Support chat';

const announcer = $('announcer');
function announce(text) {
  announcer.textContent = '';
  setTimeout(() => { announcer.textContent = text; }, 50);
}

let endpoints;
try {
  endpoints = resolveEndpoints(config, location);
} catch (error) {
  $('signin-error').textContent = `Configuration error: ${error.message}`;
  throw error;
}

const signIn = setupSignIn({ role: 'CUSTOMER', store: new TokenStore('chat-console.customer'), endpoints, config, onSession: start });
let session = null;

function start({ token, claims, api }) {
  const me = { app: claims.app, sub: claims.sub, role: claims.role };
  const transport = createTransport(endpoints.realtime, token);
  const stops = [];
  const state = { chats: [], first: true, refreshing: false, again: false, timer: null };

  $('widget-view').hidden = false;
  $('session-bar').hidden = false;
  $('whoami').textContent = me.sub;
  const showStatus = (status) => {
    $('connection').textContent = { live: 'Live', polling: 'Refreshing', connecting: 'Connecting…', reconnecting: 'Reconnecting…', unauthorized: 'Signed out' }[status] ?? status;
    $('connection').dataset.state = status;
  };
  showStatus(transport.status);
  stops.push(transport.on('status', showStatus));

  const conversation = new Conversation({
    root: $('widget-view'),
    api,
    transport,
    session: me,
    announce,
    onRead: () => scheduleRefresh(),
    onChange: () => scheduleRefresh(),
  });

  async function refresh() {
    if (state.refreshing) {
      state.again = true;
      return;
    }
    state.refreshing = true;
    try {
      const [{ chats }, { unreadSummary }] = await Promise.all([
        api.request(q.CHATS, { a: me.app, limit: 20 }),
        api.request(q.UNREAD_SUMMARY, { a: me.app }),
      ]);
      state.chats = chats.items;
      renderChats();
      const total = unreadSummary.totalUnread;
      document.title = total > 0 ? `(${total}) ${TITLE}` : TITLE;
      if (state.first) {
        state.first = false;
        // A widget opens the latest conversation, or offers to start one.
        if (!location.hash && state.chats.length) location.replace(`#chat/${state.chats[0].number}`);
        else if (!state.chats.length) {
          $('new-chat').open = true;
          $('new-subject').focus();
        }
      }
      $('widget-error').textContent = '';
    } catch (error) {
      $('widget-error').textContent = `Could not load your conversations: ${error.message}`;
    } finally {
      state.refreshing = false;
      if (state.again) {
        state.again = false;
        refresh();
      }
    }
  }

  function scheduleRefresh() {
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, 100);
  }

  function renderChats() {
    const list = $('chat-list');
    list.replaceChildren(...state.chats.map((chat) => {
      const item = document.createElement('li');
      const link = document.createElement('a');
      link.href = `#chat/${chat.number}`;
      link.className = 'chat-link';
      link.dataset.chat = chat.number;
      if (chat.number === conversation.number) link.setAttribute('aria-current', 'page');
      const name = document.createElement('span');
      name.className = 'chat-name';
      name.textContent = `${chat.subject ?? 'Conversation'} · ${chat.status === 'OPEN' ? 'open' : 'resolved'} · ${formatTime(chat.lastMessageAt ?? chat.createdAt)}`;
      link.append(name);
      if (chat.unreadCount > 0) {
        const badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = String(chat.unreadCount);
        const hidden = document.createElement('span');
        hidden.className = 'visually-hidden';
        hidden.textContent = ' unread';
        badge.append(hidden);
        link.append(' ', badge);
      }
      item.append(link);
      return item;
    }));
    $('chats-section').hidden = state.chats.length === 0;
  }

  function route() {
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
  }

  async function startChat(event) {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector('button');
    const subject = $('new-subject').value.trim() || null;
    const body = $('new-body').value;
    if (!body.trim()) return;
    button.disabled = true;
    $('widget-error').textContent = '';
    try {
      const { createChat } = await api.request(q.CREATE_CHAT, { a: me.app, subject });
      await api.request(q.SEND, { a: me.app, c: createChat.number, body, id: randomId() });
      form.reset();
      $('new-chat').open = false;
      location.hash = `#chat/${createChat.number}`;
      scheduleRefresh();
      $('composer-input').focus();
    } catch (error) {
      $('widget-error').textContent = `Could not start the conversation: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  const listeners = [
    [window, 'hashchange', route],
    [$('new-chat-form'), 'submit', startChat],
  ];
  for (const [target, type, listener] of listeners) target.addEventListener(type, listener);

  stops.push(transport.on('resync', () => {
    scheduleRefresh();
    conversation.catchUp();
  }));
  const expiresIn = Math.min(claims.exp * 1000 - Date.now(), 2 ** 31 - 1);
  const expiry = setTimeout(() => end('Your session has expired: sign in again.'), expiresIn);
  const refused = (message) => end(`The server refused the token (${message}): sign in again.`);
  api.onUnauthorized = refused;
  stops.push(transport.on('unauthorized', refused));

  function end(message) {
    if (session !== current) return;
    session = null;
    clearTimeout(expiry);
    clearTimeout(state.timer);
    for (const stop of stops) stop();
    for (const [target, type, listener] of listeners) target.removeEventListener(type, listener);
    conversation.dispose();
    transport.close();
    $('widget-view').hidden = true;
    $('session-bar').hidden = true;
    $('chat-list').replaceChildren();
    document.title = TITLE;
    signIn.signOut(message);
  }

  const current = { end };
  session = current;
  refresh();
  route();
}

$('sign-out').addEventListener('click', () => session?.end('Signed out.'));
