/** A patient's imaging studies, newest first. */
import { h, show } from '../dom.js';
import { readPatient, studiesOf } from '../fhir.js';
import { breadcrumbs, counted, loading, problem } from '../shell.js';
import { displayDate, instanceCounts, patientName } from '../studies.js';

/**
 * The patient's studies, read once per visit of the list and kept for the screens below it.
 * @param {import('../shell.js').App} app @param {string} patientId @param {boolean} [fresh]
 */
export function studiesCached(app, patientId, fresh = false) {
  if (fresh || !app.cache.has(patientId)) {
    const reading = studiesOf(app.client, patientId);
    reading.catch(() => app.cache.delete(patientId));
    app.cache.set(patientId, reading);
  }
  return app.cache.get(patientId);
}

/** The patient's name for headings (the id when it cannot be read). */
export async function patientLabel(app, patientId) {
  const key = `patient:${patientId}`;
  if (!app.cache.has(key)) {
    app.cache.set(
      key,
      readPatient(app.client, patientId).then(
        (p) => ({ name: patientName(p) || `Patient ${patientId}`, birthDate: p.birthDate || '' }),
        () => ({ name: `Patient ${patientId}`, birthDate: '' }),
      ),
    );
  }
  return app.cache.get(key);
}

/** The breadcrumb trail down to a patient. */
export function patientTrail(app, patientId, name) {
  const mine = app.user.patientId;
  const start = mine
    ? { label: 'Your imaging', href: `#/p/${encodeURIComponent(mine)}` }
    : { label: 'Find a patient', href: '#/patients' };
  if (mine === patientId) return [start];
  return [start, { label: name, href: `#/p/${encodeURIComponent(patientId)}` }];
}

/** @param {import('../shell.js').App} app @param {string} patientId */
export async function studyListScreen(app, patientId) {
  const own = app.user.patientId === patientId;
  const heading = h('h1', { text: own ? 'Your imaging studies' : 'Imaging studies' });
  const who = h('p', { class: 'patient-line', text: ' ' });
  const body = h('div', { class: 'study-list', 'aria-busy': 'true' }, loading('Loading imaging studies…'));
  const refresh = h('button', { type: 'button', class: 'quiet', text: 'Refresh' });
  const crumbs = h('div');
  show(app.main, crumbs, h('div', { class: 'title-row' }, heading, refresh), who, body);

  patientLabel(app, patientId).then((p) => {
    show(crumbs, breadcrumbs(patientTrail(app, patientId, p.name)));
    who.textContent = [p.name, p.birthDate ? `born ${p.birthDate}` : ''].filter(Boolean).join(' · ');
  });

  const load = async (fresh) => {
    body.setAttribute('aria-busy', 'true');
    show(body, loading('Loading imaging studies…'));
    try {
      const studies = await studiesCached(app, patientId, fresh);
      show(body, studies.length ? studyTable(patientId, studies) : empty(own, patientId));
    } catch (error) {
      show(body, problem(app, error, { retry: () => load(true) }));
    } finally {
      body.setAttribute('aria-busy', 'false');
    }
  };
  refresh.addEventListener('click', () => load(true));
  await load(true);
}

function empty(own, patientId) {
  return h(
    'div',
    { class: 'empty' },
    h('h2', { text: 'No imaging for this patient' }),
    h('p', {
      text: own
        ? 'There are no imaging studies in your record yet. Studies appear here once the hospital’s imaging archive has them.'
        : 'There are no imaging studies in this patient’s record that you can see.',
    }),
    // a clinician who expected images: a second record of the same person, or a sync that
    // did not run (the operator page answers why, by this record id)
    own
      ? null
      : h('p', {
          class: 'hint',
          text: `If you expected some: they may be filed under another record of this patient (search again by name), or not have reached this record yet; the imaging team can tell why from the record id (${patientId}).`,
        }),
  );
}

/** @param {string} patientId @param {import('../studies.js').Study[]} studies */
function studyTable(patientId, studies) {
  const cell = (label, ...content) => h('td', { dataset: { label } }, ...content);
  return h(
    'table',
    { class: 'studies' },
    h('caption', { text: `${counted(studies.length, 'study', 'studies')}, newest first. Choose one to see its series.` }),
    h(
      'thead',
      {},
      h('tr', {}, ['Date', 'Modality', 'Description', 'Body site', 'Series', 'Images'].map((t) => h('th', { scope: 'col', text: t }))),
    ),
    h(
      'tbody',
      {},
      studies.map((study) =>
        h(
          'tr',
          { dataset: { studyId: study.id, studyUid: study.uid } },
          cell('Date', displayDate(study.started)),
          cell('Modality', study.modalities.join(', ') || '—'),
          cell(
            'Description',
            h('a', {
              href: `#/p/${encodeURIComponent(patientId)}/s/${encodeURIComponent(study.id)}`,
              class: 'row-link',
              text: study.description || 'Study without description',
            }),
          ),
          cell('Body site', study.bodySites.join(', ') || '—'),
          cell('Series', study.numberOfSeries ?? '?'),
          cell('Images', instanceCounts(study).images ?? '?'),
        ),
      ),
    ),
  );
}
