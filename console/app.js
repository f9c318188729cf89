// The agent console: the inbox (most recent activity first, unread badges, the team's total
// in the title, which chats their customer is viewing) in three tabs (Mine, Unassigned, All)
// with each chat's assignee, search across all chats, the agents online and away, the
// agent's own status, one open chat with its assignment controls, live updates.

import config from './config.js';
import { formatTime } from './conversation.js';
import { highlighted } from './highlight.js';
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
// The inbox's tabs: the `chats` filter's assignee of each (docs/assignment.md).
const TABS = ['ME', 'UNASSIGNED', 'ANY'];
const TAB_STORE = 'chat-console.inbox-tab';

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

  const { conversation, list: inbox } = openChatWithList({
    root: $('chat-main'), api, transport, me, loadList: loadInbox, signal, onShowChat: showAssignment,
  });
  const presence = holdPresence({ api, me, signal });
  $('my-status').value = 'ONLINE';

  function applySummary(summary) {
    const total = summary.totalUnread;
    document.title = total > 0 ? `(${total}) ${TITLE}` : TITLE;
    const badge = $('total-unread');
    badge.hidden = total === 0;
    badge.textContent = String(total);
    badge.setAttribute('aria-label', `${total} unread message${total === 1 ? '' : 's'} in ${summary.unreadChats} chat${summary.unreadChats === 1 ? '' : 's'}`);
    // "My unread": the agents' unread over the chats assigned to me.
    const mine = summary.assignedUnread ?? 0;
    const myBadge = $('tab-mine').querySelector('.badge');
    if (mine > 0) {
      const next = unreadBadge(mine);
      next.setAttribute('aria-label', `${mine} unread in ${summary.assignedUnreadChats} of my chat${summary.assignedUnreadChats === 1 ? '' : 's'}`);
      if (myBadge) myBadge.replaceWith(next);
      else $('tab-mine').append(next);
    } else {
      myBadge?.remove();
    }
  }

  // One page of chats per tab, read together: each tab's count is what is loaded of it.
  const stored = sessionStorage.getItem(TAB_STORE);
  const state = {
    tab: TABS.includes(stored) ? stored : 'ANY',
    lists: Object.fromEntries(TABS.map((tab) => [tab, { chats: [], nextToken: null }])),
  };

  const chatsOf = (tab, next = null) => api.request(q.CHATS, {
    a: me.app, limit: INBOX_PAGE, next, filter: { assignee: tab, status: $('status-filter').value || null },
  });

  async function loadInbox() {
    try {
      const [pages, { unreadSummary }] = await Promise.all([
        Promise.all(TABS.map((tab) => chatsOf(tab))),
        api.request(q.UNREAD_SUMMARY, { a: me.app }),
      ]);
      TABS.forEach((tab, i) => {
        state.lists[tab] = { chats: pages[i].chats.items, nextToken: pages[i].chats.nextToken };
      });
      renderInbox();
      applySummary(unreadSummary);
      $('inbox-error').textContent = '';
    } catch (error) {
      $('inbox-error').textContent = `Could not load the inbox: ${error.message}`;
    }
  }

  async function loadMoreChats() {
    const tab = state.tab;
    const list = state.lists[tab];
    if (!list.nextToken) return;
    try {
      const { chats } = await chatsOf(tab, list.nextToken);
      if (state.lists[tab] !== list) return; // the inbox was read again meanwhile
      const known = new Set(list.chats.map((c) => c.number));
      list.chats.push(...chats.items.filter((c) => !known.has(c.number)));
      list.nextToken = chats.nextToken;
      renderInbox();
    } catch (error) {
      $('inbox-error').textContent = `Could not load more chats: ${error.message}`;
    }
  }

  function renderInbox() {
    const { chats, nextToken } = state.lists[state.tab];
    const list = $('chat-list');
    const focused = document.activeElement?.closest?.('#chat-list a')?.dataset.chat;
    list.replaceChildren(...chats.map(renderChatItem));
    $('inbox-empty').textContent = { ME: 'No chats assigned to you.', UNASSIGNED: 'No unassigned chats.', ANY: 'No chats yet.' }[state.tab];
    $('inbox-empty').hidden = chats.length > 0;
    $('more-chats').hidden = !nextToken;
    renderTabs();
    markViewedChats();
    if (focused) list.querySelector(`a[data-chat="${focused}"]`)?.focus();
  }

  /** The tabs: the selected one, and how many chats of each are loaded ("50+": more pages). */
  function renderTabs() {
    for (const button of $('inbox-tabs').querySelectorAll('[role="tab"]')) {
      const tab = button.dataset.assignee;
      const selected = tab === state.tab;
      button.setAttribute('aria-selected', String(selected));
      button.tabIndex = selected ? 0 : -1;
      const { chats, nextToken } = state.lists[tab];
      button.querySelector('.tab-count').textContent = `${chats.length}${nextToken ? '+' : ''}`;
    }
  }

  function selectTab(tab) {
    if (!TABS.includes(tab) || tab === state.tab) return;
    state.tab = tab;
    sessionStorage.setItem(TAB_STORE, tab);
    renderInbox();
  }

  function onTabKey(event) {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const tab = TABS[(TABS.indexOf(state.tab) + step + TABS.length) % TABS.length];
    selectTab(tab);
    $('inbox-tabs').querySelector(`[data-assignee="${tab}"]`).focus();
  }

  /** Who handles a chat, in words: "Assigned to you", "Assigned to agent-2", "Unassigned". */
  const assigneeText = (chat) => (!chat.assigneeId ? 'Unassigned'
    : chat.assigneeId === me.sub ? 'Assigned to you' : `Assigned to ${chat.assigneeId}`);

  /** The open chat's assignee and the controls that fit it. */
  function showAssignment(chat) {
    $('chat-assignee').textContent = `${assigneeText(chat)}${chat.team ? ` · team ${chat.team}` : ''}`;
    $('take-chat').hidden = chat.assigneeId === me.sub;
    $('unassign-chat').hidden = !chat.assigneeId;
    $('transfer-chat').textContent = chat.assigneeId ? 'Transfer' : 'Assign';
  }

  async function assign(assignee) {
    const number = conversation.number;
    if (number == null) return;
    const buttons = $('assignment').querySelectorAll('button');
    for (const button of buttons) button.disabled = true;
    try {
      const { assignChat } = await api.request(q.ASSIGN, { a: me.app, n: number, assignee });
      if (number === conversation.number) conversation.showChat(assignChat);
      announce(`Chat #${number}: ${assigneeText(assignChat).toLowerCase()}`);
      inbox.refresh();
      return true;
    } catch (error) {
      announce(`Could not assign chat #${number}: ${error.message}`);
      $('inbox-error').textContent = `Could not assign chat #${number}: ${error.message}`;
      return false;
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  }

  async function transfer(event) {
    event.preventDefault();
    const agent = $('transfer-input').value.trim();
    if (!agent) return;
    if (await assign(agent)) $('transfer-input').value = '';
  }

  // Search across chats (all, mine or the unassigned ones): each result names its chat and
  // opens it at the message.
  const wide = { query: null, next: null, scope: 'ANY' };
  const SCOPE_NAMES = { ANY: 'any chat', ME: 'your chats', UNASSIGNED: 'the unassigned chats' };

  async function searchAll(text, next = null) {
    const query = text.trim();
    if (!query) {
      closeSearchAll();
      return;
    }
    $('search-all-results').hidden = false;
    if (!next) {
      wide.scope = $('search-all-scope').value;
      $('search-all-list').replaceChildren();
      $('search-all-heading').textContent = `Searching ${wide.scope === 'ANY' ? 'all chats' : SCOPE_NAMES[wide.scope]} for “${query}”…`;
    }
    const filter = wide.scope === 'ANY' ? null : { assignee: wide.scope };
    try {
      const { searchMessages } = await api.request(q.SEARCH_ALL, { a: me.app, q: query, limit: 20, next, filter });
      wide.query = query;
      wide.next = searchMessages.nextToken;
      for (const message of searchMessages.items) $('search-all-list').append(renderWideResult(message, query));
      const count = $('search-all-list').children.length;
      $('search-all-heading').textContent = count === 0
        ? `No message in ${SCOPE_NAMES[wide.scope]} matches “${query}”`
        : `${count}${wide.next ? '+' : ''} message${count === 1 && !wide.next ? ' matches' : 's match'} “${query}”${wide.scope === 'ANY' ? '' : ` in ${SCOPE_NAMES[wide.scope]}`}`;
      $('search-all-more').hidden = !wide.next;
    } catch (error) {
      $('search-all-heading').textContent = `Search failed: ${error.message}`;
    }
  }

  function renderWideResult(message, query) {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'result';
    button.dataset.chat = message.chatNumber;
    button.dataset.number = message.number;
    const meta = document.createElement('span');
    meta.className = 'result-meta';
    meta.textContent = `Chat #${message.chatNumber} · #${message.number} · ${message.senderId} · ${formatTime(message.createdAt)}`;
    const body = document.createElement('span');
    body.className = 'result-body';
    body.append(highlighted(document, message.body, query));
    button.append(meta, body);
    button.addEventListener('click', () => openResult(message.chatNumber, message.number));
    item.append(button);
    return item;
  }

  async function openResult(chatNumber, number) {
    if (conversation.number !== chatNumber) {
      location.hash = `#chat/${chatNumber}`;
      route();
    }
    await conversation.loaded;
    if (conversation.number === chatNumber) conversation.reveal(number);
  }

  function closeSearchAll() {
    $('search-all-results').hidden = true;
    $('search-all-list').replaceChildren();
    wide.query = null;
    wide.next = null;
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
    // The other agents here, offered when assigning a chat (any agent id may be typed).
    $('agent-ids').replaceChildren(...agents.filter((p) => p.userId !== me.sub).map((p) => {
      const option = document.createElement('option');
      option.value = p.userId;
      return option;
    }));
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
    const assignee = document.createElement('span');
    assignee.className = 'assignee';
    assignee.textContent = assigneeText(chat);
    meta.append(status, ` · ${chat.customerId} · `, when, ' · ', assignee);

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
  for (const button of $('inbox-tabs').querySelectorAll('[role="tab"]')) {
    on(button, 'click', () => selectTab(button.dataset.assignee));
    on(button, 'keydown', onTabKey);
  }
  on($('take-chat'), 'click', () => assign(me.sub));
  on($('unassign-chat'), 'click', () => assign(null));
  on($('transfer-form'), 'submit', transfer);
  on($('search-all-form'), 'submit', (event) => {
    event.preventDefault();
    searchAll($('search-all-input').value);
  });
  on($('search-all-input'), 'keydown', (event) => {
    if (event.key === 'Escape') closeSearchAll();
  });
  on($('search-all-more'), 'click', () => searchAll(wide.query, wide.next));
  on($('search-all-close'), 'click', closeSearchAll);

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
    $('agent-ids').replaceChildren();
    closeSearchAll();
    $('search-all-input').value = '';
    $('team-summary').textContent = '';
    document.title = TITLE;
  });

  renderTabs();
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
