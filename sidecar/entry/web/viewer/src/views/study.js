/** One study: its series, each with a thumbnail from the imaging gateway. */
import { h, show } from '../dom.js';
import { NotAvailable, SignedOut } from '../errors.js';
import { seriesUrl } from '../imaging.js';
import { breadcrumbs, counted, loading, problem } from '../shell.js';
import { displayDate, instanceCounts, isDocumentSeries, trustedRoots } from '../studies.js';
import { patientLabel, patientTrail, studiesCached } from './study-list.js';

const THUMBNAIL = 256; // device pixels: sharp at 128 CSS pixels on a 2x screen
const AT_ONCE = 4; // thumbnails fetched in parallel

/** The study of this id from the patient's list (NotAvailable when it is not there). */
export async function findStudy(app, patientId, studyId) {
  const studies = await studiesCached(app, patientId);
  const study = studies.find((s) => s.id === studyId);
  if (!study) throw new NotAvailable('This study is not available to you.');
  return study;
}

/** A study's title: description and date. */
export const studyTitle = (study) =>
  `${study.description || study.modalities.join(', ') || 'Study'}, ${displayDate(study.started)}`;

/** @param {import('../shell.js').App} app */
export async function studyScreen(app, patientId, studyId) {
  const back = { label: 'Back to the studies', href: `#/p/${encodeURIComponent(patientId)}` };
  show(app.main, h('h1', { text: 'Study' }), loading('Loading the study…'));
  let study;
  let patient;
  try {
    [study, patient] = await Promise.all([findStudy(app, patientId, studyId), patientLabel(app, patientId)]);
  } catch (error) {
    show(app.main, h('h1', { text: 'Study' }), problem(app, error, { back }));
    return;
  }
  const { trusted, refused } = trustedRoots(study.roots, app.origins);
  const facts = [
    study.modalities.join(', '),
    study.bodySites.join(', '),
    counted(study.numberOfSeries, 'series', 'series'),
    counted(instanceCounts(study).images, 'image', 'images'),
    instanceCounts(study).documents ? counted(instanceCounts(study).documents, 'document', 'documents') : null,
  ].filter(Boolean);
  show(
    app.main,
    breadcrumbs([...patientTrail(app, patientId, patient.name), { label: studyTitle(study) }]),
    h('h1', { text: studyTitle(study) }),
    h('p', { class: 'facts', text: facts.join(' · ') }),
    !trusted.length
      ? h('p', {
          class: 'problem',
          role: 'alert',
          text: refused
            ? 'The images of this study are on a server this viewer does not send your sign-in to.'
            : 'This study has no imaging server recorded, so its images cannot be shown.',
        })
      : null,
    study.series.length
      ? h('ul', { class: 'series-grid' }, study.series.map((s) => seriesCard(app, patientId, study, s, trusted)))
      : h('p', { class: 'empty', text: 'No series are recorded for this study.' }),
  );
  loadThumbnails(app);
}

/** Thumbnails to fetch, a few at a time: [element, loader] pairs set by seriesCard. */
const pending = [];

function seriesCard(app, patientId, study, series, roots) {
  const title = [`Series ${series.number ?? '?'}`, series.modality].filter(Boolean).join(' · ');
  if (isDocumentSeries(series)) return documentCard(series, title);
  const box = h('span', { class: 'thumb' }, h('span', { class: 'thumb-note', text: roots.length ? 'Loading…' : 'No preview' }));
  if (roots.length) pending.push([box, () => thumbnail(app, study, series, roots), title]);
  return h(
    'li',
    {},
    h(
      'a',
      {
        class: 'series-card',
        dataset: { seriesUid: series.uid },
        href: `#/p/${encodeURIComponent(patientId)}/s/${encodeURIComponent(study.id)}/series/${encodeURIComponent(series.uid)}`,
      },
      box,
      h(
        'span',
        { class: 'series-text' },
        h('span', { class: 'series-title', text: title }),
        h('span', { class: 'series-desc', text: series.description || 'No description' }),
        h('span', {
          class: 'series-facts',
          text: [counted(series.numberOfInstances, 'image', 'images'), series.bodySite].filter(Boolean).join(' · '),
        }),
      ),
    ),
  );
}

/** A report or other document series: no images, so nothing to open here. */
function documentCard(series, title) {
  return h(
    'li',
    {},
    h(
      'div',
      { class: 'series-card document', dataset: { seriesUid: series.uid } },
      h('span', { class: 'thumb' }, h('span', { class: 'thumb-note', text: 'Report' })),
      h(
        'span',
        { class: 'series-text' },
        h('span', { class: 'series-title', text: title }),
        h('span', { class: 'series-desc', text: series.description || 'No description' }),
        h('span', {
          class: 'series-facts',
          text: `${counted(series.numberOfInstances, 'document', 'documents')}: not images, so the viewer cannot show them. Its text is in the hospital’s record system.`,
        }),
      ),
    ),
  );
}

/**
 * The series thumbnail (PS3.18 thumbnail resource); where it fails (a gateway without
 * thumbnails may answer 404 too), the first image rendered small, whose answer then counts.
 */
async function thumbnail(app, study, series, roots) {
  const { value } = await app.gateway.fromAny(roots, async (root) => {
    const base = seriesUrl(root, study.uid, series.uid);
    try {
      return await app.gateway.image(`${base}/thumbnail?viewport=${THUMBNAIL},${THUMBNAIL}`, 'This series');
    } catch (error) {
      const first = series.instances[0];
      if (error instanceof SignedOut || !first) throw error;
      const frame = `${base}/instances/${encodeURIComponent(first.uid)}/frames/1/rendered`;
      return app.gateway.image(`${frame}?viewport=${THUMBNAIL},${THUMBNAIL}`, 'This series');
    }
  });
  return value;
}

async function loadThumbnails(app) {
  const work = pending.splice(0);
  const next = async () => {
    for (let item = work.shift(); item; item = work.shift()) {
      const [box, load, title] = item;
      try {
        const url = await load();
        show(box, h('img', { src: url, alt: `Preview of ${title}`, width: 128, height: 128 }));
      } catch (error) {
        if (!box.isConnected) return; // the user has moved on to another screen
        if (error instanceof SignedOut) {
          show(app.main, problem(app, error));
          return;
        }
        const text = error instanceof NotAvailable ? 'Not available to you' : 'No preview';
        show(box, h('span', { class: 'thumb-note', text, title: error.message }));
      }
    }
  };
  await Promise.all(Array.from({ length: AT_ONCE }, next));
}
