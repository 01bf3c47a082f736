// The dataplanes of a mesh: status, tags, zone, versions, certificate expiry, xDS ACK/NACK
// per type and the last NACK's error.
import { list } from '../api.js';
import { card, enc, h, link, relative, status, table, tags, time } from '../dom.js';
import { allTags, statusOf, versions, xdsCounters, zoneOf } from './insight.js';
import { xdsChips } from './xds.js';

export function dataplaneRow(o) {
  const insight = o.dataplaneInsight || {};
  const v = versions(insight);
  const nack = insight.lastNack || null;
  const expiry = (insight.mTLS && insight.mTLS.certificateExpirationTime) || '';
  return {
    mesh: o.mesh,
    name: o.name,
    status: statusOf(insight),
    tags: allTags(o),
    zone: zoneOf(o),
    envoy: v.envoy,
    agent: v.agent,
    expiry,
    xds: xdsCounters(insight),
    nack: nack ? { type: nack.type || '', error: nack.error || '', time: nack.time || '' } : null,
  };
}

export function certificate(expiry) {
  if (!expiry) return h('span', { class: 'muted' }, 'no mTLS');
  const left = new Date(expiry).getTime() - Date.now();
  const kind = left <= 0 ? 'bad' : left < 3600 * 1000 ? 'warn' : '';
  return h('span', { class: kind ? `cert cert-${kind}` : 'cert', title: expiry }, time(expiry), h('span', { class: 'rel' }, ` (${relative(expiry)})`));
}

export function nackText(nack) {
  if (!nack) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'nack-error', title: nack.error }, `${nack.type.toUpperCase()}: ${nack.error}`);
}

export const dataplanes = {
  nav: 'dataplanes',
  meshScoped: true,
  title: (p) => `Dataplanes of ${p.mesh}`,
  async load({ params }) {
    const found = await list(`meshes/${enc(params.mesh)}/dataplanes+insights`);
    const rows = found.items.map(dataplaneRow);
    const online = rows.filter((r) => r.status === 'Online').length;
    return [
      ['counts', { online, total: found.total }, renderCounts],
      ['list', { mesh: params.mesh, rows, total: found.total }, renderList],
    ];
  },
};

function renderCounts({ online, total }) {
  return h(
    'p',
    { class: 'summary' },
    h('strong', null, String(online)),
    ' online, ',
    h('strong', null, String(total - online)),
    ' offline, ',
    `${total} in all`,
  );
}

function renderList({ mesh, rows, total }) {
  return card(
    null,
    table(
      [
        { label: 'Name', cell: (r) => link(`meshes/${enc(mesh)}/dataplanes/${enc(r.name)}`, r.name), cls: 'name' },
        { label: 'Status', cell: (r) => status(r.status) },
        { label: 'Tags', cell: (r) => tags(r.tags), cls: 'wide' },
        { label: 'Zone', cell: (r) => r.zone || '—' },
        { label: 'Envoy', cell: (r) => r.envoy || '—' },
        { label: 'Agent', cell: (r) => r.agent || '—' },
        { label: 'Certificate', cell: (r) => certificate(r.expiry) },
        { label: 'xDS', cell: (r) => xdsChips(r.xds) },
        { label: 'Last NACK', cell: (r) => nackText(r.nack), cls: 'wide' },
      ],
      rows,
      {
        empty: 'No dataplanes in this mesh yet: start one with `kumadp run`.',
        rowData: (r) => ({ name: r.name, status: r.status }),
      },
    ),
    total > rows.length ? h('p', { class: 'empty' }, `Showing ${rows.length} of ${total}.`) : null,
  );
}
