// Calls to this server's HTTP API, with the ACL token from the page (kept in sessionStorage, so it
// lives as long as the tab and is never written to disk by the page).
const TOKEN_KEY = 'isthmus.token';

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 2xx, with the API's error code and message (and violations for a 400). */
export class ApiError extends Error {
  constructor(status, code, message, violations) {
    super(message);
    this.status = status;
    this.code = code;
    this.violations = violations ?? [];
  }

  /** One line for the page: the code, the message, and each violation with its field. */
  describe() {
    const v = this.violations.map((x) => `${x.Field}: ${x.Message}`).join('; ');
    return [this.code, this.message, v].filter(Boolean).join(' — ');
  }
}

export function authHeaders() {
  const token = getToken();
  return token ? { 'X-Consul-Token': token } : {};
}

export async function api(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const err = data && typeof data === 'object' ? data : {};
    throw new ApiError(res.status, err.Error ?? `HTTP ${res.status}`, err.Message ?? (typeof data === 'string' ? data : ''), err.Violations);
  }
  return data;
}

export const get = (path) => api('GET', path);

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** An error as one line of text, whatever threw it. */
export function describeError(err) {
  if (err instanceof ApiError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}
