// One open chat, for both views: its history (scrolling up loads older pages), live
// messages, sending (text and files: the paperclip, drag-and-drop or paste), marking read,
// who else is viewing it and who is typing, and (agent view) search.
//
// Live updates follow the README's recipe: every message has a number and numbers have no
// gaps, so `lastSeen` is the highest number held without a gap; after a (re)connection, or
// when an event skips a number, the chat fetches messages(after: lastSeen) and merges by number.

import { ACCEPTED_TYPES, AttachmentTray, MAX_FILES_PER_MESSAGE, renderAttachments } from './attachments.js';
import { highlighted } from './highlight.js';
import { GraphQLError } from './graphql.js';
import { randomId } from './session.js';
import * as q from './queries.js';

const PAGE = 30;
const CATCH_UP_PAGE = 100;
const SEND_ATTEMPTS = 3;
const NEAR_EDGE_PX = 80;
// The server folds typing calls of one user within 2 s: calling more often is wasted.
const TYPING_CALL_MS = 1_500;
// "… is typing" stays this long after the last event (they come every 2 s while typing).
const TYPING_SHOWN_MS = 3_500;
// A message is read again for fresh attachment URLs at most this often (an image that
// keeps failing does not loop).
const REFRESH_MESSAGE_MS = 30_000;

export class Conversation {
  /**
   * root: the element holding the chat pane's parts (found by id below);
   * api: GraphQLClient; transport: a live transport; session: {app, sub, role};
   * announce(text): the page's aria-live announcer;
   * onRead(receipt) / onChange(message): so the page can update its badges and lists;
   * onShow(chat): the open chat's header was (re)drawn from `chat`.
   */
  constructor({ root, api, transport, session, announce, onRead = () => {}, onChange = () => {}, onShow = () => {} }) {
    this.api = api;
    this.transport = transport;
    this.session = session;
    this.announce = announce;
    this.onRead = onRead;
    this.onChange = onChange;
    this.onShow = onShow;
    const part = (id) => root.querySelector(`#${id}`);
    this.el = {
      pane: part('chat-pane'),
      empty: part('no-chat'),
      title: part('chat-title'),
      meta: part('chat-meta'),
      live: part('chat-live'),
      status: part('chat-status'),
      history: part('history'),
      start: part('history-start'),
      older: part('load-older'),
      list: part('message-list'),
      composer: part('composer'),
      input: part('composer-input'),
      send: part('composer-send'),
      sendError: part('send-error'),
      attach: part('attach-button'),
      attachInput: part('attach-input'),
      tray: part('attach-tray'),
      viewers: part('chat-viewers'),
      typing: part('typing'),
      searchForm: part('search-form'),
      searchInput: part('search-input'),
      results: part('search-results'),
      resultsHeading: part('search-heading'),
      resultsList: part('search-list'),
      moreResults: part('search-more'),
      closeSearch: part('search-close'),
    };
    this.chat = null;
    this.subscriptions = [];
    this.viewers = new Map(); // who else has the chat on screen, by role:userId
    this.typers = new Map(); // role:userId -> { name, timer }
    this.typingSentAt = 0;
    this.refreshedAt = new Map(); // message number -> when it was last read again for its URLs
    this.tray = new AttachmentTray({
      list: this.el.tray,
      context: () => ({ api: this.api, app: this.session.app, chatNumber: this.number }),
      onChange: () => this.updateComposer(),
    });
    this.el.attachInput.accept = ACCEPTED_TYPES;
    this.bindEvents();
  }

  bindEvents() {
    const { el } = this;
    // Every listener goes with dispose(): a new session builds a new Conversation.
    this.abort = new AbortController();
    const on = (target, type, listener) => target.addEventListener(type, listener, { signal: this.abort.signal, passive: type === 'scroll' });
    on(el.history, 'scroll', () => {
      if (el.history.scrollTop < NEAR_EDGE_PX) this.loadOlder();
    });
    on(el.older, 'click', () => this.loadOlder());
    on(el.composer, 'submit', (event) => {
      event.preventDefault();
      this.send();
    });
    on(el.input, 'input', () => this.noteTyping());
    on(el.input, 'keydown', (event) => {
      // Enter sends, Shift+Enter is a new line (and nothing happens while an IME composes).
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        el.composer.requestSubmit();
      }
    });
    on(document, 'visibilitychange', () => this.markRead());
    // Files: the paperclip (a file chooser), dropped on the conversation, or pasted.
    on(el.attach, 'click', () => el.attachInput.click());
    on(el.attachInput, 'change', () => {
      this.attach([...el.attachInput.files]);
      el.attachInput.value = '';
    });
    const carriesFiles = (event) => event.dataTransfer?.types?.includes('Files');
    on(el.pane, 'dragover', (event) => {
      if (!carriesFiles(event) || this.number == null) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
      el.pane.classList.add('dropping');
    });
    on(el.pane, 'dragleave', (event) => {
      if (!el.pane.contains(event.relatedTarget)) el.pane.classList.remove('dropping');
    });
    on(el.pane, 'drop', (event) => {
      el.pane.classList.remove('dropping');
      if (!carriesFiles(event)) return;
      event.preventDefault();
      this.attach([...event.dataTransfer.files]);
    });
    // A file dropped beside the conversation must not replace the page (and end the session).
    for (const type of ['dragover', 'drop']) {
      on(document, type, (event) => {
        if (carriesFiles(event) && !el.pane.contains(event.target)) event.preventDefault();
      });
    }
    on(el.input, 'paste', (event) => {
      const files = [...(event.clipboardData?.files ?? [])];
      if (files.length) {
        event.preventDefault();
        this.attach(files);
      }
    });
    if (el.searchForm) {
      on(el.searchForm, 'submit', (event) => {
        event.preventDefault();
        this.search(el.searchInput.value);
      });
      on(el.searchInput, 'keydown', (event) => {
        if (event.key === 'Escape') this.closeSearch();
      });
      on(el.moreResults, 'click', () => this.search(this.searchQuery, this.searchNext));
      on(el.closeSearch, 'click', () => this.closeSearch());
    }
  }

  /** Closes the chat and removes every listener (at sign-out). */
  dispose() {
    this.close();
    this.tray.clear();
    this.abort.abort();
    this.el.input.value = '';
    if (this.el.searchInput) this.el.searchInput.value = '';
  }

  /** Opens chat `number`: header, newest page, live subscription; marks it read. */
  async open(number) {
    this.close();
    const generation = (this.generation = (this.generation ?? 0) + 1);
    const current = () => generation === this.generation;
    this.number = number;
    this.messages = new Map();
    this.lowest = null;
    this.lastSeen = 0;
    this.readUpTo = 0;
    this.loadingOlder = false;
    this.refreshedAt.clear();
    this.tray.clear();
    let loaded;
    this.loaded = new Promise((resolve) => { loaded = resolve; });
    const { el } = this;
    el.list.replaceChildren();
    el.start.hidden = true;
    el.older.hidden = true;
    el.sendError.textContent = '';
    this.setLive('connecting');
    this.closeSearch();
    el.empty.hidden = true;
    el.pane.hidden = false;
    el.title.textContent = `Chat #${number}`;
    el.meta.textContent = 'Loading…';

    // Subscribe first, then read: once the subscription is registered, a catch-up fetch
    // leaves no gap between the history and the live events.
    const filter = { a: this.session.app, c: number };
    const notLive = (error) => {
      if (current()) this.setLive(`not live: ${error.message}`);
    };
    const messages = this.transport.subscribe(q.ON_MESSAGE, filter, {
      next: (payload) => {
        const message = payload.data?.onMessage;
        if (current() && message) this.receive(message, { live: true });
      },
      error: notLive,
    });
    const viewers = this.transport.subscribe(q.ON_CHAT_VIEWER, filter, {
      next: (payload) => {
        const viewer = payload.data?.onChatViewer;
        if (current() && viewer) this.noteViewer(viewer);
      },
      error: notLive,
    });
    const typing = this.transport.subscribe(q.ON_TYPING, filter, {
      next: (payload) => {
        const event = payload.data?.onTyping;
        if (current() && event) this.showTyping(event);
      },
      error: notLive,
    });
    this.subscriptions = [messages, viewers, typing];
    messages.ready.then(() => {
      if (!current()) return;
      this.setLive(this.transport.status === 'polling' ? 'polling' : 'live');
      this.catchUp();
    });
    viewers.ready.then(() => {
      if (current()) this.refreshViewers();
    });

    try {
      const [{ chat }, page] = await Promise.all([
        this.api.request(q.CHAT_BY_NUMBER, { a: this.session.app, n: number }),
        this.api.request(q.MESSAGES_BEFORE, { a: this.session.app, c: number, before: q.NEWEST, limit: PAGE }),
      ]);
      if (!current()) return;
      if (!chat) {
        el.meta.textContent = `There is no chat #${number}, or it is not yours to see.`;
        el.composer.hidden = true;
        return;
      }
      el.composer.hidden = false;
      this.showChat(chat);
      this.readUpTo = this.session.role === 'AGENT' ? chat.agentsLastRead : chat.customerLastRead;
      const items = page.messages.items;
      for (const message of items) this.receive(message, { live: false });
      // The newest page runs without a gap up to the chat's last message.
      if (items.length) this.lastSeen = Math.max(this.lastSeen, items[items.length - 1].number);
      else this.lowest = 1;
      while (this.messages.has(this.lastSeen + 1)) this.lastSeen += 1; // live events meanwhile
      this.updateEdges();
      this.scrollToBottom();
      loaded();
      this.markRead();
      await this.fillViewport(current);
    } catch (error) {
      if (current()) el.meta.textContent = `Could not load chat #${number}: ${error.message}`;
    } finally {
      loaded();
    }
  }

  close() {
    for (const { unsubscribe } of this.subscriptions) unsubscribe();
    this.subscriptions = [];
    this.viewers.clear();
    this.renderViewers();
    for (const { timer } of this.typers.values()) clearTimeout(timer);
    this.typers.clear();
    this.renderTyping();
    this.typingSentAt = 0;
    this.generation = (this.generation ?? 0) + 1;
    this.number = null;
    this.chat = null;
    this.el.pane.hidden = true;
    this.el.empty.hidden = false;
  }

  setLive(state) {
    this.el.live.textContent = state === 'live' ? '● live' : state;
    this.el.live.dataset.state = state;
  }

  showChat(chat) {
    this.chat = chat;
    const { el } = this;
    el.title.textContent = `#${chat.number} ${chat.subject ?? 'No subject'}`;
    const count = `${chat.messagesCount} message${chat.messagesCount === 1 ? '' : 's'}`;
    // A customer learns whether an agent handles its chat, never who (it has no agent's id).
    el.meta.textContent = this.session.role === 'AGENT'
      ? `Customer ${chat.customerId} · ${count} · ${chat.status === 'OPEN' ? 'open' : 'resolved'}`
      : `${count} · ${chat.status === 'OPEN' ? 'open' : 'resolved'} · ${chat.hasAgent ? 'an agent is handling it' : 'waiting for an agent'}`;
    if (el.status) el.status.value = chat.status;
    this.onShow(chat);
  }

  /** Re-reads the chat's header (status, subject) after an onChat event or a poll. */
  async refreshChat() {
    if (this.number == null) return;
    const number = this.number;
    const { chat } = await this.api.request(q.CHAT_BY_NUMBER, { a: this.session.app, n: number });
    if (chat && number === this.number) this.showChat(chat);
  }

  /** Merges one message by number: new ones are inserted in order, known ones replaced. */
  receive(message, { live }) {
    if (message.chatNumber !== this.number) return;
    const known = this.messages.has(message.number);
    this.messages.set(message.number, message);
    const item = renderMessage(message, this.isMine(message), (n) => this.refreshMessage(n));
    if (known) {
      this.el.list.querySelector(`[data-number="${message.number}"]`)?.replaceWith(item);
      return;
    }
    const stick = this.nearBottom() || this.isMine(message);
    const next = [...this.el.list.children].find((li) => Number(li.dataset.number) > message.number);
    this.el.list.insertBefore(item, next ?? null);
    if (this.lowest === null || message.number < this.lowest) this.lowest = message.number;
    if (this.isMine(message)) this.readUpTo = Math.max(this.readUpTo, message.number);
    if (this.chat && message.number > this.chat.messagesCount) {
      this.showChat({ ...this.chat, messagesCount: message.number });
    }
    const gapBefore = message.number > this.lastSeen + 1;
    while (this.messages.has(this.lastSeen + 1)) this.lastSeen += 1;
    if (!live) return;
    if (stick) this.scrollToBottom();
    if (!this.isMine(message)) {
      this.stopTyping(`${message.senderRole}:${message.senderId}`);
      const files = message.attachments?.length ?? 0;
      const attached = files ? ` (${files} file${files === 1 ? '' : 's'})` : '';
      this.announce(`New message from ${message.senderId}: ${message.body}${attached}`);
      this.markRead();
    }
    this.onChange(message);
    // An event that skips numbers: fetch what is missing.
    if (gapBefore) this.catchUp();
  }

  isMine(message) {
    return this.isMe(message.senderId, message.senderRole);
  }

  isMe(userId, role) {
    return userId === this.session.sub && role === this.session.role;
  }

  /** Re-reads who is viewing the chat (at open, after a reconnection or a poll). */
  async refreshViewers() {
    if (this.number == null || !this.el.viewers) return;
    const number = this.number;
    try {
      const { chatViewers } = await this.api.request(q.CHAT_VIEWERS, { a: this.session.app, c: number });
      if (number !== this.number) return;
      this.viewers = new Map(chatViewers
        .filter((p) => !this.isMe(p.userId, p.role))
        .map((p) => [`${p.role}:${p.userId}`, p]));
      this.renderViewers();
    } catch {
      // Not shown then: the viewers line is a hint, and the next resync reads it again.
    }
  }

  /** One onChatViewer event: someone started or stopped looking at the chat. */
  noteViewer(viewer) {
    if (viewer.chatNumber !== this.number || this.isMe(viewer.userId, viewer.role)) return;
    const key = `${viewer.role}:${viewer.userId}`;
    if (viewer.viewing) this.viewers.set(key, viewer);
    else this.viewers.delete(key);
    this.renderViewers();
  }

  /** A customer learns that an agent is there; an agent sees who else is, by name. */
  renderViewers() {
    if (!this.el.viewers) return;
    const viewers = [...this.viewers.values()];
    let text = '';
    if (this.session.role === 'CUSTOMER') {
      const agents = viewers.filter((v) => v.role === 'AGENT').length;
      if (agents === 1) text = 'An agent is viewing this chat';
      else if (agents > 1) text = `${agents} agents are viewing this chat`;
    } else if (viewers.length) {
      const names = viewers.map((v) => `${v.userId} (${v.role === 'AGENT' ? 'agent' : 'customer'})`);
      text = `Viewing now: ${names.join(', ')}`;
    }
    // Only a change is written: the line is a live region.
    if (this.el.viewers.textContent !== text) this.el.viewers.textContent = text;
  }

  /** The user typed in the composer: tell the chat, at most once per TYPING_CALL_MS. */
  noteTyping() {
    if (this.number == null || !this.chat || !this.el.input.value.trim()) return;
    const now = Date.now();
    if (now - this.typingSentAt < TYPING_CALL_MS) return;
    this.typingSentAt = now;
    // Best effort: a lost typing call only means no "typing…" on the other side.
    this.api.request(q.TYPING, { a: this.session.app, c: this.number }).catch(() => {});
  }

  /** One onTyping event: "… is typing" until TYPING_SHOWN_MS pass or their message arrives. */
  showTyping(event) {
    if (event.chatNumber !== this.number || this.isMe(event.userId, event.role)) return;
    const key = `${event.role}:${event.userId}`;
    clearTimeout(this.typers.get(key)?.timer);
    this.typers.set(key, { name: event.userId, timer: setTimeout(() => this.stopTyping(key), TYPING_SHOWN_MS) });
    this.renderTyping();
  }

  stopTyping(key) {
    const typer = this.typers.get(key);
    if (!typer) return;
    clearTimeout(typer.timer);
    this.typers.delete(key);
    this.renderTyping();
  }

  renderTyping() {
    if (!this.el.typing) return;
    const names = [...this.typers.values()].map((t) => t.name);
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    if (this.el.typing.textContent !== text) this.el.typing.textContent = text;
  }

  /** Fetches everything after lastSeen (after a reconnection, a gap, or a poll). */
  async catchUp() {
    if (this.number == null) return;
    if (this.catchingUp) {
      this.catchUpAgain = true;
      return;
    }
    this.catchingUp = true;
    const number = this.number;
    try {
      // After the first page: catching up from nothing would read the whole chat.
      await this.loaded;
      if (number !== this.number || !this.chat) return; // no first page: nothing to continue
      let next = null;
      do {
        const variables = { a: this.session.app, c: number, limit: CATCH_UP_PAGE, next };
        if (!next && this.lastSeen > 0) variables.after = this.lastSeen;
        const { messages } = await this.api.request(q.MESSAGES_AFTER, variables);
        if (number !== this.number) return;
        for (const message of messages.items) this.receive(message, { live: true });
        next = messages.nextToken;
      } while (next);
      this.updateEdges();
      if (this.transport.status === 'polling') await this.refreshChat();
    } catch (error) {
      this.setLive(`catching up failed: ${error.message}`);
    } finally {
      this.catchingUp = false;
      if (this.catchUpAgain) {
        this.catchUpAgain = false;
        this.catchUp();
      }
    }
  }

  /**
   * Loads the page of messages before the oldest one shown, keeping the scroll position.
   * Resolves to whether it loaded a page.
   */
  async loadOlder() {
    if (this.loadingOlder || this.number == null || this.lowest === null || this.lowest <= 1) return false;
    this.loadingOlder = true;
    const number = this.number;
    const { history } = this.el;
    try {
      const { messages } = await this.api.request(q.MESSAGES_BEFORE, {
        a: this.session.app, c: number, before: this.lowest, limit: PAGE,
      });
      if (number !== this.number) return false;
      const fromBottom = history.scrollHeight - history.scrollTop;
      for (const message of messages.items) this.receive(message, { live: false });
      if (messages.items.length === 0) this.lowest = 1;
      this.updateEdges();
      history.scrollTop = history.scrollHeight - fromBottom;
      return true;
    } catch (error) {
      this.el.start.hidden = false;
      this.el.start.textContent = `Could not load older messages: ${error.message}`;
      return false;
    } finally {
      this.loadingOlder = false;
    }
  }

  /** Loads older pages until the history overflows its box (or starts), so it can scroll. */
  async fillViewport(current) {
    const { history } = this.el;
    while (current() && this.lowest > 1 && history.clientHeight > 0 && history.scrollHeight <= history.clientHeight) {
      if (!(await this.loadOlder())) return;
    }
  }

  updateEdges() {
    const atStart = this.lowest === null || this.lowest <= 1;
    this.el.older.hidden = atStart;
    this.el.start.hidden = !atStart;
    this.el.start.textContent = this.messages.size ? 'Start of the conversation' : 'No messages yet.';
  }

  nearBottom() {
    const { history } = this.el;
    return history.scrollHeight - history.scrollTop - history.clientHeight < NEAR_EDGE_PX;
  }

  scrollToBottom() {
    this.el.history.scrollTop = this.el.history.scrollHeight;
  }

  /** Moves the caller's watermark to the last message held, when the page is in view. */
  async markRead() {
    if (this.number == null || document.visibilityState !== 'visible') return;
    if (this.lastSeen <= this.readUpTo || this.marking) return;
    this.marking = true;
    const number = this.number;
    try {
      const { markChatRead } = await this.api.request(q.MARK_READ, { a: this.session.app, c: number, upTo: this.lastSeen });
      if (number === this.number) this.readUpTo = Math.max(this.readUpTo, markChatRead.lastReadNumber);
      this.onRead(markChatRead);
    } catch (error) {
      this.announce(`Could not mark the chat read: ${error.message}`);
    } finally {
      this.marking = false;
    }
    if (number === this.number && this.lastSeen > this.readUpTo) this.markRead();
  }

  /**
   * Reads message `number` again (its attachments' URLs signed anew) and shows it; resolves
   * to it, or to null (gone, or read again less than REFRESH_MESSAGE_MS ago).
   */
  async refreshMessage(number) {
    const chat = this.number;
    const last = this.refreshedAt.get(number) ?? 0;
    if (chat == null || Date.now() - last < REFRESH_MESSAGE_MS) return null;
    this.refreshedAt.set(number, Date.now());
    try {
      const { message } = await this.api.request(q.MESSAGE_BY_NUMBER, { a: this.session.app, c: chat, n: number });
      if (!message || chat !== this.number) return null;
      this.receive(message, { live: false });
      return message;
    } catch (error) {
      this.announce(`Could not load the message's files again: ${error.message}`);
      return null;
    }
  }

  /** Adds files to the next message; they upload at once. */
  attach(files) {
    if (!files.length || this.number == null || !this.chat) return;
    this.el.sendError.textContent = '';
    const refused = this.tray.add(files);
    if (refused.length) {
      this.el.sendError.textContent = `At most ${MAX_FILES_PER_MESSAGE} files per message: ${refused.join(', ')} not added.`;
    }
  }

  updateComposer() {
    const uploading = this.tray.items.some((item) => item.status === 'uploading');
    this.el.tray.hidden = this.tray.items.length === 0;
    this.el.send.textContent = uploading && this.sending ? 'Uploading…' : 'Send';
  }

  /**
   * Sends the composer's text and the uploaded files (a message may be files alone); waits
   * for uploads in flight first. Retries with the same clientMessageId if the network fails.
   */
  async send() {
    const { input, send, sendError } = this.el;
    const body = input.value;
    if ((!body.trim() && !this.tray.hasSendable()) || this.number == null || this.sending) return;
    const number = this.number;
    this.sending = true;
    send.disabled = true;
    sendError.textContent = '';
    this.updateComposer();
    try {
      const files = await this.tray.ready();
      if (number !== this.number) return;
      if (!body.trim() && files.length === 0) {
        sendError.textContent = 'Not sent: no file could be uploaded (see why above).';
        return;
      }
      const variables = {
        a: this.session.app,
        c: number,
        body: body.trim() ? body : null,
        id: randomId(),
        files: files.length ? files.map((item) => item.id) : null,
      };
      let message;
      for (let attempt = 1; ; attempt += 1) {
        try {
          message = (await this.api.request(q.SEND, variables)).sendMessage;
          break;
        } catch (error) {
          if (!(error instanceof GraphQLError) || error.code !== 'Network' || attempt === SEND_ATTEMPTS) throw error;
          await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
        }
      }
      if (input.value === body) input.value = '';
      this.tray.forget(files);
      if (number === this.number) this.receive(message, { live: true });
    } catch (error) {
      sendError.textContent = `Not sent: ${error.message}`;
    } finally {
      this.sending = false;
      send.disabled = false;
      this.updateComposer();
    }
  }

  /** Searches this chat; the results show the matched parts in <mark>. */
  async search(text, nextToken = null) {
    const query = text.trim();
    const { el } = this;
    if (!query || this.number == null) {
      this.closeSearch();
      return;
    }
    const number = this.number;
    el.results.hidden = false;
    if (!nextToken) {
      el.resultsList.replaceChildren();
      el.resultsHeading.textContent = `Searching for “${query}”…`;
    }
    try {
      const { searchMessages } = await this.api.request(q.SEARCH, {
        a: this.session.app, c: number, q: query, limit: 20, next: nextToken,
      });
      if (number !== this.number) return;
      this.searchQuery = query;
      this.searchNext = searchMessages.nextToken;
      for (const message of searchMessages.items) el.resultsList.append(this.renderResult(message, query));
      const count = el.resultsList.children.length;
      el.resultsHeading.textContent = count === 0
        ? `No message matches “${query}”`
        : `${count}${this.searchNext ? '+' : ''} message${count === 1 ? '' : 's'} match “${query}”`;
      el.moreResults.hidden = !this.searchNext;
    } catch (error) {
      el.resultsHeading.textContent = `Search failed: ${error.message}`;
    }
  }

  renderResult(message, query) {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'result';
    const meta = document.createElement('span');
    meta.className = 'result-meta';
    meta.textContent = `#${message.number} · ${message.senderId} · ${formatTime(message.createdAt)}`;
    const body = document.createElement('span');
    body.className = 'result-body';
    body.append(highlighted(document, message.body, query));
    button.append(meta, body);
    button.addEventListener('click', () => this.reveal(message.number));
    item.append(button);
    return item;
  }

  closeSearch() {
    if (!this.el.results) return;
    this.el.results.hidden = true;
    this.el.resultsList.replaceChildren();
    this.searchQuery = null;
    this.searchNext = null;
  }

  /** Scrolls to message `number`, loading older pages until it is there, and focuses it. */
  async reveal(number) {
    while (this.number != null && this.lowest > number) {
      if (this.loadingOlder) await new Promise((resolve) => setTimeout(resolve, 50));
      else if (!(await this.loadOlder())) break;
    }
    const item = this.el.list.querySelector(`[data-number="${number}"]`);
    if (!item) return;
    item.scrollIntoView({ block: 'center' });
    item.classList.add('flash');
    setTimeout(() => item.classList.remove('flash'), 2000);
    item.focus();
  }
}

function renderMessage(message, mine, refresh) {
  const item = document.createElement('li');
  item.className = `message from-${message.senderRole.toLowerCase()}${mine ? ' mine' : ''}`;
  item.dataset.number = message.number;
  item.tabIndex = -1;
  const meta = document.createElement('p');
  meta.className = 'message-meta';
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.textContent = mine ? 'You' : `${message.senderId} (${message.senderRole === 'AGENT' ? 'agent' : 'customer'})`;
  const time = document.createElement('time');
  time.dateTime = message.createdAt;
  time.title = new Date(message.createdAt).toLocaleString();
  time.textContent = formatTime(message.createdAt);
  const number = document.createElement('span');
  number.className = 'number';
  number.textContent = `#${message.number}`;
  meta.append(sender, ' ', time, ' ', number);
  if (message.editedAt && !message.deleted) meta.append(' (edited)');
  const body = document.createElement('p');
  body.className = 'message-body';
  if (message.deleted) {
    body.classList.add('deleted');
    body.textContent = 'This message was deleted.';
  } else {
    body.textContent = message.body;
  }
  item.append(meta);
  // A message of files alone has no text to show.
  if (message.deleted || message.body) item.append(body);
  const files = renderAttachments(document, message, refresh);
  if (files) item.append(files);
  return item;
}

export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleDateString([], { month: 'short', day: 'numeric' });
}
