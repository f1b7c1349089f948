// A text field edited live: each input event becomes a character splice,
// sent to the node against the version this field shows, so a partner's
// concurrent typing in the same field merges instead of being overwritten.
//
// Positions are UTF-16 code units (what the browser counts); the node
// converts them to the code points Automerge counts. A splice never
// splits a surrogate pair.
//
// State per field:
// - `base`: the version (change hashes) whose text the field shows, not
//   counting splices still queued or in flight. After our own splice is
//   accepted, `base` is its hash: that version is exactly our text.
// - one request in flight at a time; splices typed meanwhile queue and go
//   together, so fast typing costs few changes.
// - the merged text from the node (partners' words) is adopted only when
//   the field is idle, shifting the cursor past text inserted before it.

import { post } from './api.js';

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/** The splice turning `a` into `b` (common prefix and suffix kept), or null. */
export function diff(a, b) {
  if (a === b) return null;
  const max = Math.min(a.length, b.length);
  let p = 0;
  while (p < max && a.charCodeAt(p) === b.charCodeAt(p)) p++;
  if (p > 0 && isHigh(a.charCodeAt(p - 1))) p--;
  let s = 0;
  while (s < max - p && a.charCodeAt(a.length - 1 - s) === b.charCodeAt(b.length - 1 - s)) s++;
  if (s > 0 && isLow(a.charCodeAt(a.length - s))) s--;
  return { pos: p, delete: a.length - p - s, insert: b.slice(p, b.length - s) };
}

/** Where a cursor at `at` goes when splice `d` is applied around it. */
export function shift(at, d) {
  if (at <= d.pos) return at;
  if (at >= d.pos + d.delete) return at + d.insert.length - d.delete;
  return d.pos + d.insert.length;
}

export class LiveText {
  /**
   * @param el a textarea or text input
   * @param options {docId, path, base, onAnswer(document), onError(error)}
   */
  constructor(el, { docId, path, base, onAnswer, onError }) {
    Object.assign(this, { el, docId, path, base, onAnswer, onError });
    this.shown = el.value;
    this.queue = [];
    this.inflight = false;
    this.pending = null;
    /** Counts local edits, so a fetch started before one can be recognised as stale. */
    this.edits = 0;
    el.addEventListener('input', () => this.typed());
  }

  busy() {
    return this.inflight || this.queue.length > 0;
  }

  typed() {
    const splice = diff(this.shown, this.el.value);
    this.shown = this.el.value;
    if (!splice) return;
    this.edits++;
    this.queue.push(splice);
    this.el.closest('.field')?.setAttribute('data-saving', '');
    this.pump();
  }

  async pump() {
    if (this.inflight || this.queue.length === 0) return;
    const splices = this.queue;
    this.queue = [];
    this.inflight = true;
    try {
      const answer = await post(`/api/documents/${this.docId}/splice`, { path: this.path, base: this.base, splices });
      if (answer.hash) this.base = [answer.hash];
      this.pending = { value: fieldValue(answer.document, this.path), heads: answer.document.heads };
      this.onAnswer?.(answer.document);
    } catch (e) {
      // The node refused (e.g. the role changed): the next fetch restores its text.
      this.queue = [];
      this.pending = null;
      this.onError?.(e);
    }
    this.inflight = false;
    if (this.queue.length) {
      this.pump();
      return;
    }
    this.el.closest('.field')?.removeAttribute('data-saving');
    if (this.pending) {
      const { value, heads } = this.pending;
      this.pending = null;
      this.adopt(value, heads);
    }
  }

  /**
   * A fresh value from the node. `editsAtFetch` is `this.edits` when the
   * fetch began (-1 if splices were still unacknowledged then): if the
   * person typed since, or the fetch may have missed their splices, the
   * value is dropped (the answer to their splice brings a newer one).
   */
  offer(value, heads, editsAtFetch) {
    if (value === undefined) return;
    if (editsAtFetch !== undefined && editsAtFetch !== this.edits) return;
    if (this.busy()) {
      this.pending = { value, heads };
      return;
    }
    this.adopt(value, heads);
  }

  adopt(value, heads) {
    this.base = heads;
    const el = this.el;
    if (value === el.value) {
      this.shown = value;
      return;
    }
    const d = diff(el.value, value);
    const focused = document.activeElement === el;
    const [start, end, scroll] = [el.selectionStart, el.selectionEnd, el.scrollTop];
    el.value = value;
    this.shown = value;
    if (focused) {
      el.setSelectionRange(shift(start, d), shift(end, d));
      el.scrollTop = scroll;
    }
  }
}

/** The value of the text field at `path` in a document from the API. */
export function fieldValue(doc, path) {
  if (path === 'title') return doc.title;
  for (const section of doc.sections) {
    if (section.path === path) return section.text;
    for (const field of section.fields || []) if (field.path === path) return field.value;
    for (const group of [...(section.items || []), ...(section.entries || [])]) {
      for (const field of group.fields) if (field.path === path) return field.value;
    }
  }
  return undefined;
}
