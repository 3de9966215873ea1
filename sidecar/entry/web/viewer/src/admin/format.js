/**
 * The operator page's words for what the sidecar's operator API answers (pure: no DOM, no
 * network; node --test covers them). The API's states and fields: docs/operator.md.
 */

/** What each study state is called on the page, and how it is shown (ok, wait, bad, gone). */
export const STATES = {
  'up-to-date': { label: 'Up to date', tone: 'ok' },
  'out-of-date': { label: 'Out of date', tone: 'wait' },
  'identity-conflict': { label: 'Identity conflict', tone: 'bad' },
  'sync-failed': { label: 'Sync failed', tone: 'bad' },
  'sync-pending': { label: 'Sync queued', tone: 'wait' },
  'stored-elsewhere': { label: 'Under another patient', tone: 'bad' },
  'not-synced': { label: 'Not synced yet', tone: 'wait' },
  withdrawn: { label: 'Withdrawn', tone: 'gone' },
  'to-withdraw': { label: 'To be withdrawn', tone: 'wait' },
  'pacs-unreachable': { label: 'PACS not answering', tone: 'bad' },
  'no-patient': { label: 'No matching patient', tone: 'bad' },
  'not-found': { label: 'Not found', tone: 'gone' },
};

/** @param {string} state */
export function stateLabel(state) {
  return STATES[state]?.label || state;
}

/** @param {string} state */
export function stateTone(state) {
  return STATES[state]?.tone || 'wait';
}

/** What the sync of one patient is doing, in words. */
export const QUEUE_STATES = {
  idle: 'Idle',
  queued: 'Queued',
  running: 'Running',
  retrying: 'Retrying',
  dead: 'Failed (dead letter)',
};

/** The last outcome of a patient's sync, in words. */
export const OUTCOMES = {
  synced: 'synced',
  conflict: 'refused: identity conflict',
  'no-identifier': 'nothing to ask the PACS (no mapped identifier)',
  inactive: 'skipped: the Patient is inactive',
  merged: 'skipped: the Patient was merged into another',
  deleted: 'the Patient was deleted',
  failed: 'failed',
};

/**
 * A time for the page: "14:03:21" today, "3 Jun 14:03" another day; "—" for none.
 * @param {string|null|undefined} iso @param {Date} [now]
 */
export function when(iso, now = new Date()) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const sameDay = date.toDateString() === now.toDateString();
  const time = date.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: sameDay ? '2-digit' : undefined });
  if (sameDay) return time;
  const day = date.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: date.getFullYear() === now.getFullYear() ? undefined : 'numeric' });
  return `${day} ${time}`;
}

/** "1 series, 12 instances" (unknown counts as "?"). */
export function counts(series, instances) {
  const n = (v) => (v === null || v === undefined ? '?' : String(v));
  return `${n(series)} series, ${n(instances)} ${instances === 1 ? 'instance' : 'instances'}`;
}

/** "2 studies" */
export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * The headline of the queue: what needs an operator first.
 * @param {{pending: number, queued: number, running: number, dead: number, conflict: number, scheduled: number}} queue
 */
export function queueHeadline(queue) {
  const problems = [];
  if (queue.dead) problems.push(plural(queue.dead, 'dead letter'));
  if (queue.conflict) problems.push(plural(queue.conflict, 'identity conflict'));
  const work = queue.pending ? `${plural(queue.pending, 'sync')} owed (${queue.running} running)` : 'nothing owed';
  if (problems.length) return `Needs attention: ${problems.join(', ')}; ${work}.`;
  // a sync waiting to be retried failed: not "all clear" (the error is in its row below)
  if (queue.scheduled) return `Retrying: ${plural(queue.scheduled, 'sync')} failed and will be tried again; ${work}.`;
  return `All clear: ${work}.`;
}

/** The headline's tone: bad (needs an operator), wait (retries after errors), ok. */
export function queueTone(queue) {
  if (queue.dead || queue.conflict) return 'bad';
  return queue.scheduled ? 'wait' : 'ok';
}

/**
 * A trigger's lag in words ("3 changes behind", "up to date"), or "—" when not measured.
 * @param {{lag: number|null, lagUnit: string|null}} trigger
 */
export function lagText(trigger) {
  if (trigger.lag === null || trigger.lag === undefined) return '—';
  if (Number(trigger.lag) === 0) return 'up to date';
  const unit = trigger.lagUnit || '';
  const value = unit === 'seconds' ? `${Math.round(trigger.lag)} s` : `${trigger.lag} ${unit}`.trim();
  return `${value} behind`;
}

/**
 * A trigger's cursor as the operator reads it: a time ("14:03:21") when it is one (an ISO
 * date, or epoch seconds), else as stored (a change log's sequence number); "—" for none.
 * @param {string|null|undefined} cursor @param {Date} [now]
 */
export function cursorText(cursor, now = new Date()) {
  if (cursor === null || cursor === undefined || cursor === '') return '—';
  const text = String(cursor);
  if (/^\d{4}-\d{2}-\d{2}T/.test(text)) return when(text, now);
  if (/^\d{10}(\.\d+)?$/.test(text)) return when(new Date(Number(text) * 1000).toISOString(), now);
  return text;
}

/**
 * Who asked for a sync, as the ledger records it: a trigger's name, or ``update``/``delete``
 * for the FHIR Subscription's notifications.
 * @param {string|null|undefined} reason
 */
export function askedBy(reason) {
  if (!reason) return '—';
  if (reason === 'update') return 'notify (Patient changed)';
  if (reason === 'delete') return 'notify (Patient deleted)';
  return reason;
}

/** What a trigger's name means, for the operator. */
export function triggerMeaning(name) {
  const [kind, pacs] = name.split(':');
  const described = {
    notify: 'FHIR Subscription: a Patient was created or changed',
    operator: 'an operator asked (this page)',
    manual: 'dicom-fhir jobs sync',
    'follow-up': 'a merge’s surviving Patient',
    changes: `PACS ${pacs || ''} change log: new or changed studies`.replace('  ', ' '),
    recent: `PACS ${pacs || ''}: studies received recently (QIDO poll)`.replace('  ', ' '),
    sweep: `PACS ${pacs || ''}: stored studies checked against the PACS`.replace('  ', ' '),
    'catch-up': 'Patients changed while notifications were missed',
    resync: 'every Patient again, periodically',
    audit: 'AuditEvents of image access written to FHIR (no syncs; lag: events waiting)',
  };
  return described[kind] || '';
}

/**
 * What the operator typed in the lookup box: a Patient id (also "Patient/123"), or a
 * StudyInstanceUID (digits and dots with at least one dot); null when it is neither.
 * @param {string} text
 * @returns {{kind: 'patient'|'study', value: string}|null}
 */
export function parseLookup(text) {
  const value = String(text || '').trim().replace(/^urn:oid:/, '');
  if (!value) return null;
  if (/^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(value)) return { kind: 'patient', value: value.slice(8) };
  if (/^\d+(\.\d+)+$/.test(value) && value.length <= 64) return { kind: 'study', value };
  if (/^[A-Za-z0-9\-.]{1,64}$/.test(value)) return { kind: 'patient', value };
  return null;
}

/** The id of a "Patient/123" reference ("123"). */
export function idOf(reference) {
  return String(reference || '').split('/').pop();
}

/**
 * A stable text for a piece of data: a section re-renders only when it changes, so the
 * page does not flicker and keeps the keyboard focus between refreshes.
 */
export function fingerprint(value) {
  return JSON.stringify(value);
}
