// Tokens: reading a user token's claims, keeping it for the tab, and the development helper
// that signs one in the browser.

/** The claims of a user token {sub, app, role, exp}, read without verifying (the server does). */
export function decodeToken(token) {
  const parts = token.trim().split('.');
  if (parts.length !== 3) throw new Error('a user token has three dot-separated parts (a JWT)');
  let claims;
  try {
    claims = JSON.parse(new TextDecoder().decode(base64urlDecode(parts[1])));
  } catch {
    throw new Error('the token is not a readable JWT');
  }
  for (const claim of ['sub', 'app', 'role', 'exp']) {
    if (claims[claim] === undefined) throw new Error(`the token has no "${claim}" claim`);
  }
  return claims;
}

export function isExpired(claims, now = Date.now()) {
  return claims.exp * 1000 <= now;
}

/**
 * DEVELOPMENT ONLY: signs a user token (JWT HS256, claims {sub, app, role, exp}) with the
 * application secret, as the application's backend does in production. WebCrypto exists
 * only in secure contexts (https, or http on localhost / 127.0.0.1).
 */
export async function mintDevToken({ secret, app, sub, role, ttlSeconds }) {
  if (!globalThis.crypto?.subtle) {
    throw new Error('WebCrypto is unavailable: open the console on https or on localhost');
  }
  const encoder = new TextEncoder();
  const header = base64urlEncode(encoder.encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' })));
  const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
  const claims = base64urlEncode(encoder.encode(JSON.stringify({ sub, app, role, exp })));
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const signature = await crypto.subtle.sign('HMAC', key, encoder.encode(`${header}.${claims}`));
  return `${header}.${claims}.${base64urlEncode(new Uint8Array(signature))}`;
}

/** Whether to offer the development helper: config true/false, or 'auto' (loopback hosts only). */
export function devHelperEnabled(setting, hostname) {
  if (setting === 'auto') return ['localhost', '127.0.0.1', '[::1]'].includes(hostname);
  return setting === true;
}

/** The token of this tab (sessionStorage: gone when the tab closes). */
export class TokenStore {
  constructor(key) {
    this.key = key;
  }

  load() {
    try {
      return sessionStorage.getItem(this.key);
    } catch {
      return null;
    }
  }

  save(token) {
    try {
      sessionStorage.setItem(this.key, token);
    } catch {
      // Storage may be disabled: the session then lasts until the page is reloaded.
    }
  }

  clear() {
    try {
      sessionStorage.removeItem(this.key);
    } catch {
      // See save().
    }
  }
}

/** A random id for sendMessage's clientMessageId (retries reuse it; works without https). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function base64urlEncode(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function base64urlDecode(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=');
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}
