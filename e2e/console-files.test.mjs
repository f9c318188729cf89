// The console's attachments and its admin page in a real browser (Debian's chromium driven
// by playwright-core) against a started chat-server:
// - files: a PNG and a PDF chosen with the paperclip's file chooser, a PNG dropped on the
//   conversation and sent alone; thumbnails take the size given by the image's dimensions
//   before they load and open the full image; the PDF is a download link; the other side
//   gets them live;
// - a refused type and a refused size show the server's reason; a file named
//   `<img src=x onerror=alert(1)>.png` stays text everywhere; an image or a link whose
//   signed URL no longer works makes the console read the message again;
// - the admin page: sign in with the admin key, create, rename and rotate an application,
//   open the development sign-in link, create a webhook endpoint pointing at a loopback
//   receiver started here, see its delivery succeed with the receiver's code, redeliver it
//   (same event id), disable and delete the endpoint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { startServer, gql, mintToken, ADMIN_KEY } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const STEP_MS = 15_000;
const TEST_MS = 180_000;
const XSS_NAME = '<img src=x onerror=alert(1)>.png';

let server;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_BIN`);
  }
  server = await startServer({ args: ['--webhooks-allow-loopback'] });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}, { timeout: 90_000 });

after(async () => {
  try {
    await browser?.close();
  } finally {
    server?.stop();
  }
}, { timeout: 30_000 });

// ---- Files to upload, made here: a real PNG of a given size, a small PDF.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A width x height RGB PNG (a diagonal gradient). */
function png(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) {
      row[1 + x * 3] = (x * 255) / width;
      row[2 + x * 3] = (y * 255) / height;
      row[3 + x * 3] = 160;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');

// ---- Helpers.

async function createApplication(name) {
  const data = await gql(server.url, ADMIN_KEY, 'mutation($n: String!) { createApplication(name: $n) { application { token } secret } }', { n: name });
  return { token: data.createApplication.application.token, secret: data.createApplication.secret };
}

/** A page whose errors (exceptions, console errors, dialogs) are collected. */
async function openPage(path) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const errors = [];
  const dialogs = [];
  page.on('pageerror', (error) => errors.push(`exception: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    const answer = page.answers?.shift();
    if (answer === undefined) dialog.dismiss();
    else dialog.accept(answer);
  });
  await page.goto(`${server.url}${path}`);
  return { context, page, errors, dialogs };
}

/** Signs in with a token pasted into the form. */
async function signIn(page, token, who) {
  await page.locator('#token-input').fill(token);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#whoami', { hasText: who }).waitFor();
}

async function until(probe, what) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const message = (page, number) => page.locator(`#message-list li[data-number="${number}"]`);

/** The thumbnail of message `number`: its box, its attributes, and its image once loaded. */
async function thumbnail(page, number, index = 0) {
  const img = message(page, number).locator('.attachment-image img').nth(index);
  await img.waitFor();
  await page.waitForFunction(
    ([n, i]) => {
      const el = document.querySelectorAll(`#message-list li[data-number="${n}"] .attachment-image img`)[i];
      return el && el.complete && el.naturalWidth > 0;
    },
    [number, index],
  );
  return img.evaluate((el) => {
    const box = el.getBoundingClientRect();
    return {
      width: el.getAttribute('width'),
      height: el.getAttribute('height'),
      box: [Math.round(box.width), Math.round(box.height)],
      natural: [el.naturalWidth, el.naturalHeight],
      alt: el.alt,
      href: el.closest('a').href,
    };
  });
}

/** Drops `files` ({ name, type, bytes: number[] | { zeros: n } }) on `selector`. */
async function dropFiles(page, selector, files) {
  const dataTransfer = await page.evaluateHandle((list) => {
    const transfer = new DataTransfer();
    for (const { name, type, bytes } of list) {
      const data = Array.isArray(bytes) ? new Uint8Array(bytes) : new Uint8Array(bytes.zeros);
      transfer.items.add(new File([data], name, { type }));
    }
    return transfer;
  }, files);
  await page.dispatchEvent(selector, 'dragenter', { dataTransfer });
  await page.dispatchEvent(selector, 'dragover', { dataTransfer });
  await page.dispatchEvent(selector, 'drop', { dataTransfer });
}

const trayState = (page) => page.locator('#attach-tray li').evaluateAll((items) => items.map((li) => ({
  name: li.querySelector('.attachment-name').textContent,
  status: li.dataset.status,
  state: li.querySelector('.tray-state').textContent,
})));

// ---- Tests.

test('files: paperclip and drop uploads, sized thumbnails, a PDF download link, live on the other side', { timeout: TEST_MS }, async () => {
  const app = await createApplication('Files test');
  const dave = mintToken(app.secret, app.token, 'dave', 'CUSTOMER');
  await gql(server.url, dave, 'mutation($a: ID!) { createChat(appToken: $a, subject: "Broken parcel") { number } }', { a: app.token });
  await gql(server.url, dave, 'mutation($a: ID!) { sendMessage(appToken: $a, chatNumber: 1, body: "It arrived broken") { number } }', { a: app.token });

  const agent = await openPage('/');
  const a = agent.page;
  await signIn(a, mintToken(app.secret, app.token, 'alice', 'AGENT'), 'alice');
  await a.locator('#chat-list a[data-chat="1"]').click();
  await a.locator('#chat-live[data-state="live"]').waitFor();

  const customer = await openPage('/customer.html');
  const c = customer.page;
  await signIn(c, dave, 'dave');
  await c.locator('#chat-live[data-state="live"]').waitFor();
  await message(c, 1).waitFor();

  // The customer picks a PNG and a PDF with the paperclip (a real file chooser).
  const [chooser] = await Promise.all([c.waitForEvent('filechooser'), c.getByRole('button', { name: 'Attach files' }).click()]);
  assert.ok(chooser.isMultiple(), 'several files at once');
  await chooser.setFiles([
    { name: 'parcel.png', mimeType: 'image/png', buffer: png(400, 200) },
    { name: 'receipt.pdf', mimeType: 'application/pdf', buffer: PDF },
  ]);
  await until(async () => (await trayState(c)).filter((i) => i.status === 'ready').length === 2, () => 'two uploads ready');
  assert.deepEqual((await trayState(c)).map((i) => i.name), ['parcel.png', 'receipt.pdf']);
  await c.locator('#composer-input').fill('Photo and receipt attached');
  await c.getByRole('button', { name: 'Send', exact: true }).click();
  await message(c, 2).locator('.attachment-file').waitFor();
  assert.equal(await c.locator('#attach-tray li').count(), 0, 'the tray empties once sent');
  assert.equal(await c.locator('#attach-tray').isHidden(), true);

  // The thumbnail is 400x200 scaled into 240x180: 240x120, and so is its box.
  const thumb = await thumbnail(c, 2);
  assert.deepEqual(thumb, { ...thumb, width: '240', height: '120', box: [240, 120], natural: [400, 200], alt: 'parcel.png' });
  assert.equal(await message(c, 2).locator('.message-body').innerText(), 'Photo and receipt attached');

  // The PDF is a download link with its name and size, and downloads as itself.
  const pdfLink = message(c, 2).locator('.attachment-file a');
  assert.equal(await pdfLink.locator('.attachment-name').innerText(), 'receipt.pdf');
  assert.equal(await pdfLink.locator('.attachment-size').innerText(), `${PDF.length} B`);
  const [download] = await Promise.all([c.waitForEvent('download'), pdfLink.click()]);
  assert.equal(download.suggestedFilename(), 'receipt.pdf');
  assert.deepEqual(await readFile(await download.path()), PDF);

  // The thumbnail opens the full image.
  const [full] = await Promise.all([customer.context.waitForEvent('page'), message(c, 2).locator('.attachment-image a').click()]);
  await full.waitForLoadState();
  assert.match(full.url(), /\/files\/up_[^?]+\?expires=\d+&signature=/);
  assert.deepEqual(await full.evaluate(() => [document.images[0]?.naturalWidth, document.images[0]?.naturalHeight]), [400, 200]);
  await full.close();

  // The agent got it live, thumbnail and link included.
  const agentThumb = await thumbnail(a, 2);
  assert.deepEqual(agentThumb.box, [240, 120]);
  assert.equal(await message(a, 2).locator('.attachment-file .attachment-name').innerText(), 'receipt.pdf');

  // The agent drops a tall PNG on the conversation and sends it alone.
  await dropFiles(a, '#history', [{ name: 'label.png', type: 'image/png', bytes: [...png(300, 600)] }]);
  await until(async () => (await trayState(a)).some((i) => i.status === 'ready'), () => 'the dropped file uploaded');
  await a.getByRole('button', { name: 'Send', exact: true }).click();
  await message(a, 3).locator('.attachment-image').waitFor();
  assert.equal(await message(a, 3).locator('.message-body').count(), 0, 'a message of files alone has no text');
  // 300x600 into 240x180: 90x180.
  assert.deepEqual((await thumbnail(a, 3)).box, [90, 180]);
  assert.deepEqual((await thumbnail(c, 3)).box, [90, 180], 'the customer got it live');
  // The inbox's preview names the file.
  await a.locator('#chat-list a[data-chat="1"] .preview', { hasText: '📎 label.png' }).waitFor();

  assert.deepEqual(agent.errors, []);
  assert.deepEqual(customer.errors, []);
  await agent.context.close();
  await customer.context.close();
});

test("files: refused type and size show the server's reason; markup in a file name stays text; expired URLs are renewed", { timeout: TEST_MS }, async () => {
  const app = await createApplication('Refusals test');
  const erin = mintToken(app.secret, app.token, 'erin', 'CUSTOMER');
  await gql(server.url, erin, 'mutation($a: ID!) { createChat(appToken: $a) { number } }', { a: app.token });
  await gql(server.url, erin, 'mutation($a: ID!) { sendMessage(appToken: $a, chatNumber: 1, body: "Hello") { number } }', { a: app.token });

  const customer = await openPage('/customer.html');
  const c = customer.page;
  await signIn(c, erin, 'erin');
  await c.locator('#chat-live[data-state="live"]').waitFor();
  await message(c, 1).waitFor();

  // A type outside the allow-list: createUpload's reason, as the server words it.
  await c.locator('#attach-input').setInputFiles({ name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<script>alert(1)</script>') });
  // Larger than 25 MiB: refused before a byte is sent.
  await dropFiles(c, '#history', [{ name: 'huge.zip', type: 'application/zip', bytes: { zeros: 25 * 1024 * 1024 + 1 } }]);
  await until(async () => (await trayState(c)).filter((i) => i.status === 'failed').length === 2, () => 'two refusals');
  const [html, huge] = await trayState(c);
  assert.match(html.state, /^Not uploaded: contentType "text\/html" is not allowed; allowed: image\/png/);
  assert.match(huge.state, /^Not uploaded: size must be 1 to 26214400 bytes/);
  // Nothing to send: the composer says so rather than sending an empty message.
  await c.getByRole('button', { name: 'Send', exact: true }).click();
  assert.equal(await message(c, 2).count(), 0);
  await c.getByRole('button', { name: 'Remove page.html' }).click();
  await c.getByRole('button', { name: 'Remove huge.zip' }).click();
  assert.equal(await c.locator('#attach-tray').isHidden(), true);

  // A file name with markup: text in the tray, text in the message, no element made of it.
  await c.locator('#attach-input').setInputFiles({ name: XSS_NAME, mimeType: 'image/png', buffer: png(64, 64) });
  await until(async () => (await trayState(c))[0]?.status === 'ready', () => 'the upload');
  assert.equal((await trayState(c))[0].name, XSS_NAME, 'the tray shows the name as typed, as text');
  assert.equal(await c.locator('img[src="x"]').count(), 0);
  await c.getByRole('button', { name: 'Send', exact: true }).click();
  const sent = await thumbnail(c, 2);
  const { message: stored } = await gql(server.url, erin, 'query($a: ID!) { message(appToken: $a, chatNumber: 1, number: 2) { attachments { name } } }', { a: app.token });
  assert.equal(sent.alt, stored.attachments[0].name, 'the name the server kept, as an alt text');
  assert.deepEqual(sent.box, [64, 64]);
  await gql(server.url, erin, `mutation($a: ID!, $b: String!) { sendMessage(appToken: $a, chatNumber: 1, body: $b) { number } }`, { a: app.token, b: XSS_NAME });
  await message(c, 3).waitFor();
  assert.equal(await message(c, 3).locator('.message-body').innerText(), XSS_NAME);
  assert.equal(await c.locator('img[src="x"], #message-list b, #attach-tray img').count(), 0);

  // An image whose URL fails (an expired one does the same): the message is read again and
  // the image shows from the fresh URL.
  const reads = [];
  c.on('request', (request) => {
    if (request.url().endsWith('/graphql') && request.postDataJSON()?.operationName === 'Message') reads.push(request);
  });
  const before = (await thumbnail(c, 2)).href;
  await message(c, 2).locator('img').evaluate((img) => {
    img.src = img.src.replace(/signature=[^&]+/, 'signature=broken');
  });
  await until(async () => {
    const now = await message(c, 2).locator('img').evaluate((img) => img.complete && img.naturalWidth > 0 && img.src);
    return now && !now.includes('signature=broken');
  }, () => 'the image from a fresh URL');
  assert.equal(reads.length, 1, 'one read of the message');
  assert.notEqual((await thumbnail(c, 2)).href, before, 'a freshly signed URL');

  // A download link past its expiry: a click reads the message again and downloads the file.
  await c.locator('#attach-input').setInputFiles({ name: 'terms.pdf', mimeType: 'application/pdf', buffer: PDF });
  await until(async () => (await trayState(c))[0]?.status === 'ready', () => 'the PDF upload');
  await c.getByRole('button', { name: 'Send', exact: true }).click();
  const link = message(c, 4).locator('.attachment-file a');
  await link.waitFor();
  await link.evaluate((a) => {
    a.href = a.href.replace(/expires=\d+/, `expires=${Date.now() - 1000}`);
  });
  const [download] = await Promise.all([c.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'terms.pdf');
  assert.deepEqual(await readFile(await download.path()), PDF);
  assert.equal(reads.length, 2, 'the expired link read its message again');

  assert.deepEqual(customer.dialogs, [], 'no script ran (no alert)');
  // The refused uploads are the only console errors: the browser logs failed requests.
  assert.deepEqual(customer.errors.filter((e) => !/Failed to load resource/.test(e)), []);
  await customer.context.close();
});

test('admin page: applications, a webhook endpoint to a loopback receiver, its delivery, redelivery', { timeout: TEST_MS }, async () => {
  // The receiver: records every request, answers 200.
  const received = [];
  const receiver = createHttpServer((request, response) => {
    let body = '';
    request.on('data', (part) => { body += part; });
    request.on('end', () => {
      received.push({ headers: request.headers, body: JSON.parse(body) });
      response.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
    });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hook = `http://127.0.0.1:${receiver.address().port}/hook`;
  try {
    const admin = await openPage('/admin.html');
    const p = admin.page;

    // A wrong key is refused with the server's reason.
    await p.locator('#key-input').fill('not-the-key');
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.locator('#signin-error', { hasText: 'Not signed in:' }).waitFor();
    await p.locator('#key-input').fill(ADMIN_KEY);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.locator('#admin-view').waitFor();

    // Create: the secret is shown once, with development sign-in links (loopback host).
    await p.getByLabel('New application').fill('Acme <b>support</b>');
    await p.getByRole('button', { name: 'Create', exact: true }).click();
    await p.locator('#secret-panel').waitFor();
    const secret = await p.locator('#secret-value').innerText();
    assert.match(secret, /^sk_/);
    const row = p.locator('#apps-body tr').first();
    assert.equal(await row.locator('.app-name').innerText(), 'Acme <b>support</b>', 'a name is text');
    assert.equal(await p.locator('#apps-body b').count(), 0);
    const appToken = await row.getAttribute('data-app');
    const customerLink = await p.locator('#dev-customer-link').getAttribute('href');
    assert.match(customerLink, /^\.\/customer\.html#token=/);
    await p.getByRole('button', { name: 'I have copied it' }).click();
    assert.equal(await p.locator('#secret-value').innerText(), '', 'the secret is gone from the page');

    // Rename (a prompt) and rotate the secret (a confirmation).
    p.answers = ['Acme support'];
    await row.getByRole('button', { name: /^Rename/ }).click();
    await p.locator('#apps-body .app-name', { hasText: /^Acme support$/ }).waitFor();

    // Routing: off at first; a bad cap is refused on the page; 3 turns it on, 0 off.
    assert.equal(await row.locator('.app-routing').innerText(), 'off');
    p.answers = ['500'];
    await row.getByRole('button', { name: /^Routing of/ }).click();
    await p.locator('#admin-error', { hasText: 'Could not change routing' }).waitFor();
    p.answers = ['3'];
    await row.getByRole('button', { name: /^Routing of/ }).click();
    await p.locator('#apps-body .app-routing', { hasText: 'on, 3 open chats per agent' }).waitFor();
    const stored = await gql(server.url, ADMIN_KEY, 'query($t: ID!) { application(token: $t) { routing { enabled maxOpenChatsPerAgent } } }', { t: appToken });
    assert.deepEqual(stored.application.routing, { enabled: true, maxOpenChatsPerAgent: 3 });
    p.answers = ['0'];
    await p.locator(`#apps-body tr[data-app="${appToken}"]`).getByRole('button', { name: /^Routing of/ }).click();
    await p.locator('#apps-body .app-routing', { hasText: /^off$/ }).waitFor();
    p.answers = [''];
    await p.locator(`#apps-body tr[data-app="${appToken}"]`).getByRole('button', { name: /^Rotate the secret/ }).click();
    await p.locator('#secret-panel').waitFor();
    const rotated = await p.locator('#secret-value').innerText();
    assert.match(rotated, /^sk_/);
    assert.notEqual(rotated, secret);
    await p.getByRole('button', { name: 'I have copied it' }).click();

    // A webhook endpoint for the receiver: its signing secret is shown once.
    await p.getByRole('button', { name: 'Webhooks of Acme support' }).click();
    await p.getByLabel('New endpoint URL').fill(hook);
    await p.getByRole('button', { name: 'Create the endpoint' }).click();
    await p.locator('#secret-panel').waitFor();
    assert.match(await p.locator('#secret-value').innerText(), /^whsec_/);
    await p.getByRole('button', { name: 'I have copied it' }).click();
    const endpointRow = p.locator('#endpoints-body tr').first();
    assert.equal(await endpointRow.locator('code').innerText(), hook);
    assert.equal(await endpointRow.locator('.endpoint-enabled').innerText(), 'enabled');

    // The development link signs a customer in (one click on Sign in): a new chat makes events.
    const widget = await admin.context.newPage();
    await widget.goto(new URL(customerLink.replace(/^\.\//, ''), `${server.url}/`).href);
    assert.equal(new URL(widget.url()).hash, '', 'the token leaves the address at once');
    await widget.getByRole('button', { name: 'Sign in', exact: true }).click();
    await widget.locator('#whoami', { hasText: 'customer-1' }).waitFor();
    await widget.getByLabel('Your message').fill('Hello from the first run');
    await widget.getByRole('button', { name: 'Start the conversation' }).click();
    const created = await until(() => received.find((r) => r.body.type === 'message.created'), () => 'a message.created delivery');
    assert.equal(created.body.appToken, appToken);
    assert.match(created.headers['chat-signature'], /^t=\d+,v1=[0-9a-f]{64}$/);

    // Its delivery, as the page lists it: succeeded, one attempt, the receiver's 200.
    await p.getByRole('button', { name: `Deliveries to ${hook}` }).click();
    const deliveryRow = p.locator(`#deliveries-body tr:has(code:text-is("${created.body.id}"))`);
    // The receiver may have answered before the server recorded it: refresh until it shows.
    let cells = [];
    await until(async () => {
      cells = (await deliveryRow.count()) ? await deliveryRow.locator('td').allInnerTexts() : [];
      if (cells[2] === 'succeeded') return true;
      await p.getByRole('button', { name: 'Refresh' }).click();
      return false;
    }, () => `the delivery to show as succeeded (${JSON.stringify(cells)})`);
    assert.equal(cells[3], '1');
    assert.equal(cells[4], '200');

    // Redeliver: the receiver gets the same event (same id) again.
    const before = received.filter((r) => r.body.id === created.body.id).length;
    await deliveryRow.getByRole('button', { name: /^Redeliver/ }).click();
    await until(() => received.filter((r) => r.body.id === created.body.id).length === before + 1, () => 'the redelivery');

    // Disable, then delete (confirmed).
    await endpointRow.getByRole('button', { name: `Disable ${hook}` }).click();
    await p.locator('#endpoints-body .endpoint-disabled').waitFor();
    p.answers = [''];
    await p.getByRole('button', { name: `Delete ${hook}` }).click();
    await p.locator('#endpoints-empty').waitFor();
    assert.equal(await p.locator('#deliveries-section').isHidden(), true);

    assert.deepEqual(admin.errors.filter((e) => !/Failed to load resource/.test(e)), []);
    await admin.context.close();
  } finally {
    receiver.close();
  }
});
