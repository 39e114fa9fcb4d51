// @ts-check
// The service graph: one column per DC with its services, an edge per source → destination and
// verdict (green allowed, red denied), labelled with the count and the p99 duration.
import { get, query } from './api.js';
import { changed, fill, h, s } from './dom.js';
import { duration } from './format.js';
import { graphModel } from './flow-model.js';
import { dcColour, missingNote } from './flow-cells.js';
/** @import { Context, FlowsAnswer, View } from './shapes.js' */
/** @import { Edge, Graph } from './flow-model.js' */

/**
 * Where a service's node is drawn: its column and row, and its top-left corner.
 * @typedef {{ col: number, row: number, x: number, y: number }} NodePos
 * @typedef {{ x: number, y: number }} Point
 */

const WINDOWS = [
  ['5m', 'last 5 minutes'],
  ['15m', 'last 15 minutes'],
  ['1h', 'last hour'],
  ['6h', 'last 6 hours'],
];

// Layout, in SVG user units. The gap between columns leaves room for the edge labels.
const PAD = 24;
const COL_W = 210;
const GAP = 220;
const HEAD = 50;
const NODE_W = 170;
const NODE_H = 38;
const NODE_GAP = 18;
const PARALLEL = 12;

// Records drawn at most: the graph is redrawn every few seconds from all DCs' answers.
const LIMIT = 2000;

/** Proxies and gateways carry traffic for services; they are not services of their own on the graph. */
const isService = (/** @type {string} */ name) => !name.endsWith('-sidecar-proxy') && name !== 'mesh-gateway';

/**
 * @param {Context} ctx
 * @returns {View}
 */
export function createGraphView(ctx) {
  const windowSelect = h(
    'select',
    { name: 'window', onchange: () => ctx.refresh() },
    WINDOWS.map(([v, label]) => h('option', { value: v, selected: v === '15m' }, label)),
  );
  const canvas = h('div', { class: 'graph-canvas', id: 'graph' });
  const notes = h('div', { class: 'notes' });
  const el = h(
    'section',
    { class: 'view', 'aria-labelledby': 'graph-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'graph-title' }, 'Service graph'), h('label', { class: 'inline' }, 'Window ', windowSelect), legend()),
    canvas,
    notes,
  );

  async function refresh() {
    const [datacenters, flows] = /** @type {[string[], FlowsAnswer]} */ (
      await Promise.all([get('/v1/catalog/datacenters'), get(`/v1/flows${query({ dc: 'all', since: windowSelect.value, limit: LIMIT })}`)])
    );
    /** @type {Record<string, string[]>} */
    const catalogs = {};
    /** @type {string[]} */
    const catalogErrors = [];
    await Promise.all(
      datacenters.map(async (dc) => {
        try {
          catalogs[dc] = Object.keys(/** @type {Record<string, string[]>} */ (await get(`/v1/catalog/services${query({ dc })}`))).filter(isService);
        } catch (err) {
          catalogErrors.push(`${dc}: ${/** @type {Error} */ (err).message}`);
        }
      }),
    );
    const model = graphModel(flows.Records, catalogs, datacenters);
    if (changed(canvas, JSON.stringify([model, ctx.home]))) {
      fill(canvas, render(model, ctx));
      sizeLabels(canvas);
    }

    const gatewayRecords = flows.Records.filter((r) => r.hop.startsWith('gateway-'));
    const noRoute = flows.Records.filter((r) => r.verdict === 'no_route').length;
    const total = model.edges.reduce((n, e) => n + e.count, 0);
    if (
      !changed(
        notes,
        JSON.stringify([total, flows.Records.length, flows.Datacenters, gatewayRecords.length, noRoute, flows.Missing, flows.Errors, catalogErrors]),
      )
    )
      return;
    fill(
      notes,
      h(
        'p',
        {},
        `${total} connection${total === 1 ? '' : 's'} between services, from ${flows.Records.length} flow records in ${(flows.Datacenters ?? [flows.DC]).join(', ')}; ${gatewayRecords.length} at gateways`,
        noRoute ? [', of which ', h('a', { href: '#/flows?verdict=no_route' }, `${noRoute} no_route`)] : '',
        '.',
      ),
      flows.Records.length >= LIMIT ? h('p', { class: 'warn' }, `Drawn from the newest ${LIMIT} records only: a shorter window shows all of it.`) : '',
      missingNote(flows),
      catalogErrors.length ? h('p', { class: 'warn' }, `Catalog not read for ${catalogErrors.join('; ')}`) : '',
    );
  }

  return { el, show: () => {}, refresh };
}

function legend() {
  const item = (/** @type {string} */ cls, /** @type {string} */ label) => h('span', { class: `legend-item ${cls}` }, h('span', { class: 'swatch' }), label);
  return h(
    'div',
    { class: 'legend' },
    item('allowed', 'allowed'),
    item('denied', 'denied'),
    item('error', 'error'),
    h('span', { class: 'legend-note' }, 'label: count · p99 duration'),
  );
}

/**
 * @param {Graph} model
 * @param {Context} ctx
 */
function render(model, ctx) {
  const cols = model.datacenters;
  /** @type {Map<string, NodePos>} */
  const pos = new Map();
  let tallest = 0;
  cols.forEach((dc, i) => {
    const x0 = PAD + i * (COL_W + GAP);
    dc.services.forEach((name, j) => pos.set(`${name}@${dc.name}`, { col: i, row: j, x: x0 + (COL_W - NODE_W) / 2, y: PAD + HEAD + j * (NODE_H + NODE_GAP) }));
    tallest = Math.max(tallest, HEAD + Math.max(1, dc.services.length) * (NODE_H + NODE_GAP));
  });
  const width = PAD * 2 + Math.max(1, cols.length) * COL_W + Math.max(0, cols.length - 1) * GAP + 80;
  const height = PAD * 2 + tallest + 20;

  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'Service graph' });
  svg.append(
    s(
      'defs',
      {},
      ['allowed', 'denied', 'error', 'no_route'].map((v) =>
        s(
          'marker',
          { id: `arrow-${v}`, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto' },
          s('path', { d: 'M0,0 L10,5 L0,10 z', class: `arrow ${v}` }),
        ),
      ),
    ),
  );

  const primary = ctx.home?.primary;
  cols.forEach((dc, i) => {
    const x0 = PAD + i * (COL_W + GAP);
    svg.append(
      s(
        'g',
        { class: 'dc-column', dataset: { dc: dc.name } },
        s('rect', { x: x0, y: PAD, width: COL_W, height: tallest, rx: 10, class: 'dc-box' }),
        s('text', { x: x0 + 14, y: PAD + 28, class: `dc-name dc-text-${dcColour(dc.name)}` }, dc.name),
        s(
          'text',
          { x: x0 + COL_W - 14, y: PAD + 28, class: 'dc-note', 'text-anchor': 'end' },
          [dc.name === primary && 'primary', dc.name === ctx.home?.dc && 'here'].filter(Boolean).join(' · '),
        ),
        dc.services.length === 0 ? s('text', { x: x0 + COL_W / 2, y: PAD + HEAD + 22, class: 'empty', 'text-anchor': 'middle' }, 'no services') : '',
      ),
    );
  });

  // Edges under the nodes; edges between the same two services side by side.
  /** @type {Map<string, Edge[]>} */
  const pairs = new Map();
  for (const e of model.edges) {
    const a = `${e.source.service}@${e.source.dc}`;
    const b = `${e.destination.service}@${e.destination.dc}`;
    const key = [a, b].sort().join('|');
    if (!pairs.has(key)) pairs.set(key, []);
    /** @type {Edge[]} */ (pairs.get(key)).push(e);
  }
  /** @type {Set<NodePos>} */
  const busy = new Set();
  const edgeLayer = s('g', { class: 'edges' });
  const labelLayer = s('g', { class: 'labels' });
  for (const group of pairs.values()) {
    group.sort((x, y) => x.verdict.localeCompare(y.verdict) || x.source.service.localeCompare(y.source.service));
    group.forEach((e, k) => {
      // graphModel lists every service an edge names, so each end has its node.
      const from = /** @type {NodePos} */ (pos.get(`${e.source.service}@${e.source.dc}`));
      const to = /** @type {NodePos} */ (pos.get(`${e.destination.service}@${e.destination.dc}`));
      busy.add(from).add(to);
      const offset = (k - (group.length - 1) / 2) * PARALLEL;
      const [p0, p1, p2, p3] = curve(from, to, offset);
      const mid = bezierPoint(p0, p1, p2, p3, 0.5);
      const text = `${e.count} · p99 ${duration(e.p99)}`;
      const title = `${e.source.service} (${e.source.dc}) → ${e.destination.service} (${e.destination.dc}): ${e.count} ${e.verdict}, p99 ${duration(e.p99)}\nlast: ${e.last.reason}${e.last.intentionId ? ` (intention ${e.last.intentionId})` : ''}`;
      const open = () => ctx.navigate(`#/flows${query({ dc: 'all', from: e.source.service, to: e.destination.service })}`);
      const data = {
        source: e.source.service,
        sourceDc: e.source.dc,
        destination: e.destination.service,
        destinationDc: e.destination.dc,
        verdict: e.verdict,
        count: e.count,
      };
      edgeLayer.append(
        s(
          'path',
          {
            d: `M${p0.x},${p0.y} C${p1.x},${p1.y} ${p2.x},${p2.y} ${p3.x},${p3.y}`,
            class: `edge ${e.verdict}`,
            'stroke-width': (1.5 + Math.min(4, Math.log2(e.count + 1))).toFixed(1),
            'marker-end': `url(#arrow-${e.verdict})`,
            dataset: data,
            onclick: open,
          },
          s('title', {}, title),
        ),
      );
      labelLayer.append(
        s(
          'g',
          { class: `edge-label ${e.verdict}`, dataset: data, onclick: open },
          s('rect', { x: mid.x - 40, y: mid.y - 10, width: 80, height: 20, rx: 5 }),
          s('text', { x: mid.x, y: mid.y + 4, 'text-anchor': 'middle' }, text),
          s('title', {}, title),
        ),
      );
    });
  }
  svg.append(edgeLayer);

  for (const dc of cols) {
    for (const name of dc.services) {
      const p = /** @type {NodePos} */ (pos.get(`${name}@${dc.name}`));
      svg.append(
        s(
          'g',
          {
            class: `node${busy.has(p) ? '' : ' idle'}`,
            dataset: { service: name, dc: dc.name },
            onclick: () => ctx.navigate(`#/flows${query({ dc: 'all', service: name })}`),
          },
          s('rect', { x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 8 }),
          s('text', { x: p.x + NODE_W / 2, y: p.y + NODE_H / 2 + 5, 'text-anchor': 'middle' }, name),
          s('title', {}, `${name} in ${dc.name}: show its flows`),
        ),
      );
    }
  }
  svg.append(labelLayer);
  return svg;
}

/**
 * The control points of an edge from one node to another, `offset` apart from its parallels.
 * @param {NodePos} a
 * @param {NodePos} b
 * @param {number} offset
 * @returns {[Point, Point, Point, Point]}
 */
function curve(a, b, offset) {
  const ay = a.y + NODE_H / 2 + offset;
  const by = b.y + NODE_H / 2 + offset;
  if (a === b) {
    const x = a.x + NODE_W;
    return [
      { x, y: ay - 8 },
      { x: x + 60, y: ay - 34 },
      { x: x + 60, y: ay + 18 },
      { x, y: ay + 8 },
    ];
  }
  if (a.col === b.col) {
    // Same DC: an arc out into the gap on the right and back.
    const x = a.x + NODE_W;
    const bulge = 50 + 14 * Math.abs(a.row - b.row) + offset;
    return [
      { x, y: ay },
      { x: x + bulge, y: ay },
      { x: x + bulge, y: by },
      { x, y: by },
    ];
  }
  if (Math.abs(b.col - a.col) > 1) {
    // Past a DC in between: an arc over the nodes, so it never runs through another service.
    const x0 = a.x + NODE_W / 2 + offset;
    const x3 = b.x + NODE_W / 2 + offset;
    const top = Math.min(a.y, b.y) - 56 - Math.abs(offset);
    return [
      { x: x0, y: a.y },
      { x: x0, y: top },
      { x: x3, y: top },
      { x: x3, y: b.y },
    ];
  }
  const forward = b.col > a.col;
  const x0 = forward ? a.x + NODE_W : a.x;
  const x3 = forward ? b.x : b.x + NODE_W;
  const c = (x3 - x0) / 2;
  return [
    { x: x0, y: ay },
    { x: x0 + c, y: ay },
    { x: x3 - c, y: by },
    { x: x3, y: by },
  ];
}

/**
 * @param {Point} p0
 * @param {Point} p1
 * @param {Point} p2
 * @param {Point} p3
 * @param {number} t
 * @returns {Point}
 */
function bezierPoint(p0, p1, p2, p3, t) {
  const u = 1 - t;
  const f = (/** @type {keyof Point} */ k) => u * u * u * p0[k] + 3 * u * u * t * p1[k] + 3 * u * t * t * p2[k] + t * t * t * p3[k];
  return { x: f('x'), y: f('y') };
}

/**
 * Fits each label's background to its text, once the text can be measured, and moves a label that
 * would cover one placed before it up or down until it is clear (edges out of one node start close).
 * @param {Element} root
 */
function sizeLabels(root) {
  /** @type {{ x: number, y: number, w: number, h: number }[]} */
  const placed = [];
  const clash = (/** @type {{ x: number, y: number, w: number, h: number }} */ b) =>
    placed.some((p) => b.x < p.x + p.w && p.x < b.x + b.w && b.y < p.y + p.h && p.y < b.y + b.h);
  for (const g of root.querySelectorAll('.edge-label')) {
    // render() gives every label its text and its background.
    const text = /** @type {SVGTextElement} */ (g.querySelector('text'));
    const rect = /** @type {SVGRectElement} */ (g.querySelector('rect'));
    const w = (text.getComputedTextLength() || text.textContent.length * 7) + 14;
    const x = Number(text.getAttribute('x')) - w / 2;
    const y = Number(rect.getAttribute('y'));
    const box = { x, y, w, h: 22 };
    for (let i = 1; i <= 12 && clash(box); i++) box.y = y + Math.ceil(i / 2) * (i % 2 ? 24 : -24);
    placed.push(box);
    rect.setAttribute('x', String(x));
    rect.setAttribute('width', String(w));
    rect.setAttribute('y', String(box.y));
    text.setAttribute('y', String(box.y + 14));
  }
}
