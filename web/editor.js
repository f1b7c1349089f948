// The agreement editor, drawn from the document's schema as the node
// sends it: text sections, groups, lists with add/remove, per-organisation
// sections, dates and choices. Text fields are LiveText (character
// splices); other values are set whole when they change.
//
// Remote changes re-render only what changed: text fields adopt the
// merged text keeping the cursor; other inputs update unless focused. The
// whole form is redrawn only when its structure changes (an item added,
// a member or role changed), and then text fields (with their cursor and
// unsent keystrokes) are moved into the new form, not recreated.

import { get, post } from './api.js';
import { h, fill, attempt, labelled, toast } from './dom.js';
import { LiveText, fieldValue } from './live-text.js';
import { trustView } from './trust.js';

/**
 * Side panels drawn next to the editor, after the sign-off panel, each
 * `(doc) => element`.
 */
export const panels = [historyPanel, exportPanel];

export function editor(id) {
  let main;
  let doc;
  let structure = '';
  const texts = new Map(); // path -> LiveText
  let fetching = false;
  let again = false;
  const trust = trustView(id, () => doc);

  const screen = {
    title: 'Agreement',
    async render(el) {
      main = el;
      doc = await get(`/api/documents/${id}`);
      draw();
      await trust.refresh();
    },
    onEvent(event) {
      const changed = event.type === 'changed' ? event.doc : null;
      const mine = changed === id || changed === doc?.partnership.roster_doc;
      // A partner's comment or signature arrives in their notes document;
      // a text change can make a signature one of an earlier version.
      const notes = changed && doc?.partnership.notes_docs.includes(changed);
      if (mine || event.type === 'resync') refresh();
      if (mine || notes || event.type === 'resync') trust.refresh();
    },
  };

  /**
   * Per text field, how far it had been typed when a fetch starts; -1 for
   * a field with splices not yet acknowledged (the fetch may not include
   * them, so its value must not replace the field's).
   */
  const editsNow = () => new Map([...texts].map(([path, live]) => [path, live.busy() ? -1 : live.edits]));

  async function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    const edits = editsNow();
    await attempt(async () => apply(await get(`/api/documents/${id}`), edits));
    fetching = false;
    if (again) {
      again = false;
      refresh();
    }
  }

  /** Shows a newer document; `edits` says how far each text field had been typed when it was asked for. */
  function apply(fresh, edits) {
    doc = fresh;
    if (signature(fresh) !== structure) {
      draw(edits);
      return;
    }
    for (const [path, live] of texts) live.offer(fieldValue(fresh, path), fresh.heads, edits.get(path));
    for (const input of main.querySelectorAll('[data-scalar]')) {
      const value = fieldValue(fresh, input.dataset.path);
      if (value !== undefined && document.activeElement !== input) input.value = value;
    }
    updateTitle();
  }

  /** Runs a whole-value edit and shows the answer. */
  async function change(path, body) {
    const edits = editsNow();
    const answer = await post(`/api/documents/${id}/${path}`, body);
    apply(answer.document, edits);
    return answer;
  }

  function updateTitle() {
    const heading = main.querySelector('h1');
    if (heading) heading.textContent = doc.title || 'Untitled';
    screen.title = doc.title;
  }

  function textControl(path, value, multiline, label) {
    let live = texts.get(path);
    if (!live) {
      const el = multiline ? h('textarea', { rows: 4 }) : h('input', { type: 'text' });
      el.value = value;
      live = new LiveText(el, {
        docId: id,
        path,
        base: doc.heads,
        onError: (e) => {
          toast(e.message);
          refresh();
        },
      });
      texts.set(path, live);
    }
    live.el.dataset.path = path;
    live.el.readOnly = !doc.editable;
    live.el.setAttribute('aria-readonly', String(!doc.editable));
    return labelled(label, live.el);
  }

  function scalarControl(field) {
    const onchange = (e) => attempt(() => change('set', { path: field.path, value: e.target.value }));
    const common = { 'data-scalar': true, 'data-path': field.path, disabled: !doc.editable, onchange };
    let el;
    if (field.type === 'choice') {
      el = h('select', common, h('option', { value: '' }, '—'), field.choices.map((c) => h('option', { value: c }, c)));
    } else if (field.type === 'org') {
      el = h('select', common, h('option', { value: '' }, '—'),
        doc.partnership.members.map((m) => h('option', { value: m.key }, m.name)));
    } else {
      el = h('input', { ...common, type: field.type === 'date' ? 'date' : 'number', min: field.type === 'days' ? 0 : undefined });
    }
    el.value = field.value;
    return labelled(field.label, el);
  }

  const control = (field) => (field.type === 'text'
    ? textControl(field.path, field.value, true, field.label)
    : scalarControl(field));

  function listSection(section) {
    const items = section.items.map((item, i) => h('li', {},
      h('fieldset', { 'data-item': item.id },
        h('legend', {}, `${section.new_item[0]?.label || 'Item'} ${i + 1}`),
        item.fields.map(control),
        doc.editable ? h('button', {
          type: 'button',
          class: 'secondary',
          onclick: () => attempt(() => change('remove', { item: item.path })),
        }, `Remove ${section.new_item[0]?.label.toLowerCase() || 'item'} ${i + 1}`) : null)));
    const add = doc.editable ? h('button', {
      type: 'button',
      onclick: () => attempt(async () => {
        const answer = await change('items', { list: section.key, values: [] });
        main.querySelector(`[data-item="${answer.item}"] textarea, [data-item="${answer.item}"] input`)?.focus();
      }),
    }, `Add ${(section.new_item[0]?.label || 'item').toLowerCase()}`) : null;
    return [items.length ? h('ol', { class: 'items' }, items) : h('p', { class: 'muted' }, 'None yet.'), add];
  }

  function sectionBody(section) {
    switch (section.shape) {
      case 'text': return textControl(section.path, section.text, true, section.label);
      case 'group': return section.fields.map(control);
      case 'list': return listSection(section);
      case 'per_org': return section.entries.map((entry) => h('fieldset', { 'data-org': entry.org },
        h('legend', {}, entry.name), entry.fields.map(control)));
      case 'parties': return h('ul', {}, section.members.map((m) => h('li', {}, m.name, ` (${m.role}${m.lead ? ', lead partner' : ''})`)));
      default: return null;
    }
  }

  function draw(edits) {
    const focused = document.activeElement;
    const focusPath = focused?.dataset?.path;
    const selection = focusPath && 'selectionStart' in focused ? [focused.selectionStart, focused.selectionEnd] : null;
    structure = signature(doc);
    const sections = doc.sections.map((section) => h('section', {
      class: 'doc-section', 'aria-labelledby': `s-${section.key}`, 'data-section': section.key,
    },
    h('h2', { id: `s-${section.key}` }, section.label),
    h('p', { class: 'hint' }, section.prompt),
    sectionBody(section),
    trust.sectionComments(section)));
    fill(main,
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' },
        h('a', { href: '#/' }, 'Partnerships'), ' / ',
        h('a', { href: `#/p/${doc.partnership.id}` }, doc.partnership.name)),
      h('h1', {}, doc.title || 'Untitled'),
      h('p', { class: 'muted' }, `${doc.kind_label} · your organisation is ${doc.role ? `a ${doc.role}` : 'not a member'}`),
      modeNotice(doc),
      trust.banner,
      h('div', { class: 'doc-layout' },
        h('form', { class: 'editor', 'aria-label': 'Agreement', onsubmit: (e) => e.preventDefault() },
          textControl('title', doc.title, false, 'Title'),
          sections),
        h('aside', { class: 'side', 'aria-label': 'About this agreement' }, trust.panel, panels.map((panel) => panel(doc)))));
    updateTitle();
    for (const [path, live] of texts) {
      if (!live.el.isConnected) texts.delete(path);
      else if (edits) live.offer(fieldValue(doc, path), doc.heads, edits.get(path));
    }
    const again = focusPath && main.querySelector(`[data-path="${CSS.escape(focusPath)}"]`);
    if (again && document.activeElement !== again) {
      again.focus();
      if (selection) again.setSelectionRange(...selection);
    }
  }

  return screen;
}

/** For those who may not change the text: what they can do instead. */
function modeNotice(doc) {
  if (doc.editable) return null;
  const who = `your organisation is ${doc.role ? `a ${doc.role}` : 'not a member'} in ${doc.partnership.name}`;
  return doc.commentable
    ? h('p', { class: 'notice', role: 'note', 'data-testid': 'comment-only' },
      `Comment only: ${who}. You can comment on any section; only decision makers change the text.`)
    : h('p', { class: 'notice', role: 'note', 'data-testid': 'read-only' },
      `Read only: ${who}; only decision makers change agreements, and consultees comment on them.`);
}

/** What, if it changes, needs the form redrawn rather than values updated. */
function signature(doc) {
  return JSON.stringify([
    doc.editable,
    doc.commentable,
    doc.partnership.members.map((m) => [m.key, m.name]),
    doc.sections.map((s) => [
      s.key,
      (s.items || []).map((i) => i.id),
      (s.entries || []).map((e) => [e.org, e.name]),
      (s.members || []).map((m) => [m.key, m.name, m.role, m.lead]),
    ]),
  ]);
}

function historyPanel(doc) {
  return h('section', { class: 'panel' },
    h('h2', {}, 'History'),
    h('p', {}, h('a', { href: `#/d/${doc.id}/history` }, 'Who changed what, and when')));
}

function exportPanel(doc) {
  return h('section', { class: 'panel' },
    h('h2', {}, 'Print and export'),
    h('ul', {},
      h('li', {}, h('a', { href: `/export/${doc.id}/html`, target: '_blank', rel: 'noopener' }, 'Printable page')),
      h('li', {}, h('a', { href: `/export/${doc.id}/md`, download: `${doc.title || doc.id}.md` }, 'Markdown')),
      h('li', {}, h('a', { href: `/export/${doc.id}/automerge`, download: `${doc.id}.automerge` }, 'Automerge file'))));
}
