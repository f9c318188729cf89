// The customer widget: one customer's chats, a new conversation, the open chat live,
// whether an agent is online.

import config from './config.js';
import { formatTime } from './conversation.js';
import * as q from './queries.js';
import { randomId, TokenStore } from './session.js';
import {
  chatLink, createRefresher, followChatAddress, holdPresence, openChatWithList, resolveEndpointsOrReport, runSessions,
  unreadBadge,
} from './shell.js';

const $ = (id) => document.getElementById(id);
const TITLE = 'Support chat';

runSessions({
  role: 'CUSTOMER',
  store: new TokenStore('chat-console.customer'),
  endpoints: resolveEndpointsOrReport(config, location),
  config,
  view: $('widget-view'),
  pollingLabel: 'Refreshing',
  expiredMessage: 'Your session has expired: sign in again.',
  begin,
});

function begin({ me, api, transport, signal }) {
  $('whoami').textContent = me.sub;

  const { conversation, list: chatList } = openChatWithList({ root: $('widget-view'), api, transport, me, loadList: loadChats, signal });
  const presence = holdPresence({ api, me, signal });
  const state = { chats: [], first: true };

  async function loadChats() {
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
    }
  }

  function renderChats() {
    $('chat-list').replaceChildren(...state.chats.map((chat) => {
      const item = document.createElement('li');
      const link = chatLink(chat, conversation.number);
      const name = document.createElement('span');
      name.className = 'chat-name';
      name.textContent = `${chat.subject ?? 'Conversation'} · ${chat.status === 'OPEN' ? 'open' : 'resolved'} · ${formatTime(chat.lastMessageAt ?? chat.createdAt)}`;
      link.append(name);
      if (chat.unreadCount > 0) link.append(' ', unreadBadge(chat.unreadCount));
      item.append(link);
      return item;
    }));
    $('chats-section').hidden = state.chats.length === 0;
  }

  const route = () => presence.setChat(followChatAddress(conversation));

  function showAvailability({ agentsOnline }) {
    const line = $('availability');
    const online = agentsOnline > 0;
    const text = online ? 'An agent is online' : "We're away — we'll reply by email";
    line.dataset.state = online ? 'online' : 'away';
    // Only a change is written: the line is a live region.
    if (line.textContent !== text) line.textContent = text;
  }

  async function loadAvailability() {
    try {
      const { availability } = await api.request(q.AVAILABILITY, { a: me.app });
      if (!signal.aborted) showAvailability(availability);
    } catch {
      // Nothing to show: the line is a hint, and the next resync reads it again.
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
      chatList.schedule();
      $('composer-input').focus();
    } catch (error) {
      $('widget-error').textContent = `Could not start the conversation: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  const on = (target, type, listener) => target.addEventListener(type, listener, { signal });
  on(window, 'hashchange', route);
  on($('new-chat-form'), 'submit', startChat);

  const availability = createRefresher(loadAvailability);
  const subscription = transport.subscribe(q.ON_AVAILABILITY, { a: me.app }, {
    next: (payload) => {
      const event = payload.data?.onAvailability;
      if (event) showAvailability(event);
    },
  });
  const stopResync = transport.on('resync', availability.schedule);
  signal.addEventListener('abort', () => {
    subscription.unsubscribe();
    stopResync();
    availability.cancel();
    $('availability').textContent = '';
    delete $('availability').dataset.state;
    document.title = TITLE;
  });

  chatList.refresh();
  availability.refresh();
  route();
}
