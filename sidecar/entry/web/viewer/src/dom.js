/**
 * Building DOM without innerHTML: every value from a server becomes a text node, so a
 * patient name or a series description can never turn into markup.
 */

/**
 * @param {string} tag
 * @param {Record<string, any>} [props] `class`, `text`, `on<event>` handlers, `dataset`,
 *   anything else is set as an attribute (false/null/undefined leave it out)
 * @param {...(Node|string|number|null|undefined|false|Array<any>)} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key === 'text') element.textContent = String(value);
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2), value);
    } else element.setAttribute(key, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

/** @param {Node} parent @param {Array<any>} children */
function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : String(child));
  }
}

/** Replace what `parent` shows. @param {Element} parent @param {...any} children */
export function show(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/** Move keyboard (and screen reader) focus to a view's heading after it changed. */
export function focusHeading(root) {
  const heading = root.querySelector('h1, h2');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}
