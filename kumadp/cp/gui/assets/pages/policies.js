// Policies of a mesh: the kinds the control plane serves (from `/_resources`), the policies
// of one kind with their YAML, and one policy.
import { count, get, list, policyTypes } from '../api.js';
import { card, code, enc, fold, h, link, note, table, when } from '../dom.js';
import { toYaml } from '../yaml.js';

function resourceDoc(item) {
  const { creationTime, modificationTime, ...rest } = item;
  return rest;
}

function targetOf(item) {
  const ref = item.spec && item.spec.targetRef;
  if (!ref) return '—';
  const name = ref.name || (ref.tags ? Object.entries(ref.tags).map(([k, v]) => `${k}=${v}`).join(',') : '');
  return name ? `${ref.kind} ${name}` : ref.kind;
}

async function kindOf(path) {
  const kinds = await policyTypes();
  return kinds.find((k) => k.path === path) || null;
}

export const policyKinds = {
  nav: 'policies',
  meshScoped: true,
  title: (p) => `Policies of ${p.mesh}`,
  async load({ params }) {
    const kinds = await policyTypes();
    const rows = await Promise.all(
      kinds.map(async (k) => ({
        path: k.path,
        name: k.name,
        label: k.pluralDisplayName || k.name,
        count: await count(`meshes/${enc(params.mesh)}/${k.path}`).catch(() => null),
      })),
    );
    return [['kinds', { mesh: params.mesh, rows }, renderKinds]];
  },
};

function renderKinds({ mesh, rows }) {
  return card(
    null,
    table(
      [
        { label: 'Kind', cell: (r) => link(`meshes/${enc(mesh)}/policies/${r.path}`, r.label) },
        { label: 'Type', cell: (r) => r.name },
        { label: 'Policies', cell: (r) => (r.count === null ? '—' : String(r.count)) },
      ],
      rows,
      { empty: 'This control plane serves no policy kinds.', rowData: (r) => ({ kind: r.name }) },
    ),
  );
}

export const policyList = {
  nav: 'policies',
  meshScoped: true,
  title: (p) => `${p.kind} of ${p.mesh}`,
  async load({ params }) {
    const kind = await kindOf(params.kind);
    if (!kind) return [['unknown', params, (p) => note(`"${p.kind}" is not a policy kind of this control plane.`, 'warn')]];
    const found = await list(`meshes/${enc(params.mesh)}/${kind.path}`);
    const items = found.items.map((item) => ({ name: item.name, target: targetOf(item), created: item.creationTime || '', doc: resourceDoc(item) }));
    return [['list', { mesh: params.mesh, kind, items, total: found.total }, renderList]];
  },
};

function renderList({ mesh, kind, items, total }) {
  return card(
    kind.pluralDisplayName || kind.name,
    table(
      [
        { label: 'Name', cell: (i) => link(`meshes/${enc(mesh)}/policies/${kind.path}/${enc(i.name)}`, i.name), cls: 'name' },
        { label: 'Target', cell: (i) => i.target },
        { label: 'Created', cell: (i) => when(i.created) },
        { label: 'YAML', cell: (i) => fold(`yaml-${i.name}`, 'show', code(toYaml(i.doc))), cls: 'wide' },
      ],
      items,
      { empty: `No ${kind.name} in this mesh.`, rowData: (i) => ({ name: i.name }) },
    ),
    total > items.length ? h('p', { class: 'empty' }, `Showing ${items.length} of ${total}.`) : null,
  );
}

export const policy = {
  nav: 'policies',
  meshScoped: true,
  title: (p) => `${p.name}`,
  async load({ params }) {
    const kind = await kindOf(params.kind);
    if (!kind) return [['unknown', params, (p) => note(`"${p.kind}" is not a policy kind of this control plane.`, 'warn')]];
    const item = await get(`meshes/${enc(params.mesh)}/${kind.path}/${enc(params.name)}`, { optional: true });
    if (!item) return [['gone', params, (p) => note(`There is no ${kind.name} "${p.name}" in mesh "${p.mesh}".`, 'warn')]];
    return [
      ['meta', { mesh: params.mesh, kind, created: item.creationTime || '', modified: item.modificationTime || '' }, renderMeta],
      ["yaml", resourceDoc(item), (d) => card('YAML', code(toYaml(d), { cls: 'code code-yaml' }))],
    ];
  },
};

function renderMeta({ mesh, kind, created, modified }) {
  return h(
    'p',
    { class: 'summary' },
    link(`meshes/${enc(mesh)}/policies/${kind.path}`, kind.pluralDisplayName || kind.name),
    ' in mesh ',
    link(`meshes/${enc(mesh)}`, mesh),
    ' · created ',
    when(created),
    ' · modified ',
    when(modified),
  );
}
