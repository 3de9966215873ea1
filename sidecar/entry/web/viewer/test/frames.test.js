import assert from 'node:assert/strict';
import { test } from 'node:test';
import { framesFromInstances, framesFromMetadata, presetsFor, renderedQuery } from '../src/frames.js';

const dataset = (uid, number, frames, center, width) => ({
  '00080018': { vr: 'UI', Value: [uid] },
  '00200013': { vr: 'IS', Value: [number] },
  ...(frames ? { '00280008': { vr: 'IS', Value: [String(frames)] } } : {}),
  ...(center !== undefined ? { '00281050': { vr: 'DS', Value: [center, 99] }, '00281051': { vr: 'DS', Value: [width] } } : {}),
});

test('every frame of every instance, in instance number order', () => {
  const frames = framesFromMetadata([dataset('b', 2, 3), dataset('a', 1, null, '40', '400')]);
  assert.deepEqual(frames.map((f) => `${f.instanceUid}:${f.frame}/${f.frames}`), ['a:1/1', 'b:1/3', 'b:2/3', 'b:3/3']);
  assert.deepEqual(frames[0].window, { center: 40, width: 400 }); // the first of several values
  assert.equal(frames[1].window, null);
});

test('without metadata, one frame per listed instance', () => {
  assert.deepEqual(framesFromInstances([{ uid: 'x', number: 1 }]).map((f) => [f.instanceUid, f.frame]), [['x', 1]]);
});

test('CT gets the Hounsfield presets, other modalities the stored window only', () => {
  assert.deepEqual(presetsFor('CT').map((p) => p.key), ['1', '2', '3', '4', '5']);
  assert.deepEqual(presetsFor('MR').map((p) => p.name), ['As stored']);
});

test('the rendered query asks for a window only when a preset names one', () => {
  const [stored, soft] = presetsFor('CT');
  assert.equal(renderedQuery(stored, 512), 'viewport=512,512');
  assert.equal(renderedQuery(soft, 512), 'window=40,400,linear&viewport=512,512');
});
