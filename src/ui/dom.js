// @ts-check
// Builds HTML and SVG elements from plain calls. Nothing is ever parsed from a string: whatever the
// API sends (service names, reasons, descriptions) ends up as text, never as markup.
const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * What an element's props and children may be: a prop `onx` is a listener for event `x`; a child
 * is a node, text, or a list of them (false, null and undefined are left out).
 * @typedef {Record<string, unknown>} Props
 * @typedef {Node | string | number | boolean | null | undefined} Leaf
 * @typedef {Leaf | (Leaf | Leaf[])[]} Child
 */

/**
 * An HTML element: h('a', { href: '#/flows', class: 'tab' }, 'Flows').
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {Child[]} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/**
 * An SVG element, same shape as h().
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {Child[]} children
 * @returns {SVGElementTagNameMap[K]}
 */
export function s(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/**
 * Replaces an element's children.
 * @template {Element} E
 * @param {E} el
 * @param {Child[]} children
 * @returns {E}
 */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * @template {HTMLElement | SVGElement} E
 * @param {E} el
 * @param {Props | undefined} props
 * @param {Child[]} children
 * @returns {E}
 */
function build(el, props, children) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    else if (key === 'dataset') for (const [k, v] of Object.entries(/** @type {Record<string, unknown>} */ (value))) el.dataset[k] = String(v);
    else if (key === 'value' && 'value' in el) el.value = String(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {Child[]} children
 */
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** @type {WeakMap<Element, string>} */
const shownKeys = new WeakMap();

/**
 * Whether what `el` shows would change: `key` stands for its content (say, the JSON of the data it
 * is drawn from). Polling redraws nothing that has not changed, so hover, focus and selection stay.
 */
/**
 * @param {Element} el
 * @param {string} key
 */
export function changed(el, key) {
  if (shownKeys.get(el) === key) return false;
  shownKeys.set(el, key);
  return true;
}
