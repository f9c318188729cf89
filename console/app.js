// The agent console: the inbox (most recent activity first, unread badges, the team's total
// in the title), one open chat, live updates.

import config from './config.js';
import { Conversation, formatTime } from './conversation.js';
import { createTransport, resolveEndpoints } from './graphql.js';
import * as q from './queries.js';
import { TokenStore } from './session.js';
import { setupSignIn } from './signin.js';

const $ = (id) => document.getElementById(id);
const INBOX_PAGE = 50;
const TITLE = 'Inbox — Chat console';

const announcer = $('announcer');
function announce(text) {
  announcer.textContent = '';
  // A new text node after clearing makes screen readers announce repeated texts too.
  setTimeout(() => { announcer.textContent = text; }, 50);
}

let endpoints;
try {
  endpoints = resolveEndpoints(config, location);
} catch (error) {
  $('signin-error').textContent = `Configuration error: ${error.message}`;
  throw error;
}

const signIn = setupSignIn({ role: 'AGENT', store: new TokenStore('chat-console.agent'), endpoints, config, onSession: start });
let session = null;

function start({ token, claims, api }) {
  const me = { app: claims.app, sub: claims.sub, role: claims.role };
  const transport = createTransport(endpoints.realtime, token);
  const stops = [];
  const state = { chats: [], nextToken: null, refreshing: false, again: false, timer: null };

  $('console-view').hidden = false;
  $('session-bar').hidden = false;
  $('whoami').textContent = `${me.sub} · agent · ${me.app}`;

  const showStatus = (status) => {
    $('connection').textContent = { live: 'Live', polling: `Refreshing every ${endpoints.realtime.intervalMs / 1000} s`, connecting: 'Connecting…', reconnecting: 'Reconnecting…', unauthorized: 'Signed out' }[status] ?? status;
    $('connection').dataset.state = status;
  };
  showStatus(transport.status);
  stops.push(transport.on('status', showStatus));

  const conversation = new Conversation({
    root: $('chat-main'),
    api,
    transport,
    session: me,
    announce,
    onRead: () => scheduleRefresh(),
    onChange: () => scheduleRefresh(),
  });

  function applySummary(summary) {
    const total = summary.totalUnread;
    document.title = total > 0 ? `(${total}) ${TITLE}` : TITLE;
    const badge = $('total-unread');
    badge.hidden = total === 0;
    badge.textContent = String(total);
    badge.setAttribute('aria-label', `${total} unread message${total === 1 ? '' : 's'} in ${summary.unreadChats} chat${summary.unreadChats === 1 ? '' : 's'}`);
  }

  async function refresh() {
    if (state.refreshing) {
      state.again = true;
      return;
    }
    state.refreshing = true;
    try {
      const status = $('status-filter').value || null;
      const [{ chats }, { unreadSummary }] = await Promise.all([
        api.request(q.CHATS, { a: me.app, status, limit: INBOX_PAGE }),
        api.request(q.UNREAD_SUMMARY, { a: me.app }),
      ]);
      state.chats = chats.items;
      state.nextToken = chats.nextToken;
      renderInbox();
      applySummary(unreadSummary);
      $('inbox-error').textContent = '';
    } catch (error) {
      $('inbox-error').textContent = `Could not load the inbox: ${error.message}`;
    } finally {
      state.refreshing = false;
      if (state.again) {
        state.again = false;
        refresh();
      }
    }
  }

  // Events come in bursts (a busy application): one refresh per burst.
  function scheduleRefresh() {
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, 100);
  }

  async function loadMoreChats() {
    if (!state.nextToken) return;
    try {
      const status = $('status-filter').value || null;
      const { chats } = await api.request(q.CHATS, { a: me.app, status, limit: INBOX_PAGE, next: state.nextToken });
      const known = new Set(state.chats.map((c) => c.number));
      state.chats.push(...chats.items.filter((c) => !known.has(c.number)));
      state.nextToken = chats.nextToken;
      renderInbox();
    } catch (error) {
      $('inbox-error').textContent = `Could not load more chats: ${error.message}`;
    }
  }

  function renderInbox() {
    const list = $('chat-list');
    const focused = document.activeElement?.closest?.('#chat-list a')?.dataset.chat;
    list.replaceChildren(...state.chats.map(renderChatItem));
    $('inbox-empty').hidden = state.chats.length > 0;
    $('more-chats').hidden = !state.nextToken;
    if (focused) list.querySelector(`a[data-chat="${focused}"]`)?.focus();
  }

  function renderChatItem(chat) {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = `#chat/${chat.number}`;
    link.className = 'chat-link';
    link.dataset.chat = chat.number;
    if (chat.number === conversation.number) link.setAttribute('aria-current', 'page');
    if (chat.unreadCount > 0) link.classList.add('unread');

    const top = document.createElement('span');
    top.className = 'chat-top';
    const name = document.createElement('span');
    name.className = 'chat-name';
    name.textContent = `#${chat.number} ${chat.subject ?? 'No subject'}`;
    top.append(name);
    if (chat.unreadCount > 0) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = String(chat.unreadCount);
      const hidden = document.createElement('span');
      hidden.className = 'visually-hidden';
      hidden.textContent = ' unread';
      badge.append(hidden);
      top.append(badge);
    }

    const meta = document.createElement('span');
    meta.className = 'chat-meta';
    const status = document.createElement('span');
    status.className = `status status-${chat.status.toLowerCase()}`;
    status.textContent = chat.status === 'OPEN' ? 'Open' : 'Resolved';
    const when = document.createElement('time');
    when.dateTime = chat.lastMessageAt ?? chat.createdAt;
    when.textContent = formatTime(chat.lastMessageAt ?? chat.createdAt);
    meta.append(status, ` · ${chat.customerId} · `, when);

    const preview = document.createElement('span');
    preview.className = 'preview';
    const last = chat.lastMessage;
    preview.textContent = !last ? 'No messages yet' : last.deleted ? 'Message deleted' : last.body;

    link.append(top, meta, preview);
    item.append(link);
    return item;
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
    document.body.classList.toggle('chat-open', number !== null);
  }

  async function markAllRead() {
    const button = $('mark-all-read');
    button.disabled = true;
    try {
      const { markAllRead: summary } = await api.request(q.MARK_ALL_READ, { a: me.app });
      applySummary(summary);
      announce(summary.totalUnread === 0 ? 'All chats marked read' : `${summary.totalUnread} messages arrived meanwhile`);
      await refresh();
    } catch (error) {
      $('inbox-error').textContent = `Could not mark all read: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  async function changeStatus(event) {
    const number = conversation.number;
    if (number == null) return;
    try {
      const { updateChat } = await api.request(q.UPDATE_STATUS, { a: me.app, n: number, status: event.target.value });
      if (number === conversation.number) conversation.showChat(updateChat);
      announce(`Chat #${number} is ${updateChat.status === 'OPEN' ? 'open' : 'resolved'}`);
      scheduleRefresh();
    } catch (error) {
      announce(`Could not change the status: ${error.message}`);
      if (conversation.chat) event.target.value = conversation.chat.status;
    }
  }

  const listeners = [
    [window, 'hashchange', route],
    [$('mark-all-read'), 'click', markAllRead],
    [$('more-chats'), 'click', loadMoreChats],
    [$('status-filter'), 'change', refresh],
    [$('chat-status'), 'change', changeStatus],
  ];
  for (const [target, type, listener] of listeners) target.addEventListener(type, listener);

  const inbox = { a: me.app };
  const subscriptions = [
    transport.subscribe(q.ON_INBOX_MESSAGE, inbox, { next: scheduleRefresh, error: (e) => announce(`Inbox not live: ${e.message}`) }),
    transport.subscribe(q.ON_CHAT, inbox, {
      next: (payload) => {
        scheduleRefresh();
        if (payload.data?.onChat?.number === conversation.number) conversation.refreshChat();
      },
      error: (e) => announce(`Inbox not live: ${e.message}`),
    }),
  ];
  // After a (re)connection or a poll: re-read the inbox, catch up the open chat.
  stops.push(transport.on('resync', () => {
    scheduleRefresh();
    conversation.catchUp();
  }));

  const expiresIn = Math.min(claims.exp * 1000 - Date.now(), 2 ** 31 - 1);
  const expiry = setTimeout(() => end('Your token has expired: sign in again.'), expiresIn);
  const refused = (message) => end(`The server refused the token (${message}): sign in again.`);
  api.onUnauthorized = refused;
  stops.push(transport.on('unauthorized', refused));

  function end(message) {
    if (session !== current) return;
    session = null;
    clearTimeout(expiry);
    clearTimeout(state.timer);
    for (const stop of stops) stop();
    for (const { unsubscribe } of subscriptions) unsubscribe();
    for (const [target, type, listener] of listeners) target.removeEventListener(type, listener);
    conversation.dispose();
    transport.close();
    $('console-view').hidden = true;
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
