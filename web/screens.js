// First run, the home screen (partnerships, joining), and a partnership
// (members, invites, agreements, sync).

import { get, post } from './api.js';
import { h, fill, toast, attempt, labelled, copyable, when } from './dom.js';
import { session, refreshSyncBadge } from './app.js';

const ROLES = [
  ['decision-maker', 'Decision maker (edits and signs)'],
  ['consultee', 'Consultee (reads and comments)'],
  ['informed', 'Informed (reads)'],
];
const KINDS = [
  ['mou', 'Memorandum of Understanding'],
  ['values', 'Shared values and ground rules'],
  ['dispute', 'Dispute-resolution process'],
];

function select(options, attrs = {}) {
  const el = h('select', attrs, options.map(([value, label]) => h('option', { value }, label)));
  if (attrs.value !== undefined) el.value = attrs.value;
  return el;
}

/** A form whose submit runs `action(values)` and reports failures. */
function form(name, fields, button, action) {
  const el = h('form', { 'aria-label': name }, fields, h('button', { type: 'submit' }, button));
  el.addEventListener('submit', (e) => {
    e.preventDefault();
    const values = Object.fromEntries(new FormData(el));
    attempt(() => action(values, el));
  });
  return el;
}

/** First run: this computer has no organisation yet. */
export function firstRun(restart) {
  return {
    title: 'Welcome',
    render(main) {
      fill(main,
        h('h1', {}, 'Welcome to Accord'),
        h('p', {}, 'Accord keeps your partnership’s agreements on this computer and shares them with your partners. First, name your organisation as partners will see it.'),
        form('Create your organisation', [
          labelled('Your organisation’s name', h('input', { name: 'org', required: true, autocomplete: 'organization' })),
        ], 'Create', async ({ org }) => {
          await post('/api/setup', { org });
          await restart();
        }));
      main.querySelector('input')?.focus();
    },
  };
}

/** Your organisation: the key partners need to invite you. */
function whoamiPanel() {
  const org = session.org;
  return h('section', { class: 'panel', 'aria-labelledby': 'me-h' },
    h('h2', { id: 'me-h' }, 'Your organisation'),
    h('p', { class: 'name' }, org.name),
    h('p', {}, 'Fingerprint ', h('code', { 'data-testid': 'fingerprint' }, org.fingerprint)),
    copyable('Public key (send it to a partner so they can invite you)', org.key, { 'data-testid': 'my-key' }));
}

/** Home: partnerships held here, starting one, joining one. */
export function home() {
  let main;
  const screen = {
    title: 'Partnerships',
    async render(el) {
      main = el;
      const { partnerships, pending_joins: pending } = await get('/api/partnerships');
      fill(main,
        h('h1', {}, 'Partnerships'),
        partnerships.length
          ? h('ul', { class: 'cards' }, partnerships.map((p) => h('li', {},
            h('a', { href: `#/p/${p.id}` }, p.name),
            h('span', { class: 'muted' }, ` · ${p.documents.length} agreement(s) · you are ${p.role || 'not a member'}`))))
          : h('p', {}, 'No partnerships yet. Start one, or join one with the invite code a partner sent you.'),
        pending ? h('p', { role: 'status', class: 'notice' }, 'Joined: waiting for the partnership to arrive from your partner or relay…') : null,
        h('div', { class: 'columns' },
          h('section', { class: 'panel', 'aria-labelledby': 'new-h' },
            h('h2', { id: 'new-h' }, 'Start a partnership'),
            h('p', { class: 'hint' }, 'Your organisation becomes its lead partner.'),
            form('Start a partnership', [labelled('Partnership name', h('input', { name: 'name', required: true }))], 'Start', async ({ name }) => {
              const p = await post('/api/partnerships', { name });
              location.hash = `#/p/${p.id}`;
            })),
          h('section', { class: 'panel', 'aria-labelledby': 'join-h' },
            h('h2', { id: 'join-h' }, 'Join a partnership'),
            form('Join a partnership', [labelled('Invite code', h('textarea', { name: 'code', required: true, rows: 3 }), 'Paste the whole code, starting with accord-invite:')], 'Join', async ({ code }, f) => {
              const joined = await post('/api/join', { code });
              toast(`Joined “${joined.name}”. Its agreements arrive once your partner or relay is reachable.`);
              f.reset();
              await screen.render(main);
            })),
          whoamiPanel(),
          syncPanel()));
    },
    onEvent(event) {
      if (event.type !== 'sync') screen.render(main);
    },
  };
  return screen;
}

/** The partnership: members, invites, agreements. */
export function partnership(id) {
  let main;
  let current;
  const docs = h('div', { 'data-testid': 'agreements' });
  let fetching = false;
  let again = false;
  /** Redraws only the agreements and their sign-off state (forms elsewhere keep what is typed). */
  async function refreshDocs() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    await attempt(async () => {
      current = await get(`/api/partnerships/${id}`);
      drawDocs(docs, current);
    });
    fetching = false;
    if (again) {
      again = false;
      refreshDocs();
    }
  }
  const screen = {
    title: 'Partnership',
    async render(el) {
      main = el;
      current = await get(`/api/partnerships/${id}`);
      screen.title = current.name;
      const canEdit = current.role === 'decision-maker';
      fill(main,
        h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' }, h('a', { href: '#/' }, 'Partnerships'), ' / ', current.name),
        h('h1', {}, current.name),
        h('p', { class: 'muted' }, `Your organisation is ${current.role ? `a ${current.role}` : 'not a member'} here.`),
        h('div', { class: 'columns' },
          h('section', { class: 'panel wide', 'aria-labelledby': 'docs-h' },
            h('h2', { id: 'docs-h' }, 'Agreements'),
            drawDocs(docs, current),
            canEdit ? form('New agreement', [
              labelled('Kind', select(KINDS, { name: 'kind' })),
              labelled('Title', h('input', { name: 'title', placeholder: 'e.g. Our MOU' })),
            ], 'Create agreement', async (values) => {
              const doc = await post(`/api/partnerships/${id}/documents`, values);
              location.hash = `#/d/${doc.id}`;
            }) : null),
          membersPanel(current, canEdit, () => screen.render(main)),
          auditPanel(current),
          canEdit ? invitePanel(current, () => screen.render(main)) : null,
          syncPanel(current.members)));
    },
    onEvent(event) {
      if (event.type === 'resync' || event.type === 'ready' || (event.type === 'changed' && event.doc === current?.roster_doc)) {
        screen.render(main);
      } else if (event.type === 'changed' && current
        && (current.notes_docs.includes(event.doc) || current.documents.some((d) => d.id === event.doc))) {
        // A signature arrived, or an agreement's text changed since one.
        refreshDocs();
      }
    },
  };
  return screen;
}

function drawDocs(el, p) {
  return fill(el, p.documents.length
    ? h('ul', { class: 'cards' }, p.documents.map((d) => h('li', { 'data-doc': d.id },
      h('a', { href: `#/d/${d.id}` }, d.title),
      h('span', { class: 'muted' }, ` · ${kindLabel(d.kind)}`),
      h('p', { class: 'signoff-state', 'data-state': signoffState(d.signoff) }, signoffText(d.signoff)))))
    : h('p', {}, 'No agreements yet.'));
}

function signoffState(s) {
  if (!s) return 'unknown';
  if (s.signed_earlier.length) return 'earlier';
  return s.all_signed ? 'all' : s.signed_current.length ? 'partial' : 'none';
}

/** An agreement's sign-off at a glance. */
function signoffText(s) {
  if (!s) return 'Not here yet: it arrives from your partner or relay.';
  const parts = [];
  if (s.all_signed) parts.push('Signed by every decision maker.');
  else if (s.signed_current.length) parts.push(`Signed by ${s.signed_current.join(', ')}; waiting for ${s.not_signed.concat(s.signed_earlier).join(', ')}.`);
  if (s.signed_earlier.length) parts.push(`${s.signed_earlier.join(', ')} signed an earlier version.`);
  if (!parts.length) parts.push('Not signed yet.');
  return parts.join(' ');
}

function kindLabel(kind) {
  return (KINDS.find(([k]) => k === kind) || [kind, kind])[1];
}

function membersPanel(p, canEdit, rerender) {
  const rows = p.members.map((m) => {
    const role = canEdit && m.key !== session.org.key
      ? select(ROLES, {
        value: m.role,
        'aria-label': `Role of ${m.name}`,
        onchange: (e) => attempt(async () => {
          await post(`/api/partnerships/${p.id}/members/${m.key}/role`, { role: e.target.value });
          toast(`${m.name} is now a ${e.target.value}.`);
          rerender();
        }),
      })
      : m.role;
    return h('tr', { 'data-member': m.key },
      h('th', { scope: 'row' }, m.name, m.lead ? h('span', { class: 'tag' }, 'lead partner') : null,
        m.key === session.org.key ? h('span', { class: 'tag' }, 'you') : null),
      h('td', {}, h('code', {}, m.fingerprint)),
      h('td', {}, role),
      canEdit ? h('td', {}, m.key !== session.org.key ? removeControl(p, m, rerender) : null) : null);
  });
  return h('section', { class: 'panel wide', 'aria-labelledby': 'members-h' },
    h('h2', { id: 'members-h' }, 'Members'),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Organisation'), h('th', { scope: 'col' }, 'Fingerprint'), h('th', { scope: 'col' }, 'Role'),
        canEdit ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Remove')) : null)),
      h('tbody', {}, rows))));
}

/** Per organisation: changes (and unverified ones), agreements touched, last activity, sign-offs, refusals. Loaded when opened. */
function auditPanel(p) {
  const body = h('div', { 'aria-live': 'polite' });
  const details = h('details', {}, h('summary', {}, 'Show who did what across this partnership'), body);
  details.addEventListener('toggle', () => {
    if (!details.open) return;
    attempt(async () => {
      const { organisations } = await get(`/api/partnerships/${p.id}/audit`);
      fill(body, h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'audit' },
        h('thead', {}, h('tr', {}, ['Organisation', 'Changes', 'Agreements touched', 'Last activity', 'Sign-offs', 'Refused changes']
          .map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, organisations.map((o) => h('tr', { 'data-member': o.key },
          h('th', { scope: 'row' }, o.name, o.role ? null : h('span', { class: 'tag' }, 'no longer a member')),
          h('td', {}, String(o.changes), o.unverified_changes ? h('span', { class: 'tag unverified' }, `${o.unverified_changes} not verified`) : null),
          h('td', {}, o.documents_touched.join(', ') || '—'),
          h('td', {}, when(o.last_activity)),
          h('td', {}, String(o.signoffs)),
          h('td', {}, String(o.refusals))))))));
    });
  });
  return h('section', { class: 'panel wide', 'aria-labelledby': 'audit-h' },
    h('h2', { id: 'audit-h' }, 'Audit'),
    details);
}

/** "Remove…", then an explicit confirmation naming the organisation. */
function removeControl(p, m, rerender) {
  const cell = h('div', { class: 'remove' });
  const ask = h('button', {
    type: 'button',
    class: 'secondary',
    'aria-label': `Remove ${m.name}…`,
    onclick: () => {
      const yes = h('button', {
        type: 'button',
        onclick: () => attempt(async () => {
          await post(`/api/partnerships/${p.id}/members/${m.key}/remove`);
          toast(`${m.name} is no longer a member.`);
          rerender();
        }),
      }, `Remove ${m.name}`);
      fill(cell,
        h('p', { role: 'alert' }, `Remove ${m.name} from ${p.name}? Their past changes stay in the history; partners refuse anything they write after this.`),
        yes,
        h('button', { type: 'button', class: 'secondary', onclick: () => { fill(cell, ask); ask.focus(); } }, 'Cancel'));
      yes.focus();
    },
  }, 'Remove…');
  return fill(cell, ask);
}

/** Adds a partner to the roster and shows the invite code to send them. */
function invitePanel(p, rerender) {
  const result = h('div', { 'aria-live': 'polite' });
  const panel = h('section', { class: 'panel', 'aria-labelledby': 'invite-h' },
    h('h2', { id: 'invite-h' }, 'Invite a partner'),
    h('p', { class: 'hint' }, 'Ask the partner for the public key shown on their Accord page, and check the fingerprint with them by phone.'),
    form('Invite a partner', [
      labelled('Organisation name', h('input', { name: 'name', required: true })),
      labelled('Their public key', h('textarea', { name: 'key', required: true, rows: 2, class: 'code' })),
      labelled('Role', select(ROLES, { name: 'role', value: 'decision-maker' })),
    ], 'Add and make invite code', async (values, f) => {
      const updated = await post(`/api/partnerships/${p.id}/members`, values);
      const member = updated.members.find((m) => m.key === values.key.trim().toLowerCase());
      const { code, relay } = await post(`/api/partnerships/${p.id}/invites`, { member: member ? member.key : values.name });
      f.reset();
      rerender();
      showInvite(code, relay, values.name);
    }));
  const showInvite = (code, relay, name) => {
    document.getElementById('invite-result')?.remove();
    document.querySelector('main').append(h('section', { class: 'panel', id: 'invite-result', 'aria-labelledby': 'code-h' },
      h('h2', { id: 'code-h' }, `Invite code for ${name}`),
      copyable('Send this code to them; they paste it under “Join a partnership”.', code, { 'data-testid': 'invite-code' }),
      relay ? h('p', { class: 'hint' }, `It tells them to sync through ${relay}.`)
        : h('p', { class: 'notice' }, 'No relay is set up here, so the code names none: add a relay under Sync first, or your partner must add one too.')));
  };
  panel.append(result);
  return panel;
}

/** Connected partners and relays, last sync, and adding a relay. */
export function syncPanel(members = []) {
  const body = h('div', { 'aria-live': 'polite' }, h('p', {}, 'Loading…'));
  const nameOf = (key) => members.find((m) => m.key === key)?.name;
  const load = () => attempt(async () => {
    const { configured, status } = await get('/api/peers');
    fill(body,
      h('p', {}, `Last sync: ${when(status.last_sync)}`),
      status.problem ? h('p', { class: 'notice' }, `Last problem: ${status.problem}`) : null,
      status.refusals.length
        ? h('div', { class: 'notice', 'data-testid': 'refusals' }, h('p', {}, 'Refused changes (each was checked and not applied):'),
          h('ul', {}, status.refusals.map((r) => h('li', {}, r))))
        : null,
      status.connections.length
        ? h('ul', { 'data-testid': 'connections' }, status.connections.map((c) => h('li', {},
          c.relay ? 'Relay ' : (nameOf(c.key) || 'Partner '), h('code', {}, c.fingerprint || '?'))))
        : h('p', {}, 'Not connected to any partner or relay right now.'),
      configured.length
        ? h('details', {}, h('summary', {}, `${configured.length} relay(s) and peer(s) configured`),
          h('ul', {}, configured.map((c) => h('li', {}, h('code', {}, c.url)))))
        : null);
  });
  load();
  const panel = h('section', { class: 'panel', 'aria-labelledby': 'sync-h', 'data-sync-panel': true },
    h('h2', { id: 'sync-h' }, 'Sync'),
    body,
    h('details', {}, h('summary', {}, 'Add a relay or peer'),
      form('Add a relay', [
        labelled('Address', h('input', { name: 'url', required: true, placeholder: 'ws://relay.example.org:7400' })),
        labelled('Its key (optional, printed by `accord relay`)', h('input', { name: 'key' })),
      ], 'Add', async (values, f) => {
        await post('/api/peers', values);
        f.reset();
        toast('Added. Accord connects to it now.');
        load();
        refreshSyncBadge();
      })));
  panel.addEventListener('accord-sync', load);
  return panel;
}
