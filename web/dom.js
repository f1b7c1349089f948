// Small DOM helpers. Text always goes in as text (never as HTML), so a
// partner's words can never become markup or script on this page.

/** Creates an element: h('p', {class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

let toastTimer;
/** Shows a message for a few seconds (read out by screen readers). */
export function toast(message) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

/** Runs an async action from a button or form, reporting failures. */
export async function attempt(action) {
  try {
    return await action();
  } catch (e) {
    toast(e.message);
    return undefined;
  }
}

/** Clearly different colours (and readable on white) for a partnership's members, in roster order. */
const PALETTE = ['#1f5fbf', '#b3461f', '#2e7d45', '#7b3fa6', '#a1781a', '#0f7c85', '#b0306a', '#4f5b6b'];

/**
 * A stable colour per organisation. With the partnership's member keys,
 * members get palette colours by roster position (so two organisations
 * never share one); otherwise a hue from the key.
 */
export function orgColour(key, members = []) {
  const at = members.indexOf(key);
  if (at >= 0) return PALETTE[at % PALETTE.length];
  let hash = 0;
  for (const c of key || '') hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 65% 40%)`;
}

export function when(seconds) {
  if (!seconds) return 'never';
  return new Date(seconds * 1000).toLocaleString();
}

/** A labelled form field. */
export function labelled(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2)}`;
  control.id = id;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null,
    control);
}

/** A read-only value with a Copy button (keys, invite codes). */
export function copyable(label, value, attrs = {}) {
  const box = h('textarea', { readonly: true, rows: 2, class: 'code', ...attrs });
  box.value = value;
  const copy = h('button', {
    type: 'button',
    onclick: () => attempt(async () => {
      box.select();
      await navigator.clipboard.writeText(value);
      toast('Copied.');
    }),
  }, 'Copy');
  return h('div', { class: 'copyable' }, labelled(label, box), copy);
}
