// Sign-off and comments on the agreement screen.
//
// Both live in the members' notes documents, not in the agreement: the
// node sends a change notice for a partner's notes document when their
// comment or signature arrives, and for the agreement when its text
// changes (which can turn a signature into "signed an earlier version").
// Either way `refresh()` refetches both and redraws only these parts.
//
// The parts are created once per screen and moved into the editor's form
// when it is redrawn, so a comment being written survives a redraw.

import { get, post } from './api.js';
import { h, fill, attempt, labelled, toast, when } from './dom.js';

const STATEMENT = 'We agree to this version';

/** The sign-off banner, the sign-off panel and per-section comments of agreement `id`. */
export function trustView(id, currentDoc) {
  const banner = h('div', { 'data-testid': 'signoff-banner', role: 'status', 'aria-live': 'polite', hidden: true });
  const statusList = h('ul', { class: 'signoffs', 'data-testid': 'signoff-status' });
  const signForm = signOffForm();
  const panel = h('section', { class: 'panel', 'aria-labelledby': 'signoff-h', 'data-testid': 'signoff' },
    h('h2', { id: 'signoff-h' }, 'Sign-off'),
    h('p', { class: 'hint' }, 'Decision makers sign the exact current version. If the text changes afterwards, their signature stays on the earlier version.'),
    statusList,
    signForm);
  const sections = new Map(); // section key -> { el, list, form }
  let comments = [];
  let fetching = false;
  let again = false;

  function signOffForm() {
    const statement = h('input', { name: 'statement', value: STATEMENT });
    const form = h('form', { 'aria-label': 'Sign this version', hidden: true },
      labelled('Statement', statement),
      h('button', { type: 'submit' }, 'Sign this version'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      attempt(async () => {
        drawStatus(await post(`/api/documents/${id}/signoffs`, { statement: statement.value }));
        toast('Signed. Partners see your signature after the next sync.');
      });
    });
    return form;
  }

  function drawStatus(data) {
    fill(statusList, data.members.map((m) => {
      const s = m.signoff;
      const state = {
        current: `signed this version ${when(s?.at)}`,
        earlier: `signed an earlier version ${when(s?.at)}; the text has changed since`,
        'not-signed': m.role === 'decision-maker' ? 'has not signed' : `${m.role} (does not sign)`,
      }[m.state];
      return h('li', { 'data-member': m.key, 'data-state': m.state },
        h('p', {}, h('strong', {}, m.name), ` ${state}`),
        h('p', { class: 'muted' }, 'Fingerprint ', h('code', {}, m.fingerprint)),
        s ? h('p', { class: 'muted' }, 'Version ', h('code', { title: s.version }, short(s.version)), ` · “${s.statement}”`) : null);
    }));
    signForm.hidden = !data.can_sign;
    drawBanner(data.summary);
  }

  function drawBanner(summary) {
    let text = null;
    let kind = 'notice';
    if (summary.signed_earlier.length) {
      text = `${list(summary.signed_earlier)} signed an earlier version: the text has changed since${summary.signed_current.length ? `; ${list(summary.signed_current)} signed this version` : ''}.`;
    } else if (summary.all_signed) {
      text = 'Every decision maker has signed this exact version.';
      kind = 'ok';
    } else if (summary.signed_current.length) {
      text = `${list(summary.signed_current)} signed this version; waiting for ${list(summary.not_signed)}.`;
      kind = 'info';
    }
    banner.hidden = !text;
    banner.className = kind;
    banner.dataset.state = summary.signed_earlier.length ? 'earlier' : summary.all_signed ? 'all' : 'partial';
    banner.textContent = text || '';
    if (summary.signed_earlier.length) banner.append(' ', h('a', { href: `#/d/${id}/history` }, 'Compare the versions'));
  }

  /** The comment area under one section: its comments and, for those who may, a form. */
  function sectionComments(section) {
    let part = sections.get(section.key);
    if (!part) {
      const list = h('div', { class: 'comment-list' });
      part = { el: h('div', { class: 'comments', 'data-comments': section.key }, list), list, form: null };
      sections.set(section.key, part);
    }
    const doc = currentDoc();
    const targets = commentTargets(section);
    if (doc.commentable && targets.length && !part.form) {
      part.form = commentForm(section, targets);
      part.el.append(part.form);
    } else if (part.form && (!doc.commentable || !targets.length)) {
      part.form.remove();
      part.form = null;
    }
    drawComments(section.key);
    return part.el;
  }

  function commentForm(section, targets) {
    const text = h('textarea', { name: 'text', rows: 3, required: true });
    const quote = h('input', { name: 'quote' });
    const target = h('select', { name: 'field' }, targets.map(([path, label]) => h('option', { value: path }, label)));
    // Opening the form (by mouse or keyboard, both click the summary)
    // quotes whatever is selected in this section's text.
    const summary = h('summary', {
      onclick: () => {
        if (details.open) return;
        const picked = selectionIn(details.closest('[data-section]'));
        if (!picked) return;
        quote.value = picked.text;
        if ([...target.options].some((o) => o.value === picked.path)) target.value = picked.path;
      },
    }, `Comment on “${section.label}”`);
    const details = h('details', { class: 'comment-form' }, summary);
    const form = h('form', { 'aria-label': `Comment on ${section.label}` },
      targets.length > 1 ? labelled('About', target) : null,
      labelled('Quoting (optional)', quote, 'Select words in the text before opening this to quote them.'),
      labelled('Comment', text),
      h('button', { type: 'submit' }, 'Add comment'));
    details.append(form);
    details.addEventListener('toggle', () => {
      if (details.open) text.focus();
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      attempt(async () => {
        const field = targets.length > 1 ? target.value : targets[0][0];
        const answer = await post(`/api/documents/${id}/comments`, { field, text: text.value, quote: quote.value });
        form.reset();
        details.open = false;
        show(answer.comments);
        toast('Comment added. Partners see it after the next sync.');
      });
    });
    return details;
  }

  function drawComments(key) {
    const part = sections.get(key);
    if (!part) return;
    const mine = comments.filter((c) => c.section === key);
    const open = mine.filter((c) => !c.resolved_by);
    const resolved = mine.filter((c) => c.resolved_by);
    fill(part.list,
      open.length ? h('ul', { class: 'comment-items', 'aria-label': 'Open comments' }, open.map(commentItem)) : null,
      resolved.length ? h('details', {}, h('summary', {}, `${resolved.length} resolved comment(s)`),
        h('ul', { class: 'comment-items' }, resolved.map(commentItem))) : null);
  }

  function commentItem(c) {
    return h('li', { class: c.resolved_by ? 'comment resolved' : 'comment', 'data-comment': c.id },
      h('p', { class: 'who' }, c.author_name, h('span', { class: 'muted' }, ` · ${when(c.created)}${fieldLabel(c.field)}`)),
      c.quote ? h('blockquote', {}, c.quote) : null,
      h('p', { class: 'text' }, c.text),
      c.resolved_by ? h('p', { class: 'muted' }, `Resolved by ${c.resolved_by}`) : null,
      c.can_resolve ? h('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `Resolve ${c.author_name}’s comment`,
        onclick: () => attempt(async () => show((await post(`/api/documents/${id}/comments/${c.id}/resolve`)).comments)),
      }, 'Resolve') : null);
  }

  /** " on Frequency" for a comment on one field of a group, or "" for the whole section. */
  function fieldLabel(path) {
    if (!path.includes('.')) return '';
    const label = labelsOf(currentDoc()).get(path);
    return label ? ` · on ${label}` : '';
  }

  function show(list) {
    comments = list;
    for (const key of sections.keys()) drawComments(key);
  }

  async function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    await attempt(async () => {
      const [status, list] = await Promise.all([get(`/api/documents/${id}/signoffs`), get(`/api/documents/${id}/comments`)]);
      drawStatus(status);
      show(list.comments);
    });
    fetching = false;
    if (again) {
      again = false;
      refresh();
    }
  }

  return { banner, panel, sectionComments, refresh };
}

/** What a comment on this section can be about: [path, label] pairs. */
function commentTargets(section) {
  switch (section.shape) {
    case 'text':
    case 'list':
      return [[section.key, section.label]];
    case 'group':
      return section.fields.map((f) => [f.path, f.label]);
    case 'per_org':
      return section.entries.flatMap((entry) => (entry.fields.length === 1
        ? [[`${section.key}.${entry.org}`, entry.name]]
        : entry.fields.map((f) => [f.path, `${entry.name}: ${f.label}`])));
    default:
      return [];
  }
}

function labelsOf(doc) {
  const labels = new Map();
  for (const s of doc.sections) {
    for (const [path, label] of commentTargets(s)) labels.set(path, label);
  }
  return labels;
}

/** The selected words in a section's text fields (read-only ones too), with the field's path. */
function selectionIn(section) {
  for (const el of section?.querySelectorAll('textarea[data-path], input[type=text][data-path]') || []) {
    if (el.selectionStart !== el.selectionEnd) {
      return { path: el.dataset.path, text: el.value.slice(el.selectionStart, el.selectionEnd) };
    }
  }
  return null;
}

const short = (version) => version.split(',').map((h) => h.slice(0, 12)).join(', ');

function list(names) {
  if (names.length < 2) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}
