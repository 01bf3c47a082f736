// Zones of a global control plane: online, last connection, CP version, enabled.
import { controlPlane, list } from '../api.js';
import { card, h, note, status, table, when } from '../dom.js';

export function zoneRow(z) {
  const insight = z.zoneInsight || {};
  const subs = insight.subscriptions || [];
  const last = subs.length ? subs[subs.length - 1] : null;
  const enabled = !z.zone || z.zone.enabled !== false;
  const connected = Boolean(last && last.connectTime && !last.disconnectTime);
  const version = last && last.version && last.version.kumaCp ? last.version.kumaCp.version || '' : '';
  return {
    name: z.name,
    status: !enabled ? 'Disabled' : connected ? 'Online' : 'Offline',
    enabled,
    connectTime: (last && last.connectTime) || '',
    disconnectTime: (last && last.disconnectTime) || '',
    version,
    instance: (last && last.globalInstanceId) || '',
  };
}

export const zones = {
  nav: 'zones',
  title: () => 'Zones',
  async load() {
    const cp = await controlPlane();
    // only a global CP has zones (a standalone or zone CP serves an empty list)
    const found = cp.mode && cp.mode !== 'global' ? null : await list('zones+insights', { optional: true });
    if (!found) return [['none', { mode: cp.mode, zone: cp.zone }, renderNone]];
    const rows = found.items.map(zoneRow);
    return [['list', { rows, total: found.total, mode: cp.mode }, renderList]];
  },
};

function renderNone({ mode, zone }) {
  if (mode === 'zone') {
    return note(`This is a zone control plane${zone ? ` (zone ${zone})` : ''}: the list of zones is on the global control plane.`);
  }
  return note(
    'Standalone control plane: it has no zones. Zones connect to a global control plane ' +
      '(kumadp cp run --mode global), whose UI lists them here.',
  );
}

function renderList({ rows, total }) {
  const online = rows.filter((r) => r.status === 'Online').length;
  return card(
    null,
    h('p', { class: 'summary' }, h('strong', null, String(online)), ` of ${total} zones online`),
    table(
      [
        { label: 'Name', cell: (r) => r.name, cls: 'name' },
        { label: 'Status', cell: (r) => status(r.status) },
        { label: 'Last connected', cell: (r) => when(r.connectTime) },
        { label: 'Disconnected', cell: (r) => (r.disconnectTime ? when(r.disconnectTime) : '—') },
        { label: 'CP version', cell: (r) => r.version || '—' },
        { label: 'Enabled', cell: (r) => (r.enabled ? 'yes' : 'no') },
      ],
      rows,
      { empty: 'No zone has connected yet.', rowData: (r) => ({ name: r.name, status: r.status }) },
    ),
  );
}
