// The per-type xDS counters (ACK/NACK) of a subscription, as compact chips.
import { h } from '../dom.js';

export function xdsChips(counters) {
  return h(
    'span',
    { class: 'xds' },
    counters.map((c) =>
      h(
        'span',
        {
          class: `xds-chip ${c.rejected ? 'xds-nack' : c.acked ? 'xds-ack' : 'xds-none'}`,
          title: `${c.type.toUpperCase()}: ${c.sent} sent, ${c.acked} ACKed, ${c.rejected} NACKed`,
          'data-xds': c.type,
        },
        c.type.toUpperCase(),
        ' ',
        h('span', { class: 'ack' }, `✓${c.acked}`),
        c.rejected ? h('span', { class: 'nack' }, ` ✗${c.rejected}`) : null,
      ),
    ),
  );
}
