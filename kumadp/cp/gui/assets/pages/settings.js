// Settings: a user token for this browser tab (sent as a bearer token, like `kumadp ctl`
// with `--auth-type tokens`), kept in the tab's session storage only.
import { get, savedToken, saveToken } from '../api.js';
import { card, facts, h, note } from '../dom.js';

export const settings = {
  nav: 'settings',
  title: () => 'Settings',
  state: () => ({ drawn: false }),
  async load({ refresh }) {
    const who = await get('who-am-i', { optional: true }).catch((err) => ({ error: err.message }));
    return [
      ['token', { has: Boolean(savedToken()) }, (d) => renderToken(d, refresh)],
      ['who', who, renderWho],
    ];
  },
};

function renderToken({ has }, refresh) {
  const input = h('input', { type: 'password', id: 'token', autocomplete: 'off', spellcheck: 'false', placeholder: has ? 'a token is saved for this tab' : 'paste a user token' });
  const save = h('button', { type: 'button', onclick: () => { saveToken(input.value.trim()); input.value = ''; refresh(); } }, 'Use token');
  const clear = h('button', { type: 'button', class: 'secondary', onclick: () => { saveToken(''); refresh(); } }, 'Forget token');
  return card(
    'User token',
    h('p', null, 'The UI reads the API with the access rules of this browser: on the control plane host it is admin; elsewhere it reads non-secret resources only, unless you give it a user token (kumadp ctl generate user-token). The token stays in this tab only.'),
    h('div', { class: 'token-row' }, h('label', { for: 'token' }, 'Token'), input, save, has ? clear : null),
    has ? note('Requests carry the saved token.', 'info') : null,
  );
}

function renderWho(who) {
  if (!who) return h('div', { class: 'hidden-section' });
  if (who.error) return card('Signed in as', note(who.error, 'warn'));
  return card('Signed in as', facts([
    ['name', who.name || ''],
    ['groups', (who.groups || []).join(', ')],
  ]));
}
