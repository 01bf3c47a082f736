// Building the page: elements from data with textContent only (never HTML from data), so a
// resource name or an Envoy error message can never inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// An in-app link: `path` is relative to the UI's base ("meshes/default/dataplanes").
export function link(path, ...children) {
  return h('a', { href: path || './', 'data-nav': true }, ...children);
}

export const enc = encodeURIComponent;

// A table that turns into one card per row on a narrow screen (each cell shows its column's
// label there, from data-label). columns: [{label, cell(row) -> node|string, cls}].
export function table(columns, rows, { empty = 'Nothing here yet.', rowData } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const head = h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.cls }, c.label))));
  const body = h(
    'tbody',
    null,
    rows.map((row) =>
      h(
        'tr',
        { dataset: rowData ? rowData(row) : undefined },
        columns.map((c) => h('td', { 'data-label': c.label, class: c.cls }, h('div', { class: 'cell' }, c.cell(row)))),
      ),
    ),
  );
  // The wrapper scrolls sideways if a table is wider than its card (a very long value).
  return h('div', { class: 'table-wrap' }, h('table', { class: 'list' }, head, body));
}

// Label/value pairs: [[label, value], ...]; values that are null/'' are left out.
export function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs
      .filter(([, value]) => value !== null && value !== undefined && value !== '')
      .map(([label, value]) => h('div', null, h('dt', null, label), h('dd', null, value))),
  );
}

export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', null, title) : null, ...children);
}

export function note(text, kind = 'info') {
  return h('p', { class: `note note-${kind}`, role: kind === 'error' ? 'alert' : null }, text);
}

export function badge(text, kind) {
  return h('span', { class: `badge badge-${kind || 'plain'}` }, text);
}

const STATUS_KINDS = { Online: 'ok', Offline: 'bad', Disabled: 'muted', Unknown: 'muted' };

export function status(text) {
  return h('span', { class: `badge badge-${STATUS_KINDS[text] || 'warn'}`, 'data-status': text }, text);
}

export function tags(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return '—';
  return h(
    'span',
    { class: 'tags' },
    entries.map(([k, v]) => h('span', { class: 'tag', title: `${k}=${v}` }, `${k.replace(/^kuma\.io\//, '')}=${v}`)),
  );
}

export function code(text, { cls = 'code' } = {}) {
  return h('pre', { class: cls, tabindex: '0' }, h('code', null, text));
}

// Details/summary block that keeps its open state across refreshes (by `key`).
export function fold(key, summary, ...children) {
  return h('details', { class: 'fold', 'data-key': key }, h('summary', null, summary), ...children);
}

function pad(n) {
  return String(n).padStart(2, '0');
}

export function time(iso) {
  if (!iso) return '';
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return String(iso);
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

// A coarse relative time ("3 min ago", "in 23 h"): it changes rarely, so a list whose data
// did not change is not redrawn every second.
export function relative(iso, now = Date.now()) {
  if (!iso) return '';
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '';
  const seconds = Math.round((t - now) / 1000);
  const abs = Math.abs(seconds);
  let text;
  if (abs < 60) text = 'less than a minute';
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400 * 2) text = `${Math.floor(abs / 3600)} h`;
  else text = `${Math.floor(abs / 86400)} days`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

export function when(iso) {
  if (!iso) return '—';
  return h('time', { datetime: iso, title: iso }, time(iso), h('span', { class: 'rel' }, ` (${relative(iso)})`));
}

// Sections of a page, each redrawn only when its data changed, keeping the user's place
// (open folds, scroll position) across the polling refreshes.
export class View {
  constructor(root) {
    this.root = root;
    this.entries = new Map();
  }

  update(sections) {
    const seen = new Set();
    let previous = null;
    for (const [key, data, render] of sections) {
      seen.add(key);
      // Redrawn at least once a minute too, for the relative times it shows.
      const sig = `${Math.floor(Date.now() / 60000)}:${JSON.stringify(data)}`;
      let entry = this.entries.get(key);
      if (!entry || entry.sig !== sig) {
        const node = render(data);
        node.dataset.section = key;
        if (entry) {
          const open = new Set([...entry.node.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
          if (entry.node.matches('details[open][data-key]')) open.add(entry.node.dataset.key);
          for (const d of [node, ...node.querySelectorAll('details[data-key]')]) {
            if (d.matches('details[data-key]') && open.has(d.dataset.key)) d.open = true;
          }
          entry.node.replaceWith(node);
        }
        entry = { sig, node };
        this.entries.set(key, entry);
      }
      const want = previous ? previous.nextSibling : this.root.firstChild;
      if (want !== entry.node) this.root.insertBefore(entry.node, want);
      previous = entry.node;
    }
    for (const [key, entry] of this.entries) {
      if (!seen.has(key)) {
        entry.node.remove();
        this.entries.delete(key);
      }
    }
  }
}
