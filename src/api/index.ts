export { createApi } from './app.js';
export type { ApiDeps } from './app.js';
export { errorBody, statusFor } from './errors.js';
export type { ApiEnv } from './env.js';
export { listenHttp } from './http-server.js';
export type { HttpListener } from './http-server.js';
