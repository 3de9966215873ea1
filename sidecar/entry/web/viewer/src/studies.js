/**
 * ImagingStudy (R4, as the sidecar's mapping writes it) to what the screens show. Pure
 * functions: no DOM, no network, so node's test runner checks them.
 */

const DICOM_UID = 'urn:dicom:uid';

/**
 * @typedef {object} Series
 * @property {string} uid
 * @property {number|null} number
 * @property {string} modality
 * @property {string} description
 * @property {string} bodySite
 * @property {number|null} numberOfInstances
 * @property {{uid: string, number: number|null, sopClass: string}[]} instances
 *
 * @typedef {object} Study
 * @property {string} id the FHIR resource id
 * @property {string} uid StudyInstanceUID ('' when the resource has none)
 * @property {string} started as FHIR wrote it ('' when unknown)
 * @property {string[]} modalities
 * @property {string} description
 * @property {string[]} bodySites
 * @property {number|null} numberOfSeries
 * @property {number|null} numberOfInstances
 * @property {string[]} roots the WADO-RS roots of its Endpoints, in the study's order
 * @property {Series[]} series by series number
 */

/** @param {any} coding */
const codeText = (coding) => (coding ? coding.display || coding.code || '' : '');

/** @param {any} n */
const count = (n) => (Number.isInteger(n) && n >= 0 ? n : null);

/** @param {number|null} a @param {number|null} b */
const byNumber = (a, b) => (a ?? Infinity) - (b ?? Infinity);

/** The StudyInstanceUID of an ImagingStudy (identifier urn:dicom:uid, urn:oid:<uid>). */
export function studyUid(resource) {
  const id = (resource.identifier || []).find((i) => i.system === DICOM_UID);
  return id?.value ? id.value.replace(/^urn:oid:/, '') : '';
}

/**
 * Studies from a searchset's resources (matches and included Endpoints), newest first.
 * @param {any[]} resources
 * @returns {Study[]}
 */
export function studiesFrom(resources) {
  const endpoints = new Map(
    resources.filter((r) => r.resourceType === 'Endpoint').map((e) => [`Endpoint/${e.id}`, e]),
  );
  return resources
    .filter((r) => r.resourceType === 'ImagingStudy')
    .map((r) => toStudy(r, endpoints))
    .sort((a, b) => (b.started > a.started ? 1 : b.started < a.started ? -1 : 0));
}

/** @param {any} r @param {Map<string, any>} endpoints @returns {Study} */
function toStudy(r, endpoints) {
  const series = (r.series || [])
    .map((s) => ({
      uid: s.uid,
      number: count(s.number),
      modality: codeText(s.modality),
      description: s.description || '',
      bodySite: codeText(s.bodySite),
      numberOfInstances: count(s.numberOfInstances) ?? (s.instance ? s.instance.length : null),
      instances: (s.instance || [])
        .map((i) => ({ uid: i.uid, number: count(i.number), sopClass: i.sopClass?.code || '' }))
        .sort((a, b) => byNumber(a.number, b.number)),
    }))
    .sort((a, b) => byNumber(a.number, b.number));
  const modalities = (r.modality || []).map(codeText).filter(Boolean);
  return {
    id: r.id,
    uid: studyUid(r),
    started: r.started || '',
    modalities: modalities.length ? modalities : unique(series.map((s) => s.modality)),
    description: r.description || '',
    bodySites: unique(series.map((s) => s.bodySite)),
    numberOfSeries: count(r.numberOfSeries) ?? (r.series ? r.series.length : null),
    numberOfInstances: count(r.numberOfInstances),
    roots: (r.endpoint || [])
      .map((ref) => endpoints.get(ref.reference)?.address)
      .filter((a) => typeof a === 'string' && a),
    series,
  };
}

/** @param {string[]} values */
const unique = (values) => [...new Set(values.filter(Boolean))];

/**
 * Modalities whose instances are documents, not images (DICOM PS3.3 C.7.3.1.1.1: SR
 * structured report, KO key object selection, PR presentation state, DOC document): the
 * gateway has no rendered frame of them, so the viewer does not offer to show one.
 */
export const DOCUMENT_MODALITIES = new Set(['SR', 'KO', 'PR', 'DOC']);

/** @param {{modality: string}} series */
export function isDocumentSeries(series) {
  return DOCUMENT_MODALITIES.has(String(series.modality || '').toUpperCase());
}

/**
 * A FHIR date or dateTime for people: a date alone is shown as that calendar date (no time
 * zone shift), a dateTime in the browser's zone with its time.
 * @param {string} value
 * @param {string} [locale]
 */
export function displayDate(value, locale) {
  if (!value) return 'date unknown';
  if (/^\d{4}$/.test(value) || /^\d{4}-\d{2}$/.test(value)) return value;
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: 'UTC' }).format(
      new Date(`${value}T00:00:00Z`),
    );
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(date);
}

/**
 * The imaging gateways a study can be read from: absolute http(s) URLs whose origin is one
 * the viewer sends the user's token to. Others are left out (and counted), so a hostile or
 * mistaken Endpoint.address never receives the token.
 * @param {string[]} roots
 * @param {string[]} allowedOrigins
 */
export function trustedRoots(roots, allowedOrigins) {
  const trusted = [];
  let refused = 0;
  for (const root of roots) {
    let url;
    try {
      url = new URL(root);
    } catch {
      refused += 1;
      continue;
    }
    if ((url.protocol === 'http:' || url.protocol === 'https:') && allowedOrigins.includes(url.origin)) {
      trusted.push(root.replace(/\/+$/, ''));
    } else refused += 1;
  }
  return { trusted, refused };
}

/** A person's name from a FHIR HumanName list. @param {any} patient */
export function patientName(patient) {
  const names = patient?.name || [];
  const name = names.find((n) => n.use === 'official') || names[0];
  if (!name) return '';
  if (name.text) return name.text;
  return [...(name.given || []), name.family].filter(Boolean).join(' ');
}

/**
 * How many of a study's instances are images and how many documents (reports), from its
 * series; the study's own count is all images when its series are not listed.
 * @param {{numberOfInstances: number|null, series: {modality: string, numberOfInstances: number|null}[]}} study
 * @returns {{images: number|null, documents: number}}
 */
export function instanceCounts(study) {
  if (!study.series.length) return { images: study.numberOfInstances, documents: 0 };
  let images = 0;
  let documents = 0;
  for (const series of study.series) {
    if (series.numberOfInstances === null) return { images: study.numberOfInstances, documents: 0 };
    if (isDocumentSeries(series)) documents += series.numberOfInstances;
    else images += series.numberOfInstances;
  }
  return { images, documents };
}
