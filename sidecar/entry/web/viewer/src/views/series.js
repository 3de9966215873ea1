/** The frame view: page through a series' images, rendered by the gateway, with window presets. */
import { h, show } from '../dom.js';
import { NotAvailable, SignedOut } from '../errors.js';
import { framesFromInstances, framesFromMetadata, presetsFor, renderedQuery, windowLabel } from '../frames.js';
import { seriesUrl } from '../imaging.js';
import { breadcrumbs, loading, problem } from '../shell.js';
import { isDocumentSeries, trustedRoots } from '../studies.js';
import { findStudy, studyTitle } from './study.js';
import { patientLabel, patientTrail } from './study-list.js';

const BIG_STEP = 10; // PageUp / PageDown

/** @param {import('../shell.js').App} app */
export async function seriesScreen(app, patientId, studyId, seriesUid) {
  const studyHref = `#/p/${encodeURIComponent(patientId)}/s/${encodeURIComponent(studyId)}`;
  const back = { label: 'Back to the study', href: studyHref };
  show(app.main, h('h1', { text: 'Series' }), loading('Loading the series…'));
  let study;
  let patient;
  let series;
  let root;
  let frames;
  try {
    [study, patient] = await Promise.all([findStudy(app, patientId, studyId), patientLabel(app, patientId)]);
    series = study.series.find((s) => s.uid === seriesUid);
    if (!series) throw new NotAvailable('This series is not available to you.');
    if (isDocumentSeries(series)) {
      const what = `${series.modality} series`;
      show(app.main, h('h1', { text: 'Series' }), h('p', { class: 'empty', text: `This ${what} holds documents (such as a report), not images: the viewer cannot show it.` }), h('a', { class: 'button', href: studyHref, text: back.label }));
      return;
    }
    const { trusted } = trustedRoots(study.roots, app.origins);
    if (!trusted.length) throw new NotAvailable('The images of this series are not available to you.');
    ({ root, frames } = await framesOf(app, trusted, study, series));
  } catch (error) {
    show(app.main, h('h1', { text: 'Series' }), problem(app, error, { back }));
    return;
  }
  const title = [`Series ${series.number ?? '?'}`, series.modality, series.description].filter(Boolean).join(' · ');
  show(
    app.main,
    breadcrumbs([
      ...patientTrail(app, patientId, patient.name),
      { label: studyTitle(study), href: studyHref },
      { label: title },
    ]),
    h('h1', { text: title }),
  );
  if (!frames.length) {
    app.main.append(h('p', { class: 'empty', text: 'This series has no images to show.' }));
    return;
  }
  frameView(app, { root, study, series, frames, title });
}

/**
 * The series' frames: from its metadata (frame counts, windows), else one per instance
 * the ImagingStudy lists (each frame's own answer then says whether it may be seen). The
 * first gateway that has the series is used for all of it.
 */
async function framesOf(app, roots, study, series) {
  try {
    const { root, value } = await app.gateway.fromAny(roots, (r) =>
      app.gateway.json(`${seriesUrl(r, study.uid, series.uid)}/metadata`, 'This series'),
    );
    const frames = framesFromMetadata(Array.isArray(value) ? value : []);
    if (frames.length) return { root, frames };
    return { root, frames: framesFromInstances(series.instances) };
  } catch (error) {
    if (error instanceof SignedOut || !series.instances.length) throw error;
    return { root: roots[0], frames: framesFromInstances(series.instances) };
  }
}

function frameView(app, { root, study, series, frames, title }) {
  const presets = presetsFor(series.modality);
  const state = { index: 0, preset: presets[0], shown: '' };
  const base = seriesUrl(root, study.uid, series.uid);

  const image = h('img', { class: 'frame', alt: '' });
  const spinner = h('span', { class: 'stage-status', role: 'status', 'aria-live': 'polite' });
  const stage = h('div', { class: 'stage' }, image, spinner);
  const caption = h('p', { class: 'caption', id: 'frame-caption', 'aria-live': 'polite' });
  const previous = h('button', { type: 'button', 'aria-label': 'Previous image', text: '‹ Previous' });
  const next = h('button', { type: 'button', 'aria-label': 'Next image', text: 'Next ›' });
  const slider = h('input', {
    type: 'range',
    id: 'frame-slider',
    min: 1,
    max: frames.length,
    value: 1,
    step: 1,
    'aria-describedby': 'frame-caption',
    disabled: frames.length < 2,
  });
  const presetButtons = presets.map((p) =>
    h('button', {
      type: 'button',
      class: 'preset',
      'aria-pressed': 'false',
      'aria-keyshortcuts': p.key,
      onclick: () => choose(p),
      text: `${p.key} ${p.name}`,
      title: p.center === null ? 'The window stored with the image' : windowLabel(p),
    }),
  );
  app.main.append(
    h(
      'div',
      { class: 'viewer' },
      stage,
      h(
        'div',
        { class: 'controls' },
        caption,
        h(
          'div',
          { class: 'pager' },
          previous,
          h('label', { for: 'frame-slider', class: 'visually-hidden', text: 'Image number' }),
          slider,
          next,
        ),
        h('fieldset', { class: 'presets' }, h('legend', { text: 'Window' }), presetButtons),
        h('p', {
          class: 'hint',
          text: 'Keys: ← → previous / next image, Page Up / Page Down ten back / forward, Home / End first / last, 1–5 window presets.',
        }),
      ),
    ),
  );

  // the frame is rendered at the size it is shown (device pixels), in steps so it caches
  const size = Math.min(1024, Math.max(256, Math.ceil((stage.clientWidth * window.devicePixelRatio) / 256) * 256));
  const urlOf = (index, preset) => {
    const f = frames[index];
    return `${base}/instances/${encodeURIComponent(f.instanceUid)}/frames/${f.frame}/rendered?${renderedQuery(preset, size)}`;
  };

  const describe = () => {
    const f = frames[state.index];
    const own = state.preset.center === null && f.window ? ` (${windowLabel(f.window)})` : '';
    const parts = [
      `Image ${state.index + 1} of ${frames.length}`,
      `instance ${f.instanceNumber ?? '?'}`,
      f.frames > 1 ? `frame ${f.frame} of ${f.frames}` : null,
      `window: ${state.preset.name}${own}`,
    ];
    return parts.filter(Boolean).join(' · ');
  };

  const render = async () => {
    const index = state.index;
    const preset = state.preset;
    const url = urlOf(index, preset);
    caption.textContent = describe();
    slider.value = String(index + 1);
    previous.disabled = index === 0;
    next.disabled = index === frames.length - 1;
    for (const [i, b] of presetButtons.entries()) b.setAttribute('aria-pressed', String(presets[i] === preset));
    const slow = setTimeout(() => {
      spinner.textContent = 'Loading…';
      stage.classList.add('busy');
    }, 150);
    try {
      const blobUrl = await app.gateway.image(url, 'This image');
      if (state.index !== index || state.preset !== preset) return; // a newer one was asked for
      image.src = blobUrl;
      image.alt = `${series.modality || 'Medical'} image ${index + 1} of ${frames.length} in ${title}, window ${preset.name}`;
      spinner.textContent = '';
      stage.classList.remove('failed');
      prefetch();
    } catch (error) {
      if (state.index !== index || state.preset !== preset) return;
      if (error instanceof SignedOut) {
        show(app.main, problem(app, error));
        return;
      }
      image.removeAttribute('src');
      image.alt = '';
      stage.classList.add('failed');
      spinner.textContent =
        error instanceof NotAvailable ? 'This image is not available to you.' : `This image could not be shown: ${error.message}`;
    } finally {
      clearTimeout(slow);
      stage.classList.remove('busy');
    }
  };

  // the next images are fetched ahead, so paging forward does not wait
  const prefetch = () => {
    for (const i of [state.index + 1, state.index + 2, state.index - 1]) {
      if (i >= 0 && i < frames.length) app.gateway.image(urlOf(i, state.preset)).catch(() => {});
    }
  };

  const go = (index) => {
    const clamped = Math.max(0, Math.min(frames.length - 1, index));
    if (clamped === state.index && state.shown) return;
    state.index = clamped;
    state.shown = 'yes';
    render();
  };
  function choose(preset) {
    state.preset = preset;
    render();
  }

  previous.addEventListener('click', () => go(state.index - 1));
  next.addEventListener('click', () => go(state.index + 1));
  slider.addEventListener('input', () => go(Number(slider.value) - 1));

  const keys = (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target instanceof HTMLInputElement && event.target.type !== 'range') return;
    const preset = presets.find((p) => p.key === event.key);
    const moves = {
      ArrowLeft: -1,
      ArrowRight: 1,
      PageUp: -BIG_STEP,
      PageDown: BIG_STEP,
    };
    if (event.key in moves) go(state.index + moves[event.key]);
    else if (event.key === 'Home') go(0);
    else if (event.key === 'End') go(frames.length - 1);
    else if (preset) choose(preset);
    else return;
    event.preventDefault();
  };
  document.addEventListener('keydown', keys);
  app.onLeave(() => document.removeEventListener('keydown', keys));
  go(0);
}
