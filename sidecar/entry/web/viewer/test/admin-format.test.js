import assert from 'node:assert/strict';
import { test } from 'node:test';
import { askedBy, counts, cursorText, idOf, lagText, parseLookup, queueHeadline, queueTone, stateLabel, stateTone, STATES, when } from '../src/admin/format.js';

test('a lookup box takes a Patient id, a Patient reference or a StudyInstanceUID', () => {
  assert.deepEqual(parseLookup(' 1002 '), { kind: 'patient', value: '1002' });
  assert.deepEqual(parseLookup('Patient/demo-a'), { kind: 'patient', value: 'demo-a' });
  assert.deepEqual(parseLookup('Patient/1.2'), { kind: 'patient', value: '1.2' });
  assert.deepEqual(parseLookup('2.25.1234'), { kind: 'study', value: '2.25.1234' });
  assert.deepEqual(parseLookup('urn:oid:1.2.3'), { kind: 'study', value: '1.2.3' });
  assert.equal(parseLookup(''), null);
  assert.equal(parseLookup('Doe, Jane'), null);
});

test('every state the sidecar explains has a label and a tone', () => {
  const explained = ['up-to-date', 'out-of-date', 'identity-conflict', 'sync-failed', 'sync-pending', 'stored-elsewhere',
    'not-synced', 'withdrawn', 'to-withdraw', 'pacs-unreachable', 'no-patient', 'not-found'];
  assert.deepEqual(Object.keys(STATES).sort(), [...explained].sort());
  assert.equal(stateLabel('identity-conflict'), 'Identity conflict');
  assert.equal(stateTone('up-to-date'), 'ok');
  assert.equal(stateTone('sync-failed'), 'bad');
});

test('the queue headline puts what needs an operator first', () => {
  const idle = { pending: 0, queued: 0, running: 0, dead: 0, conflict: 0, scheduled: 0 };
  assert.equal(queueHeadline(idle), 'All clear: nothing owed.');
  assert.equal(
    queueHeadline({ ...idle, dead: 1, conflict: 2, pending: 3, running: 1 }),
    'Needs attention: 1 dead letter, 2 identity conflicts; 3 syncs owed (1 running).',
  );
  // a retry after an error (the PACS is down) is not "all clear"
  const retrying = { ...idle, pending: 1, scheduled: 1 };
  assert.equal(queueHeadline(retrying), 'Retrying: 1 sync failed and will be tried again; 1 sync owed (0 running).');
  assert.equal(queueTone(retrying), 'wait');
  assert.equal(queueTone(idle), 'ok');
});

test('counts, lags, references and times in words', () => {
  assert.equal(counts(1, 1), '1 series, 1 instance');
  assert.equal(counts(null, 12), '? series, 12 instances');
  assert.equal(lagText({ lag: null, lagUnit: null }), '—');
  assert.equal(lagText({ lag: 0, lagUnit: 'changes' }), 'up to date');
  assert.equal(lagText({ lag: 3, lagUnit: 'changes' }), '3 changes behind');
  assert.equal(lagText({ lag: 12.4, lagUnit: 'seconds' }), '12 s behind');
  assert.equal(idOf('Patient/1002'), '1002');
  const now = new Date('2024-06-03T12:00:00');
  assert.equal(when(null, now), '—');
  assert.match(when(new Date('2024-06-03T09:05:07').toISOString(), now), /^09:05:07$/);
  assert.match(when(new Date('2024-06-01T09:05:07').toISOString(), now), /^1 Jun 09:05$/);
});

test('a cursor that is a time reads as one', () => {
  const now = new Date('2024-06-03T12:00:00');
  assert.equal(cursorText(null, now), '—');
  assert.equal(cursorText('328', now), '328');
  assert.match(cursorText(new Date('2024-06-03T09:05:07').toISOString(), now), /^09:05:07$/);
  assert.match(cursorText(String(new Date('2024-06-03T09:05:07').getTime() / 1000 + 0.25), now), /^09:05:07$/);
});

test('who asked for a sync', () => {
  assert.equal(askedBy('update'), 'notify (Patient changed)');
  assert.equal(askedBy('operator'), 'operator');
  assert.equal(askedBy(null), '—');
});
