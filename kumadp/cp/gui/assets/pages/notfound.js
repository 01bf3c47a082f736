import { h, link, note } from '../dom.js';

export const notFound = {
  nav: '',
  title: () => 'Page not found',
  async load({ params }) {
    return [['nf', params, (p) => h('div', null, note(`The web UI has no page "${p.path}".`, 'warn'), h('p', null, link('./', 'Go to the overview')))]];
  },
};
