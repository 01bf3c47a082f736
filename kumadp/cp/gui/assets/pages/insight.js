// Reading Kuma's insight documents (DataplaneInsight, ZoneInsight, ZoneIngressInsight, ...):
// the same rules the control plane and `kumadp ctl` use.

export const XDS_TYPES = ['cds', 'eds', 'lds', 'rds'];

export function lastSubscription(insight) {
  const subs = (insight && insight.subscriptions) || [];
  return subs.length ? subs[subs.length - 1] : null;
}

// Online: a subscription that connected and has not disconnected (Kuma's rule).
export function isOnline(insight) {
  if (insight && typeof insight.online === 'boolean') return insight.online;
  return ((insight && insight.subscriptions) || []).some((s) => s && s.connectTime && !s.disconnectTime);
}

export function statusOf(insight) {
  return isOnline(insight) ? 'Online' : 'Offline';
}

function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

// Per xDS type of the current subscription: {type, sent, acked, rejected}.
export function xdsCounters(insight) {
  const sub = lastSubscription(insight);
  const status = (sub && sub.status) || {};
  return XDS_TYPES.map((type) => {
    const s = status[type] || {};
    return {
      type,
      sent: num(s.responsesSent),
      acked: num(s.responsesAcknowledged),
      rejected: num(s.responsesRejected),
    };
  });
}

export function versions(insight) {
  const sub = lastSubscription(insight);
  const v = (sub && sub.version) || {};
  const agent = (insight && insight.agent && insight.agent.version) || {};
  return {
    envoy: (v.envoy && v.envoy.version) || (agent.envoy && agent.envoy.version) || '',
    agent: (v.kumaDp && v.kumaDp.version) || (agent.kumaDp && agent.kumaDp.version) || '',
  };
}

// The zone a dataplane is in: the `kuma.io/zone` label (set by a zone control plane) or tag.
export function zoneOf(overview) {
  const labels = overview.labels || {};
  if (labels['kuma.io/zone']) return labels['kuma.io/zone'];
  const networking = (overview.dataplane && overview.dataplane.networking) || {};
  for (const inbound of networking.inbound || []) {
    if (inbound.tags && inbound.tags['kuma.io/zone']) return inbound.tags['kuma.io/zone'];
  }
  return '';
}

export function services(overview) {
  const networking = (overview.dataplane && overview.dataplane.networking) || {};
  const found = [];
  for (const inbound of networking.inbound || []) {
    const svc = inbound.tags && inbound.tags['kuma.io/service'];
    if (svc && !found.includes(svc)) found.push(svc);
  }
  return found;
}

// Every inbound's tags merged (what the list shows as "tags"), services first.
export function allTags(overview) {
  const networking = (overview.dataplane && overview.dataplane.networking) || {};
  const out = {};
  for (const inbound of networking.inbound || []) {
    for (const [k, v] of Object.entries(inbound.tags || {})) {
      if (!(k in out)) out[k] = v;
      else if (!String(out[k]).split(',').includes(v)) out[k] = `${out[k]},${v}`;
    }
  }
  return out;
}
