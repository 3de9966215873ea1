/** The first screen: what this is, and two ways in. */
import { h, show } from '../dom.js';

/**
 * @param {HTMLElement} main
 * @param {(role: 'patient'|'clinician') => void} signIn
 * @param {string} [message] why the user is here again (an error from the sign-in)
 */
export function signInScreen(main, signIn, message) {
  show(
    main,
    h(
      'section',
      { class: 'signin' },
      h('h1', { text: 'Imaging viewer' }),
      h('p', {
        class: 'lead',
        text: 'See the X-ray, CT, MR, ultrasound and other medical images stored for a patient: each study with its date, type and description, and every image in it.',
      }),
      message ? h('p', { class: 'problem', role: 'alert', text: message }) : null,
      h(
        'div',
        { class: 'choices' },
        h(
          'section',
          { class: 'choice' },
          h('h2', { text: 'Patients' }),
          h('p', { text: 'See your own images.' }),
          h('button', { type: 'button', class: 'primary', onclick: () => signIn('patient'), text: 'Sign in as a patient' }),
        ),
        h(
          'section',
          { class: 'choice' },
          h('h2', { text: 'Clinicians' }),
          h('p', { text: 'Find a patient by name or identifier, then see their images.' }),
          h('button', { type: 'button', class: 'primary', onclick: () => signIn('clinician'), text: 'Sign in as a clinician' }),
        ),
      ),
      h('p', {
        class: 'note',
        text: 'You sign in on the hospital’s sign-in page; this viewer never sees your password. It shows only what your account is allowed to see, and forgets your sign-in when you close the tab or sign out.',
      }),
    ),
  );
}
