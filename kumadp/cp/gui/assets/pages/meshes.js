// Meshes: the list, and one mesh (its dataplanes, its policies by kind, its YAML).
import { count, get, list, policyTypes } from '../api.js';
import { card, code, enc, facts, fold, h, link, table, when } from '../dom.js';
import { toYaml } from '../yaml.js';

function mtls(meshDoc) {
  const m = meshDoc.mtls;
  if (!m || !m.enabledBackend) return 'off';
  return `on (${m.enabledBackend})`;
}

function withoutTimes(doc) {
  const { creationTime, modificationTime, ...rest } = doc;
  return rest;
}

async function dataplaneCounts(name) {
  const base = `meshes/${enc(name)}/dataplanes+insights`;
  const [online, total] = await Promise.all([count(`${base}?online=true`), count(base)]);
  return { online, total };
}

export const meshes = {
  nav: 'meshes',
  title: () => 'Meshes',
  async load() {
    const found = await list('meshes');
    const rows = await Promise.all(
      found.items.slice(0, 100).map(async (m) => ({
        name: m.name,
        mtls: mtls(m),
        created: m.creationTime || '',
        ...(await dataplaneCounts(m.name)),
      })),
    );
    return [['list', { rows, total: found.total }, renderList]];
  },
};

function renderList({ rows, total }) {
  return card(
    null,
    table(
      [
        { label: 'Name', cell: (r) => link(`meshes/${enc(r.name)}`, r.name), cls: 'name' },
        { label: 'mTLS', cell: (r) => r.mtls },
        { label: 'Dataplanes', cell: (r) => link(`meshes/${enc(r.name)}/dataplanes`, `${r.online} online / ${r.total}`) },
        { label: 'Policies', cell: (r) => link(`meshes/${enc(r.name)}/policies`, 'policies') },
        { label: 'Created', cell: (r) => when(r.created) },
      ],
      rows,
      { empty: 'No meshes.', rowData: (r) => ({ name: r.name }) },
    ),
    total > rows.length ? h('p', { class: 'empty' }, `Showing ${rows.length} of ${total}.`) : null,
  );
}

export const mesh = {
  nav: 'meshes',
  meshScoped: true,
  title: (p) => `Mesh ${p.mesh}`,
  async load({ params }) {
    const name = params.mesh;
    const [doc, counts, kinds] = await Promise.all([
      get(`meshes/${enc(name)}`),
      dataplaneCounts(name),
      policyTypes(),
    ]);
    const policies = await Promise.all(
      kinds.map(async (k) => ({
        path: k.path,
        label: k.pluralDisplayName || k.name,
        count: await count(`meshes/${enc(name)}/${k.path}`).catch(() => null),
      })),
    );
    const summary = { name, mtls: mtls(doc), created: doc.creationTime || '', ...counts };
    return [
      ['summary', summary, renderSummary],
      ['policies', { name, policies }, renderPolicies],
      ['yaml', withoutTimes(doc), (d) => card('Resource', fold('yaml', 'YAML', code(toYaml(d))))],
    ];
  },
};

function renderSummary(s) {
  return card(
    'Summary',
    facts([
      ['mTLS', s.mtls],
      ['dataplanes', link(`meshes/${enc(s.name)}/dataplanes`, `${s.online} online / ${s.total}`)],
      ['created', when(s.created)],
    ]),
  );
}

function renderPolicies({ name, policies }) {
  return card(
    'Policies',
    table(
      [
        { label: 'Kind', cell: (p) => link(`meshes/${enc(name)}/policies/${p.path}`, p.label) },
        { label: 'Count', cell: (p) => (p.count === null ? '—' : String(p.count)) },
      ],
      policies,
      { empty: 'This control plane serves no policy kinds.' },
    ),
  );
}
