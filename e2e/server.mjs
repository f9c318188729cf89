// Starts a real chat-server (in memory, free port) and gives a tiny GraphQL client and a
// JWT minter, as an application's backend would write it (HS256 with the app secret).
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ADMIN_KEY = 'e2e-admin-key-0123456789';

/** `args`: more chat-server flags (e.g. --console-connect-src). */
export async function startServer({ args = [] } = {}) {
  const bin = process.env.CHAT_SERVER_BIN ?? path.join(root, 'target/debug/chat-server');
  if (!existsSync(bin)) throw new Error(`${bin} not found: build it first (scripts/test does)`);
  const child = spawn(bin, ['--memory', '--listen', '127.0.0.1:0', '--admin-key', ADMIN_KEY, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    lines.once('line', (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/);
      m ? resolve(m[1]) : reject(new Error(`unexpected banner: ${line}`));
    });
    child.once('exit', (code) => reject(new Error(`chat-server exited with ${code}`)));
  });
  lines.on('line', () => {}); // keep draining stdout
  return { url, wsUrl: `${url.replace('http', 'ws')}/graphql`, stop: () => child.kill('SIGKILL') };
}

export async function gql(url, token, query, variables = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: token },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const b64url = (data) => Buffer.from(data).toString('base64url');

export function mintToken(secret, app, sub, role, ttlSeconds = 3600) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ sub, app, role, exp: Math.floor(Date.now() / 1000) + ttlSeconds }));
  const signature = createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}

export async function createApp(url, name) {
  const data = await gql(url, ADMIN_KEY, 'mutation($n: String!) { createApplication(name: $n) { application { token } secret } }', { n: name });
  const { token } = data.createApplication.application;
  const { secret } = data.createApplication;
  return {
    token,
    agent: (sub) => mintToken(secret, token, sub, 'AGENT'),
    customer: (sub) => mintToken(secret, token, sub, 'CUSTOMER'),
  };
}
