// The sign-in form of both views: paste a user token, or (development only) mint one.
// A sign-in link (`…/#token=<JWT>`, as the admin page makes on a development machine) fills
// the form in; the user still presses Sign in, so a link cannot sign anyone in unawares.

import { GraphQLClient } from './graphql.js';
import { UNREAD_SUMMARY } from './queries.js';
import { decodeToken, devHelperEnabled, isExpired, mintDevToken } from './session.js';

const OTHER_VIEW = { AGENT: 'the agent console (index.html)', CUSTOMER: 'the customer view (customer.html)' };

/**
 * role: the role this view is for; store: a TokenStore; endpoints: resolveEndpoints();
 * onSession({ token, claims, api }) runs once a token has been accepted by the server.
 * Returns { signOut(message) }.
 */
export function setupSignIn({ role, store, endpoints, config, onSession }) {
  const $ = (id) => document.getElementById(id);
  const view = $('sign-in-view');
  const error = $('signin-error');
  const tokenForm = $('token-form');
  const tokenInput = $('token-input');

  $('endpoint-shown').textContent = endpoints.http;
  if (!endpoints.sameOrigin) {
    $('endpoint-warning').hidden = false;
    $('endpoint-warning').textContent = `Signing in sends your token to ${endpoints.foreign.join(' and ')}, `
      + 'not to the server of this page. Continue only if you trust it.';
  }
  // The page's Content-Security-Policy is what keeps a token from going where the page's
  // operator did not allow (a link with someone else's ?endpoint= or ?ws=): the browser
  // refuses the connection before anything is sent. Say so instead of "cannot reach".
  // The event and the failed request come in either order: whichever is last shows this.
  let blocked = '';
  document.addEventListener('securitypolicyviolation', (event) => {
    if (event.effectiveDirective !== 'connect-src') return;
    blocked = `Blocked: this page's Content-Security-Policy does not allow connecting to ${event.blockedURI}, `
      + 'so nothing was sent there.';
    if (!view.hidden) error.textContent = blocked;
  });

  async function signIn(token) {
    const claims = decodeToken(token);
    if (claims.role !== role) {
      throw new Error(`the token's role is ${claims.role}: use ${OTHER_VIEW[claims.role] ?? 'another view'}`);
    }
    if (isExpired(claims)) throw new Error('this token has expired: get a new one');
    const api = new GraphQLClient(endpoints.http, token);
    await api.request(UNREAD_SUMMARY, { a: claims.app }); // the server's opinion of the token
    store.save(token);
    view.hidden = true;
    error.textContent = '';
    onSession({ token, claims, api });
  }

  async function attempt(token, button) {
    error.textContent = '';
    blocked = '';
    button.disabled = true;
    try {
      await signIn(token);
    } catch (e) {
      error.textContent = blocked || `Not signed in: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    attempt(tokenInput.value.trim(), tokenForm.querySelector('button'));
  });

  if (devHelperEnabled(config.devTokenHelper, location.hostname)) {
    const helper = $('dev-helper');
    const mintForm = $('mint-form');
    helper.hidden = false;
    mintForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = mintForm.querySelector('button');
      const secret = $('mint-secret');
      let token;
      try {
        token = await mintDevToken({
          app: $('mint-app').value.trim(),
          secret: secret.value.trim(),
          sub: $('mint-user').value.trim(),
          role,
          ttlSeconds: Math.round(Number($('mint-ttl').value) * 60),
        });
      } catch (e) {
        error.textContent = `Could not mint a token: ${e.message}`;
        return;
      }
      secret.value = ''; // the secret is not kept, not even in the form
      await attempt(token, button);
    });
  }

  const linked = tokenFromLink();
  if (linked) {
    tokenInput.value = linked;
    try {
      const claims = decodeToken(linked);
      $('token-hint').textContent = `A sign-in link filled in a token for ${claims.sub} (${claims.role}) of `
        + `${claims.app}: press Sign in to use it.`;
    } catch (e) {
      error.textContent = `The sign-in link's token is not usable: ${e.message}`;
    }
    tokenForm.querySelector('button').focus();
  }

  const saved = linked ? null : store.load();
  if (saved) {
    signIn(saved).catch((e) => {
      store.clear();
      error.textContent = `Signed out: ${e.message}`;
    });
  }

  return {
    signOut(message) {
      store.clear();
      tokenInput.value = '';
      view.hidden = false;
      error.textContent = message ?? '';
      tokenInput.focus();
    },
  };
}

/**
 * The token of a sign-in link's fragment (`#token=…`; a fragment never reaches a server),
 * removed from the address at once so that it is not kept in the history or bookmarked.
 */
function tokenFromLink() {
  const match = location.hash.match(/^#token=([A-Za-z0-9_\-.]+)$/);
  if (!match) return null;
  history.replaceState(null, '', `${location.pathname}${location.search}`);
  return match[1];
}
