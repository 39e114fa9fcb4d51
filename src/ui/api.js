// @ts-check
// Calls to this server's HTTP API, with the ACL token from the page (kept in sessionStorage, so it
// lives as long as the tab and is never written to disk by the page).
const TOKEN_KEY = 'isthmus.token';

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

/** @param {string} token */
export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 2xx, with the API's error code and message (and violations for a 400). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {{ Field: string, Message: string }[] | undefined} violations
   */
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

/** @returns {Record<string, string>} */
export function authHeaders() {
  const token = getToken();
  return token ? { 'X-Consul-Token': token } : {};
}

/**
 * The answer of a call, parsed from JSON: the caller names its shape (shapes.js).
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<unknown>}
 */
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
    /** @type {{ Error?: string, Message?: string, Violations?: { Field: string, Message: string }[] }} */
    const err = data && typeof data === 'object' ? data : {};
    throw new ApiError(res.status, err.Error ?? `HTTP ${res.status}`, err.Message ?? (typeof data === 'string' ? data : ''), err.Violations);
  }
  return data;
}

/** @param {string} path */
export const get = (path) => api('GET', path);

/**
 * A query string from an object, leaving out empty values.
 * @param {Record<string, string | number | undefined | null>} params
 */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * An error as one line of text, whatever threw it.
 * @param {unknown} err
 */
export function describeError(err) {
  if (err instanceof ApiError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}
