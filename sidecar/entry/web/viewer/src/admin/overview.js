/**
 * The overview: the queue's counts, dead letters (each with Retry), identity conflicts (both
 * Patients named), syncs owed or running, and each trigger (last success, cursor, lag, last
 * error). Read again every few seconds; a part of the page changes only when its data did.
 */
import { h } from '../dom.js';
import { Refused } from './api.js';
import { askedBy, cursorText, idOf, lagText, QUEUE_STATES, queueHeadline, queueTone, triggerMeaning, when } from './format.js';
import { patientLink } from './lookup.js';
import { showIfChanged } from './patch.js';

/** A table cell labelled for phone width, its content in one box (the label is the other). */
const CELL = (label, ...content) => h('td', { dataset: { label } }, h('div', {}, ...content));

/** @param {string[]} titles */
function head(titles) {
  return h('thead', {}, h('tr', {}, titles.map((t) => h('th', { scope: 'col', text: t }))));
}

/** A section with a heading whose count follows the data. */
function section(id, title) {
  const heading = h('h2', { id: `${id}-title`, text: title });
  const body = h('div', { class: 'section-body' });
  const element = h('section', { class: 'panel', id, 'aria-labelledby': `${id}-title` }, heading, body);
  return { element, heading, body, title };
}

/**
 * @param {any} app
 * @param {{follow: (patientId: string) => void}} lookup
 */
export function overviewSections(app, lookup) {
  const summary = h('div', { class: 'summary' });
  const dead = section('dead-letters', 'Dead letters');
  const conflicts = section('conflicts', 'Identity conflicts');
  const pending = section('pending', 'Syncs owed or running');
  const triggers = section('triggers', 'Triggers');

  /** @param {any} data the overview answer */
  function update(data) {
    const changed = [
      showIfChanged(summary, data.queue, (queue) => summaryTiles(queue)),
      showIfChanged(dead.body, data.deadLetters, (rows) => deadLetters(app, rows, lookup)),
      showIfChanged(conflicts.body, data.conflicts, conflictTable),
      showIfChanged(pending.body, data.pending, pendingTable),
    ].some(Boolean);
    dead.heading.textContent = `${dead.title} (${data.deadLetters.length})`;
    conflicts.heading.textContent = `${conflicts.title} (${data.conflicts.length})`;
    pending.heading.textContent = `${pending.title} (${data.pending.length})`;
    showIfChanged(triggers.body, data.triggers, triggerTable);
    // the queue moved: the open lookup may now be stale (a conflict resolved, a sync ran)
    if (changed) lookup.refresh?.();
  }

  return {
    summary,
    sections: [dead.element, conflicts.element, pending.element, triggers.element],
    update,
  };
}

function summaryTiles(queue) {
  const tile = (n, label, tone) => h('div', { class: `tile ${n ? tone : ''}` }, h('span', { class: 'n', text: String(n) }), h('span', { class: 'what', text: label }));
  return [
    h('p', { class: `headline ${queueTone(queue)}`, text: queueHeadline(queue) }),
    h(
      'div',
      { class: 'tiles' },
      tile(queue.dead, 'dead letters', 'bad'),
      tile(queue.conflict, 'identity conflicts', 'bad'),
      tile(queue.pending, 'syncs owed', 'wait'),
      tile(queue.running, 'running now', 'wait'),
      tile(queue.scheduled, 'retries scheduled', 'wait'),
    ),
  ];
}

function deadLetters(app, rows, lookup) {
  if (!rows.length) return h('p', { class: 'empty', text: 'None: every sync finished or is still being retried.' });
  return [
    h('p', {
      class: 'hint',
      text: 'A dead letter is a Patient whose sync failed as many times as allowed. Fix the cause (the error says what failed), then Retry: the Patient is synced again and followed in the lookup above.',
    }),
    h(
      'table',
      { class: 'grid' },
      head(['Patient', 'Failed at', 'Attempts', 'Last error', 'Asked by', '']),
      h(
        'tbody',
        {},
        rows.map((r) =>
          h(
            'tr',
            { dataset: { patient: idOf(r.patient) } },
            CELL('Patient', patientLink(r.patient)),
            CELL('Failed at', when(r.finishedAt)),
            CELL('Attempts', String(r.attempts)),
            CELL('Last error', h('span', { class: 'error-text', text: r.lastError || '—' })),
            CELL('Asked by', askedBy(r.trigger)),
            CELL('', retryButton(app, idOf(r.patient), lookup)),
          ),
        ),
      ),
    ),
  ];
}

function retryButton(app, patientId, lookup) {
  const button = h('button', {
    type: 'button',
    class: 'primary',
    'data-focus-key': `retry:${patientId}`,
    'aria-label': `Retry the sync of Patient/${patientId}`,
    text: 'Retry',
    onclick: async () => {
      button.disabled = true;
      button.textContent = 'Retrying…';
      try {
        await app.api.retry(patientId);
        app.announce(`Patient/${patientId} is queued again; its sync is followed in the lookup.`);
        lookup.follow(patientId);
        app.refreshOverview();
      } catch (error) {
        if (!app.handle(error)) {
          button.disabled = false;
          button.textContent = 'Retry';
          app.announce(error instanceof Refused ? error.message : `Retry failed: ${error.message}`);
        }
      }
    },
  });
  return button;
}

function conflictTable(rows) {
  if (!rows.length) return h('p', { class: 'empty', text: 'None: no sync was refused because two Patients claim one PACS patient.' });
  return [
    h('p', {
      class: 'hint',
      text: 'Two Patients carry identifiers of the same PACS patient, so nothing is written for either. Resolve it on the FHIR server (merge the records, retire the wrong identifier with use = old, or correct it); the next change of the Patient, or Re-sync, syncs it again.',
    }),
    h(
      'table',
      { class: 'grid' },
      head(['Patient', 'Conflicts with', 'Refused at', 'Asked by']),
      h(
        'tbody',
        {},
        rows.map((r) =>
          h(
            'tr',
            { dataset: { patient: idOf(r.patient) } },
            CELL('Patient', patientLink(r.patient)),
            CELL('Conflicts with', r.conflictWith?.length ? r.conflictWith.map((p, i) => [i ? ', ' : '', patientLink(p)]) : r.detail || '—'),
            CELL('Refused at', when(r.finishedAt)),
            CELL('Asked by', askedBy(r.trigger)),
          ),
        ),
      ),
    ),
  ];
}

function pendingTable(rows) {
  if (!rows.length) return h('p', { class: 'empty', text: 'None: the queue is empty.' });
  return h(
    'table',
    { class: 'grid' },
    head(['Patient', 'State', 'Owed since', 'Failed attempts', 'Asked by', 'Last error']),
    h(
      'tbody',
      {},
      rows.map((r) =>
        h(
          'tr',
          { dataset: { patient: idOf(r.patient) } },
          CELL('Patient', patientLink(r.patient)),
          CELL('State', QUEUE_STATES[r.state] || r.state),
          CELL('Owed since', when(r.pendingSince)),
          CELL('Failed attempts', String(r.attempts)),
          CELL('Asked by', askedBy(r.trigger)),
          CELL('Last error', h('span', { class: 'error-text', text: r.lastError || '—' })),
        ),
      ),
    ),
  );
}

function triggerTable(rows) {
  const stepped = rows.filter((t) => t.kind === 'trigger');
  const sources = rows.filter((t) => t.kind === 'source');
  return [
    stepped.length
      ? h(
          'table',
          { class: 'grid' },
          head(['Trigger', 'Last success', 'Cursor', 'Lag', 'Last error', 'Syncs asked']),
          h(
            'tbody',
            {},
            stepped.map((t) =>
              h(
                'tr',
                { class: t.problem ? 'trouble' : '' },
                CELL('Trigger', h('div', { class: 'name', text: t.name }), h('div', { class: 'hint', text: triggerMeaning(t.name) })),
                CELL('Last success', when(t.lastSuccess)),
                CELL('Cursor', h('span', { class: 'cursor', title: t.cursor ?? '', text: cursorText(t.cursor) })),
                CELL('Lag', lagText(t)),
                CELL('Last error', t.problem ? h('span', { class: 'error-text', text: t.problem }) : '—'),
                CELL('Syncs asked', String(t.enqueued)),
              ),
            ),
          ),
        )
      : h('p', { class: 'empty', text: 'No trigger has run: the worker runs them (SIDECAR_TRIGGERS), or they are turned off.' }),
    sources.length
      ? h(
          'p',
          { class: 'hint' },
          'Syncs asked by other sources: ',
          sources.map((s, i) => [i ? '; ' : '', h('span', { title: triggerMeaning(s.name), text: `${s.name} ${s.enqueued}` })]),
          '.',
        )
      : null,
  ];
}
