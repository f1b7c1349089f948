// The history of one agreement: every change, coloured by the
// organisation that made it, filterable by organisation, each marked
// verified (its organisation's signature covers it) or not. Consecutive
// changes by one organisation within a few minutes (typing) show as one
// row. Below: two versions compared word by word, and who wrote which
// words of a field (blame).

import { get } from './api.js';
import { h, fill, orgColour, when, attempt, labelled } from './dom.js';

const GROUP_SECONDS = 300;

export function history(id) {
  let main;
  let filter = '';
  let list;
  let labels = {};
  let memberKeys = [];
  const screen = {
    title: 'History',
    async render(el) {
      main = el;
      const [data, doc, signoffs] = await Promise.all([
        get(`/api/documents/${id}/history`),
        get(`/api/documents/${id}`),
        get(`/api/documents/${id}/signoffs`),
      ]);
      const orgs = new Map();
      for (const e of data.entries) if (e.org) orgs.set(e.org, e.org_name || e.org.slice(0, 8));
      list = h('ol', { class: 'timeline', 'data-testid': 'timeline' });
      memberKeys = data.partnership.members.map((m) => m.key);
      labels = data.labels;
      const choose = h('select', {
        onchange: (e) => {
          filter = e.target.value;
          drawEntries(list, data.entries, data.labels);
        },
      }, h('option', { value: '' }, 'All organisations'), [...orgs].map(([key, name]) => h('option', { value: key }, name)));
      choose.value = filter;
      screen.title = `History of ${data.document.title}`;
      const unverified = data.entries.filter((e) => !e.verified).length;
      fill(main,
        h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' },
          h('a', { href: '#/' }, 'Partnerships'), ' / ',
          h('a', { href: `#/p/${data.partnership.id}` }, data.partnership.name), ' / ',
          h('a', { href: `#/d/${id}` }, data.document.title)),
        h('h1', {}, `History of ${data.document.title}`),
        unverified
          ? h('p', { class: 'notice', role: 'note' }, `${unverified} change(s) could not be verified: no organisation's signature covers them here. They are marked below.`)
          : h('p', { class: 'muted' }, 'Every change here is verified: each is covered by the signature of the organisation shown.'),
        h('div', { class: 'columns' },
          comparePanel(data.entries, signoffs.members),
          blamePanel(doc)),
        h('h2', {}, 'Changes'),
        h('div', { class: 'field inline' }, h('label', { for: 'org-filter' }, 'Show changes by'), Object.assign(choose, { id: 'org-filter' })),
        h('ul', { class: 'legend', 'aria-label': 'Organisations' }, [...orgs].map(([key, name]) => h('li', {},
          h('span', { class: 'swatch', 'data-colour': key }), name))),
        list);
      for (const swatch of main.querySelectorAll('.swatch')) swatch.style.background = orgColour(swatch.dataset.colour, memberKeys);
      drawEntries(list, data.entries, data.labels);
    },
    onEvent(event) {
      // Only the timeline is redrawn: a comparison or blame being read stays.
      if (event.type === 'resync' || (event.type === 'changed' && event.doc === id)) {
        attempt(async () => drawEntries(list, (await get(`/api/documents/${id}/history`)).entries, labels));
      }
    },
  };

  function drawEntries(list, entries, labels) {
    const shown = entries.map((e, i) => ({ ...e, position: i + 1 })).filter((e) => !filter || e.org === filter);
    fill(list, group(shown).reverse().map((g) => {
      const verified = g.entries.every((e) => e.verified);
      const row = h('li', { 'data-org': g.org || '', 'data-verified': String(verified) },
        h('p', { class: 'who' }, g.name || 'Unknown organisation',
          verified
            ? h('span', { class: 'tag verified', title: 'Covered by this organisation’s signature, checked on this computer' }, '✓ verified')
            : h('span', { class: 'tag unverified', title: 'No valid signature covers this change: do not rely on who it names' }, '⚠ not verified')),
        h('p', {}, describe(g, labels)),
        h('p', { class: 'muted' }, g.count > 1
          ? `${g.count} changes (${g.entries[0].position}–${g.entries[g.count - 1].position}), ${when(g.first)} – ${when(g.last)}`
          : `Change ${g.entries[0].position}, ${when(g.last)}`));
      row.style.borderLeftColor = orgColour(g.org, memberKeys);
      return row;
    }));
    if (!shown.length) list.append(h('li', {}, 'No changes by this organisation.'));
  }

  /** Pick two versions; see the words added and removed, section by section. */
  function comparePanel(entries, members) {
    const signed = members.filter((m) => m.signoff);
    const versions = [
      ...signed.map((m) => [m.name, `${m.name}’s sign-off (${when(m.signoff.at)})`]),
      ...entries.map((e, i) => [String(i + 1), `After change ${i + 1}: ${e.org_name || 'unknown'}, ${when(e.time)}`]).reverse(),
    ];
    const from = h('select', { name: 'from' }, versions.map(([v, label]) => h('option', { value: v }, label)));
    const to = h('select', { name: 'to' }, h('option', { value: 'current' }, 'The current version'),
      versions.map(([v, label]) => h('option', { value: v }, label)));
    // Without a sign-off, the natural question is "what changed since the start".
    if (!signed.length) from.value = '1';
    const out = h('div', { 'aria-live': 'polite', 'data-testid': 'diff' });
    const form = h('form', { 'aria-label': 'Compare versions' },
      labelled('From', from), labelled('To', to),
      h('button', { type: 'submit' }, 'Compare'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      attempt(async () => {
        const query = new URLSearchParams({ from: from.value, to: to.value });
        const diff = await get(`/api/documents/${id}/diff?${query}`);
        fill(out, diff.sections.length
          ? diff.sections.map((s) => h('section', { class: 'diff' },
            h('h3', {}, s.section),
            h('p', {}, s.pieces.map((p) => (p.kind === 'added' ? h('ins', {}, p.text)
              : p.kind === 'removed' ? h('del', {}, p.text) : p.text)))))
          : h('p', {}, 'No differences: the two versions have the same text.'));
      });
    });
    return h('section', { class: 'panel', 'aria-labelledby': 'compare-h' },
      h('h2', { id: 'compare-h' }, 'Compare versions'),
      h('p', { class: 'hint' }, 'Added words are underlined, removed words struck through.'),
      form, out);
  }

  /** Who wrote which words of one text field. */
  function blamePanel(doc) {
    const fields = textFields(doc);
    const field = h('select', { name: 'field' }, fields.map(([path, label]) => h('option', { value: path }, label)));
    const out = h('div', { 'aria-live': 'polite', 'data-testid': 'blame' });
    const form = h('form', { 'aria-label': 'Who wrote what' },
      labelled('Field', field),
      h('button', { type: 'submit' }, 'Show who wrote it'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      attempt(async () => {
        const { spans } = await get(`/api/documents/${id}/blame/${encodeURIComponent(field.value)}`);
        const names = new Map(spans.map((s) => [s.org, s.org_name]));
        const text = h('p', { class: 'blame' }, spans.map((s) => {
          const span = h('span', { 'data-org': s.org || '', title: s.org_name }, s.text);
          span.style.borderBottomColor = orgColour(s.org, memberKeys);
          return span;
        }));
        fill(out, spans.length ? [
          h('ul', { class: 'legend' }, [...names].map(([key, name]) => {
            const swatch = h('span', { class: 'swatch' });
            swatch.style.background = orgColour(key, memberKeys);
            return h('li', {}, swatch, name);
          })),
          text,
        ] : h('p', {}, 'This field is empty.'));
      });
    });
    return h('section', { class: 'panel', 'aria-labelledby': 'blame-h' },
      h('h2', { id: 'blame-h' }, 'Who wrote what'),
      h('p', { class: 'hint' }, 'Each word is underlined in the colour of the organisation that wrote it; hover for the name.'),
      form, out);
  }
  return screen;
}

/** Every text field of the agreement: [path, label], in order. */
function textFields(doc) {
  const out = [];
  for (const s of doc.sections) {
    if (s.shape === 'text') out.push([s.path, s.label]);
    for (const f of s.fields || []) if (f.type === 'text') out.push([f.path, `${s.label}: ${f.label}`]);
    for (const g of [...(s.items || []), ...(s.entries || [])]) {
      for (const f of g.fields) if (f.type === 'text') out.push([f.path, `${s.label}: ${g.name || f.label}${g.name ? ` (${f.label})` : ''}`]);
    }
  }
  return out;
}

/** Runs of changes by one organisation close together in time. */
function group(entries) {
  const groups = [];
  for (const e of entries) {
    const last = groups[groups.length - 1];
    if (last && last.org === e.org && e.time - last.last <= GROUP_SECONDS) {
      last.count++;
      last.last = e.time;
      last.entries.push(e);
    } else {
      groups.push({ org: e.org, name: e.org_name, count: 1, first: e.time, last: e.time, entries: [e] });
    }
  }
  return groups;
}

function describe(g, labels) {
  const fields = new Map();
  for (const e of g.entries) {
    for (const f of e.fields) {
      const sum = fields.get(f.field) || { added: 0, removed: 0, items: 0, set: 0 };
      sum.added += f.chars_added;
      sum.removed += f.chars_removed;
      sum.items += f.items_added + f.items_removed;
      sum.set += f.values_set;
      fields.set(f.field, sum);
    }
  }
  if (!fields.size) return g.entries.map((e) => e.message).filter(Boolean).join('; ') || 'No visible change';
  return [...fields].map(([field, s]) => {
    const parts = [];
    if (s.added || s.removed) parts.push(`+${s.added} −${s.removed} characters`);
    if (s.items) parts.push(`${s.items} item(s) added or removed`);
    if (!parts.length && s.set) parts.push('set');
    return `${labels[field] || field}: ${parts.join(', ')}`;
  }).join('; ');
}
