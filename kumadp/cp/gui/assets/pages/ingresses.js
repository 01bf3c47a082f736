// Zone ingresses (with the services they make available to other zones) and zone egresses.
import { list } from '../api.js';
import { card, h, note, status, table, when } from '../dom.js';
import { isOnline, lastSubscription } from './insight.js';

function availableServices(list) {
  if (!list || !list.length) return h('span', { class: 'muted' }, 'none');
  return h(
    'ul',
    { class: 'services' },
    list.map((s) => {
      const tags = s.tags || {};
      const svc = tags['kuma.io/service'] || Object.entries(tags).map(([k, v]) => `${k}=${v}`).join(',');
      return h('li', null, svc, h('span', { class: 'muted' }, ` · mesh ${s.mesh || 'default'} · ${s.instances ?? '?'} instance${s.instances === 1 ? '' : 's'}`));
    }),
  );
}

function proxyPage({ nav, title, path, spec, insightKey, what }) {
  return {
    nav,
    title: () => title,
    async load() {
      const found = await list(path, { optional: true });
      if (!found) return [['none', what, (w) => note(`This control plane does not serve ${w} (no ${path} route).`)]];
      const rows = found.items.map((item) => {
        const s = item[spec] || {};
        const insight = item[insightKey] || {};
        const last = lastSubscription(insight) || {};
        const net = s.networking || {};
        return {
          name: item.name,
          zone: s.zone || (item.labels && item.labels['kuma.io/zone']) || '',
          status: isOnline(insight) ? 'Online' : 'Offline',
          address: `${net.advertisedAddress || net.address || ''}:${net.advertisedPort || net.port || ''}`,
          connected: last.connectTime || '',
          services: s.availableServices || null,
        };
      });
      return [['list', { rows, what }, renderList]];
    },
  };
}

function renderList({ rows, what }) {
  const columns = [
    { label: 'Name', cell: (r) => r.name, cls: 'name' },
    { label: 'Zone', cell: (r) => r.zone || '—' },
    { label: 'Status', cell: (r) => status(r.status) },
    { label: 'Address', cell: (r) => r.address },
    { label: 'Connected', cell: (r) => when(r.connected) },
  ];
  if (rows.some((r) => r.services !== null)) {
    columns.push({ label: 'Available services', cell: (r) => availableServices(r.services), cls: 'wide' });
  }
  return card(null, table(columns, rows, { empty: `No ${what} yet.`, rowData: (r) => ({ name: r.name, status: r.status }) }));
}

export const zoneIngresses = proxyPage({
  nav: 'zoneingresses',
  title: 'Zone ingresses',
  path: 'zoneingresses+insights',
  spec: 'zoneIngress',
  insightKey: 'zoneIngressInsight',
  what: 'zone ingresses',
});

export const zoneEgresses = proxyPage({
  nav: 'zoneegresses',
  title: 'Zone egresses',
  path: 'zoneegressoverviews',
  spec: 'zoneEgress',
  insightKey: 'zoneEgressInsight',
  what: 'zone egresses',
});
