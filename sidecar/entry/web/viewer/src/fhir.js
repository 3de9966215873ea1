/** The FHIR reads the viewer makes, with the user's token (through fhirclient). */
import { classify } from './errors.js';
import { studiesFrom } from './studies.js';

/** Stored studies change when the sidecar syncs: ask past any cache. */
const FRESH = { 'Cache-Control': 'no-cache' };

/**
 * A search's resources, every page.
 * @param {any} client @param {string} url @param {string} what
 * @returns {Promise<any[]>}
 */
async function search(client, url, what) {
  try {
    const resources = await client.request(
      { url, headers: FRESH },
      { pageLimit: 0, flat: true, useRefreshToken: false },
    );
    return Array.isArray(resources) ? resources : [];
  } catch (error) {
    throw classify(error, what);
  }
}

/**
 * A patient's imaging studies, newest first, with their Endpoints.
 * @param {any} client @param {string} patientId
 */
export async function studiesOf(client, patientId) {
  const subject = encodeURIComponent(`Patient/${patientId}`);
  const url = `ImagingStudy?subject=${subject}&_include=ImagingStudy:endpoint&_sort=-started&_count=100`;
  return studiesFrom(await search(client, url, 'This patient’s imaging'));
}

/** @param {any} client @param {string} patientId */
export async function readPatient(client, patientId) {
  try {
    return await client.request(
      { url: `Patient/${encodeURIComponent(patientId)}`, headers: FRESH },
      { useRefreshToken: false },
    );
  } catch (error) {
    throw classify(error, 'This patient');
  }
}

/**
 * Patients whose name or identifier matches what a clinician typed (two searches, one list).
 * `system|value` and bare values both search identifiers.
 * @param {any} client @param {string} text
 */
export async function findPatients(client, text) {
  const q = encodeURIComponent(text.trim());
  const [byName, byIdentifier] = await Promise.all([
    search(client, `Patient?name=${q}&_count=20`, 'The patient search'),
    search(client, `Patient?identifier=${q}&_count=20`, 'The patient search'),
  ]);
  const seen = new Set();
  return [...byIdentifier, ...byName].filter(
    (p) => p.resourceType === 'Patient' && !seen.has(p.id) && seen.add(p.id),
  );
}
