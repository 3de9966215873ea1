/**
 * The operator page (/admin/): sign-in through the same SMART client as the viewer (scopes
 * `openid fhirUser user/*.rs`), then the sync's overview, read every few seconds, and the
 * lookup. Screens are the URL's fragment (#/, #/patient/{id}, #/study/{uid}), so a lookup
 * survives a reload and a new sign-in. The operator API decides who is an operator (403
 * otherwise); this page only says so.
 */
import { accessToken, completeSignIn, hasStoredSession, isRedirectBack, signIn, signOut, userOf } from '../auth.js';
import { focusHeading, h, show } from '../dom.js';
import { SignedOut, Unreachable } from '../errors.js';
import { NoRole, OperatorApi } from './api.js';
import { when } from './format.js';
import { lookupSection } from './lookup.js';
import { overviewSections } from './overview.js';
import { noRoleScreen, signInScreen } from './screens.js';

const REFRESH_MS = 5000;
/** Set when the page told the operator their sign-in ended. */
const ENDED = 'admin.signInEnded';

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const account = /** @type {HTMLElement} */ (document.getElementById('account'));

async function start() {
  let config;
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`The page's configuration could not be read (${response.status}).`);
    config = await response.json();
  } catch (error) {
    show(main, h('h1', { text: 'Imaging sync' }), h('p', { class: 'problem', role: 'alert', text: error.message }));
    return;
  }
  const params = new URLSearchParams(window.location.search);
  const signInNow = () =>
    signIn(config, 'clinician').catch((error) => signInScreen(main, signInNow, `Sign-in could not start: ${error.message}`));

  if (params.has('error')) {
    const why = params.get('error_description') || params.get('error');
    history.replaceState(null, '', window.location.pathname);
    signInScreen(main, signInNow, `You are not signed in: ${why}.`);
    return;
  }
  if (!isRedirectBack(params) && !hasStoredSession()) {
    const ended = sessionStorage.getItem(ENDED);
    sessionStorage.removeItem(ENDED);
    signInScreen(main, signInNow, ended ? 'Your sign-in has ended. Please sign in again to continue.' : undefined);
    focusHeading(main);
    return;
  }
  show(main, h('p', { class: 'status', text: 'Signing you in…' }));
  if (!isRedirectBack(params)) history.replaceState(null, '', window.location.pathname + window.location.hash);
  let client;
  let returnTo = '';
  try {
    ({ client, returnTo } = await completeSignIn());
    history.replaceState(null, '', window.location.pathname + window.location.hash);
  } catch (error) {
    sessionStorage.clear();
    signInScreen(main, signInNow, `Sign-in did not complete: ${error.message}`);
    return;
  }
  sessionStorage.removeItem(ENDED);
  if (returnTo && returnTo !== window.location.hash) history.replaceState(null, '', window.location.pathname + returnTo);
  run(config, client, signInNow);
}

function run(config, client, signInNow) {
  const user = userOf(client);
  const leave = () => signOut(config, client);
  show(
    account,
    h('a', { href: '../viewer/', text: 'Imaging viewer' }),
    h('span', { class: 'who', text: `Signed in as ${user.name || user.fhirUser || 'an operator'}` }),
    h('button', { type: 'button', class: 'quiet', onclick: leave, text: 'Sign out' }),
  );
  const updated = h('p', { class: 'updated', text: 'Loading…' });
  const banner = h('div', { class: 'banner' });
  const live = h('p', { class: 'visually-hidden', 'aria-live': 'polite' });
  let timer = 0;
  let stopped = false;

  const app = {
    api: new OperatorApi('api', () => accessToken(client)),
    announce(text) {
      live.textContent = text;
    },
    /** Say what an error means when it concerns the whole page; false: the caller says it. */
    handle(error) {
      if (error instanceof SignedOut) {
        stopped = true;
        clearTimeout(timer);
        sessionStorage.setItem(ENDED, '1');
        show(
          banner,
          h(
            'section',
            { class: 'problem', role: 'alert' },
            h('h2', { text: 'Please sign in again' }),
            h('p', { text: 'Your sign-in has ended (it lasts a few minutes) or was not accepted, so the page has stopped updating. Signing in again brings you back here.' }),
            h('button', { type: 'button', class: 'primary', onclick: () => { sessionStorage.clear(); signInNow(); }, text: 'Sign in again' }),
          ),
        );
        banner.querySelector('button')?.focus();
        return true;
      }
      if (error instanceof NoRole) {
        stopped = true;
        clearTimeout(timer);
        noRoleScreen(main, user, leave);
        focusHeading(main);
        return true;
      }
      if (error instanceof Unreachable) {
        show(banner, h('p', { class: 'problem', role: 'alert', text: `The sidecar cannot be reached; trying again every ${REFRESH_MS / 1000} s.` }));
        return true;
      }
      return false;
    },
    refreshOverview: () => refresh(),
  };

  const lookup = lookupSection(app);
  const overview = overviewSections(app, lookup);

  async function refresh() {
    clearTimeout(timer);
    if (stopped) return;
    if (document.hidden) {
      timer = window.setTimeout(refresh, REFRESH_MS); // a hidden tab asks nothing
      return;
    }
    try {
      const data = await app.api.overview();
      if (stopped) return;
      if (!banner.querySelector('h2')) show(banner);
      overview.update(data);
      updated.textContent = `Updated ${when(data.generatedAt)}; checked again every ${REFRESH_MS / 1000} s.`;
    } catch (error) {
      if (!app.handle(error)) show(banner, h('p', { class: 'problem', role: 'alert', text: `The overview could not be read: ${error.message}` }));
    }
    if (!stopped) timer = window.setTimeout(refresh, REFRESH_MS);
  }

  const route = () => {
    const [kind, value] = window.location.hash.replace(/^#\/?/, '').split('/');
    if ((kind === 'patient' || kind === 'study') && value) lookup.open({ kind, value: decodeURIComponent(value) });
    else lookup.close();
  };

  show(
    main,
    h('div', { class: 'title-row' }, h('h1', { text: 'Imaging sync' }), updated),
    banner,
    overview.summary,
    lookup.element,
    overview.sections,
    live,
  );
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !stopped) refresh(); // back in view: at once
  });
  window.addEventListener('hashchange', route);
  refresh().then(() => {
    if (!stopped) {
      route();
      focusHeading(main);
    }
  });
}

document.querySelector('.skip')?.addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
start();
