/**
 * The viewer's start and its screens: sign-in, then a patient's studies (the patient of the
 * launch, or one a clinician picks), a study's series, a series' images. Screens are
 * addressed by the URL's fragment (#/p/{patient}/s/{study}/series/{uid}), so Back works
 * and the page needs no server-side routes.
 */
import {
  accessToken,
  completeSignIn,
  hasStoredSession,
  isRedirectBack,
  launchFromEhr,
  signIn,
  signOut,
  userOf,
} from './auth.js';
import { h, show, focusHeading } from './dom.js';
import { Gateway } from './imaging.js';
import { ENDED, problem } from './shell.js';
import { patientsScreen } from './views/patients.js';
import { seriesScreen } from './views/series.js';
import { signInScreen } from './views/signin.js';
import { studyListScreen } from './views/study-list.js';
import { studyScreen } from './views/study.js';

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const account = /** @type {HTMLElement} */ (document.getElementById('account'));

async function loadConfig() {
  const response = await fetch('config.json', { cache: 'no-store' });
  if (!response.ok) throw new Error(`The viewer's configuration could not be read (${response.status}).`);
  return response.json();
}

async function start() {
  let config;
  try {
    config = await loadConfig();
  } catch (error) {
    show(main, h('h1', { text: 'Imaging viewer' }), problem(null, error, { retry: () => location.reload() }));
    return;
  }
  const params = new URLSearchParams(window.location.search);
  const signInAs = (role) =>
    signIn(config, role).catch((error) => signInScreen(main, signInAs, `Sign-in could not start: ${error.message}`));

  if (params.has('error')) {
    // the authorization server said no (the user cancelled, or the client is not allowed)
    const why = params.get('error_description') || params.get('error');
    history.replaceState(null, '', window.location.pathname);
    signInScreen(main, signInAs, `You are not signed in: ${why}.`);
    return;
  }
  if (params.has('launch') && params.has('iss')) {
    show(main, h('p', { class: 'status', text: 'Starting from your record system…' }));
    try {
      await launchFromEhr(config, params);
    } catch (error) {
      signInScreen(main, signInAs, error.message);
    }
    return;
  }
  if (!isRedirectBack(params) && !hasStoredSession()) {
    const ended = sessionStorage.getItem(ENDED);
    sessionStorage.removeItem(ENDED);
    signInScreen(main, signInAs, ended ? 'Your sign-in has ended. Please sign in again to continue.' : undefined);
    focusHeading(main);
    return;
  }
  show(main, h('p', { class: 'status', text: 'Signing you in…' }));
  // a stored session resumes from a clean URL: the authorization server's extra answer
  // parameters (Keycloak adds iss and session_state) would read as a new launch
  if (!isRedirectBack(params)) history.replaceState(null, '', window.location.pathname + window.location.hash);
  let client;
  let returnTo = '';
  try {
    ({ client, returnTo } = await completeSignIn());
    history.replaceState(null, '', window.location.pathname + window.location.hash);
  } catch (error) {
    sessionStorage.clear();
    signInScreen(main, signInAs, `Sign-in did not complete: ${error.message}`);
    return;
  }
  run(config, client, returnTo, signInAs);
}

function run(config, client, returnTo, signInAs) {
  sessionStorage.removeItem(ENDED);
  const user = userOf(client);
  const leaving = [];
  /** @type {import('./shell.js').App} */
  const app = {
    config,
    client,
    user,
    gateway: new Gateway(() => accessToken(client)),
    origins: [window.location.origin, ...(config.imagingOrigins || [])],
    main,
    cache: new Map(),
    signOut: () => signOut(config, client),
    signInAgain: () => {
      sessionStorage.clear();
      signInAs(user.patientId ? 'patient' : 'clinician');
    },
    onLeave: (cleanup) => leaving.push(cleanup),
  };
  showAccount(app);

  const route = async () => {
    for (const cleanup of leaving.splice(0)) cleanup();
    const [path, query = ''] = window.location.hash.replace(/^#/, '').split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'p' && parts[1]) {
      if (parts[2] === 's' && parts[3] && parts[4] === 'series' && parts[5]) {
        await seriesScreen(app, parts[1], parts[3], parts[5]);
      } else if (parts[2] === 's' && parts[3]) {
        await studyScreen(app, parts[1], parts[3]);
      } else {
        await studyListScreen(app, parts[1]);
      }
    } else if (parts[0] === 'patients' || !user.patientId) {
      patientsScreen(app, new URLSearchParams(query).get('q') || '');
    } else {
      window.location.replace(`#/p/${encodeURIComponent(user.patientId)}`);
      return;
    }
    focusHeading(main);
  };
  window.addEventListener('hashchange', route);
  if (returnTo && returnTo !== window.location.hash) window.location.hash = returnTo;
  else route();
}

/** Who is signed in, and the way out, in the header. */
function showAccount(app) {
  const { user } = app;
  const kind = user.patientId ? 'patient' : 'clinician';
  // a clinician's fhirUser (Practitioner/...) names them; a patient's FHIR id would not
  const who = user.name || (user.patientId ? '' : user.fhirUser);
  show(
    account,
    !user.patientId ? h('a', { href: '#/patients', text: 'Find a patient' }) : null,
    h('span', { class: 'who', text: who ? `Signed in as ${who} (${kind})` : `Signed in (${kind})` }),
    h('button', { type: 'button', class: 'quiet', onclick: () => app.signOut(), text: 'Sign out' }),
  );
}

// the skip link moves focus without touching the fragment (the fragment is the screen)
document.querySelector('.skip')?.addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
start();
