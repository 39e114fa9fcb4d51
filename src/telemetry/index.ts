export { createLogger, redact, parseTrace, silentLogger, REDACTED } from './logger.js';
export type { Logger, LogLevel, LoggerOptions } from './logger.js';
export { createRegistry, httpMetrics } from './metrics.js';
export type { HttpMetrics, HttpRouteSeries } from './metrics.js';
