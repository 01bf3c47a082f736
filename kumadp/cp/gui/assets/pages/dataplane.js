// One dataplane: its state, xDS ACK/NACK per type and Envoy's last error, its inbounds and
// outbounds, the policies that apply to it (`_rules`), its Envoy config (`_config`, fetched
// only while that fold is open) and its resource.
import { ApiError, get, resourceTypes } from '../api.js';
import { card, code, enc, facts, fold, h, link, note, status, table, tags, when } from '../dom.js';
import { toYaml } from '../yaml.js';
import { certificate, dataplaneRow } from './dataplanes.js';
import { lastSubscription } from './insight.js';

export const dataplane = {
  nav: 'dataplanes',
  meshScoped: true,
  title: (p) => `Dataplane ${p.name}`,
  state: () => ({ configOpen: false }),
  async load({ params, state, refresh }) {
    const base = `meshes/${enc(params.mesh)}/dataplanes/${enc(params.name)}`;
    const [o, rules, types, config] = await Promise.all([
      get(`${base}/_overview`, { optional: true }),
      get(`${base}/_rules`, { optional: true }).catch((err) => ({ error: err.message })),
      resourceTypes().catch(() => []),
      state.configOpen ? get(`${base}/_config`).catch((err) => ({ error: err instanceof ApiError ? err.details || err.message : String(err) })) : null,
    ]);
    if (!o) {
      return [['gone', params, (p) => note(`Dataplane "${p.name}" is not in mesh "${p.mesh}" (any more).`, 'warn')]];
    }
    const row = dataplaneRow(o);
    const insight = o.dataplaneInsight || {};
    const sub = lastSubscription(insight) || {};
    const agent = insight.agent || {};
    const networking = (o.dataplane && o.dataplane.networking) || {};
    const paths = Object.fromEntries(types.map((t) => [t.name, t.path]));
    const onToggle = (event) => {
      const open = event.target.open;
      if (open !== state.configOpen) {
        state.configOpen = open;
        refresh();
      }
    };
    return [
      [
        'summary',
        {
          ...row,
          address: networking.address || '',
          connected: sub.connectTime || '',
          disconnected: sub.disconnectTime || '',
          cp: sub.controlPlaneInstanceId || '',
          readiness: (agent.readiness && agent.readiness.state) || '',
          regenerations: insight.mTLS ? insight.mTLS.certificateRegenerations ?? '' : '',
        },
        renderSummary,
      ],
      ['nack', insight.lastNack || null, renderNack],
      ['xds', row.xds, renderXds],
      ['inbounds', networking.inbound || [], renderInbounds],
      ['outbounds', networking.outbound || [], renderOutbounds],
      ['rules', { mesh: params.mesh, rules, paths }, renderRules],
      ['config', { open: state.configOpen, config }, (d) => renderConfig(d, onToggle)],
      ['yaml', { type: 'Dataplane', mesh: o.mesh, name: o.name, ...(o.labels ? { labels: o.labels } : {}), ...o.dataplane }, (d) => card('Resource', fold('yaml', 'YAML', code(toYaml(d))))],
    ];
  },
};

function renderSummary(s) {
  return card(
    'Summary',
    facts([
      ['status', status(s.status)],
      ['mesh', link(`meshes/${enc(s.mesh)}`, s.mesh)],
      ['address', s.address],
      ['zone', s.zone],
      ['Envoy', s.envoy],
      ['agent', s.agent],
      ['certificate expires', certificate(s.expiry)],
      ['certificate regenerations', s.regenerations === '' ? '' : String(s.regenerations)],
      ['readiness', s.readiness],
      ['connected', s.connected ? when(s.connected) : ''],
      ['disconnected', s.disconnected ? when(s.disconnected) : ''],
      ['control plane instance', s.cp],
      ['tags', tags(s.tags)],
    ]),
  );
}

function renderNack(nack) {
  if (!nack) return h('div', { class: 'hidden-section' });
  return h(
    'section',
    { class: 'card card-error', 'data-nack': nack.type || '' },
    h('h2', null, `Envoy rejected the ${String(nack.type || '').toUpperCase()} config`),
    facts([
      ['version', nack.version || ''],
      ['when', nack.time ? when(nack.time) : ''],
    ]),
    code(nack.error || '(no message)', { cls: 'code code-error' }),
  );
}

function renderXds(rows) {
  return card(
    'xDS',
    table(
      [
        { label: 'Type', cell: (r) => r.type.toUpperCase() },
        { label: 'Sent', cell: (r) => String(r.sent) },
        { label: 'ACKed', cell: (r) => String(r.acked) },
        { label: 'NACKed', cell: (r) => (r.rejected ? h('strong', { class: 'bad' }, String(r.rejected)) : '0') },
      ],
      rows,
      { rowData: (r) => ({ xds: r.type }) },
    ),
  );
}

function renderInbounds(inbounds) {
  return card(
    'Inbounds',
    table(
      [
        { label: 'Port', cell: (i) => `${i.address ? `${i.address}:` : ''}${i.port}` },
        { label: 'Service port', cell: (i) => `${i.serviceAddress ? `${i.serviceAddress}:` : ''}${i.servicePort ?? i.port}` },
        { label: 'Tags', cell: (i) => tags(i.tags), cls: 'wide' },
      ],
      inbounds,
      { empty: 'No inbounds.' },
    ),
  );
}

function renderOutbounds(outbounds) {
  return card(
    'Outbounds',
    table(
      [
        { label: 'Address', cell: (o) => `${o.address || '127.0.0.1'}:${o.port}` },
        { label: 'Tags', cell: (o) => tags(o.tags || (o.backendRef ? { backendRef: JSON.stringify(o.backendRef) } : {})), cls: 'wide' },
      ],
      outbounds,
      { empty: 'No explicit outbounds (transparent proxying or none).' },
    ),
  );
}

function origins(mesh, paths, list) {
  // Kuma's origin items: {resourceMeta: {type, mesh, name}}
  return (list || []).map((item, i) => {
    const o = item.resourceMeta || item;
    return [
      i ? ', ' : '',
      paths[o.type] ? link(`meshes/${enc(mesh)}/policies/${paths[o.type]}/${enc(o.name)}`, o.name) : o.name,
    ];
  });
}

function matchers(list) {
  if (!list || !list.length) return 'every service';
  return list.map((m) => `${m.not ? '!' : ''}${m.key.replace(/^kuma\.io\//, '')}=${m.value}`).join(', ');
}

function renderRules({ mesh, rules, paths }) {
  if (!rules) return card('Policies', note('This control plane does not serve the policies of a dataplane (`_rules`).'));
  if (rules.error) return card('Policies', note(`Could not read the policies: ${rules.error}`, 'warn'));
  const list = rules.rules || [];
  if (!list.length) return card('Policies', h('p', { class: 'empty' }, 'No policy applies to this dataplane.'));
  return card(
    'Policies',
    list.map((r) => {
      const rows = [
        ...(r.toRules || []).map((t) => ({ dir: 'outbound', what: matchers(t.matchers), rule: t })),
        ...(r.fromRules || []).flatMap((f) =>
          (f.rules || []).map((t) => ({ dir: 'inbound', what: `port ${f.inbound && f.inbound.port}`, rule: t })),
        ),
      ];
      return h(
        'div',
        { class: 'rule', 'data-policy-type': r.type },
        h('h3', null, r.type),
        (r.warnings || []).map((w) => note(w, 'warn')),
        table(
          [
            { label: 'Direction', cell: (x) => x.dir },
            { label: 'Applies to', cell: (x) => x.what },
            { label: 'From policies', cell: (x) => origins(mesh, paths, x.rule.origin) },
            { label: 'Configuration', cell: (x) => fold(`${r.type}-${x.dir}-${x.what}`, 'merged conf', code(toYaml(x.rule.conf || {}))), cls: 'wide' },
          ],
          rows,
        ),
      );
    }),
  );
}

function renderConfig({ open, config }, onToggle) {
  let body = null;
  if (open && !config) body = h('p', { class: 'empty' }, 'Loading…');
  else if (config && config.error) body = note(config.error, 'warn');
  else if (config) body = code(JSON.stringify(config, null, 2), { cls: 'code code-config' });
  const details = fold('envoy-config', 'Envoy config generated for this dataplane (refreshed while open)', body);
  details.open = open;
  details.addEventListener('toggle', onToggle);
  return card('Envoy config', details);
}
