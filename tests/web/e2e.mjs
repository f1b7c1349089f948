// The web page in a real headless Chromium: a relay and two organisations'
// `accord serve` nodes on 127.0.0.1, each organisation in its own browser
// profile. Run by tests/web.rs (cargo test) with:
//   ACCORD_BIN        the accord binary
//   ACCORD_ARTIFACTS  where screenshots go (one per step)
//   CHROMIUM          the browser (default /usr/bin/chromium)
// Every wait is on a DOM condition or a process's output line, never a fixed sleep;
// every assertion is on the DOM or an HTTP answer, never on pixels.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const BIN = process.env.ACCORD_BIN;
const ARTIFACTS = process.env.ACCORD_ARTIFACTS || 'web-artifacts';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT = 30_000;

const cleanup = [];
const pages = {};
const logs = {};
let step = 0;

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

/** A running accord process whose output lines can be awaited. */
function start(name, args) {
  const child = spawn(BIN, args, { env: { ...process.env, ACCORD_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = [];
  const errors = [];
  const feed = (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      const m = line.match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  createInterface({ input: child.stdout }).on('line', feed);
  createInterface({ input: child.stderr }).on('line', (line) => errors.push(line));
  logs[name] = errors;
  child.on('exit', (code) => {
    for (const w of waiters) w.reject(new Error(`${name} exited (${code}) before printing ${w.pattern}:\n${errors.join('\n')}`));
  });
  cleanup.push(() => child.kill('SIGTERM'));
  return {
    /** Resolves with the match of the first (past or future) line matching `pattern`. */
    line(pattern) {
      const seen = lines.map((l) => l.match(pattern)).find(Boolean);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name} did not print ${pattern}; stderr:\n${errors.join('\n')}`)), WAIT);
        waiters.push({ pattern, resolve: (m) => { clearTimeout(timer); resolve(m); }, reject });
      });
    },
  };
}

function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function browserFor(name) {
  const context = await chromium.launchPersistentContext(tempDir(`accord-${name}-profile-`), {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1200, height: 900 },
  });
  cleanup.unshift(() => context.close());
  context.setDefaultTimeout(WAIT);
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => console.error(`[${name} page error] ${e.message}`));
  pages[name] = page;
  return { context, page };
}

async function shot(page, name) {
  step += 1;
  const file = join(ARTIFACTS, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`step ${step}: ${name} (${file})`);
}

/** A raw HTTP request (so Host and Origin can be forged as an attacker would). */
function http(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      let text = '';
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function firstRun(page, url, org) {
  await page.goto(url);
  assert(!page.url().includes('token='), 'the token is stripped from the address bar');
  await page.getByLabel('Your organisation’s name').fill(org);
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Partnerships' }).waitFor();
  await page.locator('#whoami', { hasText: org }).waitFor();
}

const purpose = (page) => page.getByRole('textbox', { name: 'Purpose and aims' });
const valueOf = (locator) => locator.inputValue();

/**
 * Waits until the page's purpose field contains every string of
 * `includes` (and equals `equals`, if given). Plain data, no functions:
 * the page's Content-Security-Policy forbids evaluating strings.
 */
async function waitForValue(page, { includes = [], equals }, what) {
  await page.waitForFunction(
    ({ includes, equals }) => {
      const box = document.querySelector('textarea[data-path="purpose"]');
      if (!box) return false;
      return includes.every((s) => box.value.includes(s)) && (equals === undefined || box.value === equals);
    },
    { includes, equals },
    { timeout: WAIT },
  ).catch(async (e) => {
    throw new Error(`${what}: ${e.message}\npurpose is now ${JSON.stringify(await valueOf(purpose(page)))}`);
  });
}

async function main() {
  assert(BIN, 'ACCORD_BIN names the accord binary');
  mkdirSync(ARTIFACTS, { recursive: true });

  const relay = start('relay', ['--data', tempDir('accord-relay-'), 'relay', '--listen', '127.0.0.1:0']);
  const [, relayUrl] = await relay.line(/listening on (ws:\/\/\S+)/);
  const [, relayKey] = await relay.line(/Relay key: (\S+)/);

  const nodeA = start('A', ['--data', join(tempDir('accord-a-'), 'data'), 'serve', '--listen', '127.0.0.1:0']);
  const nodeB = start('B', ['--data', join(tempDir('accord-b-'), 'data'), 'serve', '--listen', '127.0.0.1:0']);
  const [, urlA] = await nodeA.line(/^Open (http:\/\/\S+)/);
  const [, urlB] = await nodeB.line(/^Open (http:\/\/\S+)/);
  const originA = new URL(urlA).origin;
  const originB = new URL(urlB).origin;

  const a = await browserFor('A');
  const b = await browserFor('B');

  // First run on both: each page creates its organisation.
  await firstRun(a.page, urlA, 'Alpha Trust');
  await shot(a.page, 'a-first-run-done');
  await firstRun(b.page, urlB, 'Beta Centre');
  await shot(b.page, 'b-first-run-done');

  // A starts the partnership, adds the relay (which serves only members
  // of partnerships, so it comes second), and creates an MOU.
  await a.page.getByLabel('Partnership name').fill('Sharing Our Strengths');
  await a.page.getByRole('button', { name: 'Start' }).click();
  await a.page.getByRole('heading', { name: 'Sharing Our Strengths' }).waitFor();
  const partnershipHash = new URL(a.page.url()).hash;
  await a.page.getByText('Add a relay or peer').click();
  await a.page.getByLabel('Address').fill(relayUrl);
  await a.page.getByLabel(/Its key/).fill(relayKey);
  await a.page.getByRole('button', { name: 'Add', exact: true }).click();
  await a.page.locator('[data-testid=connections] li', { hasText: 'Relay' }).waitFor();
  await shot(a.page, 'a-partnership-connected-to-relay');
  await a.page.getByLabel('Kind').selectOption('mou');
  await a.page.getByLabel('Title').fill('Our MOU');
  await a.page.getByRole('button', { name: 'Create agreement' }).click();
  await a.page.getByRole('heading', { name: 'Our MOU' }).waitFor();
  const docUrlA = a.page.url();
  await shot(a.page, 'a-created-mou');

  // A invites B by B's key (copied from B's page).
  const keyB = await b.page.getByTestId('my-key').inputValue();
  await a.page.getByRole('link', { name: 'Sharing Our Strengths' }).click();
  await a.page.getByLabel('Organisation name').fill('Beta Centre');
  await a.page.getByLabel('Their public key').fill(keyB);
  await a.page.getByLabel('Role', { exact: true }).selectOption('decision-maker');
  await a.page.getByRole('button', { name: 'Add and make invite code' }).click();
  const code = await a.page.getByTestId('invite-code').inputValue();
  assert(code.startsWith('accord-invite:'), `an invite code is shown (${code.slice(0, 20)})`);
  await a.page.locator('tr', { hasText: 'Beta Centre' }).waitFor();
  await shot(a.page, 'a-invited-b');

  // B joins with the code; the partnership arrives through the relay.
  await b.page.getByLabel('Invite code').fill(code);
  await b.page.getByRole('button', { name: 'Join' }).click();
  await b.page.getByRole('link', { name: 'Sharing Our Strengths' }).click();
  await b.page.getByRole('link', { name: 'Our MOU' }).click();
  await purpose(b.page).waitFor();
  await shot(b.page, 'b-joined-and-opened-mou');

  // A types; B sees it live.
  await a.page.getByRole('link', { name: 'Our MOU' }).click();
  await purpose(a.page).click();
  await purpose(a.page).pressSequentially('Alpha writes this.', { delay: 15 });
  await waitForValue(b.page, { includes: ['Alpha writes this.'] }, "B sees A's typing");
  await shot(a.page, 'a-typed-purpose');
  await shot(b.page, 'b-sees-a-typing-live');

  // Both type in the same field at once: A at the end, B at the start.
  await purpose(a.page).click();
  await a.page.keyboard.press('Control+End');
  await purpose(b.page).click();
  await b.page.keyboard.press('Control+Home');
  await Promise.all([
    purpose(a.page).pressSequentially(' Alpha adds more.', { delay: 25 }),
    purpose(b.page).pressSequentially('Beta first. ', { delay: 25 }),
  ]);
  const both = { includes: ['Alpha writes this.', ' Alpha adds more.', 'Beta first. '] };
  await waitForValue(a.page, both, 'A keeps both texts');
  await waitForValue(b.page, both, 'B keeps both texts');
  const textB = await valueOf(purpose(b.page));
  await waitForValue(a.page, { equals: textB }, 'the pages converge');
  assert(textB.startsWith('Beta first. '), `B's words are where B typed them: ${JSON.stringify(textB)}`);
  await shot(a.page, 'a-after-concurrent-typing');
  await shot(b.page, 'b-after-concurrent-typing');

  // A makes B a consultee: B's editor turns comment-only, live.
  await a.page.getByRole('link', { name: 'Sharing Our Strengths' }).click();
  await a.page.getByLabel('Role of Beta Centre').selectOption('consultee');
  await a.page.getByText('Beta Centre is now a consultee.').waitFor();
  await b.page.getByTestId('comment-only').waitFor();
  assert(await purpose(b.page).evaluate((el) => el.readOnly), "B's purpose is read-only");
  const before = await valueOf(purpose(b.page));
  await purpose(b.page).click();
  await b.page.keyboard.type('Not allowed');
  assert(await valueOf(purpose(b.page)) === before, 'typing changes nothing for a consultee');
  assert(await b.page.getByRole('button', { name: /Add objective/ }).count() === 0, 'no add buttons for a consultee');
  assert(await b.page.getByRole('button', { name: 'Sign this version' }).count() === 0, 'a consultee cannot sign');
  await shot(b.page, 'b-consultee-comment-only');

  // B quotes the words it selected and comments; A, on the agreement, sees it live.
  await a.page.getByRole('link', { name: 'Our MOU' }).click();
  await purpose(a.page).waitFor();
  // B selects the words it means (as by dragging the mouse over them).
  await purpose(b.page).evaluate((el) => { el.focus(); el.setSelectionRange(0, 'Beta first.'.length); });
  const purposeSection = (page) => page.locator('[data-section=purpose]');
  await purposeSection(b.page).getByText('Comment on “Purpose and aims”').click();
  const quoted = await purposeSection(b.page).getByLabel('Quoting (optional)').inputValue();
  assert(quoted === 'Beta first.', `the selection is quoted: ${JSON.stringify(quoted)}`);
  await purposeSection(b.page).getByLabel('Comment', { exact: true }).fill('Could we name the two towns?');
  await purposeSection(b.page).getByRole('button', { name: 'Add comment' }).click();
  await purposeSection(b.page).locator('.comment', { hasText: 'Could we name the two towns?' }).waitFor();
  const seenByA = purposeSection(a.page).locator('.comment', { hasText: 'Could we name the two towns?' });
  await seenByA.waitFor();
  assert((await seenByA.textContent()).includes('Beta Centre'), "A sees B's name on the comment");
  assert(await seenByA.locator('blockquote').textContent() === 'Beta first.', 'A sees the quote');
  await shot(a.page, 'a-sees-b-comment-live');

  // A resolves it; B sees it resolved.
  await seenByA.getByRole('button', { name: 'Resolve Beta Centre’s comment' }).click();
  for (const page of [a.page, b.page]) {
    // Resolved comments fold away under "1 resolved comment(s)".
    const resolved = purposeSection(page).locator('.comment.resolved');
    await resolved.waitFor({ state: 'attached' });
    const said = await resolved.textContent();
    assert(said.includes('Could we name the two towns?') && said.includes('Resolved by Alpha Trust'), `resolved: ${said}`);
  }
  await purposeSection(b.page).getByText('1 resolved comment(s)').click();
  await shot(b.page, 'b-sees-comment-resolved');

  // A signs the current version: every decision maker (only A now) has signed.
  await a.page.getByLabel('Statement').fill('Agreed by the Alpha Trust board');
  await a.page.getByRole('button', { name: 'Sign this version' }).click();
  const signedA = a.page.locator('[data-testid=signoff-status] li[data-state=current]', { hasText: 'Alpha Trust' });
  await signedA.waitFor();
  assert((await signedA.textContent()).includes('signed this version'), 'A is shown as signing this version');
  await a.page.locator('[data-testid=signoff-banner][data-state=all]', { hasText: 'Every decision maker has signed this exact version.' }).waitFor();
  await b.page.locator('[data-testid=signoff-status] li[data-state=current]', { hasText: 'Alpha Trust' }).waitFor();
  const fingerprintA = await signedA.locator('code').first().textContent();
  await shot(a.page, 'a-signed');
  await shot(b.page, 'b-sees-a-signed');

  // A types again: the banners say A signed an earlier version, on both pages.
  await purpose(a.page).click();
  await a.page.keyboard.press('Control+End');
  await purpose(a.page).pressSequentially(' Revised.', { delay: 15 });
  const earlier = (page) => page.locator('[data-testid=signoff-banner][data-state=earlier]', { hasText: 'Alpha Trust signed an earlier version' });
  await earlier(a.page).waitFor();
  await earlier(b.page).waitFor();
  await a.page.locator('[data-testid=signoff-status] li[data-state=earlier]', { hasText: 'Alpha Trust' }).waitFor();
  await shot(a.page, 'a-banner-signed-earlier-version');
  await shot(b.page, 'b-banner-signed-earlier-version');
  await a.page.getByRole('link', { name: 'Sharing Our Strengths' }).click();
  await a.page.locator('[data-testid=agreements] [data-state=earlier]', { hasText: 'Alpha Trust signed an earlier version.' }).waitFor();
  await shot(a.page, 'a-partnership-signoff-state');

  // History shows both organisations, and filters by one.
  await b.page.goto(`${originB}/${new URL(docUrlA).hash}/history`);
  const timeline = b.page.getByTestId('timeline');
  await timeline.locator('li', { hasText: 'Alpha Trust' }).first().waitFor();
  await timeline.locator('li', { hasText: 'Beta Centre' }).first().waitFor();
  await timeline.locator('li', { hasText: 'Purpose and aims' }).first().waitFor();
  const unverifiedRows = await timeline.locator('li[data-verified=false]').count();
  assert(unverifiedRows === 0, `every change is verified (${unverifiedRows} rows are not)`);
  assert(await timeline.locator('li .tag.verified').count() > 1, 'rows are marked verified');
  await shot(b.page, 'b-history-both-organisations');

  // What changed since A signed: A's later words, highlighted.
  await b.page.getByLabel('From').selectOption('Alpha Trust'); // its latest sign-off
  await b.page.getByRole('button', { name: 'Compare' }).click();
  await b.page.getByTestId('diff').locator('ins', { hasText: 'Revised.' }).waitFor();
  // Who wrote which words of the purpose: both organisations.
  await b.page.getByLabel('Field').selectOption('purpose');
  await b.page.getByRole('button', { name: 'Show who wrote it' }).click();
  const blame = b.page.getByTestId('blame');
  await blame.locator('span[title="Beta Centre"]', { hasText: 'Beta first.' }).waitFor();
  await blame.locator('span[title="Alpha Trust"]', { hasText: 'Alpha writes this.' }).waitFor();
  await shot(b.page, 'b-history-diff-and-blame');
  await b.page.getByLabel('Show changes by').selectOption({ label: 'Beta Centre' });
  await b.page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid=timeline] li')];
    return rows.length > 0 && rows.every((r) => r.textContent.includes('Beta Centre'));
  });
  await shot(b.page, 'b-history-filtered');

  // On a phone-sized screen nothing is wider than the screen.
  await b.page.setViewportSize({ width: 360, height: 740 });
  await b.page.goto(`${originB}/${new URL(docUrlA).hash}`);
  await purpose(b.page).waitFor();
  const overflow = await b.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 0, `the editor fits a phone screen (${overflow}px too wide)`);
  await shot(b.page, 'b-editor-on-a-phone');

  // The printable export.
  const docId = new URL(docUrlA).hash.split('/')[2];
  await a.page.goto(`${originA}/export/${docId}/html`);
  await a.page.locator('h1', { hasText: 'Our MOU' }).waitFor();
  const exported = await a.page.content();
  assert(exported.includes('Alpha writes this.'), 'the export has the purpose');
  const signoffBlock = exported.slice(exported.indexOf('id="signoff-h"'));
  assert(signoffBlock.includes(fingerprintA) && signoffBlock.includes('signed an earlier version on'), 'the export has the sign-off block with fingerprints');
  assert(signoffBlock.includes('Agreed by the Alpha Trust board'), "the export has A's statement");
  await shot(a.page, 'a-printable-export');

  // A removes B, after confirming.
  await a.page.goto(`${originA}/${partnershipHash}`);
  await a.page.getByRole('button', { name: 'Remove Beta Centre…' }).click();
  await a.page.getByRole('button', { name: 'Remove Beta Centre', exact: true }).click();
  await a.page.getByText('Beta Centre is no longer a member.').waitFor();
  await a.page.locator(`tr[data-member="${keyB}"]`).waitFor({ state: 'detached' });
  await shot(a.page, 'a-removed-b');
  await a.page.getByText('Show who did what across this partnership').click();
  const auditB = a.page.locator(`[data-testid=audit] tr[data-member="${keyB}"]`);
  await auditB.waitFor();
  assert((await auditB.textContent()).includes('no longer a member'), 'the audit keeps a removed member, marked');
  await shot(a.page, 'a-audit');

  // Refusals: no token, a foreign Host (DNS rebinding), a foreign Origin.
  await b.page.goto(`${originA}/`);
  assert((await b.page.content()).includes('Open the link that'), 'no token, no page');
  await shot(b.page, 'refused-without-token');
  const cookie = (await a.context.cookies(originA)).map((c) => `${c.name}=${c.value}`).join('; ');
  assert(cookie.includes('accord_session_'), 'A has a session cookie');
  const port = new URL(originA).port;
  const noToken = await http(`${originA}/api/state`);
  assert(noToken.status === 403, `missing token/cookie: ${noToken.status}`);
  const rebinding = await http(`${originA}/api/state`, { headers: { host: `evil.example:${port}`, cookie } });
  assert(rebinding.status === 403 && rebinding.text.includes('DNS-rebinding'), `forbidden Host: ${rebinding.status}`);
  const crossSite = await http(`${originA}/api/partnerships`, {
    method: 'POST', headers: { origin: 'http://evil.example', cookie, 'content-type': 'application/json' }, body: '{"name":"x"}',
  });
  assert(crossSite.status === 403 && crossSite.text.includes('another web site'), `foreign Origin: ${crossSite.status}`);
  const allowed = await http(`${originA}/api/state`, { headers: { cookie } });
  assert(allowed.status === 200, `the real cookie works: ${allowed.status}`);
  console.log('all web steps passed');
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(e.stack || e.message);
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(ARTIFACTS, `failure-${name}.png`), fullPage: true }).catch(() => {});
  }
  for (const [name, lines] of Object.entries(logs)) console.error(`--- ${name} stderr ---\n${lines.slice(-30).join('\n')}`);
} finally {
  for (const done of cleanup.reverse()) {
    try { await done(); } catch { /* already gone */ }
  }
}
process.exit(failed ? 1 : 0);
