// The admin page, signed in with the server's admin key: applications (create, rename,
// rotate the secret), their webhook endpoints (create, enable or disable, rotate the
// signing secret, delete) and each endpoint's deliveries (status, attempts, last response
// code; redeliver). Secrets are shown once, when created or rotated, and never stored.
// On a development machine (loopback host) a new secret also gives sign-in links for the
// agent console and the customer widget, with tokens minted here (session.js).

import config from './config.js';
import { GraphQLClient, resolveEndpoints } from './graphql.js';
import * as q from './queries.js';
import { devHelperEnabled, mintDevToken, TokenStore } from './session.js';

const $ = (id) => document.getElementById(id);
const EVENTS = ['chat.created', 'chat.updated', 'message.created', 'message.edited', 'message.deleted', 'message.unseen'];
const DELIVERY_PAGE = 20;
const DEV_LINK_TTL_SECONDS = 3600;

const keyStore = new TokenStore('chat-console.admin');
let endpoints;
try {
  endpoints = resolveEndpoints(config, location);
} catch (error) {
  $('signin-error').textContent = `Configuration error: ${error.message}`;
  throw error;
}
$('endpoint-shown').textContent = endpoints.http;

/** The application tokens this browser knows (the API lists none): localStorage. */
const known = {
  key: 'chat-console.admin.applications',
  load() {
    try {
      const list = JSON.parse(localStorage.getItem(this.key) ?? '[]');
      return Array.isArray(list) ? list.filter((t) => typeof t === 'string') : [];
    } catch {
      return [];
    }
  },
  save(list) {
    try {
      localStorage.setItem(this.key, JSON.stringify(list));
    } catch {
      // Storage disabled: the list lasts until the page is reloaded.
    }
  },
};

let session = null;

async function signIn(key) {
  const api = new GraphQLClient(endpoints.http, key);
  // The server's opinion of the key: only the admin key may read any application.
  await api.request(q.APPLICATION_BY_TOKEN, { t: 'app_check' });
  keyStore.save(key);
  $('sign-in-view').hidden = true;
  $('signin-error').textContent = '';
  $('admin-view').hidden = false;
  $('session-bar').hidden = false;
  session = begin(api);
}

function signOut(message) {
  session?.abort();
  session = null;
  keyStore.clear();
  $('key-input').value = '';
  $('admin-view').hidden = true;
  $('session-bar').hidden = true;
  $('sign-in-view').hidden = false;
  $('signin-error').textContent = message ?? '';
}

$('key-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = event.target.querySelector('button');
  button.disabled = true;
  try {
    await signIn($('key-input').value.trim());
  } catch (error) {
    $('signin-error').textContent = `Not signed in: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});
$('sign-out').addEventListener('click', () => signOut('Signed out.'));

const saved = keyStore.load();
if (saved) {
  signIn(saved).catch((error) => {
    keyStore.clear();
    $('signin-error').textContent = `Signed out: ${error.message}`;
  });
}

/** Sets up the admin view for one session; returns the AbortController that ends it. */
function begin(api) {
  const ending = new AbortController();
  const on = (target, type, listener) => target.addEventListener(type, listener, { signal: ending.signal });
  api.onUnauthorized = (message) => signOut(`The server refused the admin key (${message}).`);
  const state = { apps: new Map(), app: null, endpoint: null, deliveriesNext: null };

  const fail = (what) => (error) => {
    $('admin-error').textContent = `${what}: ${error.message}`;
  };
  const clearError = () => {
    $('admin-error').textContent = '';
  };
  const announce = (text) => {
    $('announcer').textContent = text;
  };

  // ---- Secrets, shown once.
  async function showSecret(title, secret, appToken) {
    $('secret-heading').textContent = title;
    $('secret-value').textContent = secret;
    $('secret-panel').hidden = false;
    $('dev-links').hidden = true;
    if (appToken && devHelperEnabled(config.devTokenHelper, location.hostname)) {
      try {
        const mint = (sub, role) => mintDevToken({ secret, app: appToken, sub, role, ttlSeconds: DEV_LINK_TTL_SECONDS });
        const [agent, customer] = await Promise.all([mint('agent-1', 'AGENT'), mint('customer-1', 'CUSTOMER')]);
        $('dev-agent-link').href = `./#token=${agent}`;
        $('dev-customer-link').href = `./customer.html#token=${customer}`;
        $('dev-links').hidden = false;
      } catch {
        // No WebCrypto (not a secure context): no links, the secret is still shown.
      }
    }
    $('secret-panel').scrollIntoView({ block: 'nearest' });
    $('secret-copy').focus();
  }
  function hideSecret() {
    $('secret-panel').hidden = true;
    $('secret-value').textContent = '';
    $('dev-agent-link').removeAttribute('href');
    $('dev-customer-link').removeAttribute('href');
  }
  on($('secret-done'), 'click', hideSecret);
  on($('secret-copy'), 'click', () => {
    navigator.clipboard?.writeText($('secret-value').textContent).then(
      () => announce('Secret copied'),
      () => announce('Copying failed: select the secret and copy it'),
    );
  });

  // ---- Applications.
  function remember(app) {
    state.apps.set(app.token, app);
    const list = known.load();
    if (!list.includes(app.token)) known.save([...list, app.token]);
  }

  async function loadApps() {
    const tokens = known.load();
    const results = await Promise.all(tokens.map((t) => api.request(q.APPLICATION_BY_TOKEN, { t }).then(
      (data) => data.application,
      () => null,
    )));
    state.apps.clear();
    for (const app of results) if (app) state.apps.set(app.token, app);
    renderApps();
  }

  function renderApps() {
    const rows = [...state.apps.values()].map((app) => {
      const row = document.createElement('tr');
      row.dataset.app = app.token;
      if (app.token === state.app) row.setAttribute('aria-current', 'true');
      const name = cell(app.name);
      name.className = 'app-name';
      const token = document.createElement('td');
      const code = document.createElement('code');
      code.textContent = app.token;
      token.append(code);
      const actions = document.createElement('td');
      actions.className = 'actions';
      actions.append(
        button('Webhooks', () => selectApp(app.token), `Webhooks of ${app.name}`),
        button('Rename', () => rename(app), `Rename ${app.name}`),
        button('Routing', () => setRouting(app), `Routing of ${app.name}`),
        button('Rotate secret', () => rotateAppSecret(app), `Rotate the secret of ${app.name}`),
        button('Forget', () => forget(app), `Forget ${app.name} in this browser`),
      );
      const created = cell(formatDate(app.createdAt));
      const routing = cell(app.routing.enabled
        ? `on, ${app.routing.maxOpenChatsPerAgent} open chats per agent`
        : 'off');
      routing.className = 'app-routing';
      row.append(name, token, cell(String(app.chatsCount)), routing, created, actions);
      if (app.previousSecretExpiresAt) {
        created.append(document.createElement('br'), `previous secret valid until ${formatDate(app.previousSecretExpiresAt)}`);
      }
      return row;
    });
    $('apps-body').replaceChildren(...rows);
    $('apps-empty').hidden = rows.length > 0;
  }

  on($('create-app-form'), 'submit', async (event) => {
    event.preventDefault();
    clearError();
    const name = $('new-app-name').value.trim();
    if (!name) return;
    try {
      const { createApplication } = await api.request(q.CREATE_APPLICATION, { name });
      remember(createApplication.application);
      $('new-app-name').value = '';
      renderApps();
      await showSecret(`Secret of ${createApplication.application.name}`, createApplication.secret, createApplication.application.token);
    } catch (error) {
      fail('Could not create the application')(error);
    }
  });

  on($('add-app-form'), 'submit', async (event) => {
    event.preventDefault();
    clearError();
    const t = $('add-app-token').value.trim();
    try {
      const { application } = await api.request(q.APPLICATION_BY_TOKEN, { t });
      if (!application) throw new Error(`there is no application ${t}`);
      remember(application);
      $('add-app-token').value = '';
      renderApps();
    } catch (error) {
      fail('Could not add the application')(error);
    }
  });

  async function rename(app) {
    const name = prompt(`New name for ${app.name}`, app.name)?.trim();
    if (!name || name === app.name) return;
    clearError();
    try {
      const { updateApplication } = await api.request(q.RENAME_APPLICATION, { t: app.token, name });
      remember(updateApplication);
      renderApps();
      if (state.app === app.token) renderWebhooksHeading();
    } catch (error) {
      fail('Could not rename the application')(error);
    }
  }

  // Routing (docs/assignment.md): new chats go round robin to ONLINE agents, each up to a
  // cap of open chats; 0 turns it off.
  async function setRouting(app) {
    const current = app.routing.enabled ? String(app.routing.maxOpenChatsPerAgent) : '0';
    const answer = prompt(
      `Routing of ${app.name}: open chats per agent (1-100) to route new chats to ONLINE agents, or 0 to turn routing off`,
      current,
    )?.trim();
    if (answer === undefined || answer === '' || answer === current) return;
    const cap = Number(answer);
    if (!Number.isInteger(cap) || cap < 0 || cap > 100) {
      fail('Could not change routing')(new Error('give a whole number from 0 to 100'));
      return;
    }
    clearError();
    const routing = cap === 0 ? { enabled: false } : { enabled: true, maxOpenChatsPerAgent: cap };
    try {
      const { updateApplication } = await api.request(q.SET_ROUTING, { t: app.token, routing });
      remember(updateApplication);
      renderApps();
      announce(`Routing of ${app.name}: ${cap === 0 ? 'off' : `on, ${cap} per agent`}`);
    } catch (error) {
      fail('Could not change routing')(error);
    }
  }

  async function rotateAppSecret(app) {
    if (!confirm(`Rotate the secret of ${app.name}?\n\nTokens signed with the current secret keep working for a day.`)) return;
    clearError();
    try {
      const { rotateApplicationSecret } = await api.request(q.ROTATE_APPLICATION_SECRET, { t: app.token, grace: 86400 });
      remember(rotateApplicationSecret.application);
      renderApps();
      await showSecret(`New secret of ${app.name}`, rotateApplicationSecret.secret, app.token);
    } catch (error) {
      fail('Could not rotate the secret')(error);
    }
  }

  function forget(app) {
    known.save(known.load().filter((t) => t !== app.token));
    state.apps.delete(app.token);
    if (state.app === app.token) selectApp(null);
    renderApps();
  }

  // ---- Webhook endpoints of the selected application.
  $('endpoint-events').replaceChildren($('endpoint-events').querySelector('legend'), ...EVENTS.map((type) => {
    const label = document.createElement('label');
    label.className = 'checkbox';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'event';
    box.value = type;
    box.checked = type !== 'message.unseen';
    label.append(box, ` ${type}`);
    return label;
  }));

  function renderWebhooksHeading() {
    const app = state.apps.get(state.app);
    $('webhooks-heading').textContent = app ? `Webhook endpoints of ${app.name}` : '';
  }

  async function selectApp(token) {
    state.app = token;
    state.endpoint = null;
    $('deliveries-section').hidden = true;
    $('webhooks-section').hidden = !token;
    renderApps();
    if (!token) return;
    renderWebhooksHeading();
    await loadEndpoints();
    $('webhooks-section').scrollIntoView({ block: 'nearest' });
  }

  async function loadEndpoints() {
    const app = state.app;
    try {
      const { webhookEndpoints } = await api.request(q.WEBHOOK_ENDPOINTS, { a: app });
      if (app === state.app) renderEndpoints(webhookEndpoints);
    } catch (error) {
      fail('Could not load the webhook endpoints')(error);
    }
  }

  function renderEndpoints(list) {
    const rows = list.map((endpoint) => {
      const row = document.createElement('tr');
      row.dataset.endpoint = endpoint.id;
      if (endpoint.id === state.endpoint?.id) row.setAttribute('aria-current', 'true');
      const url = document.createElement('td');
      const code = document.createElement('code');
      code.textContent = endpoint.url;
      url.append(code);
      const stateCell = cell(endpoint.enabled ? 'enabled' : 'disabled');
      stateCell.className = endpoint.enabled ? 'endpoint-enabled' : 'endpoint-disabled';
      if (endpoint.disabledReason) stateCell.append(document.createElement('br'), endpoint.disabledReason);
      const actions = document.createElement('td');
      actions.className = 'actions';
      actions.append(
        button('Deliveries', () => selectEndpoint(endpoint), `Deliveries to ${endpoint.url}`),
        button(endpoint.enabled ? 'Disable' : 'Enable', () => setEnabled(endpoint, !endpoint.enabled), `${endpoint.enabled ? 'Disable' : 'Enable'} ${endpoint.url}`),
        button('Rotate secret', () => rotateEndpointSecret(endpoint), `Rotate the signing secret of ${endpoint.url}`),
        button('Delete', () => deleteEndpoint(endpoint), `Delete ${endpoint.url}`),
      );
      row.append(url, cell(endpoint.events.join(', ')), stateCell, actions);
      return row;
    });
    $('endpoints-body').replaceChildren(...rows);
    $('endpoints-empty').hidden = rows.length > 0;
  }

  on($('create-endpoint-form'), 'submit', async (event) => {
    event.preventDefault();
    clearError();
    const events = [...$('endpoint-events').querySelectorAll('input:checked')].map((box) => box.value);
    try {
      const { createWebhookEndpoint } = await api.request(q.CREATE_WEBHOOK_ENDPOINT, {
        a: state.app, url: $('endpoint-url').value.trim(), events,
      });
      $('endpoint-url').value = '';
      await loadEndpoints();
      await showSecret(`Signing secret of ${createWebhookEndpoint.endpoint.url}`, createWebhookEndpoint.secret, null);
    } catch (error) {
      fail('Could not create the endpoint')(error);
    }
  });

  async function setEnabled(endpoint, enabled) {
    clearError();
    try {
      await api.request(q.UPDATE_WEBHOOK_ENDPOINT, { a: state.app, id: endpoint.id, enabled });
      await loadEndpoints();
    } catch (error) {
      fail(`Could not ${enabled ? 'enable' : 'disable'} the endpoint`)(error);
    }
  }

  async function rotateEndpointSecret(endpoint) {
    if (!confirm(`Rotate the signing secret of ${endpoint.url}?\n\nThe current secret keeps signing (a second signature) for a day.`)) return;
    clearError();
    try {
      const { rotateWebhookSecret } = await api.request(q.ROTATE_WEBHOOK_SECRET, { a: state.app, id: endpoint.id, grace: 86400 });
      await loadEndpoints();
      await showSecret(`New signing secret of ${endpoint.url}`, rotateWebhookSecret.secret, null);
    } catch (error) {
      fail('Could not rotate the signing secret')(error);
    }
  }

  async function deleteEndpoint(endpoint) {
    if (!confirm(`Delete ${endpoint.url} and its deliveries?`)) return;
    clearError();
    try {
      await api.request(q.DELETE_WEBHOOK_ENDPOINT, { a: state.app, id: endpoint.id });
      if (state.endpoint?.id === endpoint.id) {
        state.endpoint = null;
        $('deliveries-section').hidden = true;
      }
      await loadEndpoints();
    } catch (error) {
      fail('Could not delete the endpoint')(error);
    }
  }

  // ---- Deliveries of the selected endpoint, newest first.
  async function selectEndpoint(endpoint) {
    state.endpoint = endpoint;
    $('deliveries-heading').textContent = `Deliveries to ${endpoint.url}`;
    $('deliveries-section').hidden = false;
    for (const row of $('endpoints-body').children) {
      if (row.dataset.endpoint === endpoint.id) row.setAttribute('aria-current', 'true');
      else row.removeAttribute('aria-current');
    }
    await loadDeliveries();
    $('deliveries-section').scrollIntoView({ block: 'nearest' });
  }

  async function loadDeliveries(next = null) {
    const endpoint = state.endpoint;
    if (!endpoint) return;
    try {
      const { webhookDeliveries } = await api.request(q.WEBHOOK_DELIVERIES, {
        a: state.app, id: endpoint.id, limit: DELIVERY_PAGE, next,
      });
      if (endpoint !== state.endpoint) return;
      const rows = webhookDeliveries.items.map(renderDelivery);
      if (next) $('deliveries-body').append(...rows);
      else $('deliveries-body').replaceChildren(...rows);
      state.deliveriesNext = webhookDeliveries.nextToken;
      $('deliveries-more').hidden = !state.deliveriesNext;
      $('deliveries-empty').hidden = $('deliveries-body').children.length > 0;
    } catch (error) {
      fail('Could not load the deliveries')(error);
    }
  }

  function renderDelivery(delivery) {
    const row = document.createElement('tr');
    row.dataset.delivery = delivery.id;
    row.dataset.status = delivery.status;
    const event = cell(delivery.eventType);
    event.append(document.createElement('br'));
    const id = document.createElement('code');
    id.textContent = delivery.eventId;
    event.append(id);
    const status = cell(delivery.status.toLowerCase());
    status.className = `delivery-status delivery-${delivery.status.toLowerCase()}`;
    const response = cell(delivery.lastResponseCode == null ? '—' : String(delivery.lastResponseCode));
    response.className = 'delivery-code';
    if (delivery.lastError) response.append(document.createElement('br'), delivery.lastError);
    const actions = document.createElement('td');
    actions.append(button('Redeliver', () => redeliver(delivery), `Redeliver ${delivery.eventType} ${delivery.eventId}`));
    row.append(
      cell(formatDate(delivery.createdAt)),
      event,
      status,
      cell(String(delivery.attempts)),
      response,
      cell(delivery.nextAttemptAt ? formatDate(delivery.nextAttemptAt) : '—'),
      actions,
    );
    return row;
  }

  async function redeliver(delivery) {
    clearError();
    try {
      await api.request(q.REDELIVER_WEBHOOK, { a: state.app, endpoint: state.endpoint.id, delivery: delivery.id });
      announce(`Redelivery of ${delivery.eventType} queued`);
      await loadDeliveries();
    } catch (error) {
      fail('Could not redeliver')(error);
    }
  }

  on($('deliveries-refresh'), 'click', () => loadDeliveries());
  on($('deliveries-more'), 'click', () => loadDeliveries(state.deliveriesNext));

  ending.signal.addEventListener('abort', () => {
    hideSecret();
    state.apps.clear();
    $('apps-body').replaceChildren();
    $('endpoints-body').replaceChildren();
    $('deliveries-body').replaceChildren();
    $('webhooks-section').hidden = true;
    $('deliveries-section').hidden = true;
    $('admin-error').textContent = '';
  });

  loadApps().catch(fail('Could not load the applications'));
  return ending;
}

/** A table cell holding `text` as text. */
function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function button(text, onClick, label) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = text;
  if (label) element.setAttribute('aria-label', label);
  element.addEventListener('click', onClick);
  return element;
}

function formatDate(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}
