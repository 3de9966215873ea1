import assert from 'node:assert/strict';
import { test } from 'node:test';
import { displayDate, instanceCounts, isDocumentSeries, patientName, studiesFrom, studyUid, trustedRoots } from '../src/studies.js';

const endpoint = { resourceType: 'Endpoint', id: 'main', address: 'http://127.0.0.1:8090/dicomweb/main' };
const study = (id, started, extra = {}) => ({
  resourceType: 'ImagingStudy',
  id,
  identifier: [{ system: 'urn:dicom:uid', value: `urn:oid:1.2.${id.length}` }],
  started,
  endpoint: [{ reference: 'Endpoint/main' }],
  ...extra,
});

test('studies come newest first with their endpoints resolved from the _include', () => {
  const studies = studiesFrom([study('old', '2020-01-01'), endpoint, study('new', '2024-05-02T09:14:00+02:00')]);
  assert.deepEqual(studies.map((s) => s.id), ['new', 'old']);
  assert.deepEqual(studies[0].roots, ['http://127.0.0.1:8090/dicomweb/main']);
});

test('series are ordered by number and carry modality, body site and instances', () => {
  const [s] = studiesFrom([
    study('s', '2024-01-01', {
      modality: [{ code: 'CT' }],
      numberOfSeries: 2,
      numberOfInstances: 3,
      series: [
        { uid: '2', number: 2, modality: { code: 'CT' }, bodySite: { code: '51185008', display: 'Chest' }, numberOfInstances: 2,
          instance: [{ uid: '2.2', number: 2 }, { uid: '2.1', number: 1 }] },
        { uid: '1', number: 1, modality: { code: 'CT' }, numberOfInstances: 1 },
      ],
    }),
  ]);
  assert.deepEqual(s.series.map((x) => x.uid), ['1', '2']);
  assert.deepEqual(s.series[1].instances.map((i) => i.uid), ['2.1', '2.2']);
  assert.deepEqual(s.bodySites, ['Chest']);
  assert.deepEqual(s.modalities, ['CT']);
  assert.equal(s.numberOfSeries, 2);
  assert.equal(s.numberOfInstances, 3);
});

test('missing counts stay unknown rather than zero', () => {
  const [s] = studiesFrom([study('s', '')]);
  assert.equal(s.numberOfInstances, null);
  assert.equal(s.numberOfSeries, null);
  assert.equal(displayDate(''), 'date unknown');
});

test('a StudyInstanceUID is read from the urn:dicom:uid identifier', () => {
  assert.equal(studyUid({ identifier: [{ system: 'urn:dicom:uid', value: 'urn:oid:1.2.3' }] }), '1.2.3');
  assert.equal(studyUid({ identifier: [{ system: 'other', value: 'x' }] }), '');
});

test('a date without time is shown as that calendar date in any time zone', () => {
  assert.equal(displayDate('2023-11-10', 'en-GB'), '10 Nov 2023');
  assert.equal(displayDate('2023-11', 'en-GB'), '2023-11');
});

test('the token goes only to the allowed origins', () => {
  const { trusted, refused } = trustedRoots(
    ['http://127.0.0.1:8090/dicomweb/main/', 'https://elsewhere.example/dicomweb', 'javascript:alert(1)', 'not a url'],
    ['http://127.0.0.1:8090'],
  );
  assert.deepEqual(trusted, ['http://127.0.0.1:8090/dicomweb/main']);
  assert.equal(refused, 3);
});

test('a patient name prefers the official name and its text', () => {
  assert.equal(patientName({ name: [{ given: ['A'], family: 'B' }] }), 'A B');
  assert.equal(patientName({ name: [{ use: 'nickname', text: 'x' }, { use: 'official', text: 'Dr Y' }] }), 'Dr Y');
  assert.equal(patientName({}), '');
});

test('report and other document series are told from image series', () => {
  assert.equal(isDocumentSeries({ modality: 'SR' }), true);
  assert.equal(isDocumentSeries({ modality: 'ko' }), true);
  assert.equal(isDocumentSeries({ modality: 'CT' }), false);
  assert.equal(isDocumentSeries({ modality: '' }), false);
});

test('a study counts its images apart from its documents', () => {
  const series = (modality, numberOfInstances) => ({ modality, numberOfInstances });
  assert.deepEqual(instanceCounts({ numberOfInstances: 12, series: [series('CT', 4), series('CT', 4), series('SR', 4)] }), {
    images: 8,
    documents: 4,
  });
  assert.deepEqual(instanceCounts({ numberOfInstances: 12, series: [] }), { images: 12, documents: 0 });
  assert.deepEqual(instanceCounts({ numberOfInstances: 5, series: [series('CT', null)] }), { images: 5, documents: 0 });
});
