// @ts-check
// The dashboard's entry: the views, the address that picks one (#/view/arg?filters), the token,
// and the refresh loop that keeps the shown view current.
import { ApiError, describeError, get, getToken, setToken } from './api.js';
import { clock, shortId } from './format.js';
import { Live } from './live.js';
import { createFederationView } from './view-federation.js';
import { createFlowsView } from './view-flows.js';
import { createGraphView } from './view-graph.js';
import { createIntentionsView } from './view-intentions.js';
import { createTraceView } from './view-trace.js';
/** @import { Context, FederationStatus, FlowsAnswer, View } from './shapes.js' */

// The page's fixed elements, all in index.html.
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const tokenInput = () => /** @type {HTMLInputElement} */ ($('token'));

/** @type {Context} */
const ctx = {
  /** This server's DC and the primary, once known. */
  home: undefined,
  navigate(hash) {
    if (location.hash === hash) refresh();
    else location.hash = hash;
  },
  refresh: () => refresh(),
};

/** @type {Record<string, View>} */
const views = {
  graph: createGraphView(ctx),
  flows: createFlowsView(ctx),
  trace: createTraceView(ctx),
  intentions: createIntentionsView(ctx),
  federation: createFederationView(),
};

/** @type {View} */
let active;
let activeName = '';

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const [name, ...rest] = path.split('/');
  return { name: name in views ? name : 'graph', arg: decodeURIComponent(rest.join('/')), params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function onRoute() {
  const route = parseRoute();
  if (route.name !== activeName) {
    activeName = route.name;
    active = views[route.name];
    $('main').replaceChildren(active.el);
    for (const a of $('tabs').querySelectorAll('a')) {
      if (a.dataset.view === route.name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }
  active.show(route);
  refresh();
}

// One refresh at a time; a refresh asked for meanwhile runs once the current one is done, so what
// is shown always matches the latest address and filters.
/** @type {Promise<void> | undefined} */
let running;
let again = false;

async function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    do {
      again = false;
      const name = activeName;
      try {
        await active.refresh();
        showError(undefined);
        $('updated').textContent = `updated ${clock(Date.now())}`;
      } catch (err) {
        showError(err, name);
      }
    } while (again);
  })();
  try {
    await running;
  } finally {
    running = undefined;
  }
}

/**
 * @param {unknown} err
 * @param {string} [view]
 */
function showError(err, view) {
  const banner = $('banner');
  if (!err) {
    banner.hidden = true;
    banner.textContent = '';
    return;
  }
  const denied = err instanceof ApiError && err.status === 403;
  banner.textContent = `Could not load ${view}: ${describeError(err)}${denied ? '. Set a token with the needed permission above.' : ''}`;
  banner.hidden = false;
}

async function loadHome() {
  try {
    const s = /** @type {FederationStatus} */ (await get('/v1/federation/status'));
    ctx.home = { dc: s.Datacenter, primary: s.PrimaryDatacenter };
  } catch {
    // Without operator:read, the flows answer still names this DC.
    try {
      ctx.home = { dc: /** @type {FlowsAnswer} */ (await get('/v1/flows?limit=1')).DC, primary: undefined };
    } catch {
      ctx.home = undefined;
    }
  }
  $('home-dc').textContent = ctx.home?.dc ?? '?';
  document.title = ctx.home ? `Isthmus · ${ctx.home.dc}` : 'Isthmus';
}

async function showTokenOwner() {
  const who = $('token-who');
  if (!getToken()) {
    who.textContent = 'anonymous';
    return;
  }
  try {
    const t = /** @type {{ AccessorID: string, Description: string }} */ (await get('/v1/acl/token/self'));
    who.textContent = t.Description || shortId(t.AccessorID);
    who.title = `accessor ${t.AccessorID}`;
  } catch (err) {
    who.textContent = err instanceof ApiError && err.code === 'ISTHMUS_ERR_ACL_NOT_FOUND' ? 'token not found' : 'token set';
    who.title = describeError(err);
  }
}

const live = new Live(
  () => refresh(),
  (mode) => {
    const el = $('live');
    el.textContent = mode === 'stream' ? 'live' : 'polling every 2 s';
    el.className = `live ${mode}`;
  },
);

function tokenChanged() {
  showTokenOwner();
  loadHome();
  live.restart();
}

tokenInput().value = getToken();
$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken(tokenInput().value.trim());
  tokenChanged();
});
$('token-forget').addEventListener('click', () => {
  setToken('');
  tokenInput().value = '';
  tokenChanged();
});

window.addEventListener('hashchange', onRoute);
$('live').textContent = 'polling every 2 s';
showTokenOwner();
await loadHome();
onRoute();
live.start();
