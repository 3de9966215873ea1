/**
 * Refreshing without flicker: a region is rebuilt only when its data changed, and the
 * keyboard focus stays on the same control (found again by its data-focus-key) when it is.
 */
import { show } from '../dom.js';
import { fingerprint } from './format.js';

/**
 * Show `build(data)` in `region` unless it already shows this data.
 * @param {HTMLElement} region
 * @param {any} data
 * @param {(data: any) => Node|Node[]} build
 * @returns {boolean} whether the region was rebuilt
 */
export function showIfChanged(region, data, build) {
  const print = fingerprint(data);
  if (region.dataset.print === print) return false;
  const focused = region.contains(document.activeElement) ? document.activeElement?.closest('[data-focus-key]') : null;
  const key = focused?.getAttribute('data-focus-key');
  const built = build(data);
  show(region, ...(Array.isArray(built) ? built : [built]));
  region.dataset.print = print;
  if (key) {
    const again = [...region.querySelectorAll('[data-focus-key]')].find((e) => e.getAttribute('data-focus-key') === key);
    (again || region.querySelector('h2'))?.focus?.();
  }
  return true;
}
