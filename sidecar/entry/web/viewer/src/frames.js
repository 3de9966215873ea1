/**
 * A series as a sequence of frames to page through, and the window presets. Pure functions
 * over DICOM JSON (PS3.18 F.2) and the ImagingStudy series.
 */

/**
 * @typedef {object} Frame
 * @property {string} instanceUid SOPInstanceUID (0008,0018)
 * @property {number|null} instanceNumber InstanceNumber (0020,0013)
 * @property {number} frame 1-based frame number within the instance
 * @property {number} frames NumberOfFrames of the instance (0028,0008), 1 when absent
 * @property {{center: number, width: number}|null} window the instance's first
 *   WindowCenter/WindowWidth (0028,1050/1051), null when it has none
 */

/** The first value of a DICOM JSON attribute. @param {any} dataset @param {string} tag */
export function first(dataset, tag) {
  const value = dataset?.[tag]?.Value;
  return Array.isArray(value) && value.length ? value[0] : undefined;
}

/** @param {any} value */
function number(value) {
  const n = typeof value === 'number' ? value : Number.parseFloat(value);
  return Number.isFinite(n) ? n : null;
}

/**
 * Every frame of a series from its metadata (one DICOM JSON dataset per instance), ordered
 * by InstanceNumber then frame.
 * @param {any[]} datasets
 * @returns {Frame[]}
 */
export function framesFromMetadata(datasets) {
  const instances = datasets
    .map((d) => {
      const center = number(first(d, '00281050'));
      const width = number(first(d, '00281051'));
      return {
        instanceUid: String(first(d, '00080018') ?? ''),
        instanceNumber: number(first(d, '00200013')),
        frames: Math.max(1, Math.trunc(number(first(d, '00280008')) ?? 1)),
        window: center !== null && width !== null && width > 0 ? { center, width } : null,
      };
    })
    .filter((i) => i.instanceUid)
    .sort(
      (a, b) =>
        (a.instanceNumber ?? Infinity) - (b.instanceNumber ?? Infinity) ||
        (a.instanceUid < b.instanceUid ? -1 : a.instanceUid > b.instanceUid ? 1 : 0),
    );
  return instances.flatMap((i) =>
    Array.from({ length: i.frames }, (_, k) => ({ ...i, frame: k + 1 })),
  );
}

/**
 * One frame per instance the ImagingStudy lists, when the metadata cannot be read.
 * @param {{uid: string, number: number|null}[]} instances
 * @returns {Frame[]}
 */
export function framesFromInstances(instances) {
  return instances.map((i) => ({
    instanceUid: i.uid,
    instanceNumber: i.number,
    frame: 1,
    frames: 1,
    window: null,
  }));
}

/**
 * @typedef {object} Preset
 * @property {string} key the number key that selects it
 * @property {string} name
 * @property {number|null} center null: the image's own window (from its DICOM header)
 * @property {number|null} width
 */

/** The image's own window first; the CT presets only where values are Hounsfield units. */
const AS_STORED = { key: '1', name: 'As stored', center: null, width: null };
const CT_PRESETS = [
  { key: '2', name: 'Soft tissue', center: 40, width: 400 },
  { key: '3', name: 'Lung', center: -600, width: 1500 },
  { key: '4', name: 'Bone', center: 400, width: 1800 },
  { key: '5', name: 'Brain', center: 40, width: 80 },
];

/** @param {string} modality @returns {Preset[]} */
export function presetsFor(modality) {
  return modality === 'CT' ? [AS_STORED, ...CT_PRESETS] : [AS_STORED];
}

/**
 * The query of a rendered frame (PS3.18 8.3.5.1.3 window, 8.3.5.1.1 viewport).
 * @param {Preset} preset
 * @param {number} size the square the frame is rendered into, in device pixels
 */
export function renderedQuery(preset, size) {
  // commas stay literal: they separate the values, as PS3.18 writes them
  const parts = [];
  if (preset.center !== null && preset.width !== null) {
    parts.push(`window=${preset.center},${preset.width},linear`);
  }
  parts.push(`viewport=${size},${size}`);
  return parts.join('&');
}

/** "W 400 / L 40" for a button's label. @param {{center: number, width: number}|null} w */
export function windowLabel(w) {
  return w ? `W ${w.width} / L ${w.center}` : '';
}
