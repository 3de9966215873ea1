/**
 * The lookup: a Patient id or a StudyInstanceUID, what the PACS and FHIR each have side by
 * side, the state of each study and why, and one button to re-sync the Patient. While a
 * sync of it is owed (after Re-sync or Retry) the answer is checked again every few seconds.
 */
import { h, show } from '../dom.js';
import { Refused } from './api.js';
import { askedBy, counts, idOf, OUTCOMES, parseLookup, plural, QUEUE_STATES, stateLabel, stateTone, when } from './format.js';
import { showIfChanged } from './patch.js';

const FOLLOW_MS = 3000; // how often an owed sync is checked
const FOLLOW_FOR_MS = 120_000; // and for how long at most after an action

/**
 * The lookup section: its form and its answer.
 * @param {any} app the operator page (main.js)
 */
export function lookupSection(app) {
  const input = h('input', {
    id: 'lookup-query',
    type: 'search',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'lookup-help',
  });
  const answer = h('div', { class: 'lookup-answer', tabindex: '-1' });
  const form = h(
    'form',
    {
      class: 'search',
      role: 'search',
      onsubmit: (event) => {
        event.preventDefault();
        const what = parseLookup(input.value);
        if (!what) {
          show(answer, h('p', { class: 'problem', role: 'alert', text: 'Type a Patient id (such as 1002 or Patient/1002) or a StudyInstanceUID (digits and dots).' }));
          return;
        }
        const target = `#/${what.kind}/${encodeURIComponent(what.value)}`;
        if (window.location.hash === target) section.open(what, { fresh: true });
        else window.location.hash = target;
      },
    },
    h('label', { for: 'lookup-query', text: 'Patient id or StudyInstanceUID' }),
    h('div', { class: 'row' }, input, h('button', { type: 'submit', class: 'primary', text: 'Look up' })),
    h('p', {
      id: 'lookup-help',
      class: 'hint',
      text: 'Shows what the PACS and FHIR each have, side by side, and why they differ. A Patient id is the FHIR id (1002 or Patient/1002); a StudyInstanceUID is digits and dots.',
    }),
  );
  const element = h('section', { class: 'panel', id: 'lookup', 'aria-labelledby': 'lookup-title' }, h('h2', { id: 'lookup-title', text: 'Look up a patient or a study' }), form, answer);

  let timer = 0;
  let followUntil = 0; // after an action: follow the sync until it has run, at most this long
  let sawBusy = false;
  let lastState = '';
  /** @type {{kind: 'patient'|'study', value: string}|null} */
  let current = null;

  const section = {
    element,
    /** @param {{kind: 'patient'|'study', value: string}} what @param {{fresh?: boolean, follow?: boolean}} [how] */
    async open(what, how = {}) {
      const same = current && current.kind === what.kind && current.value === what.value;
      if (!same) lastState = '';
      current = what;
      input.value = what.kind === 'patient' ? `Patient/${what.value}` : what.value;
      if (how.follow) startFollowing();
      if (!same || how.fresh) {
        answer.dataset.print = '';
        show(answer, h('p', { class: 'status loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), `Looking up ${label(what)}…`));
      }
      await load(!same || how.fresh);
    },
    close() {
      current = null;
      clearTimeout(timer);
      answer.dataset.print = '';
      show(answer);
    },
    /** after Retry on the overview: show this patient and follow its sync */
    follow(patientId) {
      startFollowing();
      const target = `#/patient/${encodeURIComponent(patientId)}`;
      if (window.location.hash === target) section.open({ kind: 'patient', value: patientId });
      else window.location.hash = target;
    },
  };

  function startFollowing() {
    followUntil = Date.now() + FOLLOW_FOR_MS;
    sawBusy = false;
  }

  async function load(focus) {
    clearTimeout(timer);
    const what = current;
    if (!what) return;
    let data;
    try {
      data = await app.api.lookup(what);
    } catch (error) {
      if (current !== what) return;
      if (!app.handle(error)) {
        answer.dataset.print = '';
        // an operator often has the medical record number, not the FHIR id: say where the id is
        const hint =
          what.kind === 'patient' && error instanceof Refused && error.status === 404
            ? h('p', {
                class: 'hint',
                text: 'The lookup takes the FHIR id of a Patient, not a medical record number. Find the id on the FHIR server (Patient?identifier=system|value) or in the imaging viewer’s patient search (“record …”), or look up a StudyInstanceUID.',
              })
            : null;
        show(answer, h('div', { class: 'problem', role: 'alert' }, h('h3', { text: `Could not look up ${label(what)}` }), h('p', { text: error.message }), hint));
      }
      return;
    }
    if (current !== what) return;
    const busy = ['queued', 'running', 'retrying'].includes(data.sync?.state);
    if (busy) sawBusy = true;
    else if (sawBusy) followUntil = 0; // it ran: nothing more to follow
    const following = busy || Date.now() < followUntil;
    const syncState = data.sync?.state || '';
    if (lastState && syncState !== lastState) app.refreshOverview(); // the queue changed too
    lastState = syncState;
    showIfChanged(answer, { data, following }, () =>
      what.kind === 'patient' ? patientAnswer(app, data, section, following) : studyAnswer(app, data, section, following),
    );
    if (focus) answer.focus();
    if (following) timer = window.setTimeout(() => load(false), FOLLOW_MS);
  }

  section.refresh = () => load(false);
  return section;
}

function label(what) {
  return what.kind === 'patient' ? `Patient/${what.value}` : `study ${what.value}`;
}

/** A link that opens the lookup of a Patient. */
export function patientLink(reference) {
  const id = idOf(reference);
  return h('a', { href: `#/patient/${encodeURIComponent(id)}`, class: 'ref', text: `Patient/${id}` });
}

function resyncButton(app, patientId, lookup) {
  const note = h('span', { class: 'hint', role: 'status' });
  const button = h('button', {
    type: 'button',
    class: 'primary',
    'data-focus-key': `resync:${patientId}`,
    text: 'Re-sync this patient',
    onclick: async () => {
      button.disabled = true;
      note.textContent = 'Asking…';
      try {
        const done = await app.api.resync(patientId);
        note.textContent = done.decision === 'coalesced' ? 'A sync was already owed; it covers this.' : 'Queued.';
        app.announce(`Re-sync of Patient/${patientId} queued.`);
        await lookup.open({ kind: 'patient', value: patientId }, { follow: true });
        app.refreshOverview();
      } catch (error) {
        if (!app.handle(error)) note.textContent = error instanceof Refused ? error.message : `Failed: ${error.message}`;
      } finally {
        button.disabled = false;
      }
    },
  });
  return h('span', { class: 'action' }, button, note);
}

function syncFacts(sync) {
  if (!sync) return 'No sync of this Patient has been asked for since the queue was created.';
  const parts = [QUEUE_STATES[sync.state] || sync.state];
  if (sync.outcome) parts.push(`last: ${OUTCOMES[sync.outcome] || sync.outcome}${sync.finishedAt ? ` at ${when(sync.finishedAt)}` : ''}`);
  if (sync.attempts) parts.push(plural(sync.attempts, 'failed attempt'));
  if (sync.trigger) parts.push(`asked by ${askedBy(sync.trigger)}`);
  return parts.join(' · ');
}

function followingNote(following) {
  return following ? h('p', { class: 'hint following', text: `Following this sync: checked again every ${FOLLOW_MS / 1000} s.` }) : null;
}

function patientAnswer(app, data, lookup, following) {
  const id = idOf(data.patient);
  const studies = data.studies || [];
  const byState = Object.entries(data.counts || {}).map(([state, n]) => `${n} ${stateLabel(state).replace(/^[A-Z](?=[a-z])/, (c) => c.toLowerCase())}`);
  return h(
    'article',
    { class: 'answer', 'aria-labelledby': 'answer-title' },
    h('div', { class: 'answer-head' }, h('h3', { id: 'answer-title', text: data.patient }), resyncButton(app, id, lookup)),
    h(
      'dl',
      { class: 'facts-list' },
      h('dt', { text: 'PACS patients' }),
      h('dd', {
        text: data.pacsPatients?.length
          ? data.pacsPatients.map((p) => `PACS ${p.pacs} (identifier system ${p.system || 'none'})`).join('; ')
          : 'None: no identifier of this Patient maps to a PACS, so nothing is fetched for it.',
      }),
      h('dt', { text: 'Sync' }),
      h('dd', { text: syncFacts(data.sync) }),
      data.sync?.lastError ? [h('dt', { text: 'Last error' }), h('dd', { class: 'error-text', text: data.sync.lastError })] : null,
      data.refusedIdentifiers?.length ? [h('dt', { text: 'Identifiers not used' }), h('dd', { text: data.refusedIdentifiers.join('; ') })] : null,
    ),
    (data.conflicts || []).length
      ? h(
          'div',
          { class: 'problem' },
          h('h4', { text: 'Identity conflict' }),
          h(
            'p',
            {},
            `${data.patient} and `,
            data.conflicts.map((c, i) => [i ? ', ' : '', patientLink(c.patient), ` (PACS ${c.pacs.join(', ')})`]),
            ' carry identifiers of the same PACS patient. Nothing is written for either until this is resolved on the FHIR server: merge the records, retire the wrong identifier (use = old), or correct it. Then re-sync.',
          ),
        )
      : null,
    (data.unreachable || []).map((u) => h('p', { class: 'problem', text: `PACS ${u.pacs} did not answer: ${u.reason}` })),
    h('p', { class: 'counts', text: studies.length ? `${plural(studies.length, 'study', 'studies')}: ${byState.join(', ')}.` : 'No study in any PACS or in FHIR for this Patient.' }),
    studies.length ? sideBySide(studies) : null,
    followingNote(following),
  );
}

function studyAnswer(app, data, lookup, following) {
  const patients = data.patients || [];
  const focus = data.patient ? idOf(data.patient) : null;
  return h(
    'article',
    { class: 'answer', 'aria-labelledby': 'answer-title' },
    h('div', { class: 'answer-head' }, h('h3', { id: 'answer-title', class: 'uid', text: `Study ${data.studyInstanceUid}` }), focus ? resyncButton(app, focus, lookup) : null),
    h(
      'dl',
      { class: 'facts-list' },
      h('dt', { text: 'Filed under' }),
      h(
        'dd',
        {},
        patients.length
          ? patients.map((p, i) => [i ? ', ' : '', patientLink(p)])
          : (data.unreachable || []).length
            ? 'unknown: a PACS did not answer'
            : 'no Patient whose identifiers name its PACS patient',
      ),
      data.patient ? [h('dt', { text: 'Sync of' }), h('dd', {}, patientLink(data.patient), ` · ${syncFacts(data.sync)}`)] : null,
      data.sync?.lastError ? [h('dt', { text: 'Last error' }), h('dd', { class: 'error-text', text: data.sync.lastError })] : null,
    ),
    (data.unreachable || []).map((u) => h('p', { class: 'problem', text: `PACS ${u.pacs} did not answer: ${u.reason}` })),
    sideBySide([data]),
    followingNote(following),
  );
}

/** PACS and FHIR side by side, one row per study, with its state and why. */
export function sideBySide(studies) {
  const cell = (label, ...content) => h('td', { dataset: { label } }, h('div', {}, ...content));
  return h(
    'table',
    { class: 'grid side-by-side' },
    h('caption', { class: 'visually-hidden', text: 'Each study in the PACS and in FHIR, and its state' }),
    h('thead', {}, h('tr', {}, ['Study (StudyInstanceUID)', 'In the PACS', 'In FHIR', 'State and why'].map((t) => h('th', { scope: 'col', text: t })))),
    h(
      'tbody',
      {},
      studies.map((s) =>
        h(
          'tr',
          { dataset: { uid: s.studyInstanceUid, state: s.state } },
          cell('Study', h('a', { class: 'uid', href: `#/study/${encodeURIComponent(s.studyInstanceUid)}`, text: s.studyInstanceUid })),
          cell(
            'In the PACS',
            s.pacs?.length
              ? s.pacs.map((p) => h('div', { text: `${p.pacs}: ${counts(p.series, p.instances)}` }))
              : h('span', { class: 'none', text: s.state === 'pacs-unreachable' ? 'unknown: no answer' : 'not there' }),
          ),
          cell(
            'In FHIR',
            s.fhir
              ? [
                  h('div', { text: `${s.fhir.status || 'no status'}: ${counts(s.fhir.series, s.fhir.instances)}` }),
                  s.fhir.subject ? h('div', { class: 'hint' }, 'subject ', patientLink(s.fhir.subject)) : null,
                  h('div', { class: 'hint', text: `written ${when(s.fhir.lastUpdated)}` }),
                ]
              : h('span', { class: 'none', text: 'not there' }),
          ),
          cell('State', h('span', { class: `badge ${stateTone(s.state)}`, text: stateLabel(s.state) }), h('p', { class: 'why', text: s.explanation })),
        ),
      ),
    ),
  );
}
