// The web console in a real browser: Debian's Chromium driven by
// playwright-core against a real postern server, agent and sshd. The Go
// test e2e/keyless/browser_test.go builds that world and runs
//
//	node console.mjs CONFIG.json
//
// where CONFIG names the scenario, the server, the users and where to put
// screenshots (see the Config typedef). Progress goes to stdout, one line a
// step; the last line is `RESULT {json}` for the Go test to check against
// the server's own records. Any failure exits 1 after a screenshot of the
// page as it was. Nothing here sleeps: every wait is for something the
// page shows.

import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * @typedef {{name: string, password: string}} Account
 * @typedef {{
 *   scenario: 'connect' | 'denied',
 *   url: string,            // https://ADDRESS:PORT of the server
 *   spki: string,           // base64 SHA-256 of the server certificate's public key, checked by the Go test
 *   chromium: string,       // the browser to drive
 *   profileDir: string,     // a fresh, empty user data directory
 *   screenshotDir: string,
 *   instanceId: string,
 *   instanceName: string,
 *   tag: string,            // key=value that only the instance carries
 *   decoyId: string,        // another instance, which the tag filter must hide
 *   osUser: string,
 *   user: Account,          // signs in and presses Connect
 *   reviewer?: Account,     // connect: reads the recording and the audit trail
 * }} Config
 */

/** @type {Config} */
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const TIMEOUT = 30_000; // any one wait; the Go test bounds the whole run

let shotCount = 0;
const problems = []; // script errors and CSP violations the page reported

function step(text) {
  console.log(`- ${text}`);
}

async function shot(page, name) {
  const file = join(cfg.screenshotDir, `${cfg.scenario}-${String(++shotCount).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, animations: 'disabled' });
  console.log(`  screenshot ${file}`);
}

function fail(message) {
  throw new Error(message);
}

// The text of a terminal's visible rows (xterm.js renders one element a row).
function termRows(page, host) {
  return page.evaluate((host) => {
    const rows = document.querySelector(`${host} .xterm-rows`);
    return rows ? Array.from(rows.children, (r) => r.textContent.replace(/\u00a0/g, ' ').trimEnd()) : [];
  }, host);
}

/**
 * Waits until a row of the terminal in host matches re (whole row, trimmed)
 * and returns the match's groups (or the row).
 */
async function awaitRow(page, host, re) {
  try {
    const handle = await page.waitForFunction(
      ({ host, source }) => {
        const rows = document.querySelector(`${host} .xterm-rows`);
        if (!rows) return null;
        const re = new RegExp(source);
        for (const r of rows.children) {
          const m = re.exec(r.textContent.replace(/\u00a0/g, ' ').trim());
          if (m) return m.length > 1 ? m.slice(1) : [m[0]];
        }
        return null;
      },
      { host, source: re.source },
      { timeout: TIMEOUT, polling: 'raf' },
    );
    return await handle.jsonValue();
  } catch (e) {
    const rows = await termRows(page, host).catch(() => []);
    fail(`the terminal ${host} never showed a row matching ${re}: ${e.message.split('\n')[0]}\nrows:\n${rows.join('\n')}`);
  }
}

async function countRows(page, host, re) {
  return (await termRows(page, host)).filter((r) => re.test(r.trim())).length;
}

async function typeLine(page, text) {
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

async function signIn(page, who) {
  step(`sign in as ${who.name}`);
  await page.getByRole('heading', { name: 'Sign in to Postern' }).waitFor();
  await page.getByLabel('User name').fill(who.name);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#whoami', { hasText: who.name }).waitFor();
}

async function signOut(page) {
  step('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Postern' }).waitFor();
  const left = await page.evaluate(() => fetch('/console/api/session').then((r) => r.status));
  if (left !== 401) fail(`after signing out the session still answers ${left}, want 401`);
}

// On the Instances page: filter by the tag, which must hide the decoy, and
// open the Connect dialog of the instance.
async function connectByTag(page) {
  step(`find ${cfg.instanceId} by its tag ${cfg.tag}`);
  const count = page.locator('p.count');
  await count.filter({ hasText: /^2 of 2 instances$/ }).waitFor();
  const row = page.locator(`tr[data-instance-id="${cfg.instanceId}"]`);
  const decoy = page.locator(`tr[data-instance-id="${cfg.decoyId}"]`);
  await decoy.waitFor();
  await page.getByLabel('Tag filter').fill(cfg.tag);
  await count.filter({ hasText: /^1 of 2 instances$/ }).waitFor();
  await decoy.waitFor({ state: 'detached' });
  await row.waitFor();
  if (!page.url().includes(`tag=${encodeURIComponent(cfg.tag)}`)) fail(`the address ${page.url()} does not keep the tag filter`);
  await shot(page, 'instances');

  step('press Connect');
  await row.getByRole('button', { name: `Connect to ${cfg.instanceName}` }).click();
  const dialog = page.getByRole('dialog', { name: `Connect to ${cfg.instanceName}` });
  await dialog.waitFor();
  await dialog.getByLabel('OS user').fill(cfg.osUser);
  await shot(page, 'connect-dialog');
  await dialog.getByRole('button', { name: 'Connect' }).click();
  await page.locator('#terminal .xterm-rows').waitFor();
}

async function terminalState(page, state) {
  const el = page.locator(`#term-state[data-state="${state}"]`);
  try {
    await el.waitFor({ timeout: TIMEOUT });
  } catch (e) {
    const now = await page.locator('#term-status, .term-status').first().textContent().catch(() => '');
    fail(`the terminal did not reach state ${state}; the status bar says: ${now}`);
  }
}

// The terminal's size as the status bar shows it (what the shell is told).
async function termSize(page) {
  const el = page.locator('#term-size');
  return { cols: Number(await el.getAttribute('data-cols')), rows: Number(await el.getAttribute('data-rows')) };
}

async function connectScenario(page, ctx) {
  await connectByTag(page);
  await terminalState(page, 'connected');
  if (await page.locator('#reconnect').isVisible()) fail('Reconnect is offered while connected');
  step('type echo $((6*7))');
  await page.locator('#terminal').click();
  await typeLine(page, 'echo $((6*7))');
  await awaitRow(page, '#terminal', /^42$/);

  // Ctrl+V as a person presses it, with the line on the browser's clipboard.
  step('paste a line with Ctrl+V');
  const pasted = 'echo PASTED-$((3+4))';
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: cfg.url });
  await page.evaluate((t) => {
    // Which of the page's two ways the paste takes: the browser's paste
    // event, or the clipboard API when no event comes.
    window.__pasteEvents = 0;
    window.addEventListener('paste', () => window.__pasteEvents++, true);
    return navigator.clipboard.writeText(t);
  }, pasted + '\n');
  await page.keyboard.press('Control+V');
  await awaitRow(page, '#terminal', /^PASTED-7$/);
  const pasteVia = (await page.evaluate(() => window.__pasteEvents)) > 0 ? 'paste event' : 'clipboard API';
  step(`pasted through the ${pasteVia}`);

  step('resize the window');
  await typeLine(page, 'echo "size-1: $(tput cols) $(tput lines)"');
  const before = (await awaitRow(page, '#terminal', /^size-1: (\d+) (\d+)$/)).map(Number);
  let shown = await termSize(page);
  if (before[0] !== shown.cols || before[1] !== shown.rows) fail(`tput printed ${before.join('×')} but the page shows ${shown.cols}×${shown.rows}`);
  // Narrower and shorter: both the columns and the rows must follow.
  await page.setViewportSize({ width: 960, height: 640 });
  // The page tells the shell the new size, then shows it.
  try {
    await page.waitForFunction(([c, r]) => {
      const el = document.getElementById('term-size');
      return el && Number(el.dataset.cols) !== c && Number(el.dataset.rows) !== r;
    }, before, { timeout: TIMEOUT });
  } catch {
    shown = await termSize(page);
    fail(`the window shrank to 960×640 but the terminal stayed ${shown.cols}×${shown.rows} (it was ${before.join('×')})`);
  }
  shown = await termSize(page);
  await typeLine(page, 'echo "size-2: $(tput cols) $(tput lines)"');
  const after = (await awaitRow(page, '#terminal', /^size-2: (\d+) (\d+)$/)).map(Number);
  if (!(after[0] < before[0] && after[1] < before[1])) fail(`tput printed ${before.join('×')} before and ${after.join('×')} after making the window smaller`);
  if (after[0] !== shown.cols || after[1] !== shown.rows) fail(`after the resize tput printed ${after.join('×')}, the page shows ${shown.cols}×${shown.rows}`);
  // The last row must be inside the terminal's box, not cut off by it.
  const clipped = await page.evaluate(() => {
    const host = document.getElementById('terminal').getBoundingClientRect();
    const rows = document.querySelector('#terminal .xterm-rows').getBoundingClientRect();
    return rows.bottom > host.bottom + 0.5 || rows.right > host.right + 0.5;
  });
  if (clipped) fail('the terminal is larger than its box: the last rows or columns are cut off');
  if ((await countRows(page, '#terminal', /^PASTED-7$/)) !== 1) fail('the pasted line ran more than once (pasted twice?)');
  await shot(page, 'terminal');

  step('exit the shell');
  await typeLine(page, 'exit');
  await terminalState(page, 'closed');
  const closed = await page.locator('#term-message').textContent();
  if (!(await page.locator('#reconnect').isVisible())) fail('Reconnect is not offered after the session ended');
  if (closed !== 'the session ended') fail(`the ended session says ${JSON.stringify(closed)}, want "the session ended"`);
  await shot(page, 'terminal-ended');
  await signOut(page);

  // The recording, as someone who reviews sessions: signing in from a
  // link to the Recordings page lands there.
  step('open the Recordings page');
  // A fresh load, as a followed link is: going there from the sign-in
  // page by a hash change alone would leave that page up until the
  // session check redirects, and the form filled in the meantime would
  // be replaced under the test (seen on a loaded machine).
  await page.goto('about:blank');
  await page.goto(`${cfg.url}/console/#/recordings`);
  await signIn(page, cfg.reviewer);
  await page.waitForURL(/#\/recordings$/);
  const rec = page.locator('#recordings tbody tr', { hasText: cfg.instanceId }).filter({ hasText: cfg.user.name });
  await rec.first().waitFor();
  if ((await rec.count()) !== 1) fail(`the Recordings page lists ${await rec.count()} sessions of ${cfg.user.name} on ${cfg.instanceId}, want 1`);
  const recordingId = await rec.getAttribute('data-recording-id');
  await shot(page, 'recordings');

  step(`play ${recordingId}`);
  await rec.getByRole('link', { name: 'Play' }).click();
  const play = page.locator('#play');
  await page.locator('#play:enabled').waitFor();
  await page.getByLabel('Speed').selectOption('8');
  if ((await countRows(page, '#player', /^42$/)) !== 0) fail('the player shows the session before Play');
  await play.click();
  await awaitRow(page, '#player', /^42$/);
  await page.locator('#play', { hasText: 'Replay' }).waitFor();
  await awaitRow(page, '#player', /^PASTED-7$/);
  await shot(page, 'playback');

  step('look up the key push in the audit trail');
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByLabel('Value').fill('SendSSHPublicKey');
  await page.getByRole('button', { name: 'Look up' }).click();
  const pushRow = page.locator('#audit tbody tr', { hasText: cfg.user.name }).filter({ has: page.locator('.badge.ok') });
  await pushRow.first().waitFor();
  await shot(page, 'audit');
  return { colsBefore: before[0], colsAfter: after[0], rowsBefore: before[1], rowsAfter: after[1], recordingId, pasted, pasteVia };
}

async function deniedScenario(page) {
  await connectByTag(page);
  await terminalState(page, 'error');
  const title = (await page.locator('#term-state').textContent()).trim();
  const message = (await page.locator('#term-message').textContent()).trim();
  const detail = (await page.locator('#term-detail:visible').textContent()).trim();
  step(`refused: ${title}: ${message} (${detail})`);
  if (title !== 'Access denied') fail(`the refused connection is titled ${JSON.stringify(title)}, want "Access denied"`);
  for (const want of [cfg.instanceId, `as ${cfg.osUser}`, 'ec2-instance-connect:SendSSHPublicKey', 'Ask an administrator']) {
    if (!message.includes(want)) fail(`the refusal ${JSON.stringify(message)} does not say ${JSON.stringify(want)}`);
  }
  // The server's words stay visible under the explanation.
  if (!detail.includes('is not authorized to perform: ec2-instance-connect:SendSSHPublicKey')) {
    fail(`the refusal's detail ${JSON.stringify(detail)} is not the server's message`);
  }
  if (await page.locator('#terminal .xterm-rows').evaluate((el) => el.textContent.trim() !== '')) fail('a refused connection printed to the terminal');
  await shot(page, 'denied');

  step('find the refusal in the audit trail');
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByLabel('Value').fill('SendSSHPublicKey');
  await page.getByLabel('Errors only').check();
  await page.getByRole('button', { name: 'Look up' }).click();
  const row = page.locator('#audit tbody tr', { hasText: cfg.user.name }).filter({ has: page.locator('.badge.bad') }).first();
  await row.waitFor();
  const errorCode = (await row.locator('.badge.bad').textContent()).trim();
  await row.getByRole('button', { name: 'SendSSHPublicKey' }).click();
  await page.locator('section.record pre.json').waitFor();
  await shot(page, 'audit-denied');
  return { title, message, detail, errorCode };
}

async function main() {
  const ctx = await chromium.launchPersistentContext(cfg.profileDir, {
    executablePath: cfg.chromium,
    headless: true,
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
    args: [
      '--no-sandbox', // root in CI
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-proxy-server',
      // The server's certificate comes from its own CA; the Go test
      // verified it against that CA and pins its key here.
      `--ignore-certificate-errors-spki-list=${cfg.spki}`,
    ],
  });
  ctx.setDefaultTimeout(TIMEOUT);
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  let result;
  try {
    step(`open ${cfg.url}/console/`);
    const resp = await page.goto(`${cfg.url}/console/`);
    if (!resp || !resp.ok()) fail(`GET /console/ answered ${resp && resp.status()}`);
    if (!(await page.evaluate(() => window.isSecureContext))) fail('the console is not a secure context');
    await page.getByRole('heading', { name: 'Sign in to Postern' }).waitFor();
    await shot(page, 'signin');
    await signIn(page, cfg.user);
    result = cfg.scenario === 'connect' ? await connectScenario(page, ctx) : await deniedScenario(page);
    if (problems.length) fail(`the page reported problems:\n${problems.join('\n')}`);
  } catch (e) {
    await page.screenshot({ path: join(cfg.screenshotDir, `${cfg.scenario}-failure.png`) }).catch(() => {});
    console.log(`FAIL at ${page.url()}: ${e.stack || e}`);
    if (problems.length) console.log(`the page reported:\n${problems.join('\n')}`);
    await ctx.close();
    process.exit(1);
  }
  await ctx.close();
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await main();
