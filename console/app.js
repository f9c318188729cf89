// The agent console: the inbox (most recent activity first, unread badges, the team's total
// in the title), one open chat, live updates.

import config from './config.js';
import { formatTime } from './conversation.js';
import * as q from './queries.js';
import { TokenStore } from './session.js';
import { announce, chatLink, followChatAddress, openChatWithList, resolveEndpointsOrReport, runSessions, unreadBadge } from './shell.js';

const $ = (id) => document.getElementById(id);
const INBOX_PAGE = 50;
const TITLE = 'Inbox — Chat console';

const endpoints = resolveEndpointsOrReport(config, location);

runSessions({
  role: 'AGENT',
  store: new TokenStore('chat-console.agent'),
  endpoints,
  config,
  view: $('console-view'),
  pollingLabel: `Refreshing every ${endpoints.realtime.intervalMs / 1000} s`,
  expiredMessage: 'Your token has expired: sign in again.',
  begin,
});

function begin({ me, api, transport, signal }) {
  $('whoami').textContent = `${me.sub} · agent · ${me.app}`;

  const { conversation, list: inbox } = openChatWithList({ root: $('chat-main'), api, transport, me, loadList: loadInbox, signal });

  function applySummary(summary) {
    const total = summary.totalUnread;
    document.title = total > 0 ? `(${total}) ${TITLE}` : TITLE;
    const badge = $('total-unread');
    badge.hidden = total === 0;
    badge.textContent = String(total);
    badge.setAttribute('aria-label', `${total} unread message${total === 1 ? '' : 's'} in ${summary.unreadChats} chat${summary.unreadChats === 1 ? '' : 's'}`);
  }

  const state = { chats: [], nextToken: null };

  async function loadInbox() {
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
    }
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
    const link = chatLink(chat, conversation.number);
    if (chat.unreadCount > 0) link.classList.add('unread');

    const top = document.createElement('span');
    top.className = 'chat-top';
    const name = document.createElement('span');
    name.className = 'chat-name';
    name.textContent = `#${chat.number} ${chat.subject ?? 'No subject'}`;
    top.append(name);
    if (chat.unreadCount > 0) top.append(unreadBadge(chat.unreadCount));

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
    const number = followChatAddress(conversation);
    document.body.classList.toggle('chat-open', number !== null);
  }

  async function markAllRead() {
    const button = $('mark-all-read');
    button.disabled = true;
    try {
      const { markAllRead: summary } = await api.request(q.MARK_ALL_READ, { a: me.app });
      applySummary(summary);
      announce(summary.totalUnread === 0 ? 'All chats marked read' : `${summary.totalUnread} messages arrived meanwhile`);
      await inbox.refresh();
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
      inbox.schedule();
    } catch (error) {
      announce(`Could not change the status: ${error.message}`);
      if (conversation.chat) event.target.value = conversation.chat.status;
    }
  }

  const on = (target, type, listener) => target.addEventListener(type, listener, { signal });
  on(window, 'hashchange', route);
  on($('mark-all-read'), 'click', markAllRead);
  on($('more-chats'), 'click', loadMoreChats);
  on($('status-filter'), 'change', inbox.refresh);
  on($('chat-status'), 'change', changeStatus);

  const filter = { a: me.app };
  const notLive = (e) => announce(`Inbox not live: ${e.message}`);
  const subscriptions = [
    transport.subscribe(q.ON_INBOX_MESSAGE, filter, { next: inbox.schedule, error: notLive }),
    transport.subscribe(q.ON_CHAT, filter, {
      next: (payload) => {
        inbox.schedule();
        if (payload.data?.onChat?.number === conversation.number) conversation.refreshChat();
      },
      error: notLive,
    }),
  ];
  signal.addEventListener('abort', () => {
    for (const { unsubscribe } of subscriptions) unsubscribe();
    document.title = TITLE;
  });

  inbox.refresh();
  route();
}
