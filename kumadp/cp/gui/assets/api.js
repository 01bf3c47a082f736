// The control plane's HTTP API, read with same-origin requests: the UI sees exactly what
// the API lets this browser's user see (loopback admin, anonymous remote reads, or the
// user token saved under Settings, sent as a bearer token like `kumadp ctl` sends it).

// The page's <base> is "<api root>/gui/", so the API root is one level up.
export const API_ROOT = new URL('..', document.baseURI);
const TOKEN_KEY = 'kumadp.gui.token';

export class ApiError extends Error {
  constructor(status, title, details, path) {
    super(details ? `${title}: ${details}` : title);
    this.status = status;
    this.title = title;
    this.details = details;
    this.path = path;
  }
}

export function savedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function saveToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts for this page only
  }
}

function url(path) {
  return new URL(path.replace(/^\/+/, ''), API_ROOT);
}

// GET a JSON document. With {optional: true} a 404 (a route this control plane does not
// serve, or a resource that is gone) answers null instead of throwing.
export async function get(path, { optional = false } = {}) {
  const headers = { Accept: 'application/json' };
  const token = savedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(url(path), { headers, credentials: 'same-origin', cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, 'Control plane unreachable', String(err && err.message), path);
  }
  if (resp.status === 404 && optional) return null;
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const title = (body && (body.title || body.type)) || `${resp.status} ${resp.statusText}`;
    const details = (body && (body.details || body.detail)) || (body ? '' : text.slice(0, 200));
    throw new ApiError(resp.status, title, details, path);
  }
  return body;
}

// A list route's items (one page of up to 1000; `total` says whether there are more).
export async function list(path, { optional = false } = {}) {
  const sep = path.includes('?') ? '&' : '?';
  const body = await get(`${path}${sep}size=1000`, { optional });
  if (body === null) return null;
  return { items: body.items || [], total: body.total ?? (body.items || []).length };
}

// Only the count of a list route.
export async function count(path, { optional = false } = {}) {
  const sep = path.includes('?') ? '&' : '?';
  const body = await get(`${path}${sep}size=1`, { optional });
  return body === null ? null : body.total ?? 0;
}

const memo = new Map();

// A document that rarely changes, fetched at most once per `ttl` milliseconds.
export async function cached(key, ttl, load) {
  const hit = memo.get(key);
  const now = Date.now();
  if (hit && now - hit.at < ttl) return hit.value;
  const value = await load();
  memo.set(key, { at: now, value });
  return value;
}

// The resource types: Kuma's `GET /_resources` where the control plane serves it, else the
// UI's own copy from the same registry (`/gui/_resources`).
export function resourceTypes() {
  return cached('types', 30000, async () => {
    const body = (await get('_resources', { optional: true })) || (await get('gui/_resources'));
    return (body.resources || []).filter((t) => t.path);
  });
}

export async function policyTypes() {
  return (await resourceTypes()).filter((t) => t.policy && t.scope === 'Mesh');
}

// What this control plane is: its index (`GET /`: kumadp's carries `mode` and `zone`) and,
// for admins, Kuma's `GET /config` (its `mode`: standalone, zone or global).
export function controlPlane() {
  return cached('cp', 10000, async () => {
    const [index, config] = await Promise.all([
      get(''),
      get('config', { optional: true }).catch(() => null),
    ]);
    const fromConfig = config && (config.mode || (config.multizone && config.multizone.mode));
    const mode = (index && index.mode) || fromConfig || '';
    const zoneName =
      (index && index.zone) ||
      (config && config.multizone && config.multizone.zone && config.multizone.zone.name);
    const zone = mode === 'zone' ? zoneName || '' : '';
    return { index: index || {}, mode: String(mode), zone: String(zone) };
  });
}
