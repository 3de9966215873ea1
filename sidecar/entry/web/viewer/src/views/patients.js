/** A clinician's patient picker: search by name or identifier, pick one. */
import { h, show } from '../dom.js';
import { classify } from '../errors.js';
import { findPatients } from '../fhir.js';
import { breadcrumbs, loading, problem } from '../shell.js';
import { patientName } from '../studies.js';

/** @param {import('../shell.js').App} app @param {string} query */
export function patientsScreen(app, query) {
  const input = h('input', {
    id: 'patient-query',
    type: 'search',
    name: 'q',
    value: query,
    autocomplete: 'off',
    required: true,
    'aria-describedby': 'patient-query-help',
  });
  const results = h('div', { class: 'results', 'aria-live': 'polite' });
  const form = h(
    'form',
    {
      class: 'search',
      role: 'search',
      onsubmit: (event) => {
        event.preventDefault();
        const q = input.value.trim();
        if (q) window.location.hash = `#/patients?q=${encodeURIComponent(q)}`;
      },
    },
    h('label', { for: 'patient-query', text: 'Name or identifier' }),
    h('div', { class: 'row' }, input, h('button', { type: 'submit', class: 'primary', text: 'Search' })),
    h('p', {
      id: 'patient-query-help',
      class: 'hint',
      text: 'A family or given name (the start is enough), or an identifier such as a medical record number (system|value also works).',
    }),
  );
  show(app.main, breadcrumbs([{ label: 'Find a patient' }]), h('h1', { text: 'Find a patient' }), form, results);
  if (!query) {
    input.focus();
    return;
  }
  const search = async () => {
    show(results, loading(`Searching for “${query}”…`));
    try {
      const patients = await findPatients(app.client, query);
      if (!patients.length) {
        show(results, h('p', { class: 'empty', text: `No patient you can see matches “${query}”.` }));
        return;
      }
      show(
        results,
        h('h2', { text: `${patients.length === 1 ? 'One patient' : `${patients.length} patients`} found` }),
        h('ul', { class: 'patients' }, patients.map(patientItem)),
      );
    } catch (error) {
      show(results, problem(app, classify(error, 'The patient search'), { retry: search }));
    }
  };
  search();
}

/** @param {any} patient */
function patientItem(patient) {
  const name = patientName(patient) || 'Name not recorded';
  // a retired identifier (use old) says so: two records of one person otherwise look the same
  const identifiers = (patient.identifier || [])
    .filter((i) => i.value)
    .map((i) => (i.use === 'old' ? `${i.value} (old)` : i.value));
  const facts = [
    patient.birthDate ? `born ${patient.birthDate}` : null,
    patient.gender || null,
    identifiers.length ? `ID ${identifiers.join(', ')}` : null,
    `record ${patient.id}`, // the FHIR id: tells duplicates apart, and what the operator page shows
  ].filter(Boolean);
  return h(
    'li',
    {},
    h(
      'a',
      { href: `#/p/${encodeURIComponent(patient.id)}`, class: 'card-link' },
      h('span', { class: 'name', text: name }),
      h('span', { class: 'facts', text: facts.join(' · ') }),
    ),
  );
}
