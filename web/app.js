// The page's shell: which screen to show (from the address's #fragment),
// who this organisation is, and the live event stream from the node.
//
// Screens are objects with `render(container)` and, optionally,
// `onEvent(event)`. The node's events only say *what*
// changed; each screen fetches what it shows.

import { get, ApiError } from './api.js';
import { h, fill, toast } from './dom.js';
import { firstRun, home, partnership } from './screens.js';
import { editor } from './editor.js';
import { history } from './history.js';

const main = document.getElementById('main');
let screen = null;
let events = null;
export const session = { org: null };

/** Picks the screen for the current #fragment. */
function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  switch (parts[0]) {
    case 'p': return partnership(parts[1]);
    case 'd': return parts[2] === 'history' ? history(parts[1]) : editor(parts[1]);
    default: return home();
  }
}

/**
 * Each screen draws into its own container: once the person moves on,
 * the old container is detached, so a late answer to the old screen's
 * fetch draws nowhere instead of over the new screen.
 */
async function show() {
  screen = route();
  const view = h('div', { class: 'screen' });
  fill(main, view);
  await screen.render(view);
  document.title = screen.title ? `${screen.title} · Accord` : 'Accord';
}

/** Waits for the node to be ready (first run: after the organisation is created). */
export async function start() {
  let state;
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    try {
      state = await get('/api/state');
      if (state.phase === 'first_run') {
        screen = firstRun(start);
        const view = h('div', { class: 'screen' });
        fill(main, view);
        await screen.render(view);
        return;
      }
      if (state.phase === 'ready') break;
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 0 && e.status !== 503)) throw e;
    }
    fill(main, h('p', { role: 'status' }, 'Starting Accord…'));
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  session.org = state.org;
  const who = document.getElementById('whoami');
  who.textContent = state.org.name;
  who.title = `Fingerprint ${state.org.fingerprint}`;
  listen();
  window.addEventListener('hashchange', show);
  await show();
}

/** The node's event stream; a reconnect refreshes the screen (notices may have been missed). */
function listen() {
  events?.close();
  events = new EventSource('/api/events');
  let opened = false;
  events.addEventListener('open', () => {
    if (opened) screen?.onEvent?.({ type: 'resync' });
    opened = true;
    refreshSyncBadge();
  });
  events.addEventListener('message', (message) => {
    const event = JSON.parse(message.data);
    if (event.type === 'sync' || event.type === 'resync') {
      refreshSyncBadge();
      for (const panel of document.querySelectorAll('[data-sync-panel]')) panel.dispatchEvent(new Event('accord-sync'));
    }
    screen?.onEvent?.(event);
  });
}

/** "2 connected · last sync 12:03" in the header. */
export async function refreshSyncBadge() {
  const badge = document.getElementById('sync-badge');
  try {
    const { status } = await get('/api/peers');
    const n = status.connections.length;
    const last = status.last_sync ? new Date(status.last_sync * 1000).toLocaleTimeString() : 'not yet';
    badge.textContent = `${n ? `${n} connected` : 'Offline'} · last sync ${last}`;
    badge.dataset.connected = String(n);
  } catch {
    badge.textContent = 'Not connected to Accord';
  }
}

start().catch((e) => toast(e.message));
