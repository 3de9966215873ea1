/** What every screen shares: the header, breadcrumbs, loading and error states. */
import { h } from './dom.js';
import { NotAvailable, SignedOut, Unreachable } from './errors.js';

/**
 * @typedef {object} App
 * @property {{fhirBaseUrl: string, issuer: string, clientId: string, imagingOrigins: string[]}} config
 * @property {any} client fhirclient's Client
 * @property {{patientId: string|null, fhirUser: string, name: string}} user
 * @property {import('./imaging.js').Gateway} gateway
 * @property {string[]} origins where the token may be sent for images
 * @property {HTMLElement} main
 * @property {() => void} signOut
 * @property {() => void} signInAgain
 * @property {(cleanup: () => void) => void} onLeave run when the screen changes
 * @property {Map<string, Promise<any>>} cache per patient: their studies
 */

/** Set when the page told the user their sign-in ended. */
export const ENDED = 'viewer.signInEnded';

/** @param {{label: string, href?: string}[]} trail */
export function breadcrumbs(trail) {
  return h(
    'nav',
    { class: 'crumbs', 'aria-label': 'Where you are' },
    h(
      'ol',
      {},
      trail.map((step, i) =>
        h(
          'li',
          {},
          step.href && i < trail.length - 1
            ? h('a', { href: step.href, text: step.label })
            : h('span', { 'aria-current': i === trail.length - 1 ? 'page' : false, text: step.label }),
        ),
      ),
    ),
  );
}

/** @param {string} text */
export function loading(text) {
  return h('p', { class: 'status loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

/**
 * The message for an error, with what the user can do about it.
 * @param {App} app @param {any} error @param {{retry?: () => void, back?: {label: string, href: string}}} [next]
 */
export function problem(app, error, next = {}) {
  const back = next.back ? h('a', { class: 'button', href: next.back.href, text: next.back.label }) : null;
  if (error instanceof SignedOut) {
    sessionStorage.setItem(ENDED, '1'); // a reload then says why it shows the sign-in page
    return h(
      'section',
      { class: 'problem', role: 'alert' },
      h('h2', { text: 'Please sign in again' }),
      h('p', { text: 'Your sign-in has ended (it lasts a limited time) or was not accepted. Nothing is shown without it.' }),
      h('button', { type: 'button', class: 'primary', onclick: () => app.signInAgain(), text: 'Sign in again' }),
    );
  }
  if (error instanceof NotAvailable) {
    return h(
      'section',
      { class: 'problem', role: 'alert' },
      h('h2', { text: 'Not available to you' }),
      h('p', { text: error.message }),
      h('p', {
        text: 'Your account does not give access to it, or it does not exist. If you think you should see it, ask the team that gave you access.',
      }),
      back,
    );
  }
  const retry = next.retry ? h('button', { type: 'button', onclick: next.retry, text: 'Try again' }) : null;
  return h(
    'section',
    { class: 'problem', role: 'alert' },
    h('h2', { text: error instanceof Unreachable ? 'The server cannot be reached' : 'Something went wrong' }),
    h('p', { text: error?.message || String(error) }),
    retry,
    back,
  );
}

/** A labelled count: "1 series", "3 images", "— images" when unknown. */
export function counted(n, one, many) {
  if (n === null || n === undefined) return `? ${many}`;
  return `${n} ${n === 1 ? one : many}`;
}
