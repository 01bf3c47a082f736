// The web UI's shell: client-side routes under the page's <base>, the navigation, and the
// refresh loop (every page re-reads the API once a second while the tab is visible and
// redraws only what changed; a hidden tab makes no requests).

import { ApiError, controlPlane, list } from './api.js';
import { h, View, note } from './dom.js';
import { overview } from './pages/overview.js';
import { meshes, mesh } from './pages/meshes.js';
import { dataplanes } from './pages/dataplanes.js';
import { dataplane } from './pages/dataplane.js';
import { policyKinds, policyList, policy } from './pages/policies.js';
import { zones } from './pages/zones.js';
import { zoneIngresses, zoneEgresses } from './pages/ingresses.js';
import { settings } from './pages/settings.js';
import { notFound } from './pages/notfound.js';

const INTERVAL_MS = 1000;
const MESH_KEY = 'kumadp.gui.mesh';

const ROUTES = [
  ['', overview],
  ['meshes', meshes],
  ['meshes/:mesh', mesh],
  ['meshes/:mesh/dataplanes', dataplanes],
  ['meshes/:mesh/dataplanes/:name', dataplane],
  ['meshes/:mesh/policies', policyKinds],
  ['meshes/:mesh/policies/:kind', policyList],
  ['meshes/:mesh/policies/:kind/:name', policy],
  ['zones', zones],
  ['zoneingresses', zoneIngresses],
  ['zoneegresses', zoneEgresses],
  ['settings', settings],
];
// Short paths that name a page of the current mesh.
const MESH_SHORTCUTS = { dataplanes: 'dataplanes', policies: 'policies' };

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const live = document.getElementById('live');
const meshPick = document.getElementById('mesh-pick');
const meshSelect = document.getElementById('mesh-select');
const foot = document.getElementById('foot');
const basePath = new URL(document.baseURI).pathname;

let current = null; // {page, params, state, view, problem}
let generation = 0;
let timer = null;
let inflight = null;
let again = false;
let refreshes = 0;
let meshNames = [];

function rememberedMesh() {
  try {
    return localStorage.getItem(MESH_KEY) || 'default';
  } catch {
    return 'default';
  }
}

function rememberMesh(name) {
  try {
    localStorage.setItem(MESH_KEY, name);
  } catch {
    // storage disabled
  }
}

function currentMesh() {
  return (current && current.params.mesh) || rememberedMesh();
}

function segments() {
  let rest = location.pathname.startsWith(basePath) ? location.pathname.slice(basePath.length) : '';
  rest = rest.replace(/^\/+|\/+$/g, '');
  if (!rest) return [];
  return rest.split('/').map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
}

function match(parts) {
  for (const [pattern, page] of ROUTES) {
    const want = pattern ? pattern.split('/') : [];
    if (want.length !== parts.length) continue;
    const params = {};
    if (want.every((w, i) => (w.startsWith(':') ? ((params[w.slice(1)] = parts[i]), true) : w === parts[i]))) {
      return { page, params };
    }
  }
  return { page: notFound, params: { path: parts.join('/') } };
}

function route() {
  const parts = segments();
  if (parts.length === 1 && MESH_SHORTCUTS[parts[0]]) {
    const target = `meshes/${encodeURIComponent(currentMesh())}/${MESH_SHORTCUTS[parts[0]]}`;
    history.replaceState(null, '', new URL(target, document.baseURI));
    return route();
  }
  const { page, params } = match(parts);
  generation += 1;
  main.replaceChildren();
  const problem = h('div', { class: 'problem', id: 'problem' });
  const heading = h('h1', null, page.title(params));
  const body = h('div', { class: 'page' });
  main.append(heading, problem, body);
  current = { page, params, state: page.state ? page.state(params) : {}, view: new View(body), problem };
  if (params.mesh) rememberMesh(params.mesh);
  document.title = `${page.title(params)} · kumadp`;
  drawNav();
  refresh();
}

function navigate(href) {
  history.pushState(null, '', href);
  route();
  window.scrollTo(0, 0);
  main.focus({ preventScroll: true });
}

function drawNav() {
  const m = encodeURIComponent(currentMesh());
  const items = [
    ['overview', './', 'Overview'],
    ['meshes', 'meshes', 'Meshes'],
    ['dataplanes', `meshes/${m}/dataplanes`, 'Dataplanes'],
    ['policies', `meshes/${m}/policies`, 'Policies'],
    ['zones', 'zones', 'Zones'],
    ['zoneingresses', 'zoneingresses', 'Zone ingresses'],
    ['zoneegresses', 'zoneegresses', 'Zone egresses'],
    ['settings', 'settings', 'Settings'],
  ];
  const active = current ? current.page.nav : '';
  nav.replaceChildren(
    ...items.map(([key, href, label]) =>
      h('a', { href, 'data-nav': true, 'aria-current': key === active ? 'page' : null }, label),
    ),
  );
}

function drawMeshes(names) {
  const usesMesh = Boolean(current && current.page.meshScoped);
  meshPick.hidden = !usesMesh || !names.length;
  const selected = currentMesh();
  const sig = JSON.stringify([names, selected]);
  if (meshSelect.dataset.sig === sig) return;
  meshSelect.dataset.sig = sig;
  const options = names.includes(selected) ? names : [selected, ...names];
  meshSelect.replaceChildren(...options.map((n) => h('option', { value: n, selected: n === selected }, n)));
}

meshSelect.addEventListener('change', () => {
  const name = meshSelect.value;
  rememberMesh(name);
  const kind = current && current.page.nav === 'policies' ? 'policies' : 'dataplanes';
  navigate(new URL(`meshes/${encodeURIComponent(name)}/${kind}`, document.baseURI));
});

function setLive(state, text, detail = '') {
  live.dataset.state = state;
  live.replaceChildren(text, detail ? h('span', { class: 'wide-only' }, ` · ${detail}`) : '');
}

function showProblem(err) {
  const problem = current.problem;
  if (!err) {
    problem.replaceChildren();
    return;
  }
  let text = err.message || String(err);
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    text =
      `The control plane refused to show this (${err.status} ${err.title}${err.details ? `: ${err.details}` : ''}). ` +
      'The UI sees what the API lets this browser see: a remote user without a token reads ' +
      'non-secret resources only. Add a user token under Settings.';
  } else if (err instanceof ApiError && err.status === 0) {
    text = `The control plane does not answer (${err.details || 'network error'}); retrying every second.`;
  }
  problem.replaceChildren(note(text, 'error'));
}

async function layout() {
  const [cp, meshList] = await Promise.all([
    controlPlane().catch(() => null),
    list('meshes').catch(() => null),
  ]);
  if (meshList) {
    meshNames = meshList.items.map((m) => m.name);
    drawMeshes(meshNames);
  }
  if (cp) {
    const { index, mode, zone } = cp;
    const sig = JSON.stringify([index.version, index.hostname, mode, zone]);
    if (foot.dataset.sig !== sig) {
      foot.dataset.sig = sig;
      const where = [mode && `${mode} control plane`, zone && `zone ${zone}`, index.hostname].filter(Boolean);
      foot.replaceChildren(`${index.product || 'kumadp'} ${index.version || ''} · ${where.join(' · ')} · read-only view of the HTTP API`);
    }
  }
}

async function refreshOnce() {
  const gen = generation;
  const page = current;
  try {
    const [sections] = await Promise.all([page.page.load({ params: page.params, state: page.state, refresh }), layout()]);
    if (gen !== generation) return;
    page.view.update(sections);
    showProblem(null);
    refreshes += 1;
    document.documentElement.dataset.refreshes = String(refreshes);
    const t = new Date();
    setLive('live', 'live', t.toLocaleTimeString([], { hour12: false }));
  } catch (err) {
    if (gen !== generation) return;
    showProblem(err);
    setLive('error', 'retrying');
    if (!(err instanceof ApiError)) console.error(err);
  }
}

// Re-read the current page now (and then every second while the tab is visible).
export async function refresh() {
  clearTimeout(timer);
  timer = null;
  if (document.hidden) {
    setLive('paused', 'paused');
    return;
  }
  if (inflight) {
    again = true;
    return;
  }
  inflight = refreshOnce();
  await inflight;
  inflight = null;
  if (again) {
    again = false;
    refresh();
    return;
  }
  if (!document.hidden) timer = setTimeout(refresh, INTERVAL_MS);
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    clearTimeout(timer);
    timer = null;
    setLive('paused', 'paused');
  } else {
    refresh();
  }
});

document.addEventListener('click', (event) => {
  const a = event.target.closest && event.target.closest('a[data-nav]');
  if (!a || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const href = new URL(a.getAttribute('href'), document.baseURI);
  if (href.origin !== location.origin) return;
  event.preventDefault();
  if (href.href !== location.href) navigate(href);
});

window.addEventListener('popstate', route);
route();
