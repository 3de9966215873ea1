/** The operator page's screens besides the dashboard: sign-in, and an account without the role. */
import { h, show } from '../dom.js';

/**
 * @param {HTMLElement} main
 * @param {() => void} signIn
 * @param {string} [message] why the operator is here again
 */
export function signInScreen(main, signIn, message) {
  show(
    main,
    h(
      'section',
      { class: 'signin' },
      h('h1', { text: 'Imaging sync: operator page' }),
      h('p', {
        class: 'lead',
        text: 'Whether FHIR shows what the PACS holds: the sync queue, failed syncs to retry, patients recorded twice, and for any patient or study what each side has and why they differ.',
      }),
      message ? h('p', { class: 'problem', role: 'alert', text: message }) : null,
      h(
        'div',
        { class: 'choice' },
        h('p', { text: 'For accounts with the imaging-operator role.' }),
        h('button', { type: 'button', class: 'primary', onclick: signIn, text: 'Sign in as an operator' }),
      ),
      h('p', {
        class: 'note',
        text: 'You sign in on the hospital’s sign-in page; this page never sees your password. It forgets your sign-in when you close the tab or sign out. Patients are shown by their FHIR id only.',
      }),
    ),
  );
}

/**
 * Signed in, but the account has no imaging-operator role (403).
 * @param {HTMLElement} main
 * @param {{name: string, fhirUser: string}} user
 * @param {() => void} signOut
 */
export function noRoleScreen(main, user, signOut) {
  show(
    main,
    h(
      'section',
      { class: 'signin' },
      h('h1', { text: 'Imaging sync: operator page' }),
      h(
        'section',
        { class: 'problem', role: 'alert' },
        h('h2', { text: 'Your account has no operator role' }),
        h('p', {
          text: `You are signed in${user.name || user.fhirUser ? ` as ${user.name || user.fhirUser}` : ''}, but this page is for accounts with the imaging-operator role, and yours does not have it. Ask whoever manages accounts on the sign-in server to add the role, or sign out and sign in with an operator account.`,
        }),
        h('button', { type: 'button', class: 'primary', onclick: signOut, text: 'Sign out' }),
      ),
      h('p', { class: 'note' }, 'Looking for a patient’s images? ', h('a', { href: '../viewer/', text: 'Open the imaging viewer' }), '.'),
    ),
  );
}
