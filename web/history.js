// The history of one agreement: every change, coloured by the
// organisation that made it, filterable by organisation. Consecutive
// changes by one organisation within a few minutes (typing) show as one
// row.

import { get } from './api.js';
import { h, fill, orgColour, when } from './dom.js';

const GROUP_SECONDS = 300;

export function history(id) {
  let main;
  let filter = '';
  const screen = {
    title: 'History',
    async render(el) {
      main = el;
      const data = await get(`/api/documents/${id}/history`);
      const orgs = new Map();
      for (const e of data.entries) if (e.org) orgs.set(e.org, e.org_name || e.org.slice(0, 8));
      const list = h('ol', { class: 'timeline', 'data-testid': 'timeline' });
      const choose = h('select', {
        onchange: (e) => {
          filter = e.target.value;
          drawEntries(list, data.entries, data.labels);
        },
      }, h('option', { value: '' }, 'All organisations'), [...orgs].map(([key, name]) => h('option', { value: key }, name)));
      choose.value = filter;
      screen.title = `History of ${data.document.title}`;
      fill(main,
        h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' },
          h('a', { href: '#/' }, 'Partnerships'), ' / ',
          h('a', { href: `#/p/${data.partnership.id}` }, data.partnership.name), ' / ',
          h('a', { href: `#/d/${id}` }, data.document.title)),
        h('h1', {}, `History of ${data.document.title}`),
        h('div', { class: 'field inline' }, h('label', { for: 'org-filter' }, 'Show changes by'), Object.assign(choose, { id: 'org-filter' })),
        h('ul', { class: 'legend', 'aria-label': 'Organisations' }, [...orgs].map(([key, name]) => h('li', {},
          h('span', { class: 'swatch', 'data-colour': key }), name))),
        list);
      for (const swatch of main.querySelectorAll('.swatch')) swatch.style.background = orgColour(swatch.dataset.colour);
      drawEntries(list, data.entries, data.labels);
    },
    onEvent(event) {
      if (event.type === 'resync' || (event.type === 'changed' && event.doc === id)) screen.render(main);
    },
  };

  function drawEntries(list, entries, labels) {
    const shown = entries.filter((e) => !filter || e.org === filter);
    fill(list, group(shown).reverse().map((g) => {
      const row = h('li', { 'data-org': g.org || '' },
        h('p', { class: 'who' }, g.name || 'Unknown organisation'),
        h('p', {}, describe(g, labels)),
        h('p', { class: 'muted' }, g.count > 1 ? `${g.count} changes, ${when(g.first)} – ${when(g.last)}` : when(g.last)));
      row.style.borderLeftColor = orgColour(g.org);
      return row;
    }));
    if (!shown.length) list.append(h('li', {}, 'No changes by this organisation.'));
  }
  return screen;
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
