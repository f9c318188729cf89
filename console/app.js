// The agent console: the inbox (most recent activity first, unread badges, the team's total
// in the title, which chats their customer is viewing), the agents online and away, the
// agent's own status, one open chat, live updates.

import config from './config.js';
import { formatTime } from './conversation.js';
import * as q from './queries.js';
import { TokenStore } from './session.js';
import {
  announce, chatLink, createRefresher, followChatAddress, holdPresence, openChatWithList, resolveEndpointsOrReport,
  runSessions, unreadBadge,
} from './shell.js';

const $ = (id) => document.getElementById(id);
const INBOX_PAGE = 50;
const PRESENCE_PAGE = 100;
// Presences read at most (per role): the inbox shows 50 chats, the team list is a glance.
const PRESENCE_PAGES = 10;
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
  const presence = holdPresence({ api, me, signal });
  $('my-status').value = 'ONLINE';

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
    markViewedChats();
    if (focused) list.querySelector(`a[data-chat="${focused}"]`)?.focus();
  }

  // Who is here, by role:userId: the agents (the team list) and the customers (the chat
  // each has on screen). A presence ends with OFFLINE.
  const here = new Map();

  async function readPresences(role) {
    const items = [];
    let next = null;
    for (let page = 0; page < PRESENCE_PAGES; page++) {
      const { presences } = await api.request(q.PRESENCES, { a: me.app, role, limit: PRESENCE_PAGE, next });
      items.push(...presences.items);
      next = presences.nextToken;
      if (!next) break;
    }
    return items;
  }

  async function loadPresences() {
    try {
      const [agents, customers] = await Promise.all([readPresences('AGENT'), readPresences('CUSTOMER')]);
      if (signal.aborted) return;
      here.clear();
      for (const p of [...agents, ...customers]) here.set(`${p.role}:${p.userId}`, p);
      renderPresences();
    } catch (error) {
      $('team-summary').textContent = `Could not load who is online: ${error.message}`;
    }
  }

  function applyPresence(p) {
    const key = `${p.role}:${p.userId}`;
    if (p.status === 'OFFLINE') here.delete(key);
    else here.set(key, p);
    renderPresences();
  }

  function renderPresences() {
    const agents = [...here.values()]
      .filter((p) => p.role === 'AGENT')
      .sort((x, y) => (x.status === y.status ? 0 : x.status === 'ONLINE' ? -1 : 1) || (x.userId < y.userId ? -1 : 1));
    const online = agents.filter((p) => p.status === 'ONLINE').length;
    const summary = `${online} online, ${agents.length - online} away`;
    // Only a change is written: the summary is a live region.
    if ($('team-summary').textContent !== summary) $('team-summary').textContent = summary;
    $('agent-list').replaceChildren(...agents.map(renderAgent));
    markViewedChats();
  }

  function renderAgent(p) {
    const item = document.createElement('li');
    item.className = `agent presence-${p.status.toLowerCase()}`;
    const name = document.createElement('span');
    name.className = 'agent-name';
    name.textContent = p.userId === me.sub ? `${p.userId} (you)` : p.userId;
    const status = document.createElement('span');
    status.className = 'agent-status';
    status.textContent = p.status === 'ONLINE' ? 'online' : 'away';
    item.append(name, ' ', status);
    return item;
  }

  /** Marks the inbox's chats whose customer has them on screen now. */
  function markViewedChats() {
    const viewed = new Set();
    for (const p of here.values()) {
      if (p.role === 'CUSTOMER' && p.chatNumber != null) viewed.add(p.chatNumber);
    }
    for (const link of $('chat-list').querySelectorAll('a[data-chat]')) {
      const marker = link.querySelector('.viewing');
      if (!viewed.has(Number(link.dataset.chat))) {
        marker?.remove();
      } else if (!marker) {
        const added = document.createElement('span');
        added.className = 'viewing';
        added.textContent = 'Customer viewing';
        link.querySelector('.chat-name').after(added);
      }
    }
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
    preview.textContent = !last ? 'No messages yet' : last.deleted ? 'Message deleted' : messagePreview(last);

    link.append(top, meta, preview);
    item.append(link);
    return item;
  }

  function route() {
    const number = followChatAddress(conversation);
    document.body.classList.toggle('chat-open', number !== null);
    presence.setChat(number);
  }

  function changeMyStatus(event) {
    presence.setStatus(event.target.value);
    announce(event.target.value === 'ONLINE' ? 'You are online' : 'You are away');
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
  on($('my-status'), 'change', changeMyStatus);

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
    transport.subscribe(q.ON_PRESENCE, filter, {
      next: (payload) => {
        const p = payload.data?.onPresence;
        if (p) applyPresence(p);
      },
      error: (e) => announce(`Presence not live: ${e.message}`),
    }),
  ];
  const team = createRefresher(loadPresences);
  const stopResync = transport.on('resync', team.schedule);
  signal.addEventListener('abort', () => {
    for (const { unsubscribe } of subscriptions) unsubscribe();
    stopResync();
    team.cancel();
    here.clear();
    $('agent-list').replaceChildren();
    $('team-summary').textContent = '';
    document.title = TITLE;
  });

  inbox.refresh();
  team.refresh();
  route();
}

/** A message in one line: its text, or the names of its files ("📎 invoice.pdf"). */
function messagePreview(message) {
  const names = (message.attachments ?? []).map((file) => file.name);
  if (!names.length) return message.body;
  const files = `📎 ${names.join(', ')}`;
  return message.body ? `${message.body} · ${files}` : files;
}
