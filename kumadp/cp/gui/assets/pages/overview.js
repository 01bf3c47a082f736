// Overview: meshes, dataplanes online/offline, zones online, policies.
import { controlPlane, count, list, policyTypes } from '../api.js';
import { card, facts, h, link, note } from '../dom.js';

function tile(label, value, href, sub) {
  return link(href, h('span', { class: 'tile-value' }, String(value)), h('span', { class: 'tile-label' }, label), sub ? h('span', { class: 'tile-sub' }, sub) : null);
}

async function zoneCounts() {
  const zones = await list('zones+insights', { optional: true }).catch(() => null);
  if (!zones) return null;
  let online = 0;
  for (const z of zones.items) {
    const enabled = !z.zone || z.zone.enabled !== false;
    const subs = (z.zoneInsight && z.zoneInsight.subscriptions) || [];
    const last = subs[subs.length - 1];
    if (enabled && last && last.connectTime && !last.disconnectTime) online += 1;
  }
  return { online, total: zones.total };
}

export const overview = {
  nav: 'overview',
  title: () => 'Overview',
  async load() {
    const [cp, meshes, online, total, zones, kinds] = await Promise.all([
      controlPlane(),
      count('meshes'),
      count('dataplanes+insights?online=true'),
      count('dataplanes+insights'),
      zoneCounts(),
      policyTypes(),
    ]);
    const perKind = await Promise.all(kinds.map((k) => count(k.path).catch(() => 0)));
    const policies = perKind.reduce((a, b) => a + b, 0);
    const data = {
      meshes,
      online,
      offline: total - online,
      total,
      zones,
      policies,
      kinds: kinds.length,
      mode: cp.mode,
      version: cp.index.version || '',
      hostname: cp.index.hostname || '',
    };
    return [
      ['tiles', data, renderTiles],
      ['cp', data, renderCp],
    ];
  },
};

function renderTiles(d) {
  const zoneTile = d.zones
    ? tile('zones online', `${d.zones.online} / ${d.zones.total}`, 'zones', null)
    : tile('zones', '—', 'zones', d.mode === 'zone' ? 'zone control plane' : 'standalone');
  return h(
    'div',
    { class: 'tiles' },
    tile('meshes', d.meshes, 'meshes'),
    tile('dataplanes online', d.online, 'dataplanes', `of ${d.total}`),
    tile('dataplanes offline', d.offline, 'dataplanes', d.offline ? 'check them' : 'none'),
    zoneTile,
    tile('policies', d.policies, 'policies', `${d.kinds} kinds`),
  );
}

function renderCp(d) {
  const mode = d.mode || (d.zones !== null ? 'global' : 'standalone');
  let about = null;
  if (mode === 'zone') about = note('Zone control plane: its meshes and policies come from the global control plane, which lists the zones.');
  else if (mode === 'standalone' && d.zones === null) about = note('Standalone control plane: dataplanes connect to it directly; there are no zones.');
  return card(
    'Control plane',
    facts([
      ['version', d.version],
      ['host', d.hostname],
      ['mode', mode],
    ]),
    about,
  );
}
