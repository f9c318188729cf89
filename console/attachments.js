// Attachments: uploading a file (createUpload, then the bytes straight to the signed URL
// with progress), and showing a message's files: images as thumbnails sized from their
// dimensions before they load (no layout jump) that open the full image, other files as
// download links with their name and size. Signed URLs are short-lived: a link whose URL
// has expired, or an image that fails to load, asks for the message again.
// File names are user content: they are only ever set as text.

import { GraphQLError } from './graphql.js';
import * as q from './queries.js';

/** The largest box a thumbnail takes, in CSS pixels. */
export const THUMBNAIL_MAX = { width: 240, height: 180 };

/** At most this many files per message (the server's limit). */
export const MAX_FILES_PER_MESSAGE = 10;

/** What the file picker offers first (the server's allow-list decides: docs/attachments.md). */
export const ACCEPTED_TYPES = [
  'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf', 'text/plain', 'text/csv',
  'application/zip', '.docx', '.xlsx', '.pptx',
].join(',');

/** Tries of one upload's bytes when the storage is busy (503, with Retry-After). */
const BUSY_ATTEMPTS = 3;

/** A URL is taken as expired this long before it says, for the time a click takes. */
const EXPIRY_MARGIN_MS = 10_000;

// Headers a page may not set itself (the browser sets them): skipped, never an error.
const FORBIDDEN_HEADERS = new Set(['content-length', 'host', 'connection', 'expect', 'keep-alive', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'date', 'origin', 'referer', 'cookie']);

/** The box of an image's thumbnail: its size scaled down (never up) into THUMBNAIL_MAX. */
export function thumbnailSize(width, height, max = THUMBNAIL_MAX) {
  if (!(width > 0 && height > 0)) return null;
  const scale = Math.min(1, max.width / width, max.height / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** "512 B", "12.3 KB", "4.0 MB" (units of 1,024). */
export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * When a signed URL stops working, in ms since the epoch, or null when it does not say:
 * the dev server's `expires` (ms), or S3's presigned `X-Amz-Date` + `X-Amz-Expires`.
 */
export function urlExpiresAt(url) {
  let params;
  try {
    params = new URL(url).searchParams;
  } catch {
    return null;
  }
  const expires = params.get('expires');
  if (expires && /^\d+$/.test(expires)) return Number(expires);
  const date = params.get('X-Amz-Date');
  const seconds = params.get('X-Amz-Expires');
  const m = date?.match(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/);
  if (m && seconds && /^\d+$/.test(seconds)) {
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) + Number(seconds) * 1000;
  }
  return null;
}

export function isExpiredUrl(url, now = Date.now()) {
  const at = urlExpiresAt(url);
  return at !== null && at - EXPIRY_MARGIN_MS <= now;
}

/**
 * Why the storage refused an upload, from its answer: the dev server's JSON `message`, S3's
 * XML `<Message>`, or the HTTP status.
 */
export function refusalMessage(status, text) {
  try {
    const message = JSON.parse(text)?.message;
    if (typeof message === 'string' && message) return message;
  } catch {
    // Not JSON: S3 answers XML.
  }
  const xml = typeof text === 'string' ? text.match(/<Message>([^<]{1,300})<\/Message>/) : null;
  if (xml) return xml[1];
  return `the storage answered HTTP ${status}`;
}

/**
 * Uploads `file` for a message of chat `chatNumber`: createUpload (the server checks the
 * type, size and name and says why it refuses), then one request with the bytes to the
 * signed URL, reporting progress (0..1). Resolves to the upload's id for sendMessage's
 * attachmentIds; rejects with an Error whose message is the server's reason.
 */
export async function uploadFile({ api, app, chatNumber, file, onProgress = () => {}, signal }) {
  const { createUpload: target } = await api.request(q.CREATE_UPLOAD, {
    a: app,
    c: chatNumber,
    name: file.name,
    type: file.type || 'application/octet-stream',
    size: file.size,
  });
  for (let attempt = 1; ; attempt += 1) {
    if (signal?.aborted) throw new DOMException('the upload was cancelled', 'AbortError');
    try {
      await sendBytes(target, file, onProgress, signal);
      return target.id;
    } catch (error) {
      // Too many uploads in flight on the server: it asks to come back shortly.
      if (error.status !== 503 || attempt === BUSY_ATTEMPTS) throw error;
      onProgress(0);
      await new Promise((resolve) => setTimeout(resolve, Math.min(error.retryAfter ?? 1, 10) * 1000));
    }
  }
}

function sendBytes(target, file, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(target.method || 'PUT', target.url);
    for (const { name, value } of target.headers ?? []) {
      if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        const error = new Error(refusalMessage(xhr.status, xhr.responseText));
        error.status = xhr.status;
        const retryAfter = Number(xhr.getResponseHeader('Retry-After'));
        if (retryAfter > 0) error.retryAfter = retryAfter;
        reject(error);
      }
    });
    xhr.addEventListener('error', () => reject(new Error('the file could not be sent to the storage')));
    xhr.addEventListener('abort', () => reject(new DOMException('the upload was cancelled', 'AbortError')));
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(file);
  });
}

/**
 * The files of `message` as a list, or null when it has none. `refresh(number)` reads the
 * message again (fresh URLs) and resolves to it, or to null; it is called when a link's URL
 * has expired (then the fresh URL opens) or an image fails to load (the view re-renders).
 */
export function renderAttachments(doc, message, refresh) {
  const files = message.attachments ?? [];
  if (message.deleted || files.length === 0) return null;
  const list = doc.createElement('ul');
  list.className = 'attachments';
  files.forEach((file, index) => {
    const item = doc.createElement('li');
    const image = file.contentType.startsWith('image/');
    item.className = image ? 'attachment attachment-image' : 'attachment attachment-file';
    const link = doc.createElement('a');
    link.href = file.url;
    link.rel = 'noopener noreferrer';
    if (image) {
      link.target = '_blank';
      link.title = `${file.name} (${formatSize(file.size)}): open the full image`;
      const img = doc.createElement('img');
      img.alt = file.name;
      img.decoding = 'async';
      const box = thumbnailSize(file.width, file.height);
      if (box) {
        // The box is known before a byte arrives: the history does not jump as images load.
        img.width = box.width;
        img.height = box.height;
      } else {
        img.classList.add('unsized');
      }
      img.src = file.url;
      img.addEventListener('error', () => refresh(message.number), { once: true });
      link.append(img);
    } else {
      link.download = file.name;
      const name = doc.createElement('span');
      name.className = 'attachment-name';
      name.textContent = file.name;
      const size = doc.createElement('span');
      size.className = 'attachment-size';
      size.textContent = formatSize(file.size);
      link.append(name, ' ', size);
    }
    link.addEventListener('click', (event) => {
      if (!isExpiredUrl(link.href)) return;
      // An expired URL: ask for the message again and open the fresh one.
      event.preventDefault();
      refresh(message.number).then((fresh) => {
        const url = fresh?.attachments?.[index]?.url;
        if (!url) return;
        const opener = doc.createElement('a');
        opener.href = url;
        opener.rel = 'noopener noreferrer';
        if (image) opener.target = '_blank';
        else opener.download = file.name;
        opener.click();
      });
    });
    item.append(link);
    list.append(item);
  });
  return list;
}

/**
 * The files waiting to be sent with the next message of the open chat: each uploads as soon
 * as it is added, with its progress, and shows the server's reason when refused.
 * `list`: the <ul> they show in; `context()`: { api, app, chatNumber } of the open chat;
 * `onChange()`: called when the set or its state changes.
 */
export class AttachmentTray {
  constructor({ list, context, onChange = () => {} }) {
    this.list = list;
    this.context = context;
    this.onChange = onChange;
    this.items = [];
  }

  /** Adds files and starts their uploads; refuses (with a message) past the per-message limit. */
  add(files) {
    const doc = this.list.ownerDocument;
    const refused = [];
    for (const file of files) {
      if (this.items.length >= MAX_FILES_PER_MESSAGE) {
        refused.push(file.name);
        continue;
      }
      const item = { file, id: null, status: 'uploading', error: null, abort: new AbortController() };
      item.element = this.renderItem(doc, item);
      this.items.push(item);
      this.list.append(item.element);
      item.done = this.upload(item);
    }
    this.onChange();
    return refused;
  }

  async upload(item) {
    const { api, app, chatNumber } = this.context();
    try {
      item.id = await uploadFile({
        api,
        app,
        chatNumber,
        file: item.file,
        signal: item.abort.signal,
        onProgress: (fraction) => {
          item.progress.value = fraction;
        },
      });
      item.status = 'ready';
      item.state.textContent = 'ready';
    } catch (error) {
      if (error.name === 'AbortError') return;
      item.status = 'failed';
      item.error = error instanceof GraphQLError || error instanceof Error ? error.message : String(error);
      item.element.classList.add('failed');
      item.progress.hidden = true;
      item.state.textContent = `Not uploaded: ${item.error}`;
    }
    item.element.dataset.status = item.status;
    this.onChange();
  }

  renderItem(doc, item) {
    const element = doc.createElement('li');
    element.className = 'tray-item';
    element.dataset.status = 'uploading';
    const name = doc.createElement('span');
    name.className = 'attachment-name';
    name.textContent = item.file.name;
    const size = doc.createElement('span');
    size.className = 'attachment-size';
    size.textContent = formatSize(item.file.size);
    item.progress = doc.createElement('progress');
    item.progress.max = 1;
    item.progress.value = 0;
    item.progress.setAttribute('aria-label', `Uploading ${item.file.name}`);
    item.state = doc.createElement('span');
    item.state.className = 'tray-state';
    item.state.textContent = 'uploading…';
    const remove = doc.createElement('button');
    remove.type = 'button';
    remove.className = 'tray-remove';
    remove.textContent = '×';
    remove.setAttribute('aria-label', `Remove ${item.file.name}`);
    remove.addEventListener('click', () => this.remove(item));
    element.append(name, ' ', size, ' ', item.progress, ' ', item.state, ' ', remove);
    return element;
  }

  remove(item) {
    item.abort.abort();
    item.element.remove();
    this.items = this.items.filter((other) => other !== item);
    this.onChange();
  }

  /** Waits for the uploads in flight; resolves to the items ready to send. */
  async ready() {
    await Promise.all(this.items.map((item) => item.done));
    return this.items.filter((item) => item.status === 'ready');
  }

  /** Whether anything may still be sent (uploading or uploaded). */
  hasSendable() {
    return this.items.some((item) => item.status !== 'failed');
  }

  /** Drops `sent` items (after their message went out). */
  forget(sent) {
    for (const item of sent) {
      item.element.remove();
    }
    this.items = this.items.filter((item) => !sent.includes(item));
    this.onChange();
  }

  /** Cancels and drops everything (another chat opened, sign-out). */
  clear() {
    for (const item of this.items) item.abort.abort();
    this.items = [];
    this.list.replaceChildren();
    this.onChange();
  }
}
